"""The AgentRetirement phase machine: what to do next, from the status so far and what is observed.

::

              Agent found          pods gone (or 2 x grace)     all revoked, webhook ok     archive written
    Pending ──────────────► Draining ─────────────────► Revoking ──────────────────► Archiving ──────────► Retired
                                                           │  webhook gave up              │ archive gave up
                                                           ▼                               ▼
                                                         Failed ── alm.dev/retry ──► back to the phase that failed

Credentials go before anything that can fail for long: archiving starts only once every
credential is revoked, so an archive failure never leaves one alive, and a webhook that
gives up sends the retirement to Failed only after every Kubernetes credential is gone.

:func:`plan` is a function of the status and the observations only, so a restarted operator
resumes where the last one stopped. Two rules keep that true:

- *write ahead*: a credential is first recorded in ``status.revoked`` as ``Pending`` and only
  deleted on a later pass, so a crash between the delete and the status write still leaves a
  record (it then reads ``AlreadyGone``);
- *outcomes are folded*: the answer of a webhook call or an archive write is only known after
  the shell has acted, so :func:`record_outcome` adds it to the plan's status before it is
  written. Attempts are counted in ``status.attempts``.

Every pass may step through several phases (grace 0 drains at once); each phase entered is
recorded once in ``status.transitions``, and nothing else in the status depends on the clock,
so the same inputs give byte-identical status.
"""

from __future__ import annotations

import copy
import dataclasses
import datetime
import urllib.parse
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import pydantic

from alm.api import AgentRetirementPhase as Phase
from alm.api import AgentRetirementSpec
from alm.core import archive, conditions, revocation, validation
from alm.core.audit import AuditAction, AuditIntent
from alm.core.events import EventIntent
from alm.core.reasons import Cond

__all__ = [
    "ARCHIVE_ATTEMPTS",
    "ARCHIVE_PART_LIMIT",
    "RETRY_ANNOTATION",
    "Action",
    "CallWebhook",
    "ConsumeRetry",
    "Credential",
    "MarkAgentRetired",
    "Outcome",
    "Result",
    "RetirementObservations",
    "RetirementPlan",
    "RetirementReason",
    "RevokeRBAC",
    "RevokeSecret",
    "RevokeServiceAccount",
    "ScaleToZero",
    "StopTraffic",
    "WriteArchive",
    "plan",
    "record_outcome",
]

Obj = dict[str, Any]

RETRY_ANNOTATION = "alm.dev/retry"
ARCHIVE_ATTEMPTS = 5  # failed archive writes before Failed
ARCHIVE_PART_LIMIT = archive.PART_LIMIT
AT_ONCE = 0.0  # the status changed and the next step needs no wait
CONFIRM = 1.0  # actions were issued: look again soon to see them done
POLL = 5.0  # waiting for pods or deletions to finish
JOB_POLL = 5.0  # waiting for the Job that copies an archive onto a PVC
AGENT_POLL = 30.0  # the Agent does not exist (yet)
WEBHOOK_KIND = "Webhook"
_K8S_ORDER = ("RoleBinding", "Role", "ServiceAccount", "Secret")  # API access first, then identity, then keys


class Result:
    """Values of ``status.revoked[].result``."""

    PENDING = "Pending"  # found and recorded (revokedAt: when found); revoked on the next pass
    REVOKED = "Revoked"
    ALREADY_GONE = "AlreadyGone"  # was recorded, then gone before alm deleted it (or after a restart)
    SKIPPED = "Skipped"  # kept because spec.revoke says so
    FAILED = "Failed"  # the webhook gave up; a human can retry


class RetirementReason:
    """Condition and Event reasons of AgentRetirements."""

    INVALID_SPEC = "InvalidSpec"
    AGENT_NOT_FOUND = "AgentNotFound"
    DRAINING = "Draining"
    TRAFFIC_STOPPED = "TrafficStopped"
    SCALED_TO_ZERO = "ScaledToZero"
    REVOKING = "Revoking"
    CREDENTIAL_REVOKED = "CredentialRevoked"
    WEBHOOK_RETRYING = "WebhookRetrying"
    WEBHOOK_FAILED = "WebhookFailed"
    ARCHIVING = "Archiving"
    ARCHIVE_WRITTEN = "ArchiveWritten"
    ARCHIVE_RETRYING = "ArchiveRetrying"
    ARCHIVE_FAILED = "ArchiveFailed"
    RETIRED = "Retired"
    RETRY_REQUESTED = "RetryRequested"


