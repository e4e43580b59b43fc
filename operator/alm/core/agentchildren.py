"""Which of an Agent's children stay and which may go: the hand-over from one version to the next.

The Agent planner (:mod:`alm.core.agentplan`) applies the desired children; what is live and no
longer desired is stale, and this module decides what of it may be deleted now: only what alm made,
never the old version's Deployment (and the Secret it mounts) before the new one serves, never what
a running rollout, a gatewayAPI route or a promotion's scale-down delay still uses. Pure.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from alm.api import AgentSpec
from alm.core import naming, provisioning
from alm.core.agentinputs import Resolved
from alm.core.agenttypes import AgentObservations, Key
from alm.core.rolloutstart import Retained, retained
from alm.core.workload import observe_workload

__all__ = [
    "KEPT_COMPONENTS",
    "component",
    "deletable",
    "gateway_routed",
    "handover",
    "keep_previous",
    "retained_version",
    "selector_moved",
]

KEPT_COMPONENTS = ("traffic", "preview")  # a router's or blue-green's Services: the rollout's, kept while it runs

Obj = dict[str, Any]


def selector_moved(live: Mapping[str, Any], desired: Obj) -> bool:
    """A Service whose selector is not exactly the desired one (``covers`` alone misses a dropped key).

    After a rolled-back canary the Service ``<agent>`` selects ``{agent, version: stable}``; the next
    canary's 50 % wants ``{agent}``, which the live selector "covers": without this the Service would
    keep selecting the stable version only and the new canary would never get past 0 %."""
    if desired.get("kind") != "Service":
        return False
    want = (desired.get("spec") or {}).get("selector")
    return want is not None and dict((live.get("spec") or {}).get("selector") or {}) != dict(want)


def component(child: Mapping[str, Any]) -> str:
    return str((child.get("metadata", {}).get("labels") or {}).get(naming.COMPONENT_LABEL) or "")


def handover(
    stale: dict[Key, Mapping[str, Any]], inputs: provisioning.AgentInputs, children: Sequence[Mapping[str, Any]]
) -> dict[Key, Mapping[str, Any]]:
    """The stale children that may go now.

    The previous version's Deployment (and the credentials Secret it mounts) keeps
    serving until the new version's Deployment is available: the agent's Service
    selects both, so a version switch hands traffic over without a gap. During a
    rollout "available" means the pods the rollout asked for (a 50 % canary of two
    replicas has one): waiting for ``spec.replicas`` there would keep a rolled-back
    version's pods behind the Service for good, and the next canary's weight with them.
    """
    current = observe_workload(children, naming.deployment_name(inputs.name, inputs.version))
    ready = inputs.pods == 0 or (
        current.available and not current.rolling_out and current.ready >= inputs.pods
    )
    if ready:
        return stale
    kept_secrets = {
        volume.get("secret", {}).get("secretName")
        for key, child in stale.items() if key[0] == "Deployment"
        for volume in child.get("spec", {}).get("template", {}).get("spec", {}).get("volumes") or []
    }
    return {
        key: child for key, child in stale.items()
        if key[0] != "Deployment" and not (key[0] == "Secret" and key[1] in kept_secrets)
    }


def gateway_routed(spec: AgentSpec | None) -> bool:
    """Rollouts of the Agent route through an HTTPRoute (its ``<agent>-stable`` Service outlives them)."""
    return spec is not None and spec.rollout is not None and spec.rollout.traffic_routing.type == "gatewayAPI"


def retained_version(obs: AgentObservations, resolved: Resolved, now: str) -> Retained | None:
    """The previous version a promotion keeps until its scale-down delay has passed (``ScaleDownAfter``)."""
    if resolved.spec is None:
        return None
    return retained(obs.rollouts, resolved.spec.version, now)


def keep_previous(stale: dict[Key, Mapping[str, Any]], keep: Retained, agent: str) -> dict[Key, Mapping[str, Any]]:
    """``stale`` without what the promotion keeps until ``keep.until``: the previous version's
    Deployment as the rollout left it (every stale Deployment when the rollout names no fromVersion),
    the credentials Secret it mounts, and the router's Services still in use."""
    kept = {key for key in stale if key[0] == "Deployment" and (
        keep.version is None or key[1] == naming.deployment_name(agent, keep.version))}
    secrets = {
        volume.get("secret", {}).get("secretName")
        for key in kept
        for volume in stale[key].get("spec", {}).get("template", {}).get("spec", {}).get("volumes") or []
    }
    return {key: child for key, child in stale.items() if key not in kept
            and not (key[0] == "Secret" and key[1] in secrets) and component(child) not in KEPT_COMPONENTS}


def deletable(child: Mapping[str, Any]) -> bool:
    """Only objects alm created (our managed-by label) are ever deleted."""
    labels = child.get("metadata", {}).get("labels") or {}
    return bool(labels.get(naming.MANAGED_BY_LABEL) == naming.MANAGED_BY_VALUE)
