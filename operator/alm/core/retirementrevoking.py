"""The Revoking phase of an AgentRetirement: Kubernetes credentials deleted, the webhook called.

Revoking is the one phase with two independent tracks, each with its own rules: the Kubernetes
credentials alm made for the Agent are written ahead into ``status.revoked`` and deleted on a
later pass (so a crash never loses one), and the user's revocation webhook is called, and
retried, until it answers (its protocol is :mod:`alm.core.revocation`). Only when both are done
does the retirement move on to Archiving. The later phases re-run :func:`revoke_kubernetes` so a
credential that comes back is deleted again.
"""

from __future__ import annotations

import urllib.parse
from typing import Any

from alm.api import AgentRetirementPhase as Phase
from alm.api import AgentRetirementSpec
from alm.core import revocation
from alm.core.auditactions import AuditAction
from alm.core.retirementpass import AT_ONCE, CONFIRM, POLL, Pass, fail
from alm.core.retirementtypes import (
    RETRY_ANNOTATION,
    WEBHOOK_KIND,
    Action,
    CallWebhook,
    Result,
    RetirementReason,
    RevokeRBAC,
    RevokeSecret,
    RevokeServiceAccount,
)
from alm.core.timestamps import since

__all__ = ["revoke_kubernetes", "revoking"]

Obj = dict[str, Any]

_K8S_ORDER = ("RoleBinding", "Role", "ServiceAccount", "Secret")  # API access first, then identity, then keys


def _allowed(spec: AgentRetirementSpec) -> dict[str, bool]:
    revoke = spec.revoke
    return {"Secret": revoke.secrets, "ServiceAccount": revoke.service_account,
            "Role": revoke.rbac, "RoleBinding": revoke.rbac}


def _revoke_action(kind: str, name: str) -> Action:
    if kind == "Secret":
        return RevokeSecret(name)
    if kind == "ServiceAccount":
        return RevokeServiceAccount(name)
    return RevokeRBAC(kind, name)


def _settle(p: Pass, rec: Obj, result: str) -> None:
    rec.update(result=result, revokedAt=p.now)
    p.record(AuditAction.CREDENTIAL_REVOKED, kind=rec["kind"], name=rec["name"], result=result)
    p.tell(RetirementReason.CREDENTIAL_REVOKED, f"{rec['kind']} {rec['name']}: {result}")


def revoke_kubernetes(p: Pass) -> bool:
    """Record newly found credentials, delete recorded ones; True when none is left alive."""
    allowed = _allowed(p.spec)
    observed = {(c.kind, c.name) for c in p.obs.credentials if c.kind in allowed}
    known = {(str(r.get("kind")), str(r.get("name"))) for r in p.revoked}
    fresh = sorted(observed - known, key=lambda key: (_K8S_ORDER.index(key[0]), key[1]))
    for kind, name in fresh:
        result = Result.PENDING if allowed[kind] else Result.SKIPPED
        p.revoked.append({"kind": kind, "name": name, "revokedAt": p.now, "result": result})
        if result == Result.SKIPPED:
            p.record(AuditAction.CREDENTIAL_REVOKED, kind=kind, name=name, result=result)
    actions: list[Action] = []
    for rec in p.revoked:
        key = (str(rec.get("kind")), str(rec.get("name")))
        if key[0] not in allowed or key in fresh:
            continue  # fresh ones are written ahead and deleted on the next pass
        if rec.get("result") == Result.SKIPPED and allowed[key[0]]:
            rec.update(result=Result.PENDING, revokedAt=p.now)  # spec.revoke changed its mind
        elif rec.get("result") == Result.PENDING:
            if key in observed:
                actions.append(_revoke_action(*key))
            _settle(p, rec, Result.REVOKED if key in observed else Result.ALREADY_GONE)
        elif key in observed and allowed[key[0]]:
            actions.append(_revoke_action(*key))  # recorded as revoked, yet alive again: delete again
    p.actions += sorted(actions, key=lambda a: (_K8S_ORDER.index(_kind(a)), getattr(a, "name", "")))
    pending = any(r.get("result") == Result.PENDING for r in p.revoked if r.get("kind") in allowed)
    alive = any(allowed[kind] for kind, _ in observed)
    if pending:
        p.wait(AT_ONCE)
    elif alive:
        p.wait(CONFIRM if actions else POLL)
    return not pending and not alive