# --- Observations ---------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Credential:
    """A credential-bearing object alm made for the Agent (Secret, ServiceAccount, Role, RoleBinding).

    The shell lists only live ones: an object already being deleted is not passed.
    """

    kind: str
    name: str


@dataclasses.dataclass(frozen=True)
class RetirementObservations:
    name: str  # the AgentRetirement
    namespace: str
    uid: str = ""
    generation: int | None = None
    agent: Mapping[str, Any] | None = None  # the Agent body; None: not found
    serving: bool = False  # a Service or HTTPRoute still sends traffic to the Agent's pods
    replicas: int = 0  # desired replicas over the Agent's Deployments
    ready_replicas: int = 0
    credentials: Sequence[Credential] = ()
    retry_requested: bool = False  # the alm.dev/retry annotation is present
    versions: Sequence[Mapping[str, Any]] = ()  # the Agent's AgentVersions, for the archive
    rollouts: Sequence[Mapping[str, Any]] = ()  # its AgentRollouts
    audit: Sequence[Mapping[str, Any]] = ()  # its audit log (audit.load of the segments)


# --- Actions --------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class StopTraffic:
    """Take the Agent out of its Service selector and HTTPRoute backendRefs."""

    agent: str


@dataclasses.dataclass(frozen=True)
class ScaleToZero:
    """Set every Deployment of the Agent to 0 replicas (the runtime drains on SIGTERM)."""

    agent: str


@dataclasses.dataclass(frozen=True)
class RevokeSecret:
    name: str


@dataclasses.dataclass(frozen=True)
class RevokeServiceAccount:
    """Deleting the ServiceAccount invalidates every token issued for it."""

    name: str


@dataclasses.dataclass(frozen=True)
class RevokeRBAC:
    kind: str  # Role or RoleBinding
    name: str


@dataclasses.dataclass(frozen=True)
class CallWebhook:
    """POST ``body`` to ``url`` with :func:`alm.core.revocation.headers`, keyed with the Secret's value.

    The shell reports the answer with :func:`record_outcome` (``Outcome.of_webhook``).
    """

    attempt: int  # 1-based
    max_attempts: int
    url: str
    name: str  # the endpoint's host, as shown in status.revoked
    secret_name: str
    secret_key: str
    timeout_seconds: int
    delivery: str
    body: bytes


@dataclasses.dataclass(frozen=True)
class WriteArchive:
    """Apply ``objects`` (parts first, manifest last), all immutable and owned by nobody.

    For ``target == "pvc"`` the objects are staging ConfigMaps; the shell copies them onto
    ``claim_name`` with a Job and reports the outcome when the Job is done.
    """

    attempt: int
    target: str
    claim_name: str | None
    location: str
    bundle: archive.Bundle
    objects: tuple[Obj, ...]

    @property
    def parts(self) -> int:
        return max(1, len(self.objects) - 1)


@dataclasses.dataclass(frozen=True)
class MarkAgentRetired:
    """Set the Agent's ``status.phase`` to Retired; its controller never provisions it again."""

    agent: str


@dataclasses.dataclass(frozen=True)
class ConsumeRetry:
    """Remove the ``alm.dev/retry`` annotation: the command was carried out."""

    annotation: str = RETRY_ANNOTATION


Action = (StopTraffic | ScaleToZero | RevokeSecret | RevokeServiceAccount | RevokeRBAC | CallWebhook
          | WriteArchive | MarkAgentRetired | ConsumeRetry)


@dataclasses.dataclass(frozen=True)
class RetirementPlan:
    """Do ``actions`` in order, then write ``status`` once, post ``events``, append ``audit``."""

    status: Obj
    actions: tuple[Action, ...] = ()
    requeue_after: float | None = None  # seconds until the next look; None: nothing to wait for
    events: tuple[EventIntent, ...] = ()
    audit: tuple[AuditIntent, ...] = ()
    subject: str = ""  # "AgentRetirement/<name>", the audit entries' subject


@dataclasses.dataclass(frozen=True)
class Outcome:
    """How a :class:`CallWebhook` or :class:`WriteArchive` went, reported by the shell."""

    action: CallWebhook | WriteArchive
    ok: bool
    detail: str  # short and credential-free: "HTTP 503", "timed out", "Forbidden"
    retryable: bool = True

    @classmethod
    def of_webhook(cls, action: CallWebhook, result: revocation.WebhookOutcome) -> Outcome:
        return cls(action, result.ok, result.detail, result.retryable)


