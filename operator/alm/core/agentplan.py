"""The Agent planner: from the Agent, its version, its Secrets and its live children
to the objects to apply, the children to delete, the status to show and the events
to post. Pure: the handler gathers the observations, :mod:`alm.kube.shell` applies
the plan.

A plan that has nothing to do is empty and its status equals the current one, so
a resync writes nothing. When the input is wrong or not there yet the plan changes
no child (the running version keeps serving) and says in a condition what to fix.

The planner's parts: the observations and the plan (:mod:`alm.core.agenttypes`), resolving a
version into inputs (:mod:`alm.core.agentinputs`), the Agent side of a rollout
(:mod:`alm.core.agentrollout`, :mod:`alm.core.agenttraffic`), which stale children may go
(:mod:`alm.core.agentchildren`) and the status (:mod:`alm.core.agentstatus`). This module puts
them together, and stands down for a retired Agent.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

from alm.core import conditions, naming, provisioning
from alm.core.agentchildren import (
    KEPT_COMPONENTS,
    component,
    deletable,
    gateway_routed,
    handover,
    keep_previous,
    retained_version,
    selector_moved,
)
from alm.core.agentinputs import resolve
from alm.core.agentrollout import RolloutVersions, decide, rollout_inputs, rollout_mode
from alm.core.agentstatus import agent_status, problem_events, rollout_failed, rollout_status
from alm.core.agenttypes import AgentObservations, AgentPlan, child_key
from alm.core.conditions import condition
from alm.core.drift import covers
from alm.core.events import EventIntent
from alm.core.reasons import Cond, Reason
from alm.core.rolloutstart import DecisionAction

__all__ = ["plan_agent"]

Obj = dict[str, Any]


def plan_agent(obs: AgentObservations, now: str, generate: Callable[[int], str]) -> AgentPlan:
    """Decide everything for one Agent. ``generate(n)`` yields fresh random strings."""
    if obs.retirement is not None or (obs.body.get("status") or {}).get("phase") == "Retired":
        return _stand_down(obs, now)
    resolved = resolve(obs, generate)
    decision = decide(obs, resolved)
    mode = rollout_mode(decision)
    rollout: RolloutVersions | None = None
    if mode != "switch" and resolved.spec is not None:
        rollout, resolved = rollout_inputs(obs, resolved, resolved.spec, decision, mode, generate)
    apply: list[Obj] = []
    delete: list[Mapping[str, Any]] = []
    events: list[EventIntent] = []
    keep = retained_version(obs, resolved, now) if mode == "switch" else None
    if keep is not None and resolved.inputs is not None:
        # The old version lingers: the Service selects the promoted version's pods only.
        pods = {naming.AGENT_LABEL: naming.label_value(resolved.inputs.name),
                naming.VERSION_LABEL: naming.label_value(resolved.inputs.version)}
        resolved = dataclasses.replace(resolved, inputs=dataclasses.replace(
            resolved.inputs, service_selector=tuple(sorted(pods.items()))))
    if resolved.inputs is not None:
        live = {child_key(child): child for child in obs.children}
        desired = provisioning.desired_children(resolved.inputs)
        if rollout is not None and rollout.stable is not None:
            desired += [obj for obj in provisioning.desired_children(rollout.stable)
                        if obj["kind"] in ("Secret", "Deployment") and child_key(obj) not in map(child_key, desired)]
        created: list[str] = []
        updated: list[str] = []
        for obj in desired:
            have = live.get(child_key(obj))
            if have is None or not covers(have, obj) or selector_moved(have, obj):
                apply.append(obj)
                (created if have is None else updated).append(f"{obj['kind']} {obj['metadata']['name']}")
        wanted = {child_key(obj) for obj in desired}
        stale = {key: child for key, child in live.items() if key not in wanted and deletable(child)}
        if rollout is not None and rollout.stable is not None:
            stale = {key: child for key, child in stale.items() if component(child) not in KEPT_COMPONENTS}
        if keep is not None:
            stale = keep_previous(stale, keep, resolved.inputs.name)
        if gateway_routed(resolved.spec):  # its HTTPRoute sends traffic to the version Services: they stay
            stale = {key: child for key, child in stale.items() if component(child) != "traffic"}
        deleted: list[str] = []
        for key, child in sorted(handover(stale, resolved.inputs, obs.children).items()):
            delete.append(child)
            deleted.append(f"{key[0]} {key[1]}")
        # One event per verb and pass, not one per child: Events are writes too.
        for reason, names in ((Reason.CREATED, created), (Reason.UPDATED, updated), (Reason.DELETED, deleted)):
            if names:
                events.append(EventIntent(reason, f"{reason} " + ", ".join(names)))
    status = agent_status(obs, resolved, now, pending_changes=bool(apply or delete))
    if rollout is not None:
        status = rollout_status(obs, status, rollout, now)
    status["conditions"] = rollout_failed(obs, status["conditions"], decision, now)
    events += problem_events(obs.body, resolved.problem)
    if decision is not None and decision.action in (DecisionAction.CREATE, DecisionAction.ADOPT):
        events.append(EventIntent(decision.reason, decision.message))
    return AgentPlan(tuple(apply), tuple(delete), status, tuple(events), decision)


def _stand_down(obs: AgentObservations, now: str) -> AgentPlan:
    """A retiring or retired Agent is the retirement controller's: never provisioned again.

    While a retirement runs, nothing is touched. Once retired, a spec change is only
    acknowledged (``observedGeneration``) with a condition and a warning saying it is ignored.
    """
    previous: dict[str, Any] = dict(obs.body.get("status") or {})
    if previous.get("phase") != "Retired":
        return AgentPlan(status=previous)
    generation = obs.body.get("metadata", {}).get("generation")
    status = {**previous, "observedGeneration": generation}
    events: tuple[EventIntent, ...] = ()
    if not conditions.find(previous.get("conditions"), Cond.RETIRED):
        retired = condition(Cond.RETIRED, True, Reason.RETIRED, "The Agent is retired; it is never provisioned again.")
        status["conditions"] = [*previous.get("conditions", []), *conditions.merge_conditions(None, [retired], now=now)]
    if previous.get("observedGeneration") not in (None, generation):
        events = (EventIntent(Reason.SPEC_IGNORED, "The Agent is retired: spec changes are ignored. "
                              "Create a new Agent to run this agent again.", warning=True),)
    return AgentPlan(status=status, events=events)
