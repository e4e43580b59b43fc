"""What an AgentRetirement pass does: each action of the plan carried out against the cluster.

:func:`act` takes one action of a :class:`~alm.core.retirementtypes.RetirementPlan` and folds
back into the plan what only the doing can tell: a credential already gone (AlreadyGone, not
Revoked), the webhook's answer, the archive's outcome (written by
:mod:`alm.handlers.retirementarchiving`). The writes are kept apart from the reading
(:mod:`alm.handlers.retirementobserving`) and from the pass and its triggers
(:mod:`alm.handlers.retirement`), so every change a retirement makes to the cluster is in one module.

How traffic stops: the Agent's Services (and HTTPRoutes it owns) are deleted, not emptied. A
retired Agent never serves again and the Agent planner stands down for it, so nothing recreates
them; a Service kept with a selector that matches nothing would only look alive.

How replicas go to zero: a JSON merge patch of ``spec.replicas`` with the operator's field
manager. Server-side apply is not usable here: an apply of only ``spec.replicas`` by
``alm-operator`` would drop every other field that manager applied (the pod template).
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import logging
from collections.abc import Mapping
from typing import Any

from alm.api import AgentRetirementPhase
from alm.core import conditions, retirement
from alm.core.auditactions import AuditAction
from alm.core.reasons import Cond, Reason
from alm.core.retirementtypes import (
    WEBHOOK_KIND,
    Action,
    CallWebhook,
    ConsumeRetry,
    MarkAgentRetired,
    Outcome,
    Result,
    RetirementPlan,
    RevokeRBAC,
    RevokeSecret,
    RevokeServiceAccount,
    ScaleToZero,
    StopTraffic,
    WriteArchive,
)
from alm.handlers.context import Context
from alm.handlers.retirementarchiving import write_archive
from alm.handlers.retirementobserving import Seen, now_ms, to_datetime
from alm.kube import errors, webhook
from alm.kube.api import Kube
from alm.metrics import operator as metrics

__all__ = ["act", "revocation_started"]

log = logging.getLogger(__name__)


async def act(
    ctx: Context, seen: Seen, p: RetirementPlan, action: Action
) -> RetirementPlan:
    """Carry out one action; fold what only the doing can tell back into the plan."""
    if isinstance(action, CallWebhook):
        answer = await webhook.call(ctx.kube, seen.namespace, action)
        if answer.ok:
            _observe_revocation(p, WEBHOOK_KIND)
        return retirement.record_outcome(p, Outcome.of_webhook(action, answer), now_ms())
    if isinstance(action, WriteArchive):
        written = await asyncio.to_thread(write_archive, ctx.kube, action, seen, ctx.archive_image)
        return p if written is None else retirement.record_outcome(p, written, now_ms())
    if isinstance(action, RevokeSecret | RevokeServiceAccount | RevokeRBAC):
        kind = _credential_kind(action)
        gone = not await asyncio.to_thread(_revoke, ctx.kube, seen, kind, action.name)
        if not gone:
            _observe_revocation(p, kind)
        return _already_gone(p, kind, action.name) if gone else p
    await asyncio.to_thread(_carry_out, ctx.kube, seen, action, now_ms())
    return p


def revocation_started(status: Mapping[str, Any]) -> str | None:
    """When the retirement last entered Revoking (RFC 3339), the origin of the revocation latency."""
    transitions = status.get("transitions") or []
    return next((str(t["at"]) for t in reversed(transitions) if t.get("phase") == AgentRetirementPhase.REVOKING),
                None)


def _observe_revocation(p: RetirementPlan, kind: str) -> None:
    """``alm_operator_revocation_seconds``: from entering Revoking to this credential's delete (or the
    webhook's 2xx). Observed once, when alm itself revoked it (never for AlreadyGone or Skipped)."""
    started = revocation_started(p.status)
    if started is not None:
        elapsed = (datetime.datetime.now(datetime.UTC) - to_datetime(started)).total_seconds()
        metrics.REVOCATION_SECONDS.labels(kind=kind).observe(max(0.0, elapsed))


def _credential_kind(action: RevokeSecret | RevokeServiceAccount | RevokeRBAC) -> str:
    if isinstance(action, RevokeRBAC):
        return action.kind
    return "Secret" if isinstance(action, RevokeSecret) else "ServiceAccount"


def _revoke(kube: Kube, seen: Seen, kind: str, name: str) -> bool:
    """Delete one credential (only the object observed, by uid); False when it was already gone."""
    uid = seen.credentials.get((kind, name), {}).get("metadata", {}).get("uid")
    deleted = kube.delete(kind, seen.namespace, name, uid=uid)
    metrics.WRITES.labels(kind=kind, verb="delete").inc()
    return deleted


def _already_gone(p: RetirementPlan, kind: str, name: str) -> RetirementPlan:
    """The delete answered 404: record AlreadyGone, not Revoked, in status, the audit log and the event."""
    gone = Result.ALREADY_GONE
    status = {**p.status, "revoked": [
        {**rec, "result": gone} if (rec.get("kind"), rec.get("name")) == (kind, name) else rec
        for rec in p.status.get("revoked") or []]}
    audit = tuple(
        dataclasses.replace(i, details={**i.details, "result": gone})
        if i.action == AuditAction.CREDENTIAL_REVOKED and (i.details.get("kind"), i.details.get("name")) == (kind, name)
        else i for i in p.audit)
    events = tuple(
        dataclasses.replace(e, message=f"{kind} {name}: {gone}") if e.message == f"{kind} {name}: Revoked" else e
        for e in p.events)
    return dataclasses.replace(p, status=status, audit=audit, events=events)


def _carry_out(kube: Kube, seen: Seen, action: Action, now: str) -> None:
    if isinstance(action, StopTraffic):
        for obj in seen.traffic:
            meta = obj["metadata"]
            kube.delete(str(obj.get("kind")), seen.namespace, meta["name"], uid=meta.get("uid"))
    elif isinstance(action, ScaleToZero):
        for deployment in seen.deployments:
            if (deployment.get("spec") or {}).get("replicas") != 0:
                kube.merge_patch("Deployment", seen.namespace, deployment["metadata"]["name"],
                                 {"spec": {"replicas": 0}})
    elif isinstance(action, MarkAgentRetired):
        _mark_retired(kube, seen, now)
    elif isinstance(action, ConsumeRetry):
        kube.merge_patch("AgentRetirement", seen.namespace, seen.obs.name,
                         {"metadata": {"annotations": {action.annotation: None}}})


def _mark_retired(kube: Kube, seen: Seen, now: str) -> None:
    previous = ((seen.agent or {}).get("status") or {}).get("conditions") or []
    message = f"Retired by AgentRetirement {seen.obs.name}; it is never provisioned again."
    wanted = [conditions.condition(Cond.READY, False, Reason.RETIRED, message),
              conditions.condition(Cond.RETIRED, True, Reason.RETIRED, message)]
    kept = [c for c in previous if c.get("type") not in (Cond.READY, Cond.RETIRED)]
    patch = {"status": {"phase": "Retired", "replicas": 0, "readyReplicas": 0, "canaryWeight": 0,
                        "conditions": [*kept, *conditions.merge_conditions(previous, wanted, now=now)]}}
    try:
        kube.merge_patch("Agent", seen.namespace, seen.agent_name, patch, subresource="status")
    except errors.NotFound:
        return  # deleted meanwhile: nothing left to mark
    metrics.PHASES.observe(seen.namespace, seen.agent_name, "Retired")
    log.info("Agent %s/%s phase -> Retired", seen.namespace, seen.agent_name)

