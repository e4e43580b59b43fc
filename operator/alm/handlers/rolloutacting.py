"""What an AgentRollout pass does: the plan's actions carried out, and the HTTPRoute finalized after promotion.

Who writes what (see also ``agenttraffic.RolloutTraffic``):

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

:func:`carry_out` does a pass's actions in order and says whether the Agent must be reconciled;
:func:`finalize_route` is the gatewayAPI clean-up once a promotion's grace is over. The writes are
kept apart from the reading (:mod:`alm.handlers.rolloutobserving`) and from the pass, its triggers
and timers (:mod:`alm.handlers.rollouts`).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from typing import Any

from alm import routers
from alm.core import naming
from alm.core.agenttraffic import traffic_for
from alm.core.rollouttypes import (
    Action,
    ConsumeControl,
    MarkAgentRolloutFailed,
    Promote,
    ScaleVersion,
    SetMirror,
    SetPreview,
    SetWeight,
)
from alm.handlers.context import Context, utcnow
from alm.handlers.rolloutobserving import PREVIEW, Seen, preview_name
from alm.routers.base import CANARY, service_name, version_service

__all__ = ["carry_out", "finalize_route"]

log = logging.getLogger(__name__)

Obj = dict[str, Any]


def finalize_route(ctx: Context, namespace: str, seen: Seen) -> None:
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


def carry_out(ctx: Context, namespace: str, seen: Seen, actions: Sequence[Action]) -> bool:
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


def _route(ctx: Context, seen: Seen, key: tuple[str, str], action: SetWeight | SetMirror) -> bool:
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


def _preview(ctx: Context, namespace: str, seen: Seen, version: str | None) -> None:
    if seen.agent is None or seen.target is None:
        return
    agent = str(seen.agent["metadata"]["name"])
    if version is None:
        ctx.kube.delete("Service", namespace, preview_name(agent))
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