def _kind(action: Action) -> str:
    if isinstance(action, RevokeRBAC):
        return action.kind
    return "Secret" if isinstance(action, RevokeSecret) else "ServiceAccount"


def _webhook_name(url: str) -> str:
    """The host only: a URL's path or query may carry a token, and status is world-readable."""
    return urllib.parse.urlsplit(url).hostname or "webhook"


def _webhook(p: Pass) -> str:
    """Advance the revocation webhook; returns "done", "waiting" or "failed"."""
    hook = p.spec.revoke.webhook
    if hook is None:
        return "done"
    rec = next((r for r in p.revoked if r.get("kind") == WEBHOOK_KIND), None)
    if rec is None:
        p.revoked.append({"kind": WEBHOOK_KIND, "name": _webhook_name(hook.url), "revokedAt": p.now,
                          "result": Result.PENDING})
        p.wait(AT_ONCE)
        return "waiting"
    if rec.get("result") == Result.REVOKED:
        return "done"
    if rec.get("result") == Result.FAILED:
        return "failed"
    tried = p.attempts.get("webhook") or {}
    count = int(tried.get("count", 0))
    if count and (not tried.get("retryable", True) or count >= 1 + hook.max_retries):
        rec.update(result=Result.FAILED, revokedAt=str(tried.get("lastAt", p.now)))
        p.record(AuditAction.CREDENTIAL_REVOKED, kind=WEBHOOK_KIND, name=rec["name"], result=Result.FAILED,
                 answer=tried.get("lastResult"), attempts=count)
        return "failed"
    remaining = revocation.next_attempt_delay(count) - since(str(tried.get("lastAt", p.now)), p.now)
    if remaining > 0:
        p.wait(remaining)
        return "waiting"
    delivery = revocation.delivery_id(p.obs.namespace, p.obs.name, p.obs.uid)
    credentials = [r for r in p.revoked if r.get("kind") != WEBHOOK_KIND and r.get("result") != Result.SKIPPED]
    payload = revocation.body(namespace=p.obs.namespace, agent=p.agent, retirement=p.obs.name,
                              reason=p.spec.reason, delivery=delivery, requested_at=p.now, credentials=credentials)
    p.actions.append(CallWebhook(
        attempt=count + 1, max_attempts=1 + hook.max_retries, url=hook.url, name=str(rec["name"]),
        secret_name=hook.hmac_secret_ref.name, secret_key=hook.hmac_secret_ref.key,
        timeout_seconds=hook.timeout_seconds, delivery=delivery, body=payload,
    ))
    p.wait(CONFIRM)
    return "waiting"


def revoking(p: Pass) -> None:
    settled = revoke_kubernetes(p)
    hook = _webhook(p)
    if settled and hook == "done":
        p.enter(Phase.ARCHIVING, RetirementReason.ARCHIVING, "Archiving")
        p.record(AuditAction.RETIREMENT_ARCHIVING, revoked=len(p.revoked))
        p.tell(RetirementReason.ARCHIVING, f"All credentials of Agent {p.agent} are revoked; archiving")
    elif settled and hook == "failed":
        tried = p.attempts.get("webhook") or {}
        fail(p, RetirementReason.WEBHOOK_FAILED,
              f"The revocation webhook failed {tried.get('count', 0)} time(s), last: {tried.get('lastResult')}. "
              f"Every Kubernetes credential is revoked; revoke the upstream keys by hand or fix the endpoint, "
              f"then annotate the AgentRetirement with {RETRY_ANNOTATION}=<anything> to call it again.")
    else:
        done = sum(1 for r in p.revoked if r.get("result") in (Result.REVOKED, Result.ALREADY_GONE))
        p.message = f"Revoking credentials: {done} of {len(p.revoked)} done"
        if hook == "waiting" and (p.attempts.get("webhook") or {}).get("count"):
            tried = p.attempts["webhook"]
            p.message += f"; webhook attempt {tried['count']} failed ({tried.get('lastResult')}), retrying"


