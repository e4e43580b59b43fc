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

How traffic stops: the Agent's Services (and HTTPRoutes it owns) are deleted, not emptied. A
retired Agent never serves again and the Agent planner stands down for it, so nothing recreates
them; a Service kept with a selector that matches nothing would only look alive.

How replicas go to zero: a JSON merge patch of ``spec.replicas`` with the operator's field
manager. Server-side apply is not usable here: an apply of only ``spec.replicas`` by
``alm-operator`` would drop every other field that manager applied (the pod template).

Times are RFC 3339 with milliseconds, so grace periods and backoff are never cut short by the
rounding of whole seconds.

The Agent finalizer (``alm.dev/finalizer``, added by kopf because of :func:`agent_deleted`)
deletes the Agent's credential Secrets, ServiceAccount, Role and RoleBinding explicitly before
the Agent may go, records them and the deletion in the audit log, and, when a retirement of that
Agent is still running, keeps the Agent until it is done (so the archive holds its last state).
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import hashlib
import logging
import time
import weakref
from collections.abc import Mapping
from typing import Any

import kopf

from alm.api import AgentRetirementPhase
from alm.core import archive, conditions, naming, retirement
from alm.core.audit import AuditAction, AuditIntent
from alm.core.reasons import Cond, Reason
from alm.core.retirementtypes import (
    RETRY_ANNOTATION,
    WEBHOOK_KIND,
    Action,
    CallWebhook,
    ConsumeRetry,
    Credential,
    MarkAgentRetired,
    Outcome,
    Result,
    RetirementObservations,
    RetirementPlan,
    RevokeRBAC,
    RevokeSecret,
    RevokeServiceAccount,
    ScaleToZero,
    StopTraffic,
    WriteArchive,
)
from alm.handlers import auditing, posting
from alm.handlers.context import Context
from alm.handlers.registry import REGISTRY
from alm.kube import errors, resources, shell, webhook
from alm.kube.api import Kube
from alm.metrics import operator as metrics

__all__ = [
    "STATUS_KEYS",
    "agent_credentials",
    "agent_deleted",
    "now_ms",
    "reconcile_retirement",
    "revoke_agent_credentials",
    "schedule",
    "unschedule",
]

log = logging.getLogger(__name__)

GROUP, VERSION = "alm.dev", "v1alpha1"
STATUS_KEYS = ("phase", "transitions", "revoked", "archive", "attempts", "message", "conditions",
               "observedGeneration")
CREDENTIAL_KINDS = ("RoleBinding", "Role", "ServiceAccount", "Secret")  # API access, identity, then keys
CREDENTIALS_COMPONENT = "credentials"
AFTER_ERROR = 5.0  # seconds before a pass that failed on the API server is tried again
AFTER_REFUSAL = 60.0  # ... failed on a non-retriable answer (RBAC, a rejected object)
SLACK = 0.05  # so a timer never fires just before the moment the planner waits for
FINALIZER_WAIT = 2.0  # the Agent finalizer's re-check while a retirement of the Agent runs
TERMINAL = (AgentRetirementPhase.RETIRED, AgentRetirementPhase.FAILED)

Obj = dict[str, Any]


