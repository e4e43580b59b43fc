"""The AgentRollout controller: one pass per rollout, from the pure planner to the cluster.

::

    observe (indexes) -> measurements_due -> MetricProvider.measure -> analysis.run_readings
        -> rollout.plan -> actions, in order -> status once -> events, audit -> requeue timer

Who writes what (see also ``agentplan.RolloutTraffic``):

- The Agent's children (Deployments, the Service ``<agent>``) have one writer, the Agent
  planner. ``ScaleVersion`` and the router's Service selector and runtime-mirror env are
  *decisions* this controller records in ``ctx.traffic`` and hands to the Agent planner, then it
  reconciles the Agent. A value not decided yet (after a restart) is kept as it is live, and the
  planner's actions are declarative (issued while an observation differs), so a decision lost
  with a restart is simply made again on the next pass.
- Objects only the router uses (the gatewayAPI HTTPRoute and version Services, the replicas
  router's mirror Service, the blue-green preview Service) are written here directly; an
  HTTPRoute someone else owns only through the router's guarded JSON patches.
- ``Promote`` and ``MarkAgentRolloutFailed`` write ``stableVersion`` and a history entry into
  the Agent's status (merge patch, idempotent by rollout name); the Agent planner owns the
  ``RolloutFailed`` condition (from ``needs_rollout``: True while spec.version failed).
- The AgentRollout's status is written once per pass (``OWNED_STATUS_KEYS``), after the actions.

Passes are coalesced per AgentRollout and retried like the Agent's (``wiring._with_retries``).
A pass never sleeps: when the plan asks to look again (a pause deadline, the next measurement,
a router read-back), one timer task per rollout runs the next pass. Triggers: events on the
AgentRollout, every Agent pass (an Agent event, a child's event such as pods becoming ready, the
resync loop) and the timer.

``ScaleDownAfter`` needs no action here: the Agent planner keeps the previous version's Deployment
(as the rollout left it, out of the Service) while ``rolloutstart.retained`` says so — the rollout's
``finishedAt`` plus its strategy's delay, so a restart changes nothing — and a timer on the finished
rollout reconciles the Agent once the delay has passed, which removes it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Mapping, Sequence
from typing import Any

import kopf
import pydantic

from alm import routers
from alm.api import AgentRolloutSpec, AgentSpec
from alm.core import analysis, naming, rollout
from alm.core.agentplan import traffic_after_finish, traffic_for
from alm.core.kpis import Reading
from alm.core.rolloutcontrols import from_annotations
from alm.core.rolloutpass import POLL
from alm.core.rolloutstart import Decision, DecisionAction, is_finished, retained
from alm.core.rollouttypes import (
    Action,
    ConsumeControl,
    MarkAgentRolloutFailed,
    Promote,
    RolloutObservations,
    ScaleVersion,
    SetMirror,
    SetPreview,
    SetWeight,
)
from alm.core.timestamps import since
from alm.handlers import auditing, monitoring, posting, wiring
from alm.handlers.context import Context, utcnow
from alm.handlers.registry import REGISTRY
from alm.kube import errors, resources, shell
from alm.routers.base import CANARY, service_name, version_service

__all__ = ["MIN_REQUEUE", "after_agent_pass", "reconcile_rollout", "start"]

log = logging.getLogger(__name__)

GROUP, VERSION = "alm.dev", "v1alpha1"
MIN_REQUEUE = 0.2  # seconds: a plan asking to look again "now" is not a busy loop
PREVIEW = "preview"
SCALE_DOWN_SLACK = 0.5  # seconds after the scale-down deadline: the Agent's pass then sees it passed

Obj = dict[str, Any]


# --- indexes and triggers --------------------------------------------------------------------------

@kopf.index(GROUP, VERSION, "agentrollouts", registry=REGISTRY)
def rollout_index(namespace: str, name: str, body: kopf.Body, **_: Any) -> dict[Any, Any]:
    return {(namespace, name): dict(body)}


@kopf.index(GROUP, VERSION, "agentrollouts", registry=REGISTRY)
def rollouts_by_agent(namespace: str, spec: kopf.Spec, body: kopf.Body, **_: Any) -> dict[Any, Any] | None:
    agent = (spec.get("agentRef") or {}).get("name")
    return {(namespace, agent): dict(body)} if isinstance(agent, str) else None


@kopf.on.event(GROUP, VERSION, "agentrollouts", registry=REGISTRY)
async def rollout_event(type: str, namespace: str, name: str, spec: kopf.Spec, memo: kopf.Memo,
                        **kwargs: Any) -> None:
    ctx = Context.of(memo)
    _borrow_indexes(ctx, kwargs)
    if type == "DELETED":
        _cancel_timer(ctx, (namespace, name))
    else:
        await reconcile_rollout(ctx, namespace, name)
    agent = (spec.get("agentRef") or {}).get("name")
    if isinstance(agent, str):
        await wiring.reconcile_agent(ctx, namespace, agent, kwargs)


def _borrow_indexes(ctx: Context, kwargs: Mapping[str, Any]) -> None:
    for key, value in kwargs.items():
        if isinstance(value, kopf.Index) and key not in ctx.indexes:
            ctx.indexes[key] = value


def start(ctx: Context, namespace: str, decision: Decision) -> None:
    """Create the AgentRollout ``needs_rollout`` asked for, or adopt a hand-written one (sync: a worker thread)."""
    if decision.body is None or decision.rollout is None:
        return
    if decision.action == DecisionAction.CREATE:
        try:
            created = ctx.kube.request("POST", resources.for_kind("AgentRollout").path(namespace), body=decision.body)
        except errors.Conflict:
            return  # created by an earlier pass the index has not shown yet
        if created:
            ctx.freshness.wrote(created)
    elif decision.action == DecisionAction.ADOPT:
        patched = ctx.kube.merge_patch("AgentRollout", namespace, decision.rollout, decision.body)
        if patched:
            ctx.freshness.wrote(patched)


def after_agent_pass(ctx: Context, namespace: str, agent: str) -> None:
    """The Agent changed (or one of its pods did): let its unfinished rollouts look again."""
    for body in list(ctx.indexes.get("rollouts_by_agent", {}).get((namespace, agent), ())):
        if not is_finished(ctx.freshness.view(body)):
            name = str(body["metadata"]["name"])
            task = asyncio.create_task(reconcile_rollout(ctx, namespace, name), name=f"alm-rollout-{name}")
            ctx.background.add(task)
            task.add_done_callback(ctx.background.discard)


async def reconcile_rollout(ctx: Context, namespace: str, name: str) -> None:
    async def work() -> None:
        await wiring._with_retries(ctx, "AgentRollout", f"{namespace}/{name}",
                                   lambda: _rollout_pass(ctx, namespace, name))

    try:
        await ctx.coalescer.run(("AgentRollout", namespace, name), work)
    except Exception:  # a timer or a background trigger: log, never lose the loop
        log.exception("AgentRollout %s/%s: pass failed", namespace, name)
        _schedule(ctx, (namespace, name), POLL)


# --- timers ---------------------------------------------------------------------------------------

def _cancel_timer(ctx: Context, key: tuple[str, str]) -> None:
    timer = ctx.rollout_timers.pop(key, None)
    if timer is not None and timer is not asyncio.current_task():
        timer.cancel()


def _schedule(ctx: Context, key: tuple[str, str], seconds: float) -> None:
    """Run the next pass of ``key`` in ``seconds`` (replacing an earlier timer)."""
    _cancel_timer(ctx, key)

    async def later() -> None:
        await asyncio.sleep(max(MIN_REQUEUE, seconds))
        if ctx.rollout_timers.get(key) is asyncio.current_task():
            del ctx.rollout_timers[key]
        await reconcile_rollout(ctx, *key)

    ctx.rollout_timers[key] = asyncio.create_task(later(), name=f"alm-rollout-timer-{key[0]}/{key[1]}")


# --- one pass -------------------------------------------------------------------------------------

@dataclasses.dataclass
class _Seen:
    """What the pass observed, kept for carrying out the actions."""

    body: Obj
    agent: Obj | None
    agent_spec: AgentSpec | None
    spec: AgentRolloutSpec | None
    children: list[Mapping[str, Any]]  # the Agent's Deployments and Services, plus its HTTPRoute
    target: routers.Target | None


async def _rollout_pass(ctx: Context, namespace: str, name: str) -> shell.Outcome | None:
    indexed = wiring._first(ctx.indexes.get("rollout_index", {}), (namespace, name))
    if indexed is None or indexed.get("metadata", {}).get("deletionTimestamp"):
        _cancel_timer(ctx, (namespace, name))
        return None
    body = dict(ctx.freshness.view(indexed))
    seen = await asyncio.to_thread(_see, ctx, namespace, body)
    obs = _observe(ctx, namespace, seen)
    now = utcnow()
    status = body.get("status") or {}
    if seen.spec is not None and seen.agent_spec is not None:
        due = rollout.measurements_due(seen.spec, status, obs, now)
        if due:
            agent = str((seen.agent or {}).get("metadata", {}).get("name") or "")
            readings = await _measure(ctx, namespace, agent, seen.agent_spec, due, now)
            obs = dataclasses.replace(obs, readings=readings)
    result = rollout.plan(seen.spec if seen.spec is not None else body.get("spec") or {}, status, obs, now)
    agent_name = str(((body.get("spec") or {}).get("agentRef") or {}).get("name") or "")
    touched = await asyncio.to_thread(_carry_out, ctx, namespace, seen, result.actions)
    outcome = await asyncio.to_thread(shell.execute, ctx.kube, body, status=result.status,
                                      owned_status=rollout.OWNED_STATUS_KEYS)
    wiring._remember(ctx, outcome, "")
    posting.post(body, result.events)
    if result.audit and agent_name:
        try:
            await auditing.record(ctx, namespace, agent_name, result.audit, now)
        except errors.ApiError as exc:
            log.warning("AgentRollout %s/%s: audit entries not recorded: %s", namespace, name, exc)
    finished = result.status.get("phase") == "Succeeded" or bool(result.status.get("finishedAt"))
    if finished and agent_name:
        kept = traffic_after_finish(ctx.traffic.get((namespace, agent_name)), name)
        if kept is None:
            ctx.traffic.pop((namespace, agent_name), None)
    if (touched or finished) and agent_name:
        await wiring.reconcile_agent(ctx, namespace, agent_name, ctx.indexes)
    scale_down = _scale_down_in({**body, "status": result.status}, now) if finished else None
    if finished and scale_down is None and result.status.get("phase") == "Succeeded":
        await asyncio.to_thread(_finalize_route, ctx, namespace, seen)
    if result.requeue_after is not None and not finished:
        _schedule(ctx, (namespace, name), result.requeue_after)
    elif scale_down is not None:
        _schedule(ctx, (namespace, name), scale_down)  # the next pass reconciles the Agent: the old version goes
    else:
        _cancel_timer(ctx, (namespace, name))
    return outcome


def _finalize_route(ctx: Context, namespace: str, seen: _Seen) -> None:
    """After a gatewayAPI promotion and its grace: the HTTPRoute sends everything to ``<agent>-stable``,
    which now selects the promoted version, and ``<agent>-canary`` goes (``TrafficRouter.finalize``).

    Only while the promoted version is still the Agent's wanted and stable one (a newer rollout owns
    the route otherwise), and only until it is done (the canary Service gone from the route)."""
    if seen.spec is None or seen.agent is None or seen.agent_spec is None or seen.target is None:
        return
    if seen.target.routing.type != "gatewayAPI":
        return
    version = seen.spec.target_version
    if seen.agent_spec.version != version or (seen.agent.get("status") or {}).get("stableVersion") != version:
        return
    canary = service_name(seen.target.agent, CANARY)
    route = next((c for c in seen.children if c.get("kind") == "HTTPRoute"), None)
    in_use = any(c.get("kind") == "Service" and c["metadata"]["name"] == canary for c in seen.children) or (
        route is not None and canary in str(route.get("spec")))
    if not in_use:
        return
    target = dataclasses.replace(seen.target, stable=version, canary=None)
    plan = routers.router_for(target.routing).finalize(target, seen.children)
    for obj in plan.apply:
        ctx.freshness.wrote(ctx.kube.apply(obj))
    for patch in plan.patches:
        ctx.kube.json_patch(patch.target.kind, patch.target.namespace, patch.target.name, patch.ops)
    for ref in plan.delete:
        ctx.kube.delete(ref.kind, ref.namespace, ref.name)


def _scale_down_in(body: Mapping[str, Any], now: str) -> float | None:
    """Seconds until the previous version of a promotion may go (``ScaleDownAfter``); None: nothing kept."""
    target = str((body.get("spec") or {}).get("targetVersion") or "")
    keep = retained([body], target, now)
    return None if keep is None else since(now, keep.until) + SCALE_DOWN_SLACK


def _see(ctx: Context, namespace: str, body: Obj) -> _Seen:
    spec: AgentRolloutSpec | None
    try:
        spec = AgentRolloutSpec.model_validate(body.get("spec") or {})
    except pydantic.ValidationError:
        spec = None  # the planner says what to fix
    agent_name = ((body.get("spec") or {}).get("agentRef") or {}).get("name")
    agent_indexed = wiring._first(ctx.indexes.get("agent_index", {}), (namespace, agent_name))
    agent = dict(ctx.freshness.view(agent_indexed)) if agent_indexed is not None else None
    agent_spec: AgentSpec | None = None
    if agent is not None:
        try:
            agent_spec = AgentSpec.model_validate(agent.get("spec") or {})
        except pydantic.ValidationError:
            agent_spec = None
    children: list[Mapping[str, Any]] = []
    target = None
    if agent is not None and spec is not None and agent_spec is not None:
        uid = agent.get("metadata", {}).get("uid", "")
        indexed = [child for kind in ("Deployment", "Service")
                   for child in ctx.indexes.get(wiring.CHILD_INDEX[kind], {}).get((namespace, agent_name), ())]
        children = [c for c in ctx.freshness.merge(indexed, ("Deployment", "Service"), namespace, uid)
                    if wiring._owned_by(c, uid)]
        stable = spec.from_version or (agent.get("status") or {}).get("stableVersion") or ""
        if stable:
            canary = spec.target_version if spec.target_version != stable else None
            target = routers.Target.for_agent(str(agent_name), namespace, uid, agent_spec, stable=stable,
                                              canary=canary, routing=spec.strategy.traffic_routing)
            if target.routing.type == "gatewayAPI":
                route = ctx.kube.get("HTTPRoute", namespace, routers.gatewayapi.route_name(target))
                if route is not None:
                    children.append(route)
    return _Seen(body, agent, agent_spec, spec, children, target)


def _deployment(seen: _Seen, version: str) -> Mapping[str, Any] | None:
    if seen.agent is None or not version:
        return None
    name = naming.deployment_name(seen.agent["metadata"]["name"], version)
    return next((c for c in seen.children if c.get("kind") == "Deployment" and c["metadata"]["name"] == name), None)


def _ready(deployment: Mapping[str, Any]) -> int:
    status = deployment.get("status") or {}
    ready = int(status.get("readyReplicas") or 0)
    if "updatedReplicas" in status:
        ready = min(ready, int(status.get("updatedReplicas") or 0))
    return ready


def _is_shadow(deployment: Mapping[str, Any]) -> bool:
    pod = ((deployment.get("spec") or {}).get("template") or {}).get("spec") or {}
    return any(e.get("name") == "ALM_SHADOW" and e.get("value") == "true"
               for c in pod.get("containers") or () for e in c.get("env") or ())


def _blocked_by(ctx: Context, namespace: str, body: Mapping[str, Any], agent: str) -> str | None:
    """An unfinished rollout of the same Agent created before this one."""
    meta = body.get("metadata", {})
    mine = (str(meta.get("creationTimestamp") or ""), str(meta.get("name")))
    for other in ctx.indexes.get("rollouts_by_agent", {}).get((namespace, agent), ()):
        other = ctx.freshness.view(other)
        ometa = other.get("metadata", {})
        theirs = (str(ometa.get("creationTimestamp") or ""), str(ometa.get("name")))
        if theirs < mine and not is_finished(other) and not ometa.get("deletionTimestamp"):
            return theirs[1]
    return None


def _observe(ctx: Context, namespace: str, seen: _Seen) -> RolloutObservations:
    meta = seen.body.get("metadata", {})
    controls = from_annotations(meta.get("annotations"))
    if seen.agent is None or seen.spec is None:
        return RolloutObservations(name=str(meta.get("name")), generation=meta.get("generation"), controls=controls)
    agent_name = str(seen.agent["metadata"]["name"])
    agent_status = seen.agent.get("status") or {}
    target_version = seen.spec.target_version
    version = wiring._first(ctx.indexes.get("version_index", {}), (namespace, target_version))
    vstatus = (version or {}).get("status") or {}
    target_ready = vstatus.get("phase") == "Ready"
    target_message = "" if target_ready else ("it does not exist" if version is None else
                                              str(vstatus.get("phase") or "not validated yet"))
    stable = seen.spec.from_version or agent_status.get("stableVersion") or ""
    scaled: dict[str, int] = {}
    ready: dict[str, int] = {}
    shadows: list[str] = []
    for v in dict.fromkeys(x for x in (stable, target_version) if x):
        deployment = _deployment(seen, v)
        if deployment is not None:
            scaled[v] = int((deployment.get("spec") or {}).get("replicas") or 0)
            ready[v] = _ready(deployment)
            if _is_shadow(deployment):
                shadows.append(v)
    weight = mirror = None
    if seen.target is not None:
        try:
            traffic = routers.router_for(seen.target.routing).read_back(seen.target, seen.children)
        except ValueError:
            traffic = None
        if traffic is not None:
            weight = traffic.weight if traffic.ready else None
            mirror = traffic.mirror_percent
    preview = None
    service = next((c for c in seen.children if c.get("kind") == "Service"
                    and c["metadata"]["name"] == _preview_name(agent_name)), None)
    if service is not None:
        label = ((service.get("spec") or {}).get("selector") or {}).get(naming.VERSION_LABEL)
        preview = next((v for v in (stable, target_version) if v and naming.label_value(v) == label), None)
    spec = seen.agent_spec
    return RolloutObservations(
        name=str(meta.get("name")), generation=meta.get("generation"),
        desired_version=spec.version if spec is not None else None, stable_version=agent_status.get("stableVersion"),
        replicas=spec.replicas if spec is not None else 1, target_ready=target_ready, target_message=target_message,
        scaled=scaled, ready=ready, shadows=tuple(shadows), router_weight=weight, router_mirror=mirror,
        preview=preview, controls=controls, agent_kpis=spec.kpis if spec is not None else None,
        blocked_by=_blocked_by(ctx, namespace, seen.body, agent_name),
    )


# --- measuring ------------------------------------------------------------------------------------

async def _measure(ctx: Context, namespace: str, agent_name: str, agent: AgentSpec,
                   due: Sequence[analysis.Measure], now: str) -> tuple[analysis.RunReading, ...]:
    """Every reading the requests ask for, from the Agent's own provider (shared with monitoring).

    The version and its baseline are measured with the same ``measured_at`` (one round)."""
    readings: list[analysis.RunReading] = []
    for request in due:
        for version in (request.version, request.baseline):
            if version:
                readings += await _measure_one(ctx, namespace, agent_name, agent, request, version, now)
    return tuple(readings)


async def _measure_one(ctx: Context, namespace: str, agent_name: str, agent: AgentSpec, request: analysis.Measure,
                       version: str, now: str) -> tuple[analysis.RunReading, ...]:
    try:
        provider = await monitoring._provider(ctx, namespace, agent_name, agent)
        result = await provider.measure(agent_name, namespace, version, request.window_seconds,
                                        quantile=request.latency_quantile, queries=request.queries)
    except Exception as exc:  # the provider failed: an Error reading (counts as inconclusive), never a crash
        failed = Reading.error(f"{type(exc).__name__}: {exc}")
        return analysis.run_readings(request, version, now, dict.fromkeys(request.kpis, failed),
                                     {q.name: failed for q in request.queries})
    return analysis.run_readings(request, version, now, {str(k): v for k, v in result.kpis.items()},
                                 dict(result.queries))


# --- carrying out the actions ---------------------------------------------------------------------

def _preview_name(agent: str) -> str:
    return naming.label_value(f"{agent}-{PREVIEW}")


def _carry_out(ctx: Context, namespace: str, seen: _Seen, actions: Sequence[Action]) -> bool:
    """Do ``actions`` in order; True when the Agent's children must be reconciled."""
    touched = False
    agent_name = str((seen.agent or {}).get("metadata", {}).get("name") or "")
    key = (namespace, agent_name)
    rollout_name = str(seen.body.get("metadata", {}).get("name") or "")
    for action in actions:
        if isinstance(action, ScaleVersion):
            traffic = traffic_for(ctx.traffic.get(key), rollout_name)
            shadows = (traffic.shadows | {action.version}) if action.shadow else (traffic.shadows - {action.version})
            ctx.traffic[key] = dataclasses.replace(
                traffic, replicas={**traffic.replicas, action.version: action.replicas}, shadows=frozenset(shadows))
            touched = True
        elif isinstance(action, SetWeight | SetMirror):
            touched = _route(ctx, seen, key, action) or touched
        elif isinstance(action, SetPreview):
            _preview(ctx, namespace, seen, action.version)
        elif isinstance(action, Promote):
            _agent_history(ctx, namespace, agent_name, action.rollout, action.version, "Succeeded",
                           stable=action.version)
        elif isinstance(action, MarkAgentRolloutFailed):
            _agent_history(ctx, namespace, agent_name, action.rollout, action.version, action.result)
        elif isinstance(action, ConsumeControl):
            meta = seen.body["metadata"]
            patched = ctx.kube.merge_patch("AgentRollout", namespace, meta["name"],
                                           {"metadata": {"annotations": {action.annotation: None}}})
            if patched:
                seen.body = {**seen.body, "metadata": patched.get("metadata", meta)}
                ctx.freshness.wrote(patched)
        # ScaleDownAfter: see the module docstring (the Agent planner's hand-over scales the old version down).
    return touched