# --- Time -----------------------------------------------------------------------------------------


def _time(value: str) -> datetime.datetime:
    parsed = datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=datetime.UTC)


def _since(then: str, now: str) -> float:
    return (_time(now) - _time(then)).total_seconds()


def _later(then: str, seconds: float) -> str:
    moment = _time(then) + datetime.timedelta(seconds=seconds)
    return moment.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# --- One pass -------------------------------------------------------------------------------------


@dataclasses.dataclass
class _Pass:
    """The decisions of one pass, accumulated (private and short-lived; the plan is frozen)."""

    spec: AgentRetirementSpec
    obs: RetirementObservations
    now: str
    phase: str
    transitions: list[Obj]
    revoked: list[Obj]
    attempts: dict[str, Obj]
    archived: Obj | None  # status.archive, once written
    message: str
    reason: str
    actions: list[Action] = dataclasses.field(default_factory=list)
    events: list[EventIntent] = dataclasses.field(default_factory=list)
    audit: list[AuditIntent] = dataclasses.field(default_factory=list)
    waits: list[float] = dataclasses.field(default_factory=list)

    @property
    def agent(self) -> str:
        return self.spec.agent_ref.name

    @property
    def subject(self) -> str:
        return f"AgentRetirement/{self.obs.name}"

    def record(self, action: str, **details: Any) -> None:
        self.audit.append(AuditIntent(action, self.subject, {"agent": self.agent, **details}))

    def tell(self, reason: str, message: str, *, warning: bool = False) -> None:
        self.events.append(EventIntent(reason, message, warning=warning))

    def wait(self, seconds: float) -> None:
        self.waits.append(max(0.0, seconds))

    def entered(self, phase: str) -> str:
        """When ``phase`` was last entered (now if it never was)."""
        return next((str(t["at"]) for t in reversed(self.transitions) if t.get("phase") == phase), self.now)

    def enter(self, phase: str, reason: str, message: str) -> None:
        self.phase, self.reason, self.message = str(phase), reason, message
        self.transitions.append({"phase": str(phase), "at": self.now})


def _pending(p: _Pass) -> None:
    if p.obs.agent is None:
        p.reason = RetirementReason.AGENT_NOT_FOUND
        p.message = f"Agent {p.agent!r} was not found in this namespace: create it or fix spec.agentRef."
        p.wait(AGENT_POLL)
        return
    grace = p.spec.drain.grace_period_seconds
    p.enter(Phase.DRAINING, RetirementReason.DRAINING, f"Draining: running tasks get {grace}s to finish")
    p.record(AuditAction.RETIREMENT_DRAINING, reason=p.spec.reason, gracePeriodSeconds=grace)
    p.tell(RetirementReason.DRAINING, f"Retiring Agent {p.agent}: {p.spec.reason}")


def _draining(p: _Pass) -> None:
    grace = p.spec.drain.grace_period_seconds
    started = p.entered(Phase.DRAINING)
    elapsed = _since(started, p.now)
    if p.obs.serving:
        p.actions.append(StopTraffic(p.agent))
        p.tell(RetirementReason.TRAFFIC_STOPPED, f"Removed Agent {p.agent} from its Service and routes")
    if elapsed >= grace and p.obs.replicas > 0:
        p.actions.append(ScaleToZero(p.agent))
        p.tell(RetirementReason.SCALED_TO_ZERO, f"Scaled Agent {p.agent} to zero after the {grace}s grace period")
    gone = p.obs.replicas == 0 and p.obs.ready_replicas == 0
    # Credentials never wait on a pod that will not stop: a second grace period at most.
    if (elapsed >= grace and gone) or elapsed >= 2 * grace:
        p.enter(Phase.REVOKING, RetirementReason.REVOKING, "Revoking credentials")
        p.record(AuditAction.RETIREMENT_REVOKING)
        p.tell(RetirementReason.REVOKING, f"Revoking the credentials of Agent {p.agent}")
        return
    if elapsed < grace:
        p.message = f"Draining: traffic stopped; running tasks may finish until {_later(started, grace)}"
        p.wait(grace - elapsed)
    else:
        p.message = f"Draining: waiting for the pods to stop, at the latest until {_later(started, 2 * grace)}"
        p.wait(min(POLL, 2 * grace - elapsed))


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


def _settle(p: _Pass, rec: Obj, result: str) -> None:
    rec.update(result=result, revokedAt=p.now)
    p.record(AuditAction.CREDENTIAL_REVOKED, kind=rec["kind"], name=rec["name"], result=result)
    p.tell(RetirementReason.CREDENTIAL_REVOKED, f"{rec['kind']} {rec['name']}: {result}")


