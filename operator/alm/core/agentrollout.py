"""The Agent side of a rollout: which versions run while an AgentRollout is under way, and how they are shaped.

:func:`decide` asks :func:`~alm.core.rolloutstart.needs_rollout` what spec.version needs, and
:func:`rollout_mode` says what that means for the children (spec.version alone, the stable
version alone, or both). :func:`rollout_inputs` resolves the stable version next to the target and
shapes both with the rollout's decisions (:class:`~alm.core.agenttraffic.RolloutTraffic`), else the
live values, so a restart never moves traffic. Kept apart from the rest of the plan
(:mod:`alm.core.agentplan`) so what rollouts change in the Agent's children is read in one place. Pure.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from alm.api import AgentSpec
from alm.core import naming, provisioning
from alm.core.agentinputs import Resolved, resolve_version
from alm.core.agenttraffic import RolloutTraffic
from alm.core.agenttypes import AgentObservations, child_key
from alm.core.rolloutstart import Decision, DecisionAction, DecisionReason, needs_rollout

__all__ = ["RolloutVersions", "decide", "rollout_inputs", "rollout_mode"]


@dataclasses.dataclass(frozen=True)
class RolloutVersions:
    """Two versions live: the stable one (serving) and the target (rolled out), or the stable only."""

    stable_version: str
    target: str | None  # None: the last rollout of spec.version failed; the stable version alone
    stable: provisioning.AgentInputs | None  # the stable version's inputs, when the target's are the main ones
    rollout: Mapping[str, Any] | None  # the AgentRollout concerned


def decide(obs: AgentObservations, resolved: Resolved) -> Decision | None:
    if resolved.spec is None:
        return None
    meta = obs.body.get("metadata", {})
    return needs_rollout(resolved.spec, obs.body.get("status") or {}, obs.rollouts, agent=str(meta.get("name")),
                         namespace=str(meta.get("namespace", "")), uid=str(meta.get("uid", "")),
                         generation=meta.get("generation"))


def rollout_mode(decision: Decision | None) -> str:
    """switch: provision spec.version alone (as before rollouts); stable: the stable version alone
    (the last rollout of spec.version failed); both: the stable version and the target."""
    if decision is None or decision.action == DecisionAction.SWITCH or decision.reason == DecisionReason.STABLE:
        return "switch"
    return "stable" if decision.reason == DecisionReason.FAILED else "both"


def _live(children: Sequence[Mapping[str, Any]], kind: str, name: str) -> Mapping[str, Any] | None:
    return next((c for c in children if child_key(c) == (kind, name)), None)


def _shape(obs: AgentObservations, inputs: provisioning.AgentInputs, default: int, *,
           service: bool) -> provisioning.AgentInputs:
    """``inputs`` with the rollout's decisions for its version (see :class:`RolloutTraffic`), else the live values."""
    traffic = obs.traffic or RolloutTraffic()
    live = _live(obs.children, "Deployment", naming.deployment_name(inputs.name, inputs.version))
    live_pod = ((live or {}).get("spec") or {}).get("template", {}).get("spec") or {}
    live_env = {e.get("name"): str(e.get("value", "")) for c in live_pod.get("containers") or ()
                for e in c.get("env") or ()}
    replicas = traffic.replicas.get(inputs.version)
    if replicas is None:
        replicas = int((live or {}).get("spec", {}).get("replicas", default)) if live is not None else default
    shadow = inputs.version in traffic.shadows if inputs.version in traffic.replicas else (
        live_env.get("ALM_SHADOW") == "true")
    if traffic.mirror_decided:
        env = dict(traffic.mirror_env.get(inputs.version) or {})
    else:
        env = {k: v for k, v in live_env.items() if str(k).startswith("ALM_MIRROR_")}
    selector: Mapping[str, str] | None = None
    if service:
        live_service = _live(obs.children, "Service", inputs.name)
        selector = traffic.service_selector or ((live_service or {}).get("spec") or {}).get("selector") or None
    return dataclasses.replace(inputs, deployment_replicas=replicas, shadow=shadow,
                               extra_env=tuple(sorted((str(k), v) for k, v in env.items())),
                               service_selector=tuple(sorted(selector.items())) if selector else None)


def rollout_inputs(obs: AgentObservations, resolved: Resolved, spec: AgentSpec, decision: Decision | None,
                    mode: str, generate: Callable[[int], str]) -> tuple[RolloutVersions | None, Resolved]:
    """The inputs of both live versions during a rollout (the target's, if it resolves, are the main ones)."""
    stable_name = str((obs.body.get("status") or {}).get("stableVersion") or "")
    found = [r for r in obs.rollouts if r.get("metadata", {}).get("name") == (decision.rollout if decision else None)]
    rollout = found[0] if found else None
    stable_body = obs.stable if obs.stable is not None else (obs.version if stable_name == spec.version else None)
    stable = resolve_version(obs, spec, stable_name, stable_body, generate)
    if stable.inputs is None:
        return None, resolved  # the stable version cannot be provisioned: as without rollouts, say why
    stable_inputs = _shape(obs, stable.inputs, spec.replicas, service=mode == "stable")
    if mode == "stable":
        return RolloutVersions(stable_name, None, None, rollout), Resolved(stable_inputs, None, spec)
    if resolved.inputs is None:  # the target is not ready yet: the stable version alone, the problem reported
        shaped = _shape(obs, stable.inputs, spec.replicas, service=True)
        return RolloutVersions(stable_name, spec.version, None, rollout), Resolved(shaped, resolved.problem, spec)
    target = _shape(obs, resolved.inputs, 0, service=True)
    return RolloutVersions(stable_name, spec.version, stable_inputs, rollout), Resolved(target, None, spec)
