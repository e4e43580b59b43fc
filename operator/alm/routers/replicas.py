"""The ``replicas`` router (the default, no mesh): the weight is the canary's share of ready pods.

The Agent's Service ``<agent>`` sends each new connection to one of the ready pods it selects.
This router sets how many pods each version runs and which versions the Service selects
(``alm.core.weights``, shared with the rollout planner, has the arithmetic and its worked
examples): at 0 % it selects the stable version only, at 100 % the canary only, in between both
with ``canary_replicas`` / ``stable_replicas`` pods (rounded half up, never 0 canary pods while
the weight is above 0, one surge pod when there are too few). It reads the weight back from
the ready replicas of the Deployments the live Service really selects.

Provisioning writes the Service; the plan says the selector it must have
(``RouterPlan.service_selector``).

Mirroring: a Service cannot copy a request. The plan asks the stable runtime to mirror by
itself instead (:class:`~alm.routers.base.RuntimeMirror`: ``ALM_MIRROR_URL`` and
``ALM_MIRROR_PERCENT`` in the stable Deployment, see ``alm.runtime.mirror``) to the Service
``<agent>-canary``, which this router creates. A pure shadow (weight 0) stays out of the Service
``<agent>``, which then selects the stable version only.

Sessions: kube-proxy picks a pod per connection, so a client keeping its connection open stays
on one version, but nothing keeps a session on its version across connections: sticky
sessions are not supported by this router.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from alm.core import naming, weights
from alm.routers.base import (
    CANARY,
    MIRROR_PERCENT_ENV,
    MIRROR_URL_ENV,
    Feature,
    Observed,
    ObservedTraffic,
    RouterPlan,
    RuntimeMirror,
    Target,
    Unsupported,
    find,
    owned_by_us,
    service_name,
    service_ref,
    version_selector,
    version_service,
)

__all__ = ["ReplicasRouter", "service_selector", "shadow_replicas"]

_MIRROR = (
    "a Service cannot copy requests: the stable runtime mirrors them itself (runtimeMirror: ALM_MIRROR_URL and "
    "ALM_MIRROR_PERCENT on the stable Deployment), which needs the alm runtime or an SDK that honours them"
)
_NO_REPLICAS = "the Agent has 0 replicas: there is no traffic to split"
_STICKY = "kube-proxy balances per connection; nothing keeps a session on its version across connections"


def shadow_replicas(replicas: int, mirror_percent: int) -> int:
    """Pods a shadow needs for ``mirror_percent`` % of the stable's load: that share of ``replicas``, rounded
    up, at least 1 (10 pods at 25 % -> 3; 1 pod at 5 % -> 1; 0 pods -> 0)."""
    if replicas == 0 or mirror_percent == 0:
        return 0
    return max(1, -(-replicas * mirror_percent // weights.FULL))


def service_selector(target: Target, weight: int) -> dict[str, str]:
    """The selector of Service ``<agent>`` at ``weight``: the stable pods, the canary pods, or both."""
    scope = weights.service_scope(weight)
    if scope == "both":
        return {naming.AGENT_LABEL: naming.label_value(target.agent)}
    version = target.canary if scope == "canary" and target.canary is not None else target.stable
    return version_selector(target.agent, version)


class ReplicasRouter:
    """One Service over both versions; the weight is the canary's share of ready replicas."""

    type = "replicas"
    unsupported: Mapping[Feature, str] = {Feature.MIRROR: _MIRROR, Feature.STICKY_SESSIONS: _STICKY}

    def desired(self, target: Target, weight: int, mirror_percent: int = 0, observed: Observed = ()) -> RouterPlan:
        target.check(weight, mirror_percent)
        total = target.replicas
        stable = weights.stable_replicas(weight, total)
        canary = max(weights.canary_replicas(weight, total), shadow_replicas(total, mirror_percent))
        replicas = {target.stable: stable}
        unsupported: list[Unsupported] = []
        expected: int | None = weights.expected_weight(weight, "replicas", canary, stable)
        if target.canary is not None:
            replicas[target.canary] = canary
        if total == 0:
            expected = None
            if weight:
                unsupported.append(Unsupported(Feature.WEIGHT, _NO_REPLICAS))
        selector = service_selector(target, weight)
        plan = RouterPlan(self.type, replicas=replicas, weight=expected, mirror_percent=mirror_percent,
                          service_selector=selector, unsupported=tuple(unsupported))  # fmt: skip
        if not mirror_percent or target.canary is None:
            return plan
        url = f"http://{service_name(target.agent, CANARY)}.{target.namespace}.svc:{target.port}"
        return dataclasses.replace(
            plan,
            apply=(version_service(target, CANARY, target.canary),),
            runtime_mirror=RuntimeMirror(target.stable, url, mirror_percent),
            unsupported=(*plan.unsupported, Unsupported(Feature.MIRROR, _MIRROR)),
        )

    def read_back(self, target: Target, observed: Observed) -> ObservedTraffic:
        service = find(observed, "Service", target.agent)
        if service is None:
            return ObservedTraffic(self.type, None, None, False, f"Service {target.agent} not found")
        selector = (service.get("spec") or {}).get("selector") or {}
        ready: dict[str, int] = {}
        stale: list[str] = []
        for deployment in observed:
            if deployment.get("kind") == "Deployment" and _selects(selector, deployment):
                name = deployment["metadata"]["name"]
                status = deployment.get("status") or {}
                ready[name] = int(status.get("readyReplicas") or 0)
                if int(status.get("observedGeneration") or 0) < int(deployment["metadata"].get("generation") or 0):
                    stale.append(name)
        canary_name = naming.deployment_name(target.agent, target.canary) if target.canary else None
        canary = ready.get(canary_name, 0) if canary_name else 0
        total = sum(ready.values())
        mirror = _mirror_percent(find(observed, "Deployment", naming.deployment_name(target.agent, target.stable)))
        if total == 0:
            return ObservedTraffic(self.type, None, mirror, False, f"no ready pod behind Service {target.agent}")
        weight = weights.actual_weight(canary, total - canary)
        message = f"{canary} of {total} ready pods behind Service {target.agent} are the canary's"
        if stale:
            message += f"; not rolled out yet: {', '.join(sorted(stale))}"
        return ObservedTraffic(self.type, weight, mirror, not stale, message)

    def finalize(self, target: Target, observed: Observed = ()) -> RouterPlan:
        replicas = {target.stable: target.replicas}
        if target.canary is not None:
            replicas[target.canary] = 0
        shadow = find(observed, "Service", service_name(target.agent, CANARY))
        delete = (service_ref(target, CANARY),) if shadow is not None and owned_by_us(shadow, target.agent) else ()
        weight = 0 if target.replicas else None
        selector = version_selector(target.agent, target.stable)  # the old version's pods may linger: keep them out
        return RouterPlan(self.type, replicas=replicas, delete=delete, weight=weight, mirror_percent=0,
                          service_selector=selector)  # fmt: skip


def _selects(selector: Mapping[str, str], deployment: Mapping[str, Any]) -> bool:
    """Does a Service with ``selector`` select the pods of ``deployment``? (An empty selector selects none.)"""
    labels = ((deployment.get("spec") or {}).get("template") or {}).get("metadata", {}).get("labels") or {}
    return bool(selector) and all(labels.get(key) == value for key, value in selector.items())


def _mirror_percent(deployment: Mapping[str, Any] | None) -> int | None:
    """``ALM_MIRROR_PERCENT`` of the pod template (0 without ``ALM_MIRROR_URL``); None if unreadable."""
    if deployment is None:
        return None
    pod = ((deployment.get("spec") or {}).get("template") or {}).get("spec") or {}
    for container in pod.get("containers") or []:
        env = {e.get("name"): e.get("value") for e in container.get("env") or []}
        if env.get(MIRROR_URL_ENV):
            try:
                return int(env.get(MIRROR_PERCENT_ENV) or 100)
            except ValueError:
                return None
    return 0
