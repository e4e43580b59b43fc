"""The AgentRollout controller: one pass per rollout, from the pure planner to the cluster.

::

    observe (indexes) -> measurements_due -> MetricProvider.measure -> analysis.run_readings
        -> rollout.plan -> actions, in order -> status once -> events, audit -> requeue timer

Who writes what, and how: :mod:`alm.handlers.rolloutacting`. What a pass sees:
:mod:`alm.handlers.rolloutobserving`; what it measures: :mod:`alm.handlers.rolloutmeasuring`.
This module holds the indexes, the triggers, the pass itself and its timers.

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
from collections.abc import Mapping
from typing import Any

import kopf

from alm.core import rollout
from alm.core.agenttraffic import traffic_after_finish
from alm.core.rolloutpass import POLL
from alm.core.rolloutstart import Decision, DecisionAction, is_finished, retained
from alm.core.timestamps import since
from alm.handlers import auditing, posting, wiring
from alm.handlers.context import Context, utcnow
from alm.handlers.registry import REGISTRY
from alm.handlers.rolloutacting import carry_out, finalize_route
from alm.handlers.rolloutmeasuring import measure
from alm.handlers.rolloutobserving import observe, see
from alm.kube import errors, resources, shell

__all__ = ["MIN_REQUEUE", "after_agent_pass", "reconcile_rollout", "start"]

log = logging.getLogger(__name__)

GROUP, VERSION = "alm.dev", "v1alpha1"
MIN_REQUEUE = 0.2  # seconds: a plan asking to look again "now" is not a busy loop
SCALE_DOWN_SLACK = 0.5  # seconds after the scale-down deadline: the Agent's pass then sees it passed


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

async def _rollout_pass(ctx: Context, namespace: str, name: str) -> shell.Outcome | None:
    indexed = wiring._first(ctx.indexes.get("rollout_index", {}), (namespace, name))
    if indexed is None or indexed.get("metadata", {}).get("deletionTimestamp"):
        _cancel_timer(ctx, (namespace, name))
        return None
    body = dict(ctx.freshness.view(indexed))
    seen = await asyncio.to_thread(see, ctx, namespace, body)
    obs = observe(ctx, namespace, seen)
    now = utcnow()
    status = body.get("status") or {}
    if seen.spec is not None and seen.agent_spec is not None:
        due = rollout.measurements_due(seen.spec, status, obs, now)
        if due:
            agent = str((seen.agent or {}).get("metadata", {}).get("name") or "")
            readings = await measure(ctx, namespace, agent, seen.agent_spec, due, now)
            obs = dataclasses.replace(obs, readings=readings)
    result = rollout.plan(seen.spec if seen.spec is not None else body.get("spec") or {}, status, obs, now)
    agent_name = str(((body.get("spec") or {}).get("agentRef") or {}).get("name") or "")
    touched = await asyncio.to_thread(carry_out, ctx, namespace, seen, result.actions)
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
        await asyncio.to_thread(finalize_route, ctx, namespace, seen)
    if result.requeue_after is not None and not finished:
        _schedule(ctx, (namespace, name), result.requeue_after)
    elif scale_down is not None:
        _schedule(ctx, (namespace, name), scale_down)  # the next pass reconciles the Agent: the old version goes
    else:
        _cancel_timer(ctx, (namespace, name))
    return outcome


def _scale_down_in(body: Mapping[str, Any], now: str) -> float | None:
    """Seconds until the previous version of a promotion may go (``ScaleDownAfter``); None: nothing kept."""
    target = str((body.get("spec") or {}).get("targetVersion") or "")
    keep = retained([body], target, now)
    return None if keep is None else since(now, keep.until) + SCALE_DOWN_SLACK
