"""What an AgentRollout pass sees: the rollout, its Agent, the Agent's children and the router's read-back.

:func:`see` gathers the live objects from the operator's indexes (fresher copies of what this
process wrote itself first) into a :class:`Seen`, which the actions keep using; :func:`observe`
turns it into the planner's :class:`~alm.core.rollouttypes.RolloutObservations` (replicas and
readiness per version, shadows, the router's weight and mirror, the blue-green preview, an earlier
rollout that blocks this one). Reading is kept apart from measuring
(:mod:`alm.handlers.rolloutmeasuring`) and acting (:mod:`alm.handlers.rolloutacting`) so what the
planner is shown can be checked in one module.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import pydantic

from alm import routers
from alm.api import AgentRolloutSpec, AgentSpec
from alm.core import naming
from alm.core.rolloutcontrols import from_annotations
from alm.core.rolloutstart import is_finished
from alm.core.rollouttypes import RolloutObservations
from alm.handlers import wiring
from alm.handlers.context import Context

__all__ = ["PREVIEW", "Seen", "observe", "preview_name", "see"]

PREVIEW = "preview"

Obj = dict[str, Any]


@dataclasses.dataclass
class Seen:
    """What the pass observed, kept for carrying out the actions."""

    body: Obj
    agent: Obj | None
    agent_spec: AgentSpec | None
    spec: AgentRolloutSpec | None
    children: list[Mapping[str, Any]]  # the Agent's Deployments and Services, plus its HTTPRoute
    target: routers.Target | None


def see(ctx: Context, namespace: str, body: Obj) -> Seen:
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
    return Seen(body, agent, agent_spec, spec, children, target)


def _deployment(seen: Seen, version: str) -> Mapping[str, Any] | None:
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


def observe(ctx: Context, namespace: str, seen: Seen) -> RolloutObservations:
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
                    and c["metadata"]["name"] == preview_name(agent_name)), None)
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


def preview_name(agent: str) -> str:
    return naming.label_value(f"{agent}-{PREVIEW}")