def _revoke_kubernetes(p: _Pass) -> bool:
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


def _webhook(p: _Pass) -> str:
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
    remaining = revocation.next_attempt_delay(count) - _since(str(tried.get("lastAt", p.now)), p.now)
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


def _fail(p: _Pass, reason: str, message: str) -> None:
    p.enter(Phase.FAILED, reason, message)
    p.record(AuditAction.RETIREMENT_FAILED, reason=reason, message=message)
    p.tell(reason, message, warning=True)


def _revoking(p: _Pass) -> None:
    settled = _revoke_kubernetes(p)
    hook = _webhook(p)
    if settled and hook == "done":
        p.enter(Phase.ARCHIVING, RetirementReason.ARCHIVING, "Archiving")
        p.record(AuditAction.RETIREMENT_ARCHIVING, revoked=len(p.revoked))
        p.tell(RetirementReason.ARCHIVING, f"All credentials of Agent {p.agent} are revoked; archiving")
    elif settled and hook == "failed":
        tried = p.attempts.get("webhook") or {}
        _fail(p, RetirementReason.WEBHOOK_FAILED,
              f"The revocation webhook failed {tried.get('count', 0)} time(s), last: {tried.get('lastResult')}. "
              f"Every Kubernetes credential is revoked; revoke the upstream keys by hand or fix the endpoint, "
              f"then annotate the AgentRetirement with {RETRY_ANNOTATION}=<anything> to call it again.")
    else:
        done = sum(1 for r in p.revoked if r.get("result") in (Result.REVOKED, Result.ALREADY_GONE))
        p.message = f"Revoking credentials: {done} of {len(p.revoked)} done"
        if hook == "waiting" and (p.attempts.get("webhook") or {}).get("count"):
            tried = p.attempts["webhook"]
            p.message += f"; webhook attempt {tried['count']} failed ({tried.get('lastResult')}), retrying"


def _archiving(p: _Pass, *, part_limit: int, max_attempts: int) -> None:
    _revoke_kubernetes(p)  # nothing should be left; if something came back, it goes again
    if p.archived is not None:
        p.enter(Phase.RETIRED, RetirementReason.RETIRED, f"Retired; archive at {p.archived.get('location')}")
        p.record(AuditAction.RETIRED, archive=p.archived)
        p.tell(RetirementReason.RETIRED, f"Agent {p.agent} is retired; archive at {p.archived.get('location')}")
        return
    tried = p.attempts.get("archive") or {}
    count = int(tried.get("count", 0))
    if count and (not tried.get("retryable", True) or count >= max_attempts):
        _fail(p, RetirementReason.ARCHIVE_FAILED,
              f"Writing the archive failed {count} time(s), last: {tried.get('lastResult')}. Every credential "
              f"is revoked. Fix the cause, then annotate the AgentRetirement with {RETRY_ANNOTATION}=<anything>.")
        return
    remaining = revocation.next_attempt_delay(count) - _since(str(tried.get("lastAt", p.now)), p.now)
    if remaining > 0:
        p.message = f"Archiving: attempt {count} failed ({tried.get('lastResult')}), retrying"
        p.wait(remaining)
        return
    p.message = "Archiving: writing the archive" + (f" (attempt {count + 1})" if count else "")
    p.actions.append(_write_archive(p, count + 1, part_limit))
    # A PVC archive is a Job that runs for a while; the shell looks again when the Job changes
    # (a watch event), this is only the safety net.
    p.wait(JOB_POLL if p.spec.archive.to == "pvc" else CONFIRM)


def _write_archive(p: _Pass, attempt: int, part_limit: int) -> WriteArchive:
    retirement = {"name": p.obs.name, "uid": p.obs.uid, "reason": p.spec.reason,
                  "transitions": p.transitions, "revoked": p.revoked}
    b = archive.bundle(namespace=p.obs.namespace, retirement=retirement, agent=p.obs.agent, versions=p.obs.versions,
               rollouts=p.obs.rollouts, audit_entries=p.obs.audit, archived_at=p.entered(Phase.ARCHIVING))
    target = p.spec.archive.to
    objects = archive.to_objects(b, agent=p.agent, namespace=p.obs.namespace, target=target, limit=part_limit)
    name = str(objects[-1]["metadata"]["name"])
    location = {"configMap": f"configmap/{name}", "secret": f"secret/{name}"}.get(
        target, archive.pvc_location(str(p.spec.archive.claim_name), p.agent, b.sha256))
    return WriteArchive(attempt, target, p.spec.archive.claim_name, location, b, objects)


