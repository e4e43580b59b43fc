"""The AgentRetirement controller and the Agent finalizer: no path leaves a live credential behind.

Retirement passes follow :mod:`alm.core.retirement`::

    read the AgentRetirement and what it concerns (observations, fresh from the API server)
    p = retirement.plan(spec, status, observations, now)
      (on the pass that writes the archive: read its inputs too, and plan again with them)
    for each action, in order: act; a webhook call or an archive write folds its outcome into p
      (before a webhook call, commit what is done: the call may take its whole timeout)
    commit: append p.audit to the Agent's log (write-ahead: a crash repeats an entry, never loses
      one), write p.status, post p.events
    look again after p.requeue_after (a timer on the loop, never a sleep in a handler)

What starts a pass: an event on the AgentRetirement (including kopf's initial listing, so a
restarted operator resumes from ``status``), the timer, and, without waiting for them, an event
on the retired Agent or on one of its children (a pod that stopped, a credential that came back).
A retirement acts only on the Agent it started with: one created later under the same name is
left alone.

Reading the cluster is :mod:`alm.handlers.retirementobserving`; carrying out the actions is
:mod:`alm.handlers.retirementacting` (the archive write: :mod:`alm.handlers.retirementarchiving`).
This module holds the pass, what starts it, its timers and its commits, and the Agent finalizer.

The Agent finalizer (``alm.dev/finalizer``, added by kopf because of :func:`agent_deleted`)
deletes the Agent's credential Secrets, ServiceAccount, Role and RoleBinding explicitly before
the Agent may go, records them and the deletion in the audit log, and, when a retirement of that
Agent is still running, keeps the Agent until it is done (so the archive holds its last state).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
import weakref
from collections.abc import Mapping
from typing import Any

import kopf

from alm.api import AgentRetirementPhase
from alm.core import archive, conditions, naming, retirement
from alm.core.auditactions import AuditAction, AuditIntent
from alm.core.reasons import Cond
from alm.core.retirementtypes import CallWebhook, Result, RetirementPlan, WriteArchive
from alm.handlers import auditing, posting
from alm.handlers.context import Context
from alm.handlers.registry import REGISTRY
from alm.handlers.retirementacting import act
from alm.handlers.retirementarchiving import agent_of
from alm.handlers.retirementobserving import CREDENTIAL_KINDS, agent_credentials, archive_inputs, now_ms, observe
from alm.kube import errors, resources, shell
from alm.kube.api import Kube
from alm.metrics import operator as metrics

__all__ = [
    "STATUS_KEYS",
    "agent_deleted",
    "reconcile_retirement",
    "revoke_agent_credentials",
    "schedule",
    "unschedule",
]

log = logging.getLogger(__name__)

GROUP, VERSION = "alm.dev", "v1alpha1"
STATUS_KEYS = ("phase", "transitions", "revoked", "archive", "attempts", "message", "conditions",
               "observedGeneration")
AFTER_ERROR = 5.0  # seconds before a pass that failed on the API server is tried again
AFTER_REFUSAL = 60.0  # ... failed on a non-retriable answer (RBAC, a rejected object)
SLACK = 0.05  # so a timer never fires just before the moment the planner waits for
FINALIZER_WAIT = 2.0  # the Agent finalizer's re-check while a retirement of the Agent runs
TERMINAL = (AgentRetirementPhase.RETIRED, AgentRetirementPhase.FAILED)

Obj = dict[str, Any]


# --- Requeue timers: one per AgentRetirement, on the operator's loop -------------------------------


@dataclasses.dataclass
class _Timers:
    handles: dict[tuple[str, str], asyncio.TimerHandle] = dataclasses.field(default_factory=dict)
    tasks: set[asyncio.Task[None]] = dataclasses.field(default_factory=set)


_timers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Timers] = weakref.WeakKeyDictionary()


def _loop_timers() -> _Timers:
    return _timers.setdefault(asyncio.get_running_loop(), _Timers())


def schedule(ctx: Context, namespace: str, name: str, delay: float | None) -> None:
    """Run a pass after ``delay`` seconds (None: nothing planned).

    The earliest wins: a pending timer that fires sooner is kept. A pass too many costs a few
    reads; a pass too few would leave a retirement waiting for the next event.
    """
    if delay is None:
        return
    timers, loop = _loop_timers(), asyncio.get_running_loop()
    when = loop.time() + (delay + SLACK if delay > 0 else 0.0)
    pending = timers.handles.get((namespace, name))
    if pending is not None and not pending.cancelled() and pending.when() <= when:
        return
    if pending is not None:
        pending.cancel()
    timers.handles[(namespace, name)] = loop.call_at(when, _fire, ctx, namespace, name)


def unschedule(namespace: str, name: str) -> None:
    pending = _loop_timers().handles.pop((namespace, name), None)
    if pending is not None:
        pending.cancel()


def _fire(ctx: Context, namespace: str, name: str) -> None:
    timers = _loop_timers()
    timers.handles.pop((namespace, name), None)
    task = asyncio.get_running_loop().create_task(reconcile_retirement(ctx, namespace, name),
                                                  name=f"alm-retirement-{namespace}/{name}")
    timers.tasks.add(task)
    task.add_done_callback(timers.tasks.discard)


@kopf.on.cleanup(registry=REGISTRY)
async def stop_timers(**_: Any) -> None:
    timers = _loop_timers()
    for handle in timers.handles.values():
        handle.cancel()
    timers.handles.clear()
    for task in list(timers.tasks):
        task.cancel()
    await asyncio.gather(*timers.tasks, return_exceptions=True)


# --- Triggers --------------------------------------------------------------------------------------


@kopf.on.event(GROUP, VERSION, "agentretirements", registry=REGISTRY)
async def retirement_event(type: str, namespace: str | None, name: str, memo: kopf.Memo, **_: Any) -> None:
    ctx = Context.of(memo)
    if namespace is None:
        return
    if type == "DELETED":
        unschedule(namespace, name)
        return
    await reconcile_retirement(ctx, namespace, name)


def _retirements_of(indexes: Mapping[str, Any], namespace: str, agent: str | None) -> list[Mapping[str, Any]]:
    index = indexes.get("retirements_by_agent")
    if index is None or agent is None:
        return []
    return list(index.get((namespace, agent), ()))


def _nudge(memo: kopf.Memo, namespace: str | None, agent: str | None, indexes: Mapping[str, Any]) -> None:
    """Look at the Agent's retirements soon, without holding up the event's other handlers."""
    if namespace is None:
        return
    for body in _retirements_of(indexes, namespace, agent):
        schedule(Context.of(memo), namespace, str(body["metadata"]["name"]), 0)


@kopf.on.event(GROUP, VERSION, "agents", registry=REGISTRY)
async def agent_event_for_retirements(namespace: str | None, name: str, memo: kopf.Memo, **kwargs: Any) -> None:
    _nudge(memo, namespace, name, kwargs)


def _agent_owner(body: Mapping[str, Any]) -> str | None:
    for ref in body.get("metadata", {}).get("ownerReferences") or []:
        if ref.get("kind") == "Agent" and str(ref.get("apiVersion", "")).startswith(GROUP + "/"):
            return str(ref.get("name"))
    return None


def _register_child_trigger(kind: str) -> None:
    res = resources.for_kind(kind)
    labels: dict[str, Any] = {naming.AGENT_LABEL: kopf.PRESENT}

    async def child_event(namespace: str | None, body: kopf.Body, memo: kopf.Memo, **kwargs: Any) -> None:
        _nudge(memo, namespace, _agent_owner(body), kwargs)

    kopf.on.event(res.group, res.version, res.plural, id=f"retirement_child_{res.plural}", labels=labels,
                  registry=REGISTRY)(child_event)


for _kind in ("Deployment", "Service", *CREDENTIAL_KINDS):
    _register_child_trigger(_kind)


@kopf.on.event("batch", "v1", "jobs", labels={naming.COMPONENT_LABEL: archive.COMPONENT}, registry=REGISTRY)
async def archive_job_event(namespace: str | None, body: kopf.Body, memo: kopf.Memo, **kwargs: Any) -> None:
    """A copy Job of a PVC archive changed (Complete, Failed): look at its retirement now."""
    labels = body.get("metadata", {}).get("labels") or {}
    _nudge(memo, namespace, agent_of(body, str(labels.get(naming.AGENT_LABEL) or "")), kwargs)


# --- One pass ---------------------------------------------------------------------------------------


async def reconcile_retirement(ctx: Context, namespace: str, name: str) -> None:
    """One pass (folded with any that are asked for while it runs); schedules the next one."""

    async def work() -> None:
        started = time.monotonic()
        try:
            delay = await _retirement_pass(ctx, namespace, name)
        except errors.ApiError as exc:
            metrics.RECONCILES.labels(kind="AgentRetirement", result="error").inc()
            delay = AFTER_ERROR if exc.retriable else AFTER_REFUSAL
            log.warning("AgentRetirement %s/%s: %s; trying again in %.0fs", namespace, name, exc, delay)
        except Exception:  # a bug must not end the retirement for good: log it, look again later
            metrics.RECONCILES.labels(kind="AgentRetirement", result="error").inc()
            delay = AFTER_REFUSAL
            log.exception("AgentRetirement %s/%s: the pass failed; trying again in %.0fs", namespace, name, delay)
        else:
            metrics.RECONCILE_SECONDS.labels(kind="AgentRetirement").observe(time.monotonic() - started)
            metrics.RECONCILES.labels(kind="AgentRetirement", result="ok").inc()
        schedule(ctx, namespace, name, delay)

    await ctx.coalescer.run(("AgentRetirement", namespace, name), work)


async def _retirement_pass(ctx: Context, namespace: str, name: str) -> float | None:
    body = await asyncio.to_thread(ctx.kube.get, "AgentRetirement", namespace, name)
    if body is None or body.get("metadata", {}).get("deletionTimestamp"):
        return None
    seen = await asyncio.to_thread(observe, ctx.kube, body)
    now = now_ms()
    p = retirement.plan(body.get("spec") or {}, body.get("status"), seen.obs, now)
    if any(isinstance(action, WriteArchive) for action in p.actions):
        # Read what goes into the archive only on the pass that writes it, and plan again with it
        # (the plan is pure: the same decisions, now with the full bundle).
        extra = await asyncio.to_thread(archive_inputs, ctx.kube, namespace, seen.agent_name, seen.agent)
        seen = dataclasses.replace(seen, obs=dataclasses.replace(seen.obs, **extra))
        p = retirement.plan(body.get("spec") or {}, body.get("status"), seen.obs, now)
    writer = _Writer(ctx, body, seen.agent_name, now)
    for action in p.actions:
        if isinstance(action, CallWebhook):
            # Record what is done (credentials revoked) before a call that may take its whole
            # timeout: an operator stopped during the call must not lose those records.
            await writer.commit(p)
        p = await act(ctx, seen, p, action)
    await writer.commit(p)
    return p.requeue_after


@dataclasses.dataclass
class _Writer:
    """Commits a plan: audit entries first (write-ahead), then the status, then the events.

    Usually once per pass; a pass that calls the webhook commits before the call too, so each
    commit sends only what the previous one did not.
    """

    ctx: Context
    body: Obj
    agent_name: str
    now: str
    audited: int = 0
    posted: int = 0

    async def commit(self, p: RetirementPlan) -> None:
        status = p.status
        if p.audit[self.audited:]:
            await auditing.record(self.ctx, self.body["metadata"]["namespace"], self.agent_name,
                                  p.audit[self.audited:], self.now)
            self.audited = len(p.audit)
        outcome = await asyncio.to_thread(shell.execute, self.ctx.kube, self.body, status=status,
                                          owned_status=STATUS_KEYS)
        if outcome.patched is not None:
            metrics.WRITES.labels(kind="AgentRetirement", verb="status").inc()
            self.body = {**self.body, "status": outcome.patched.get("status") or {}}
        posting.post(self.body, p.events[self.posted:])
        self.posted = len(p.events)

# --- The Agent finalizer ----------------------------------------------------------------------------


def revoke_agent_credentials(kube: Kube, namespace: str, agent: str, agent_uid: str | None) -> list[tuple[str, str]]:
    """Delete every credential alm made for the Agent, in revocation order; the (kind, name) deleted."""
    revoked: list[tuple[str, str]] = []
    for (kind, name), obj in sorted(agent_credentials(kube, namespace, agent, agent_uid).items(),
                                    key=lambda item: (CREDENTIAL_KINDS.index(item[0][0]), item[0][1])):
        if kube.delete(kind, namespace, name, uid=obj["metadata"].get("uid")):
            revoked.append((kind, name))
    return revoked


def _running(body: Mapping[str, Any]) -> bool:
    """Still working towards Retired: not finished, failed, or stuck on an invalid spec."""
    status = body.get("status") or {}
    invalid = conditions.find(status.get("conditions"), Cond.INVALID)
    return status.get("phase") not in TERMINAL and not (invalid is not None and invalid.get("status") == "True")


@kopf.on.delete(GROUP, VERSION, "agents", registry=REGISTRY)
async def agent_deleted(namespace: str | None, name: str, uid: str, memo: kopf.Memo, **kwargs: Any) -> None:
    """Revoke the Agent's credentials before it goes (GC alone would leave them until it runs)."""
    assert namespace is not None, "Agents are namespaced"
    ctx = Context.of(memo)
    revoked = await asyncio.to_thread(revoke_agent_credentials, ctx.kube, namespace, name, uid)
    subject = f"Agent/{name}"
    intents = [AuditIntent(AuditAction.CREDENTIAL_REVOKED, subject,
                           {"agent": name, "kind": kind, "name": secret, "result": Result.REVOKED,
                            "by": "finalizer"}) for kind, secret in revoked]
    running = [r for r in _retirements_of(kwargs, namespace, name) if _running(r)]
    if not running:
        intents.append(AuditIntent(AuditAction.DELETED, subject, {"agent": name, "revokedOnDeletion": len(revoked)}))
    await auditing.record(ctx, namespace, name, intents, now_ms())
    if revoked:
        log.info("Agent %s/%s is being deleted: revoked %s", namespace, name,
                 ", ".join(f"{kind} {n}" for kind, n in revoked))
    if running:
        retiring = running[0]["metadata"]["name"]
        raise kopf.TemporaryError(f"credentials revoked; waiting for AgentRetirement {retiring} to finish "
                                  "before the Agent goes", delay=FINALIZER_WAIT)