def now_ms() -> str:
    """Now, RFC 3339 with milliseconds (UTC)."""
    moment = datetime.datetime.now(datetime.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


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
    _nudge(memo, namespace, _agent_of(body, str(labels.get(naming.AGENT_LABEL) or "")), kwargs)


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
    seen = await asyncio.to_thread(_observe, ctx.kube, body)
    now = now_ms()
    p = retirement.plan(body.get("spec") or {}, body.get("status"), seen.obs, now)
    if any(isinstance(action, WriteArchive) for action in p.actions):
        # Read what goes into the archive only on the pass that writes it, and plan again with it
        # (the plan is pure: the same decisions, now with the full bundle).
        extra = await asyncio.to_thread(_archive_inputs, ctx.kube, namespace, seen.agent_name, seen.agent)
        seen = dataclasses.replace(seen, obs=dataclasses.replace(seen.obs, **extra))
        p = retirement.plan(body.get("spec") or {}, body.get("status"), seen.obs, now)
    writer = _Writer(ctx, body, seen.agent_name, now)
    for action in p.actions:
        if isinstance(action, CallWebhook):
            # Record what is done (credentials revoked) before a call that may take its whole
            # timeout: an operator stopped during the call must not lose those records.
            await writer.commit(p)
        p = await _act(ctx, seen, p, action)
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


# --- Observations -----------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class _Seen:
    """The observations, plus the live objects the actions need (uids, names)."""

    obs: RetirementObservations
    namespace: str
    agent_name: str
    agent: Obj | None
    credentials: dict[tuple[str, str], Obj]
    traffic: list[Obj]
    deployments: list[Obj]


def _live(obj: Mapping[str, Any]) -> bool:
    return not obj.get("metadata", {}).get("deletionTimestamp")


def _owned(obj: Mapping[str, Any], agent_uid: str | None, foreign_uid: str | None = None) -> bool:
    meta = obj.get("metadata", {})
    owners = {ref.get("uid") for ref in meta.get("ownerReferences") or []}
    if agent_uid:
        return agent_uid in owners
    # The Agent is gone: its children are being garbage-collected; ours still count until then,
    # but never those of a new Agent that took the name since.
    ours = (meta.get("labels") or {}).get(naming.MANAGED_BY_LABEL) == naming.MANAGED_BY_VALUE
    return ours and (foreign_uid is None or foreign_uid not in owners)


def _children(
    kube: Kube, kind: str, namespace: str, agent: str, agent_uid: str | None, foreign_uid: str | None = None
) -> list[Obj]:
    try:
        found = kube.list(kind, namespace, {naming.AGENT_LABEL: naming.label_value(agent)})
    except errors.NotFound:  # the kind is not served (no Gateway API CRDs): nothing of it exists
        return []
    return [obj for obj in found if _live(obj) and _owned(obj, agent_uid, foreign_uid)]


def agent_credentials(
    kube: Kube, namespace: str, agent: str, agent_uid: str | None, foreign_uid: str | None = None
) -> dict[tuple[str, str], Obj]:
    """The live credential-bearing objects alm made for the Agent, keyed (kind, name)."""
    found: dict[tuple[str, str], Obj] = {}
    for kind in CREDENTIAL_KINDS:
        for obj in _children(kube, kind, namespace, agent, agent_uid, foreign_uid):
            labels = obj.get("metadata", {}).get("labels") or {}
            if kind == "Secret" and labels.get(naming.COMPONENT_LABEL) != CREDENTIALS_COMPONENT:
                continue  # archives and audit data are labelled with the Agent too: never revoked
            found[(kind, str(obj["metadata"]["name"]))] = obj
    return found


def _archive_inputs(kube: Kube, namespace: str, agent_name: str, agent: Mapping[str, Any] | None) -> Obj:
    """What only the archive needs: the Agent's versions and rollouts, and its audit log."""
    rollouts = [r for r in kube.list("AgentRollout", namespace)
                if ((r.get("spec") or {}).get("agentRef") or {}).get("name") == agent_name]
    status = (agent or {}).get("status") or {}
    names = {(agent or {}).get("spec", {}).get("version"), status.get("stableVersion"), status.get("canaryVersion")}
    names |= {h.get("version") for h in status.get("history") or []}
    names |= {(r.get("spec") or {}).get("targetVersion") for r in rollouts}
    versions = [v for v in kube.list("AgentVersion", namespace) if v["metadata"]["name"] in names]
    return {"versions": versions, "rollouts": rollouts, "audit": auditing.load(kube, namespace, agent_name)}


def _time(value: str) -> datetime.datetime:
    return datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))


def _successor(agent: Mapping[str, Any], retirement_body: Mapping[str, Any]) -> bool:
    """Whether ``agent`` was created after the retirement started: a new Agent under the old name.

    The retired Agent existed when the retirement entered Draining; a later one is not its
    business (it must be neither marked Retired nor stripped of its credentials).
    """
    transitions = (retirement_body.get("status") or {}).get("transitions") or []
    started = next((t.get("at") for t in transitions if t.get("phase") == AgentRetirementPhase.DRAINING), None)
    created = agent.get("metadata", {}).get("creationTimestamp")
    return bool(started and created) and _time(str(created)) > _time(str(started))