def _route(ctx: Context, seen: _Seen, key: tuple[str, str], action: SetWeight | SetMirror) -> bool:
    if seen.target is None:
        return False
    router = routers.router_for(seen.target.routing)
    if isinstance(action, SetWeight):
        plan = router.desired(seen.target, action.weight, action.mirror_percent, seen.children)
    else:
        plan = router.desired(seen.target, 0, action.percent, seen.children)
    traffic = traffic_for(ctx.traffic.get(key), str(seen.body["metadata"]["name"]))
    mirror = {plan.runtime_mirror.version: plan.runtime_mirror.env()} if plan.runtime_mirror else {}
    ctx.traffic[key] = dataclasses.replace(
        traffic, service_selector=dict(plan.service_selector) if plan.service_selector is not None else
        traffic.service_selector, mirror_env=mirror, mirror_decided=True)
    for obj in plan.apply:
        ctx.freshness.wrote(ctx.kube.apply(obj))
    for patch in plan.patches:
        ref = patch.target
        ctx.kube.json_patch(ref.kind, ref.namespace, ref.name, patch.ops)
    for ref in plan.delete:
        ctx.kube.delete(ref.kind, ref.namespace, ref.name)
    if plan.problem is not None:
        log.warning("AgentRollout %s: router %s: %s", seen.body["metadata"]["name"], plan.router, plan.problem.message)
    return True


