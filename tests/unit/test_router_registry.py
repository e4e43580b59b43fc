"""The router seam: the registry refuses unknown types, the shared values behave as documented."""

from __future__ import annotations

import importlib
import typing

import pytest

from alm import routers
from alm.api import AgentSpec, TrafficRouting, TrafficRoutingType
from alm.routers import base
from alm.routers.base import Feature, ObservedTraffic, RouterPlan, Target

# --- Registry ------------------------------------------------------------------------------------


@pytest.mark.parametrize(("kind", "cls"), [
    ("replicas", routers.ReplicasRouter),
    ("gatewayAPI", routers.GatewayAPIRouter),
    ("nop", routers.NopRouter),
])  # fmt: skip
def test_router_for_each_type(kind: str, cls: type) -> None:
    assert isinstance(routers.router_for(kind), cls)
    assert routers.router_for(kind).type == kind


def test_router_for_takes_the_spec() -> None:
    assert isinstance(routers.router_for(TrafficRouting()), routers.ReplicasRouter)  # the default type
    assert isinstance(routers.router_for(TrafficRouting(type="gatewayAPI")), routers.GatewayAPIRouter)


@pytest.mark.parametrize("kind", ["istio", "", "Replicas", "gatewayapi", "smi"])
def test_an_unknown_type_is_refused_loudly(kind: str) -> None:
    with pytest.raises(routers.UnknownRouterType) as raised:
        routers.router_for(kind)
    assert isinstance(raised.value, ValueError)
    assert str(raised.value) == f"unknown traffic router type {kind!r}: use one of gatewayAPI, nop, replicas"


def test_every_type_the_api_accepts_has_a_router() -> None:
    assert set(typing.get_args(TrafficRoutingType)) <= set(routers.REGISTRY)


def test_the_registry_is_read_only() -> None:
    with pytest.raises(TypeError):
        routers.REGISTRY["x"] = routers.NopRouter()  # type: ignore[index]


@pytest.mark.parametrize("router", list(routers.REGISTRY.values()), ids=list(routers.REGISTRY))
def test_every_router_has_the_protocol(router: routers.TrafficRouter) -> None:
    for method in ("desired", "read_back", "finalize"):
        assert callable(getattr(router, method))
    assert all(isinstance(feature, Feature) and reason for feature, reason in router.unsupported.items())
    assert Feature.STICKY_SESSIONS in router.unsupported  # no router keeps sessions yet: said, not hidden


@pytest.mark.parametrize("module", ["alm.routers", "alm.routers.base", "alm.routers.nop", "alm.routers.replicas",
                                    "alm.routers.gatewayapi"])  # fmt: skip
def test_export_lists_name_what_exists(module: str) -> None:
    mod = importlib.import_module(module)
    assert all(hasattr(mod, name) for name in mod.__all__)
    assert mod.__all__ == sorted(mod.__all__, key=lambda n: (not n.isupper(), n))


# --- Target --------------------------------------------------------------------------------------


def test_target_for_agent_takes_the_rollout_routing_unless_given() -> None:
    spec = AgentSpec.model_validate({
        "version": "v2", "replicas": 3, "exposure": {"service": {"port": 8080}},
        "rollout": {"canary": {"steps": [{"setWeight": 20}]}, "trafficRouting": {"type": "gatewayAPI"}},
    })  # fmt: skip
    target = Target.for_agent("bot", "team", "uid-bot", spec, stable="v1", canary="v2")
    assert (target.routing.type, target.replicas, target.port) == ("gatewayAPI", 3, 8080)
    override = Target.for_agent("bot", "team", "uid-bot", spec, stable="v1", routing=TrafficRouting())
    assert override.routing.type == "replicas"
    plain = Target.for_agent("bot", "team", "uid-bot", AgentSpec(version="v1"), stable="v1")
    assert plain.routing == TrafficRouting()


def test_a_target_refuses_nonsense() -> None:
    with pytest.raises(ValueError, match="both 'v1'"):
        Target("bot", "team", "uid", stable="v1", canary="v1")
    with pytest.raises(ValueError, match="negative"):
        Target("bot", "team", "uid", stable="v1", replicas=-1)


@pytest.mark.parametrize(("canary", "weight", "mirror", "error"), [
    ("v2", 101, 0, "weight must be within 0-100, got 101"),
    ("v2", -1, 0, "weight must be within 0-100, got -1"),
    ("v2", 0, 120, "mirror percent must be within 0-100, got 120"),
    (None, 10, 0, "need a canary version"),
    (None, 0, 5, "need a canary version"),
])  # fmt: skip
@pytest.mark.parametrize("kind", sorted(routers.REGISTRY))
def test_requests_no_router_can_honour_are_bugs(
    kind: str, canary: str | None, weight: int, mirror: int, error: str
) -> None:
    target = Target("bot", "team", "uid", stable="v1", canary=canary)
    with pytest.raises(ValueError, match=error):
        routers.router_for(kind).desired(target, weight, mirror)


# --- Shared helpers ------------------------------------------------------------------------------


@pytest.mark.parametrize(("part", "whole", "percent"), [
    (1, 8, 13), (1, 3, 33), (2, 3, 67), (0, 5, 0), (5, 5, 100), (1, 200, 1), (1, 201, 0), (25, 100, 25),
])  # fmt: skip
def test_round_percent_rounds_half_up(part: int, whole: int, percent: int) -> None:
    assert base.round_percent(part, whole) == percent


def test_round_percent_of_nothing_is_undefined() -> None:
    with pytest.raises(ValueError):
        base.round_percent(0, 0)


def test_service_names_fit_a_service_and_stay_unique() -> None:
    assert base.service_name("bot", base.STABLE) == "bot-stable"
    long_a, long_b = "a" * 60 + "x", "a" * 60 + "y"
    names = {base.service_name(agent, role) for agent in (long_a, long_b) for role in (base.STABLE, base.CANARY)}
    assert len(names) == 4 and all(len(name) <= 63 for name in names)


@pytest.mark.parametrize(("plan", "observed", "confirmed"), [
    (RouterPlan("r", weight=20, mirror_percent=0), ObservedTraffic("r", 20, 0, True), True),
    (RouterPlan("r", weight=20, mirror_percent=0), ObservedTraffic("r", 20, 0, False), False),  # not ready
    (RouterPlan("r", weight=20, mirror_percent=0), ObservedTraffic("r", 25, 0, True), False),
    (RouterPlan("r", weight=0, mirror_percent=10), ObservedTraffic("r", 0, 100, True), False),  # percent dropped
    (RouterPlan("r", weight=0, mirror_percent=None), ObservedTraffic("r", 0, 7, True), True),  # mirror not judged
    (RouterPlan("r", weight=0), ObservedTraffic("r", None, None, True), False),
    (RouterPlan("r", weight=None), ObservedTraffic("r", None, None, True), None),  # nobody can tell
])  # fmt: skip
def test_confirms(plan: RouterPlan, observed: ObservedTraffic, confirmed: bool | None) -> None:
    assert observed.confirms(plan) is confirmed


def test_runtime_mirror_env_names_what_the_runtime_reads() -> None:
    env = base.RuntimeMirror("v1", "http://bot-canary.team.svc:80", 30).env()
    assert env == {"ALM_MIRROR_URL": "http://bot-canary.team.svc:80", "ALM_MIRROR_PERCENT": "30"}
