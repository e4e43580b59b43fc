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

This module is the loop over the phases, the steps of all but one, and the folding of outcomes.
The Revoking step is :mod:`alm.core.retirementrevoking`, the accumulator every step writes into
is :mod:`alm.core.retirementpass`, and what the shell sees (observations, actions, the plan) is
:mod:`alm.core.retirementtypes`.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import pydantic

from alm.api import AgentRetirementPhase as Phase
from alm.api import AgentRetirementSpec
from alm.core import archive, conditions, revocation, validation
from alm.core.auditactions import AuditAction, AuditIntent
from alm.core.events import EventIntent
from alm.core.reasons import Cond
from alm.core.retirementpass import AT_ONCE, CONFIRM, POLL, Pass, fail
from alm.core.retirementrevoking import revoke_kubernetes, revoking
from alm.core.retirementtypes import (
    RETRY_ANNOTATION,
    WEBHOOK_KIND,
    CallWebhook,
    ConsumeRetry,
    MarkAgentRetired,
    Outcome,
    Result,
    RetirementObservations,
    RetirementPlan,
    RetirementReason,
    ScaleToZero,
    StopTraffic,
    WriteArchive,
)
from alm.core.timestamps import later, since

__all__ = [
    "AGENT_POLL",
    "ARCHIVE_ATTEMPTS",
    "ARCHIVE_PART_LIMIT",
    "JOB_POLL",
    "plan",
    "record_outcome",
]

Obj = dict[str, Any]

ARCHIVE_ATTEMPTS = 5  # failed archive writes before Failed
ARCHIVE_PART_LIMIT = archive.PART_LIMIT
JOB_POLL = 5.0  # waiting for the Job that copies an archive onto a PVC
AGENT_POLL = 30.0  # the Agent does not exist (yet)


def _pending(p: Pass) -> None:
    if p.obs.agent is None:
        p.reason = RetirementReason.AGENT_NOT_FOUND
        p.message = f"Agent {p.agent!r} was not found in this namespace: create it or fix spec.agentRef."
        p.wait(AGENT_POLL)
        return
    grace = p.spec.drain.grace_period_seconds
    p.enter(Phase.DRAINING, RetirementReason.DRAINING, f"Draining: running tasks get {grace}s to finish")
    p.record(AuditAction.RETIREMENT_DRAINING, reason=p.spec.reason, gracePeriodSeconds=grace)
    p.tell(RetirementReason.DRAINING, f"Retiring Agent {p.agent}: {p.spec.reason}")


def _draining(p: Pass) -> None:
    grace = p.spec.drain.grace_period_seconds
    started = p.entered(Phase.DRAINING)
    elapsed = since(started, p.now)
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
        p.message = f"Draining: traffic stopped; running tasks may finish until {later(started, grace)}"
        p.wait(grace - elapsed)
    else:
        p.message = f"Draining: waiting for the pods to stop, at the latest until {later(started, 2 * grace)}"
        p.wait(min(POLL, 2 * grace - elapsed))


def _archiving(p: Pass, *, part_limit: int, max_attempts: int) -> None:
    revoke_kubernetes(p)  # nothing should be left; if something came back, it goes again
    if p.archived is not None:
        p.enter(Phase.RETIRED, RetirementReason.RETIRED, f"Retired; archive at {p.archived.get('location')}")
        p.record(AuditAction.RETIRED, archive=p.archived)
        p.tell(RetirementReason.RETIRED, f"Agent {p.agent} is retired; archive at {p.archived.get('location')}")
        return
    tried = p.attempts.get("archive") or {}
    count = int(tried.get("count", 0))
    if count and (not tried.get("retryable", True) or count >= max_attempts):
        fail(p, RetirementReason.ARCHIVE_FAILED,
              f"Writing the archive failed {count} time(s), last: {tried.get('lastResult')}. Every credential "
              f"is revoked. Fix the cause, then annotate the AgentRetirement with {RETRY_ANNOTATION}=<anything>.")
        return
    remaining = revocation.next_attempt_delay(count) - since(str(tried.get("lastAt", p.now)), p.now)
    if remaining > 0:
        p.message = f"Archiving: attempt {count} failed ({tried.get('lastResult')}), retrying"
        p.wait(remaining)
        return
    p.message = "Archiving: writing the archive" + (f" (attempt {count + 1})" if count else "")
    p.actions.append(_write_archive(p, count + 1, part_limit))
    # A PVC archive is a Job that runs for a while; the shell looks again when the Job changes
    # (a watch event), this is only the safety net.
    p.wait(JOB_POLL if p.spec.archive.to == "pvc" else CONFIRM)


def _write_archive(p: Pass, attempt: int, part_limit: int) -> WriteArchive:
    retirement = {"name": p.obs.name, "uid": p.obs.uid, "reason": p.spec.reason,
                  "transitions": p.transitions, "revoked": p.revoked}
    b = archive.bundle(namespace=p.obs.namespace, retirement=retirement, agent=p.obs.agent, versions=p.obs.versions,
               rollouts=p.obs.rollouts, audit_entries=p.obs.audit, archived_at=p.entered(Phase.ARCHIVING))
    target = p.spec.archive.to
    objects = archive.to_objects(b, agent=p.agent, namespace=p.obs.namespace, target=target, limit=part_limit)
    name = str(objects[-1]["metadata"]["name"])
    location = {"configMap": f"configmap/{name}", "secret": f"secret/{name}"}.get(
        target, archive.pvc_location(str(p.spec.archive.claim_name), p.agent, b.sha256))
    return WriteArchive(attempt, target, p.spec.archive.claim_name, location, b, objects,
                        deadline_seconds=p.spec.archive.job_deadline_seconds)


def _retired(p: Pass) -> None:
    revoke_kubernetes(p)
    p.message = f"Retired; archive at {(p.archived or {}).get('location')}"
    agent = p.obs.agent
    if agent is not None and (agent.get("status") or {}).get("phase") != "Retired":
        p.actions.append(MarkAgentRetired(p.agent))


def _failed(p: Pass) -> None:
    revoke_kubernetes(p)
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


def _steps(part_limit: int, max_attempts: int) -> dict[str, Callable[[Pass], None]]:
    return {
        Phase.PENDING: _pending,
        Phase.DRAINING: _draining,
        Phase.REVOKING: revoking,
        Phase.ARCHIVING: lambda p: _archiving(p, part_limit=part_limit, max_attempts=max_attempts),
        Phase.RETIRED: _retired,
        Phase.FAILED: _failed,
    }


def _ready(p: Pass) -> conditions.Condition:
    if p.phase == Phase.RETIRED:
        return conditions.condition(Cond.READY, True, RetirementReason.RETIRED, p.message)
    return conditions.condition(Cond.READY, False, p.reason, p.message)


def _status(p: Pass, previous: Mapping[str, Any], extra: Sequence[conditions.Condition]) -> Obj:
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


def _start(spec: AgentRetirementSpec, previous: Mapping[str, Any], obs: RetirementObservations, now: str) -> Pass:
    prev = copy.deepcopy(dict(previous))
    p = Pass(
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