def _preview(ctx: Context, namespace: str, seen: _Seen, version: str | None) -> None:
    if seen.agent is None or seen.target is None:
        return
    agent = str(seen.agent["metadata"]["name"])
    if version is None:
        ctx.kube.delete("Service", namespace, _preview_name(agent))
        return
    service = version_service(seen.target, PREVIEW, version)
    service["metadata"]["labels"] = naming.agent_labels(agent, PREVIEW)
    ctx.freshness.wrote(ctx.kube.apply(service))


def _agent_history(ctx: Context, namespace: str, agent: str, rollout_name: str, version: str, result: str, *,
                   stable: str | None = None) -> None:
    """A history entry for ``rollout_name`` (once), and on success the new ``stableVersion``."""
    if not agent:
        return
    live = ctx.kube.get("Agent", namespace, agent)
    if live is None:
        return
    status = live.get("status") or {}
    history = list(status.get("history") or [])
    patch: Obj = {}
    if not any(entry.get("rollout") == rollout_name for entry in history):
        history.append({"version": version, "promotedAt": utcnow(), "rollout": rollout_name, "result": result})
        patch["history"] = history
    if stable is not None and status.get("stableVersion") != stable:
        patch.update({"stableVersion": stable, "canaryVersion": None, "canaryWeight": 0})
    if patch:
        patched = ctx.kube.merge_patch("Agent", namespace, agent, {"status": patch}, subresource="status")
        if patched:
            ctx.freshness.wrote(patched)