def _retired(p: _Pass) -> None:
    _revoke_kubernetes(p)
    p.message = f"Retired; archive at {(p.archived or {}).get('location')}"
    agent = p.obs.agent
    if agent is not None and (agent.get("status") or {}).get("phase") != "Retired":
        p.actions.append(MarkAgentRetired(p.agent))


def _failed(p: _Pass) -> None:
    _revoke_kubernetes(p)
    p.message = p.message or f"Failed ({p.reason}); annotate with {RETRY_ANNOTATION}=<anything> to retry"
    if not p.obs.retry_requested:
        return
    back = next((str(t["phase"]) for t in reversed(p.transitions) if t.get("phase") != Phase.FAILED),
                Phase.REVOKING)
    step = "archive" if back == Phase.ARCHIVING else "webhook"
    p.attempts.pop(step, None)
    for rec in p.revoked:
        if rec.get("kind") == WEBHOOK_KIND and rec.get("result") == Result.FAILED:
            rec.update(result=Result.PENDING, revokedAt=p.now)
    p.actions.append(ConsumeRetry())
    p.record(AuditAction.MANUAL_OVERRIDE, command="retry", phase=back)
    p.tell(RetirementReason.RETRY_REQUESTED, f"Retrying the {back} phase as asked by {RETRY_ANNOTATION}")
    p.enter(back, RetirementReason.RETRY_REQUESTED, f"{back} again after a retry was requested")


def _steps(part_limit: int, max_attempts: int) -> dict[str, Callable[[_Pass], None]]:
    return {
        Phase.PENDING: _pending,
        Phase.DRAINING: _draining,
        Phase.REVOKING: _revoking,
        Phase.ARCHIVING: lambda p: _archiving(p, part_limit=part_limit, max_attempts=max_attempts),
        Phase.RETIRED: _retired,
        Phase.FAILED: _failed,
    }


def _ready(p: _Pass) -> conditions.Condition:
    if p.phase == Phase.RETIRED:
        return conditions.condition(Cond.READY, True, RetirementReason.RETIRED, p.message)
    return conditions.condition(Cond.READY, False, p.reason, p.message)


def _status(p: _Pass, previous: Mapping[str, Any], extra: Sequence[conditions.Condition]) -> Obj:
    wanted = [_ready(p), *extra]
    status: Obj = {
        "phase": str(p.phase),
        "transitions": p.transitions,
        "revoked": p.revoked,
        "archive": p.archived,
        "attempts": p.attempts or None,
        "message": p.message,
        "conditions": conditions.merge_conditions(previous.get("conditions"), wanted, now=p.now),
        "observedGeneration": p.obs.generation,
    }
    return {key: value for key, value in status.items() if value is not None}


def _start(spec: AgentRetirementSpec, previous: Mapping[str, Any], obs: RetirementObservations, now: str) -> _Pass:
    prev = copy.deepcopy(dict(previous))
    p = _Pass(
        spec=spec, obs=obs, now=now, phase=str(prev.get("phase") or Phase.PENDING),
        transitions=list(prev.get("transitions") or []), revoked=list(prev.get("revoked") or []),  # deep copies
        attempts=dict(prev.get("attempts") or {}), archived=prev.get("archive"),
        message=str(prev.get("message") or ""), reason=_previous_reason(prev),
    )
    if not p.transitions:
        p.transitions.append({"phase": p.phase, "at": now})
    return p


def _previous_reason(status: Mapping[str, Any]) -> str:
    ready = conditions.find(status.get("conditions"), Cond.READY)
    return str(ready.get("reason")) if ready else str(status.get("phase") or Phase.PENDING)


