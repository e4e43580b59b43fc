"""The ``gatewayAPI`` router: weighted ``backendRefs`` and a ``RequestMirror`` filter on an HTTPRoute.

Two Services select one version each, ``<agent>-stable`` and ``<agent>-canary`` (``alm.dev/version``),
and an HTTPRoute sends ``100 - weight`` to the first and ``weight`` to the second; a shadow gets
a ``RequestMirror`` filter to ``<agent>-canary`` with ``percent`` (Standard since Gateway API
v1.3; 100 % is written without ``percent``, which every version understands).

Whose route:

- By default the operator creates and owns HTTPRoute ``<agent>`` (parents from
  ``trafficRouting.gatewayAPI.parentRefs``, else ``exposure.httpRoute.parentRefs``; hostnames
  from ``exposure.httpRoute``) and server-side applies all of it.
- ``gatewayAPI.httpRouteName`` names an existing route that someone else owns. Its
  ``spec.rules`` is ``listType=atomic`` in the Gateway API CRDs: server-side apply cannot own
  one rule's ``backendRefs``, only the whole list (a conflict with the route's owner, or taking
  all rules from it when forced). So the router writes a JSON patch instead, computed from the
  live route: on every rule with a backendRef to ``<agent>``, ``<agent>-stable`` or
  ``<agent>-canary`` it replaces those refs by ours (other backends stay, in place) and adds
  or removes our mirror filter (other filters stay); each rule is guarded by a ``test`` of its
  whole value as read, so a concurrent edit makes the patch fail rather than be overwritten.
  The route's owner still sees those rules differ from its source: see docs/traffic.md for
  Argo CD and Flux settings.

Weights apply per request: sticky sessions (Gateway API session persistence, experimental)
are not used yet.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

from alm.core import naming, weights
from alm.core.drift import covers
from alm.core.problems import Problem
from alm.routers.base import (
    CANARY,
    STABLE,
    Feature,
    JsonPatch,
    Obj,
    ObjectRef,
    Observed,
    ObservedTraffic,
    RouterPlan,
    RouterReason,
    Target,
    find,
    owned_by_us,
    round_percent,
    service_name,
    service_ref,
    version_selector,
    version_service,
)

__all__ = ["API_VERSION", "GatewayAPIRouter", "route_name", "rule_traffic"]

API_VERSION = "gateway.networking.k8s.io/v1"
_STICKY = "weights apply per request; Gateway API session persistence is experimental and not used yet"


def route_name(target: Target) -> str:
    """The HTTPRoute the router writes: the one named by ``httpRouteName``, else ``<agent>``."""
    settings = target.routing.gateway_api
    return settings.http_route_name if settings and settings.http_route_name else target.agent


class GatewayAPIRouter:
    """Weighted backendRefs and RequestMirror on an HTTPRoute, between two per-version Services."""

    type = "gatewayAPI"
    unsupported: Mapping[Feature, str] = {Feature.STICKY_SESSIONS: _STICKY}

    def desired(self, target: Target, weight: int, mirror_percent: int = 0, observed: Observed = ()) -> RouterPlan:
        target.check(weight, mirror_percent)
        plan = self._route(target, weight, mirror_percent, observed)
        return dataclasses.replace(plan, apply=_services(target) + plan.apply, weight=weight,
                                   mirror_percent=mirror_percent)  # fmt: skip

    def finalize(self, target: Target, observed: Observed = ()) -> RouterPlan:
        stable_only = dataclasses.replace(target, canary=None)
        plan = self._route(stable_only, 0, 0, observed)
        canary = find(observed, "Service", service_name(target.agent, CANARY))
        delete = (service_ref(target, CANARY),) if canary is not None and owned_by_us(canary, target.agent) else ()
        # A missing route or rule routes nothing to the canary: nothing to wait for.
        return dataclasses.replace(plan, apply=_services(stable_only) + plan.apply, delete=delete, weight=0,
                                   mirror_percent=0, problem=None)  # fmt: skip

    def _route(self, target: Target, weight: int, mirror_percent: int, observed: Observed) -> RouterPlan:
        name = route_name(target)
        if not _existing(target):
            parents = _parent_refs(target)
            if not parents:
                return RouterPlan(self.type, problem=Problem(RouterReason.NO_PARENT_REFS, _NO_PARENTS, invalid=True))
            return RouterPlan(self.type, apply=(_owned_route(target, parents, weight, mirror_percent),))
        live = find(observed, "HTTPRoute", name)
        if live is None:
            message = (f"HTTPRoute {name} (trafficRouting.gatewayAPI.httpRouteName) does not exist in namespace "
                       f"{target.namespace}: create it or remove httpRouteName to let alm create one")  # fmt: skip
            return RouterPlan(self.type, problem=Problem(RouterReason.ROUTE_NOT_FOUND, message))
        rules = _managed_rules(live, target)
        if not rules:
            message = (f"HTTPRoute {name} has no rule with a backendRef to Service {target.agent}: add one; alm only "
                       "changes the backendRefs of rules that already route to the agent")  # fmt: skip
            return RouterPlan(self.type, problem=Problem(RouterReason.NO_RULE_FOR_AGENT, message))
        ops: list[Obj] = []
        for index, rule in rules:
            ops += _rule_ops(index, rule, target, weight, mirror_percent)
        ref = ObjectRef(API_VERSION, "HTTPRoute", target.namespace, name)
        return RouterPlan(self.type, patches=(JsonPatch(ref, tuple(ops)),) if ops else ())

    def read_back(self, target: Target, observed: Observed) -> ObservedTraffic:
        name = route_name(target)
        route = find(observed, "HTTPRoute", name)
        if route is None:
            return ObservedTraffic(self.type, None, None, False, f"HTTPRoute {name} not found")
        rules = _managed_rules(route, target)
        if not rules:
            return ObservedTraffic(self.type, None, None, False, f"HTTPRoute {name} has no rule for {target.agent}")
        found = {rule_traffic(rule, target) for _, rule in rules}
        if len(found) > 1:
            shown = ", ".join(f"rule {i}: {rule_traffic(rule, target)}" for i, rule in rules)
            return ObservedTraffic(self.type, None, None, False, f"rules of HTTPRoute {name} disagree ({shown})")
        ((weight, mirror),) = found
        faults = _service_faults(target, observed, weight, mirror) + _parent_faults(route)
        if weight is None:
            faults.insert(0, "every backendRef of the rule has weight 0")
        note = "" if (route.get("status") or {}).get("parents") else "; no Gateway has reported on it yet"
        message = "; ".join(faults) if faults else f"HTTPRoute {name}: canary {weight} %, mirror {mirror} %{note}"
        return ObservedTraffic(self.type, weight, mirror, not faults, message)


_NO_PARENTS = (
    "gatewayAPI routing creates an HTTPRoute but no Gateway is named: set "
    "spec.rollout.trafficRouting.gatewayAPI.parentRefs or spec.exposure.httpRoute.parentRefs, or name an existing "
    "route with gatewayAPI.httpRouteName"
)


def _existing(target: Target) -> bool:
    settings = target.routing.gateway_api
    return settings is not None and settings.http_route_name is not None


def _services(target: Target) -> tuple[Obj, ...]:
    services = [version_service(target, STABLE, target.stable)]
    if target.canary is not None:
        services.append(version_service(target, CANARY, target.canary))
    return tuple(services)


def _parent_refs(target: Target) -> list[Obj]:
    settings = target.routing.gateway_api
    parents = list(settings.parent_refs) if settings is not None else []
    if not parents and target.exposure.http_route is not None:
        parents = list(target.exposure.http_route.parent_refs)
    return [parent.to_k8s() for parent in parents]


def _backend_ref(target: Target, role: str, weight: int) -> Obj:
    return {"kind": "Service", "name": service_name(target.agent, role), "port": target.port, "weight": weight}


def _backend_refs(target: Target, weight: int) -> list[Obj]:
    stable, canary = weights.backend_weights(weight)
    refs = [_backend_ref(target, STABLE, stable)]
    if target.canary is not None:
        refs.append(_backend_ref(target, CANARY, canary))
    return refs


def _mirror_filter(target: Target, percent: int) -> Obj:
    mirror: Obj = {"backendRef": {"kind": "Service", "name": service_name(target.agent, CANARY), "port": target.port}}
    if percent < 100:
        mirror["percent"] = percent
    return {"type": "RequestMirror", "requestMirror": mirror}


def _owned_route(target: Target, parents: list[Obj], weight: int, mirror_percent: int) -> Obj:
    rule: Obj = {"backendRefs": _backend_refs(target, weight)}
    if mirror_percent:
        rule["filters"] = [_mirror_filter(target, mirror_percent)]
    spec: Obj = {"parentRefs": parents}
    if target.exposure.http_route is not None and target.exposure.http_route.hostnames:
        spec["hostnames"] = list(target.exposure.http_route.hostnames)
    spec["rules"] = [rule]
    return {
        "apiVersion": API_VERSION,
        "kind": "HTTPRoute",
        "metadata": {
            "name": target.agent,
            "namespace": target.namespace,
            "labels": naming.agent_labels(target.agent, "traffic"),
            "ownerReferences": [naming.owner_reference("Agent", target.agent, target.uid)],
        },
        "spec": spec,
    }


# --- Reading a live route ------------------------------------------------------------------------


def _is_service(ref: Mapping[str, Any], target: Target, names: Sequence[str]) -> bool:
    """``ref`` (a BackendObjectReference) names one of ``names``, a Service in the Agent's namespace."""
    return (
        ref.get("group", "") == ""
        and ref.get("kind", "Service") == "Service"
        and ref.get("namespace", target.namespace) == target.namespace
        and ref.get("name") in names
    )