def _observe(kube: Kube, body: Mapping[str, Any]) -> _Seen:
    meta = body.get("metadata", {})
    namespace, spec = str(meta.get("namespace")), body.get("spec") or {}
    agent_name = str((spec.get("agentRef") or {}).get("name") or "")
    agent = kube.get("Agent", namespace, agent_name) if agent_name else None
    foreign = None
    if agent is not None and _successor(agent, body):
        foreign, agent = agent.get("metadata", {}).get("uid"), None
    uid = (agent or {}).get("metadata", {}).get("uid")
    credentials = agent_credentials(kube, namespace, agent_name, uid, foreign) if agent_name else {}
    traffic = _children(kube, "Service", namespace, agent_name, uid, foreign) if agent_name else []
    if ((agent or {}).get("spec") or {}).get("exposure", {}).get("httpRoute"):
        traffic += _children(kube, "HTTPRoute", namespace, agent_name, uid)
    deployments = _children(kube, "Deployment", namespace, agent_name, uid, foreign) if agent_name else []
    obs = RetirementObservations(
        name=str(meta.get("name")), namespace=namespace, uid=str(meta.get("uid", "")),
        generation=meta.get("generation"), agent=agent, serving=bool(traffic),
        replicas=sum(int((d.get("spec") or {}).get("replicas") or 0) for d in deployments),
        ready_replicas=sum(int((d.get("status") or {}).get("readyReplicas") or 0) for d in deployments),
        credentials=tuple(Credential(kind, name) for kind, name in credentials),
        retry_requested=RETRY_ANNOTATION in (meta.get("annotations") or {}),
    )
    return _Seen(obs, namespace, agent_name, agent, credentials, traffic, deployments)


# --- Actions ----------------------------------------------------------------------------------------


async def _act(
    ctx: Context, seen: _Seen, p: RetirementPlan, action: Action
) -> RetirementPlan:
    """Carry out one action; fold what only the doing can tell back into the plan."""
    if isinstance(action, CallWebhook):
        answer = await webhook.call(ctx.kube, seen.namespace, action)
        if answer.ok:
            _observe_revocation(p, WEBHOOK_KIND)
        return retirement.record_outcome(p, Outcome.of_webhook(action, answer), now_ms())
    if isinstance(action, WriteArchive):
        written = await asyncio.to_thread(_write_archive, ctx.kube, action, seen, ctx.archive_image)
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
        elapsed = (datetime.datetime.now(datetime.UTC) - _time(started)).total_seconds()
        metrics.REVOCATION_SECONDS.labels(kind=kind).observe(max(0.0, elapsed))


def _credential_kind(action: RevokeSecret | RevokeServiceAccount | RevokeRBAC) -> str:
    if isinstance(action, RevokeRBAC):
        return action.kind
    return "Secret" if isinstance(action, RevokeSecret) else "ServiceAccount"


def _revoke(kube: Kube, seen: _Seen, kind: str, name: str) -> bool:
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


def _carry_out(kube: Kube, seen: _Seen, action: Action, now: str) -> None:
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


def _mark_retired(kube: Kube, seen: _Seen, now: str) -> None:
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


def _write_archive(kube: Kube, action: WriteArchive, seen: _Seen, image: str) -> Outcome | None:
    """Apply the archive objects, parts first and the manifest last; never owned by anything.

    For a PVC they are staging ConfigMaps, and a Job (:func:`alm.core.archive.pvc_job`) copies
    them onto the claim: None while it runs (the plan looks again soon), an outcome once it is
    Complete or Failed.
    """
    try:
        if action.target == "pvc":
            return _copy_to_claim(kube, action, seen, image)
        for obj in action.objects:
            kube.apply(obj)
    except errors.ApiError as exc:
        return Outcome(action, False, f"{type(exc).__name__} (HTTP {exc.status})", exc.retriable)
    return Outcome(action, True, f"{action.parts} object(s), sha256 {action.bundle.sha256[:12]}")


