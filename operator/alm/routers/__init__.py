"""Traffic routers: how an Agent's requests are split between its stable and canary versions.

Each router is one module satisfying :class:`~alm.routers.base.TrafficRouter` and one entry in
:data:`REGISTRY`; :func:`router_for` picks one by ``trafficRouting.type`` and refuses a type it
does not know (never a silent default). Routers are pure describers: they return plans for the
I/O layer to apply and read the live objects they are given; they never import kopf, the
Kubernetes client or ``alm.kube``.

- ``replicas`` (default): the canary's share of ready pods behind one Service.
- ``gatewayAPI``: weighted backendRefs and RequestMirror on an HTTPRoute.
- ``nop``: traffic managed elsewhere; weights unknown.
"""

from __future__ import annotations

import types
from collections.abc import Mapping

from alm.api import TrafficRouting
from alm.routers.base import (
    Feature,
    JsonPatch,
    ObjectRef,
    Observed,
    ObservedTraffic,
    RouterPlan,
    RouterReason,
    RuntimeMirror,
    Target,
    TrafficRouter,
    UnknownRouterType,
    Unsupported,
)
from alm.routers.gatewayapi import GatewayAPIRouter
from alm.routers.nop import NopRouter
from alm.routers.replicas import ReplicasRouter

__all__ = [
    "REGISTRY",
    "Feature",
    "GatewayAPIRouter",
    "JsonPatch",
    "NopRouter",
    "ObjectRef",
    "Observed",
    "ObservedTraffic",
    "ReplicasRouter",
    "RouterPlan",
    "RouterReason",
    "RuntimeMirror",
    "Target",
    "TrafficRouter",
    "UnknownRouterType",
    "Unsupported",
    "router_for",
]

REGISTRY: Mapping[str, TrafficRouter] = types.MappingProxyType({
    router.type: router for router in (ReplicasRouter(), GatewayAPIRouter(), NopRouter())
})  # fmt: skip
"""Every router by its ``trafficRouting.type``; routers hold no state, so one instance serves all."""


def router_for(routing: TrafficRouting | str) -> TrafficRouter:
    """The router for ``trafficRouting`` (or its type); :class:`UnknownRouterType` for any other type."""
    kind = routing if isinstance(routing, str) else routing.type
    try:
        return REGISTRY[kind]
    except KeyError:
        known = ", ".join(sorted(REGISTRY))
        raise UnknownRouterType(f"unknown traffic router type {kind!r}: use one of {known}") from None
