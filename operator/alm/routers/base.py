"""The TrafficRouter seam: what a router is asked, what it answers, and the names it shares.

A router turns "this share of new requests to the canary, this share mirrored to it" into
Kubernetes objects, and reads back from the live objects what the cluster really routes. It is a
pure describer: it never calls the API server. The shell applies its :class:`RouterPlan` with
server-side apply (field manager ``alm-operator``) and hands it the live objects it lists::

    desired(target, weight, mirror_percent, observed) -> RouterPlan       reconcile + set routes
    read_back(target, observed)                       -> ObservedTraffic  get routes: verify
    finalize(target, observed)                        -> RouterPlan       all to stable, remove ours

(Flagger's reconcile / set routes / get routes / finalize, Argo Rollouts' set weight / set
mirror / verify / remove managed routes.) What a router cannot do is an answer, not an error:
it is listed in :class:`Unsupported` entries of the plan. Arguments no router can honour
(a weight of 130, a canary weight without a canary) raise ``ValueError``: they are bugs.

``observed`` is every live object of the Agent the shell listed by the ``alm.dev/agent``
label (Deployments and Services), plus the HTTPRoute the gatewayAPI router uses.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from alm.api import AgentSpec, ExposureSpec, TrafficRouting
from alm.core import naming
from alm.core.problems import Problem

__all__ = [
    "CANARY",
    "MIRROR_HEADER",
    "MIRROR_PERCENT_ENV",
    "MIRROR_URL_ENV",
    "STABLE",
    "Feature",
    "JsonPatch",
    "Obj",
    "ObjectRef",
    "Observed",
    "ObservedTraffic",
    "RouterPlan",
    "RouterReason",
    "RuntimeMirror",
    "Target",
    "TrafficRouter",
    "UnknownRouterType",
    "Unsupported",
    "find",
    "owned_by_us",
    "round_percent",
    "service_name",
    "service_ref",
    "version_selector",
    "version_service",
]

Obj = dict[str, Any]
Observed = Sequence[Mapping[str, Any]]
"""Live objects as the API server returned them."""

STABLE = "stable"
"""Role of the Service over the stable version: ``<agent>-stable``."""
CANARY = "canary"
"""Role of the Service over the canary (or shadow) version: ``<agent>-canary``."""

MIRROR_URL_ENV = "ALM_MIRROR_URL"
"""Environment of the stable runtime: base URL of the shadow Service (runtime mirroring)."""
MIRROR_PERCENT_ENV = "ALM_MIRROR_PERCENT"
"""Environment of the stable runtime: percentage of tasks mirrored (0-100)."""
MIRROR_HEADER = "X-Alm-Mirror"
"""Marks a mirrored request (value: the version it was mirrored from); never mirrored again."""


class UnknownRouterType(ValueError):
    """No router is registered under this type; the message lists the ones that are."""


class Feature(enum.StrEnum):
    """What a router may be asked to do.

    - weight: send a share of new requests to the canary.
    - mirror: send a copy of a share of requests to the canary, whose answers are dropped.
    - stickySessions: keep a session on the version it started on while weights change.
    """

    WEIGHT = "weight"
    MIRROR = "mirror"
    STICKY_SESSIONS = "stickySessions"


class RouterReason(enum.StrEnum):
    """Reasons of the problems a router reports (for conditions and events)."""

    ROUTE_NOT_FOUND = "HTTPRouteNotFound"
    NO_RULE_FOR_AGENT = "HTTPRouteHasNoRuleForAgent"
    NO_PARENT_REFS = "HTTPRouteWithoutParents"


@dataclasses.dataclass(frozen=True)
class Unsupported:
    """Something asked of a router that it does not do, and what happens instead."""

    feature: Feature
    reason: str


@dataclasses.dataclass(frozen=True)
class ObjectRef:
    api_version: str
    kind: str
    namespace: str
    name: str


@dataclasses.dataclass(frozen=True)
class JsonPatch:
    """An RFC 6902 patch of an object alm does not own (content type application/json-patch+json).

    Its first operations are ``test`` guards holding what the router read: if the object changed
    since, the API server refuses the whole patch (422) and the next pass reads it again.
    """

    target: ObjectRef
    ops: tuple[Obj, ...]


@dataclasses.dataclass(frozen=True)
class RuntimeMirror:
    """Mirroring done by the stable runtime itself (no mesh): the env its Deployment needs."""

    version: str
    """The version whose pods mirror (the stable one)."""
    url: str
    """Base URL of the shadow Service; requests go to the same path there."""
    percent: int

    def env(self) -> dict[str, str]:
        return {MIRROR_URL_ENV: self.url, MIRROR_PERCENT_ENV: str(self.percent)}


@dataclasses.dataclass(frozen=True)
class RouterPlan:
    """What to write so the cluster routes as asked, in this order.

    1. ``apply``: full objects alm owns, server-side applied;
    2. ``patches``: guarded JSON patches of objects others own (an existing HTTPRoute);
    3. ``replicas``: replicas per version (only routers that split by replicas; empty: the
       rollout decides);
    4. ``delete``: objects alm created and no longer needs (a 404 is success).

    ``weight`` and ``mirror_percent`` are what the cluster will route once the plan is applied
    and the pods are ready (the replicas router's weight is the achievable share, not the one
    asked); None means the router cannot tell. Compare them with :meth:`ObservedTraffic.confirms`.
    ``service_selector``: the selector the Agent's own Service ``<agent>`` must have. Provisioning
    writes that Service, so it folds this in (two applies of one object under one field
    manager would remove each other's fields); None: leave it as provisioning wants it.
    ``runtime_mirror``: the env the stable Deployment needs (None: no ``ALM_MIRROR_*`` env).
    ``problem``: why the plan cannot route as asked yet (apply the rest anyway).
    """

    router: str
    apply: tuple[Obj, ...] = ()
    patches: tuple[JsonPatch, ...] = ()
    replicas: Mapping[str, int] = dataclasses.field(default_factory=dict)
    delete: tuple[ObjectRef, ...] = ()
    weight: int | None = None
    mirror_percent: int | None = None
    service_selector: Mapping[str, str] | None = None
    runtime_mirror: RuntimeMirror | None = None
    unsupported: tuple[Unsupported, ...] = ()
    problem: Problem | None = None


@dataclasses.dataclass(frozen=True)
class ObservedTraffic:
    """What the live objects route. ``ready``: they are in place and their numbers can be trusted.

    ``weight`` and ``mirror_percent`` are percentages of new requests; None means unknown
    (the router cannot read it, or the objects disagree: the message says which).
    """

    router: str
    weight: int | None
    mirror_percent: int | None
    ready: bool
    message: str = ""

    def confirms(self, plan: RouterPlan) -> bool | None:
        """True: the cluster routes what ``plan`` asked; False: not (yet); None: nobody can tell."""
        if plan.weight is None:
            return None
        if not self.ready or self.weight != plan.weight:
            return False
        return plan.mirror_percent is None or self.mirror_percent == plan.mirror_percent


@dataclasses.dataclass(frozen=True)
class Target:
    """Whose traffic: the Agent, the version serving (stable) and the one being tried (canary)."""

    agent: str
    namespace: str
    uid: str
    stable: str
    canary: str | None = None
    routing: TrafficRouting = dataclasses.field(default_factory=TrafficRouting)
    exposure: ExposureSpec = dataclasses.field(default_factory=ExposureSpec)
    replicas: int = 1
    """``spec.replicas``: pods of the stable version when it takes all traffic."""

    def __post_init__(self) -> None:
        if self.canary == self.stable:
            raise ValueError(f"the canary and the stable version are both {self.stable!r}")
        if self.replicas < 0:
            raise ValueError(f"replicas must not be negative, got {self.replicas}")

    @classmethod
    def for_agent(
        cls, name: str, namespace: str, uid: str, spec: AgentSpec, *, stable: str, canary: str | None = None,
        routing: TrafficRouting | None = None,
    ) -> Target:  # fmt: skip
        """The target of an Agent; ``routing`` defaults to ``spec.rollout.trafficRouting``."""
        if routing is None:
            routing = spec.rollout.traffic_routing if spec.rollout is not None else TrafficRouting()
        return cls(name, namespace, uid, stable, canary, routing, spec.exposure, spec.replicas)

    @property
    def port(self) -> int:
        return self.exposure.service.port

    def check(self, weight: int, mirror_percent: int) -> None:
        """Raise ValueError for a request no router can honour."""
        for what, value in (("weight", weight), ("mirror percent", mirror_percent)):
            if not 0 <= value <= 100:
                raise ValueError(f"the {what} must be within 0-100, got {value}")
        if self.canary is None and (weight or mirror_percent):
            raise ValueError(f"weight {weight} and mirror {mirror_percent}% need a canary version")


class TrafficRouter(Protocol):
    """Splits and mirrors an Agent's traffic between its stable and canary versions."""

    type: str
    """The ``trafficRouting.type`` it serves."""
    unsupported: Mapping[Feature, str]
    """What it never does, and why (also in docs/traffic.md)."""

    def desired(self, target: Target, weight: int, mirror_percent: int = 0, observed: Observed = ()) -> RouterPlan:
        """Objects routing ``weight`` % of new requests to the canary and mirroring ``mirror_percent`` %."""
        ...

    def read_back(self, target: Target, observed: Observed) -> ObservedTraffic:
        """What the live objects really route."""
        ...

    def finalize(self, target: Target, observed: Observed = ()) -> RouterPlan:
        """Everything to ``target.stable``; remove what the rollout added (``target.canary``'s share)."""
        ...


# --- Shared helpers ------------------------------------------------------------------------------


def round_percent(part: int, whole: int) -> int:
    """``100 * part / whole`` rounded half up, in integers: 1 of 8 -> 13, 1 of 3 -> 33, 2 of 3 -> 67."""
    if whole <= 0:
        raise ValueError(f"a share of {whole} is undefined")
    return (200 * part + whole) // (2 * whole)


def service_name(agent: str, role: str) -> str:
    """``<agent>-stable`` / ``<agent>-canary``, shortened with a hash to fit a Service name (63)."""
    return naming.label_value(f"{agent}-{role}")


def version_selector(agent: str, version: str) -> dict[str, str]:
    """The labels of exactly the pods of one version of the Agent."""
    return {naming.AGENT_LABEL: naming.label_value(agent), naming.VERSION_LABEL: naming.label_value(version)}


def version_service(target: Target, role: str, version: str) -> Obj:
    """Service ``<agent>-<role>`` over the pods of one version, on the Agent's Service port."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": service_name(target.agent, role),
            "namespace": target.namespace,
            "labels": naming.agent_labels(target.agent, "traffic"),
            "ownerReferences": [naming.owner_reference("Agent", target.agent, target.uid)],
        },
        "spec": {
            "type": "ClusterIP",
            "selector": version_selector(target.agent, version),
            "ports": [{"name": "http", "port": target.port, "targetPort": "http", "protocol": "TCP"}],
        },
    }


def service_ref(target: Target, role: str) -> ObjectRef:
    return ObjectRef("v1", "Service", target.namespace, service_name(target.agent, role))


def find(observed: Observed, kind: str, name: str) -> Mapping[str, Any] | None:
    """The live object of ``kind`` called ``name``, if listed."""
    for obj in observed:
        if obj.get("kind") == kind and (obj.get("metadata") or {}).get("name") == name:
            return obj
    return None


def owned_by_us(obj: Mapping[str, Any], agent: str) -> bool:
    """Created by alm for this Agent (our labels): only such objects are ever deleted."""
    labels = (obj.get("metadata") or {}).get("labels") or {}
    return bool(
        labels.get(naming.MANAGED_BY_LABEL) == naming.MANAGED_BY_VALUE
        and labels.get(naming.AGENT_LABEL) == naming.label_value(agent)
    )