def _copy_to_claim(
    kube: Kube, action: WriteArchive, seen: _Seen, image: str
) -> Outcome | None:
    """One archive attempt onto a PVC: start its Job, or report how the Job started earlier ended.

    The Job of an attempt is found by its annotations (retirement uid, attempt), not by the
    archive's name: the bundle planned now may differ from the one the Job copies (an audit
    entry appended since), and the outcome must report what is on the claim. A failed Job is
    deleted, so that the next attempt starts afresh (backoff and attempts: the planner's).
    """
    namespace, agent = seen.namespace, seen.agent_name
    started = _attempt_job(kube, namespace, agent, seen.obs.uid, action.attempt)
    if started is None:
        wanted = archive.pvc_job(action.objects, agent=agent, namespace=namespace, claim=str(action.claim_name),
                                 image=image, retirement_uid=seen.obs.uid, attempt=action.attempt)
        namesake = kube.get("Job", namespace, str(wanted["metadata"]["name"]))
        if namesake is not None:  # an earlier attempt's Job with the same content: gone first
            if not namesake["metadata"].get("deletionTimestamp"):
                kube.delete("Job", namespace, namesake["metadata"]["name"], uid=namesake["metadata"].get("uid"))
            return None
        for obj in action.objects:
            kube.apply(obj)
        kube.apply(wanted)
        metrics.WRITES.labels(kind="Job", verb="apply").inc()
        return None
    meta = started["metadata"]
    state = archive.job_state(started)
    if state.failed:
        kube.delete("Job", namespace, meta["name"], uid=meta.get("uid"))
        metrics.WRITES.labels(kind="Job", verb="delete").inc()
        return Outcome(action, False, f"{state.detail}; Job {meta['name']} deleted", retryable=True)
    if not state.done:
        return None
    copied = _what_the_job_copied(kube, action, started)
    if copied is None:
        return Outcome(action, False, f"Job {meta['name']} is complete but its staging ConfigMaps "
                                                 "are missing or damaged", retryable=True)
    return Outcome(copied, True, f"Job {meta['name']} copied {copied.parts} part(s) to "
                                            f"{copied.location}, sha256 verified")


def _attempt_job(kube: Kube, namespace: str, agent: str, uid: str, attempt: int) -> Obj | None:
    for job in kube.list("Job", namespace, {naming.AGENT_LABEL: naming.label_value(agent),
                                            naming.COMPONENT_LABEL: archive.COMPONENT}):
        annotations = job.get("metadata", {}).get("annotations") or {}
        if (annotations.get(archive.ANNOTATION_RETIREMENT), annotations.get(archive.ANNOTATION_ATTEMPT)) == (
                uid, str(attempt)) and _live(job):
            return job
    return None


def _what_the_job_copied(kube: Kube, action: WriteArchive, job: Mapping[str, Any]
                         ) -> WriteArchive | None:
    """``action`` as it was when the Job started: its staging ConfigMaps, bundle and location."""
    namespace = str(job["metadata"]["namespace"])
    pod = job["spec"]["template"]["spec"]
    objects = [kube.get("ConfigMap", namespace, str(v["configMap"]["name"]))
               for v in pod.get("volumes") or [] if v.get("configMap")]
    claim = next((str(v["persistentVolumeClaim"]["claimName"]) for v in pod.get("volumes") or []
                  if v.get("persistentVolumeClaim")), str(action.claim_name))
    found = [o for o in objects if o is not None]
    if len(found) != len(objects) or not found:
        return None
    try:
        data = archive.reassemble(found)
    except ValueError:
        return None
    sha = hashlib.sha256(data).hexdigest()
    if sha != (job["metadata"].get("annotations") or {}).get(archive.ANNOTATION_SHA256):
        return None
    agent = str((job["metadata"].get("labels") or {}).get(naming.AGENT_LABEL) or "")
    ordered = sorted(found, key=lambda o: "manifest.json" in (o.get("data") or {}))  # the manifest last
    return dataclasses.replace(action, claim_name=claim, bundle=archive.Bundle(data, sha), objects=tuple(ordered),
                               location=archive.pvc_location(claim, _agent_of(job, agent), sha))


def _agent_of(job: Mapping[str, Any], fallback: str) -> str:
    """The Agent a copy Job works for (its exact name, which a label value may not hold)."""
    pod = (((job.get("spec") or {}).get("template") or {}).get("spec")) or {}
    for container in pod.get("containers") or []:
        for env in container.get("env") or []:
            if env.get("name") == "ALM_AGENT":
                return str(env.get("value"))
    return fallback


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