def plan(
    spec: AgentRetirementSpec | Mapping[str, Any],
    status: Mapping[str, Any] | None,
    observations: RetirementObservations,
    now: str,
    *,
    archive_part_limit: int = ARCHIVE_PART_LIMIT,
    archive_attempts: int = ARCHIVE_ATTEMPTS,
) -> RetirementPlan:
    """Decide the next step of one retirement. ``spec`` may be raw (validated here) or a model."""
    previous: Mapping[str, Any] = status or {}
    if not isinstance(spec, AgentRetirementSpec):
        try:
            spec = AgentRetirementSpec.model_validate(spec)
        except pydantic.ValidationError as exc:
            return _invalid(previous, observations, now, validation.describe(exc, "spec"))
    p = _start(spec, previous, observations, now)
    steps = _steps(archive_part_limit, archive_attempts)
    for _ in range(len(steps)):  # a pass may cross several phases (bounded: no endless loop)
        step = steps.get(p.phase)
        if step is None:
            break  # a phase this version does not know: change nothing rather than guess
        before = len(p.transitions)
        step(p)
        if len(p.transitions) == before:
            break
    invalid = conditions.condition(Cond.INVALID, False, "Valid", "The spec is valid")
    return RetirementPlan(
        status=_status(p, previous, [invalid]),
        actions=tuple(p.actions),
        requeue_after=min(p.waits) if p.waits else None,
        events=tuple(p.events),
        audit=tuple(p.audit),
        subject=p.subject,
    )


def _invalid(previous: Mapping[str, Any], obs: RetirementObservations, now: str, message: str) -> RetirementPlan:
    """A spec the operator cannot act on changes nothing but says what to fix (once)."""
    status = dict(copy.deepcopy(previous))
    status.setdefault("phase", str(Phase.PENDING))
    status["message"] = message
    status["observedGeneration"] = obs.generation
    status["conditions"] = conditions.merge_conditions(previous.get("conditions"), [
        conditions.condition(Cond.READY, False, RetirementReason.INVALID_SPEC, "Fix the spec: " + message),
        conditions.condition(Cond.INVALID, True, RetirementReason.INVALID_SPEC, message),
    ], now=now)
    status = {k: v for k, v in status.items() if v is not None}
    announce = previous.get("message") != message
    events = (EventIntent(RetirementReason.INVALID_SPEC, message, warning=True),) if announce else ()
    return RetirementPlan(status=status, events=events)


# --- Outcomes -------------------------------------------------------------------------------------


def record_outcome(planned: RetirementPlan, outcome: Outcome, now: str) -> RetirementPlan:
    """``planned`` with the answer of one of its CallWebhook / WriteArchive actions folded in.

    The shell calls it after carrying out the action and before writing the status, so the
    attempt is counted even when the answer was a failure (status is where retries are counted).
    """
    status = copy.deepcopy(planned.status)
    attempts: dict[str, Obj] = dict(status.get("attempts") or {})
    action = outcome.action
    step = "webhook" if isinstance(action, CallWebhook) else "archive"
    attempts[step] = {"count": action.attempt, "lastAt": now, "lastResult": outcome.detail,
                      "retryable": outcome.retryable and not outcome.ok}
    status["attempts"] = attempts
    events = list(planned.events)
    records = list(planned.audit)
    subject = planned.subject
    if isinstance(action, CallWebhook):
        records.append(AuditIntent(AuditAction.WEBHOOK_CALLED, subject, {
            "name": action.name, "attempt": action.attempt, "answer": outcome.detail, "ok": outcome.ok}))
        if outcome.ok:
            for rec in status.get("revoked") or []:
                if rec.get("kind") == WEBHOOK_KIND:
                    rec.update(result=Result.REVOKED, revokedAt=now)
            records.append(AuditIntent(AuditAction.CREDENTIAL_REVOKED, subject,
                                       {"kind": WEBHOOK_KIND, "name": action.name, "result": Result.REVOKED}))
            events.append(EventIntent(RetirementReason.CREDENTIAL_REVOKED,
                                      f"Revocation webhook {action.name} answered {outcome.detail}"))
        else:
            events.append(EventIntent(RetirementReason.WEBHOOK_RETRYING, (
                f"Revocation webhook {action.name}, attempt {action.attempt} of {action.max_attempts}: "
                f"{outcome.detail}"), warning=True))
    elif outcome.ok:
        status["archive"] = {"location": action.location, "sha256": action.bundle.sha256,
                             "sizeBytes": action.bundle.size_bytes, "parts": action.parts}
        events.append(EventIntent(RetirementReason.ARCHIVE_WRITTEN, f"Archive written to {action.location}"))
    else:
        events.append(EventIntent(RetirementReason.ARCHIVE_RETRYING,
                                  f"Writing the archive, attempt {action.attempt}: {outcome.detail}", warning=True))
    wait = AT_ONCE if outcome.ok or not outcome.retryable else revocation.next_attempt_delay(action.attempt)
    requeue = wait if planned.requeue_after is None else min(wait, planned.requeue_after)
    return dataclasses.replace(planned, status=status, requeue_after=requeue, events=tuple(events),
                               audit=tuple(records))