def _agent_services(target: Target) -> tuple[str, ...]:
    return target.agent, service_name(target.agent, STABLE), service_name(target.agent, CANARY)


def _our_mirror(f: Mapping[str, Any], target: Target) -> bool:
    ref = (f.get("requestMirror") or {}).get("backendRef") or {}
    return f.get("type") == "RequestMirror" and _is_service(ref, target, [service_name(target.agent, CANARY)])


def _managed_rules(route: Mapping[str, Any], target: Target) -> list[tuple[int, Mapping[str, Any]]]:
    """(index, rule) of every rule with a backendRef to the Agent's Services."""
    names = _agent_services(target)
    rules = (route.get("spec") or {}).get("rules") or []
    return [(i, rule) for i, rule in enumerate(rules) if any(_is_service(b, target, names) for b in _refs(rule))]


def _refs(rule: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    return list(rule.get("backendRefs") or [])


def rule_traffic(rule: Mapping[str, Any], target: Target) -> tuple[int | None, int]:
    """(canary weight %, mirror %) a live rule routes: the canary's share of all its backendRefs' weights."""
    refs = _refs(rule)
    canary_service = [service_name(target.agent, CANARY)]
    total = sum(int(ref.get("weight", 1)) for ref in refs)
    canary = sum(int(ref.get("weight", 1)) for ref in refs if _is_service(ref, target, canary_service))
    mirror = 0
    for f in rule.get("filters") or []:
        if _our_mirror(f, target):
            settings = f["requestMirror"]
            fraction = settings.get("fraction")
            if "percent" in settings:
                mirror = int(settings["percent"])
            elif fraction:
                mirror = round_percent(int(fraction["numerator"]), int(fraction.get("denominator", 100)))
            else:
                mirror = 100
    return (round_percent(canary, total) if total else None), mirror


def _rule_ops(index: int, rule: Mapping[str, Any], target: Target, weight: int, mirror: int) -> list[Obj]:
    """JSON patch operations giving rule ``index`` our backendRefs and mirror filter; [] if it has them."""
    names = _agent_services(target)
    refs = list(rule.get("backendRefs") or [])
    ours = [i for i, ref in enumerate(refs) if _is_service(ref, target, names)]
    carried = {"filters": refs[ours[0]]["filters"]} if "filters" in refs[ours[0]] else {}  # per-backend filters
    new_refs = [{**ref, **carried} for ref in _backend_refs(target, weight)]
    refs = [ref for i, ref in enumerate(refs) if i not in ours[1:]]
    refs[ours[0] : ours[0] + 1] = new_refs
    live_filters = list(rule.get("filters") or [])
    filters = [f for f in live_filters if not _our_mirror(f, target)]
    if mirror:
        filters.append(_mirror_filter(target, mirror))
    if covers(rule.get("backendRefs") or [], refs) and covers(live_filters, filters):
        return []
    path = f"/spec/rules/{index}"
    ops: list[Obj] = [{"op": "test", "path": path, "value": rule}, {"op": "replace", "path": f"{path}/backendRefs",
                                                                      "value": refs}]  # fmt: skip
    if filters:
        ops.append({"op": "add", "path": f"{path}/filters", "value": filters})
    elif "filters" in rule:
        ops.append({"op": "remove", "path": f"{path}/filters"})
    return ops


def _service_faults(target: Target, observed: Observed, weight: int | None, mirror: int) -> list[str]:
    """Why the per-version Services would not deliver what the route says (missing, wrong version)."""
    wanted = [(STABLE, target.stable)]
    if target.canary is not None and (weight or mirror):
        wanted.append((CANARY, target.canary))
    faults = []
    for role, version in wanted:
        name = service_name(target.agent, role)
        service = find(observed, "Service", name)
        if service is None:
            faults.append(f"Service {name} not found")
        elif ((service.get("spec") or {}).get("selector") or {}) != version_selector(target.agent, version):
            faults.append(f"Service {name} does not select version {version}")
    if target.canary is None and weight:
        faults.append(f"{weight} % goes to Service {service_name(target.agent, CANARY)} but there is no canary")
    return faults


def _parent_faults(route: Mapping[str, Any]) -> list[str]:
    """Parents that refused the route, or have not processed its current generation yet."""
    generation = int((route.get("metadata") or {}).get("generation") or 0)
    faults = []
    for parent in (route.get("status") or {}).get("parents") or []:
        who = (parent.get("parentRef") or {}).get("name", "?")
        conditions = parent.get("conditions") or []
        for cond in conditions:
            if cond.get("type") in ("Accepted", "ResolvedRefs") and cond.get("status") == "False":
                faults.append(f"{who}: {cond['type']} is False ({cond.get('reason')}: {cond.get('message', '')})")
        if any(int(cond.get("observedGeneration") or generation) < generation for cond in conditions):
            faults.append(f"{who} has not processed generation {generation} yet")
    return faults
