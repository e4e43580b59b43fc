"""The gatewayAPI router: Services, its own HTTPRoute, guarded patches of someone else's, and reading weights back."""

from __future__ import annotations

import copy
from typing import Any

import jsonpatch
import pytest

from alm.api import GatewayAPIRouting, HTTPRouteExposure, ParentRef, TrafficRouting
from alm.api.agent import ExposureSpec
from alm.core import naming
from alm.routers import GatewayAPIRouter, Target
from alm.routers.base import Feature, JsonPatch, ObjectRef, RouterPlan, RouterReason, version_selector
from alm.routers.gatewayapi import route_name

ROUTER = GatewayAPIRouter()
GW = ParentRef(name="gw", namespace="infra")
STABLE = {"kind": "Service", "name": "bot-stable", "port": 80}
CANARY = {"kind": "Service", "name": "bot-canary", "port": 80}
HEADERS = {"type": "RequestHeaderModifier", "requestHeaderModifier": {"set": [{"name": "x-team", "value": "a"}]}}


def mirror(percent: int | None = None) -> dict[str, Any]:
    settings: dict[str, Any] = {"backendRef": dict(CANARY)}
    if percent is not None:
        settings["percent"] = percent
    return {"type": "RequestMirror", "requestMirror": settings}


def target(canary: str | None = "v2", *, parents: list[ParentRef] | None = None, exposure: ExposureSpec | None = None,
           route: str | None = None) -> Target:  # fmt: skip
    settings = GatewayAPIRouting(http_route_name=route, parent_refs=[GW] if parents is None else parents)
    return Target("bot", "team", "uid-bot", stable="v1", canary=canary,
                  routing=TrafficRouting(type="gatewayAPI", gateway_api=settings),
                  exposure=exposure or ExposureSpec(), replicas=3)  # fmt: skip


def existing(*rules: dict[str, Any], status: dict[str, Any] | None = None) -> dict[str, Any]:
    """A user's HTTPRoute ``shop`` as the API server returns it (defaults filled in)."""
    route: dict[str, Any] = {
        "apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
        "metadata": {"name": "shop", "namespace": "team", "generation": 3, "resourceVersion": "77",
                     "labels": {"app": "shop"}, "managedFields": [{"manager": "argocd-controller"}]},
        "spec": {"parentRefs": [{"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": "public"}],
                 "hostnames": ["shop.example.com"], "rules": [_defaulted(rule) for rule in rules]},
    }  # fmt: skip
    if status is not None:
        route["status"] = status
    return route


def _defaulted(rule: dict[str, Any]) -> dict[str, Any]:
    rule = copy.deepcopy(rule)
    rule.setdefault("matches", [{"path": {"type": "PathPrefix", "value": "/"}}])
    for ref in rule.get("backendRefs", []):
        ref.setdefault("group", "")
        ref.setdefault("kind", "Service")
        ref.setdefault("weight", 1)
    return rule


def ref(name: str, weight: int | None = None, **extra: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"kind": "Service", "name": name, "port": 80, **extra}
    if weight is not None:
        out["weight"] = weight
    return out


def services(canary: str | None = "v2") -> list[dict[str, Any]]:
    plan = ROUTER.desired(target(canary), 0)
    return [obj for obj in plan.apply if obj["kind"] == "Service"]


def apply(route: dict[str, Any], plan: RouterPlan) -> dict[str, Any]:
    """The route after the plan's JSON patch, as the API server would apply it (test ops included)."""
    (patch,) = plan.patches
    assert patch.target == ObjectRef("gateway.networking.k8s.io/v1", "HTTPRoute", "team", "shop")
    result: dict[str, Any] = jsonpatch.apply_patch(route, list(patch.ops))
    return result


# --- An HTTPRoute the operator owns --------------------------------------------------------------


def test_desired_creates_services_and_a_weighted_route() -> None:
    plan = ROUTER.desired(target(), 25)
    stable_svc, canary_svc, route = plan.apply
    assert stable_svc["metadata"]["name"] == "bot-stable"
    assert stable_svc["spec"]["selector"] == version_selector("bot", "v1")
    assert canary_svc["metadata"]["name"] == "bot-canary"
    assert canary_svc["spec"]["selector"] == version_selector("bot", "v2")
    for obj in plan.apply:
        assert obj["metadata"]["ownerReferences"] == [naming.owner_reference("Agent", "bot", "uid-bot")]
        assert obj["metadata"]["labels"][naming.MANAGED_BY_LABEL] == "alm-operator"
    assert route["apiVersion"] == "gateway.networking.k8s.io/v1" and route["metadata"]["name"] == "bot"
    assert route["spec"] == {
        "parentRefs": [{"name": "gw", "namespace": "infra"}],
        "rules": [{"backendRefs": [{**STABLE, "weight": 75}, {**CANARY, "weight": 25}]}],
    }
    assert (plan.weight, plan.mirror_percent, plan.patches, plan.replicas, plan.problem) == (25, 0, (), {}, None)
    assert plan.service_selector is None  # the Agent's own Service is left to provisioning


@pytest.mark.parametrize(("percent", "expected"), [(10, mirror(10)), (100, mirror()), (1, mirror(1))])
def test_shadow_mirrors_with_percent(percent: int, expected: dict[str, Any]) -> None:
    route = ROUTER.desired(target(), 0, percent).apply[-1]
    (rule,) = route["spec"]["rules"]
    assert rule == {"backendRefs": [{**STABLE, "weight": 100}, {**CANARY, "weight": 0}], "filters": [expected]}


def test_without_a_canary_only_the_stable_service_serves() -> None:
    plan = ROUTER.desired(target(canary=None), 0)
    assert [obj["metadata"]["name"] for obj in plan.apply] == ["bot-stable", "bot"]
    assert plan.apply[-1]["spec"]["rules"] == [{"backendRefs": [{**STABLE, "weight": 100}]}]


def test_parents_and_hostnames_come_from_routing_then_exposure() -> None:
    exposure = ExposureSpec(http_route=HTTPRouteExposure(parent_refs=[ParentRef(name="edge", section_name="https")],
                                                         hostnames=["bot.example.com"]))  # fmt: skip
    from_exposure = ROUTER.desired(target(parents=[], exposure=exposure), 0).apply[-1]["spec"]
    assert from_exposure["parentRefs"] == [{"name": "edge", "sectionName": "https"}]
    assert from_exposure["hostnames"] == ["bot.example.com"]
    from_routing = ROUTER.desired(target(exposure=exposure), 0).apply[-1]["spec"]
    assert from_routing["parentRefs"] == [{"name": "gw", "namespace": "infra"}]
    assert from_routing["hostnames"] == ["bot.example.com"]


def test_no_gateway_named_is_an_invalid_spec() -> None:
    plan = ROUTER.desired(target(parents=[]), 10)
    assert plan.problem is not None and plan.problem.invalid
    assert plan.problem.reason == RouterReason.NO_PARENT_REFS
    assert "parentRefs" in plan.problem.message
    assert [obj["kind"] for obj in plan.apply] == ["Service", "Service"]  # no route without a parent


def test_the_same_inputs_give_the_same_objects() -> None:
    assert ROUTER.desired(target(), 40, 20) == ROUTER.desired(target(), 40, 20)


# --- An existing HTTPRoute: only our backendRefs and mirror filter -------------------------------


def test_an_existing_rule_is_patched_in_our_fields_only() -> None:
    route = existing({"matches": [{"path": {"type": "PathPrefix", "value": "/api"}}], "backendRefs": [ref("bot")],
                      "filters": [HEADERS], "timeouts": {"request": "30s"}})  # fmt: skip
    plan = ROUTER.desired(target(route="shop"), 20, 10, [route])
    assert plan.problem is None
    assert [obj["kind"] for obj in plan.apply] == ["Service", "Service"]  # the route is not applied, it is patched
    after = apply(route, plan)
    rule = after["spec"]["rules"][0]
    assert rule["backendRefs"] == [{**STABLE, "weight": 80}, {**CANARY, "weight": 20}]
    assert rule["filters"] == [HEADERS, mirror(10)]
    before_rest = {k: v for k, v in route["spec"]["rules"][0].items() if k not in ("backendRefs", "filters")}
    assert {k: v for k, v in rule.items() if k not in ("backendRefs", "filters")} == before_rest
    assert {k: v for k, v in after.items() if k != "spec"} == {k: v for k, v in route.items() if k != "spec"}
    assert after["spec"]["parentRefs"] == route["spec"]["parentRefs"]
    assert after["spec"]["hostnames"] == route["spec"]["hostnames"]
    (patch,) = plan.patches
    assert patch.ops[0] == {"op": "test", "path": "/spec/rules/0", "value": route["spec"]["rules"][0]}
    assert {op["path"] for op in patch.ops} == {"/spec/rules/0", "/spec/rules/0/backendRefs", "/spec/rules/0/filters"}


def test_only_rules_that_route_to_the_agent_are_touched() -> None:
    route = existing({"backendRefs": [ref("cart")]},
                     {"backendRefs": [ref("legacy", 10), ref("bot", 90)]},
                     {"backendRefs": [ref("bot", namespace="other")]},  # another namespace's "bot"
                     {"backendRefs": [{"group": "example.io", "kind": "Bucket", "name": "bot"}]})  # fmt: skip
    after = apply(route, ROUTER.desired(target(route="shop"), 30, 0, [route]))
    assert after["spec"]["rules"][0] == route["spec"]["rules"][0]
    legacy = route["spec"]["rules"][1]["backendRefs"][0]
    assert after["spec"]["rules"][1]["backendRefs"] == [legacy, {**STABLE, "weight": 70}, {**CANARY, "weight": 30}]
    assert after["spec"]["rules"][2:] == route["spec"]["rules"][2:]


def test_every_rule_to_the_agent_gets_the_same_weights() -> None:
    route = existing({"backendRefs": [ref("bot")]}, {"backendRefs": [ref("bot-stable", 100), ref("bot-canary", 0)]})
    after = apply(route, ROUTER.desired(target(route="shop"), 50, 0, [route]))
    assert [rule["backendRefs"] for rule in after["spec"]["rules"]] == [[{**STABLE, "weight": 50},
                                                                        {**CANARY, "weight": 50}]] * 2  # fmt: skip
    assert ROUTER.read_back(target(route="shop"), [after, *services()]).weight == 50


def test_per_backend_filters_are_carried_over() -> None:
    route = existing({"backendRefs": [ref("bot", filters=[HEADERS])]})
    after = apply(route, ROUTER.desired(target(route="shop"), 10, 0, [route]))
    assert [backend["filters"] for backend in after["spec"]["rules"][0]["backendRefs"]] == [[HEADERS], [HEADERS]]


def test_a_route_already_as_desired_is_not_patched() -> None:
    route = existing({"backendRefs": [ref("bot")], "filters": [HEADERS]})
    once = apply(route, ROUTER.desired(target(route="shop"), 20, 10, [route]))
    again = ROUTER.desired(target(route="shop"), 20, 10, [_defaulted_route(once)])
    assert again.patches == () and again.problem is None


def _defaulted_route(route: dict[str, Any]) -> dict[str, Any]:
    route = copy.deepcopy(route)
    route["spec"]["rules"] = [_defaulted(rule) for rule in route["spec"]["rules"]]
    return route


def test_a_concurrent_edit_makes_the_patch_fail_instead_of_being_overwritten() -> None:
    route = existing({"backendRefs": [ref("bot")]})
    plan = ROUTER.desired(target(route="shop"), 20, 0, [route])
    edited = copy.deepcopy(route)
    edited["spec"]["rules"][0]["timeouts"] = {"request": "5s"}  # someone else, meanwhile
    with pytest.raises(jsonpatch.JsonPatchTestFailed):
        apply(edited, plan)


@pytest.mark.parametrize(("live_filters", "mirror_percent", "expected"), [
    ([HEADERS, mirror(10)], 0, [HEADERS]),
    ([mirror(10)], 0, None),  # the filters key goes with our filter
    ([mirror(10), HEADERS], 40, [HEADERS, mirror(40)]),
    ([], 100, [mirror()]),
])  # fmt: skip
def test_our_mirror_filter_is_added_changed_or_removed(
    live_filters: list[dict[str, Any]], mirror_percent: int, expected: list[dict[str, Any]] | None
) -> None:
    rule: dict[str, Any] = {"backendRefs": [ref("bot-stable", 100), ref("bot-canary", 0)]}
    if live_filters:
        rule["filters"] = live_filters
    route = existing(rule)
    after = apply(route, ROUTER.desired(target(route="shop"), 0, mirror_percent, [route]))
    assert after["spec"]["rules"][0].get("filters") == expected


def test_someone_elses_mirror_filter_is_left_alone() -> None:
    theirs = {"type": "RequestMirror", "requestMirror": {"backendRef": {"name": "audit", "port": 80}}}
    route = existing({"backendRefs": [ref("bot")], "filters": [theirs]})
    after = apply(route, ROUTER.desired(target(route="shop"), 0, 0, [route]))
    assert after["spec"]["rules"][0]["filters"] == [theirs]


def test_a_missing_route_is_a_problem_to_wait_on() -> None:
    plan = ROUTER.desired(target(route="shop"), 20, 0, [])
    assert plan.problem is not None and not plan.problem.invalid
    assert plan.problem.reason == RouterReason.ROUTE_NOT_FOUND
    assert "HTTPRoute shop" in plan.problem.message and plan.patches == ()
    assert route_name(target(route="shop")) == "shop" and route_name(target()) == "bot"


def test_a_route_without_a_rule_for_the_agent_is_a_problem() -> None:
    route = existing({"backendRefs": [ref("cart")]})
    plan = ROUTER.desired(target(route="shop"), 20, 0, [route])
    assert plan.problem is not None and plan.problem.reason == RouterReason.NO_RULE_FOR_AGENT
    assert "backendRef to Service bot" in plan.problem.message
    assert plan.patches == ()


# --- read_back -----------------------------------------------------------------------------------


def owned(*backends: dict[str, Any], filters: list[dict[str, Any]] | None = None, **route: Any) -> dict[str, Any]:
    rule: dict[str, Any] = {"backendRefs": list(backends)}
    if filters:
        rule["filters"] = filters
    live = existing(rule, **route)
    live["metadata"]["name"] = "bot"
    return live


ACCEPTED = {"parents": [{"parentRef": {"name": "gw"}, "controllerName": "example.io/gw", "conditions": [
    {"type": "Accepted", "status": "True", "observedGeneration": 3},
    {"type": "ResolvedRefs", "status": "True", "observedGeneration": 3}]}]}  # fmt: skip
REFUSED = {"parents": [{"parentRef": {"name": "gw"}, "conditions": [
    {"type": "Accepted", "status": "False", "reason": "NotAllowedByListeners", "message": "no listener"},
]}]}  # fmt: skip
BEHIND = {"parents": [{"parentRef": {"name": "gw"}, "conditions": [
    {"type": "Accepted", "status": "True", "observedGeneration": 2}]}]}  # fmt: skip
EIGHTH = {"type": "RequestMirror",
          "requestMirror": {"backendRef": CANARY, "fraction": {"numerator": 1, "denominator": 8}}}  # fmt: skip
WRONG_CANARY = {**services()[1], "spec": {"selector": version_selector("bot", "v1")}}


@pytest.mark.parametrize(("live", "weight", "mirror", "ready", "message"), [
    pytest.param([owned(ref("bot-stable", 75), ref("bot-canary", 25), status=ACCEPTED), *services()], 25, 0, True,
                 "canary 25 %, mirror 0 %", id="weights"),
    pytest.param([owned(ref("bot-stable", 75), ref("bot-canary", 25)), *services()], 25, 0, True,
                 "no Gateway has reported on it yet", id="no-status-yet"),
    pytest.param([owned(ref("bot-stable"), ref("bot-canary")), *services()], 50, 0, True, "", id="default-weight-1"),
    pytest.param([owned(ref("legacy", 100), ref("bot-stable", 75), ref("bot-canary", 25)), *services()], 13, 0, True,
                 "", id="a-foreign-backend-takes-its-share"),
    pytest.param([owned(ref("bot-stable", 100), ref("bot-canary", 0), filters=[mirror(30)]), *services()], 0, 30, True,
                 "", id="mirror-percent"),
    pytest.param([owned(ref("bot-stable", 100), filters=[mirror()]), *services()], 0, 100, True, "",
                 id="mirror-without-percent-is-all"),
    pytest.param([owned(ref("bot-stable", 100), filters=[EIGHTH]), *services()], 0, 13, True, "", id="mirror-fraction"),
    pytest.param([*services()], None, None, False, "HTTPRoute bot not found", id="route-missing"),
    pytest.param([owned(ref("cart", 1)), *services()], None, None, False, "no rule for bot", id="rule-missing"),
    pytest.param([owned(ref("bot-stable", 0), ref("bot-canary", 0)), *services()], None, 0, False,
                 "every backendRef of the rule has weight 0", id="all-zero"),
    pytest.param([owned(ref("bot-stable", 90), ref("bot-canary", 10)), services()[0]], 10, 0, False,
                 "Service bot-canary not found", id="canary-service-missing"),
    pytest.param([owned(ref("bot-stable", 90), ref("bot-canary", 10)), services()[0], WRONG_CANARY], 10, 0, False,
                 "Service bot-canary does not select version v2", id="canary-service-drifted"),
    pytest.param([owned(ref("bot-stable", 100), ref("bot-canary", 0)), services()[0]], 0, 0, True, "",
                 id="no-canary-service-needed-at-0"),
    pytest.param([owned(ref("bot-stable", 90), ref("bot-canary", 10), status=REFUSED), *services()], 10, 0, False,
                 "gw: Accepted is False (NotAllowedByListeners: no listener)", id="refused-by-gateway"),
    pytest.param([owned(ref("bot-stable", 90), ref("bot-canary", 10), status=BEHIND), *services()], 10, 0, False,
                 "gw has not processed generation 3 yet", id="gateway-behind"),
])  # fmt: skip
def test_read_back(
    live: list[dict[str, Any]], weight: int | None, mirror: int | None, ready: bool, message: str
) -> None:
    observed = ROUTER.read_back(target(), live)
    assert (observed.weight, observed.mirror_percent, observed.ready) == (weight, mirror, ready), observed.message
    assert message in observed.message


def test_rules_that_disagree_are_not_averaged() -> None:
    route = existing({"backendRefs": [ref("bot-stable", 90), ref("bot-canary", 10)]},
                     {"backendRefs": [ref("bot-stable", 100), ref("bot-canary", 0)]})  # fmt: skip
    observed = ROUTER.read_back(target(route="shop"), [route, *services()])
    assert (observed.weight, observed.ready) == (None, False)
    assert "disagree" in observed.message and "rule 0: (10, 0)" in observed.message


def test_a_weight_on_a_route_without_a_canary_is_a_fault() -> None:
    live = [owned(ref("bot-stable", 90), ref("bot-canary", 10)), *services(canary=None)]
    observed = ROUTER.read_back(target(canary=None), live)
    assert not observed.ready and "there is no canary" in observed.message


def test_desired_then_live_then_read_back_confirms() -> None:
    for weight, percent in [(0, 0), (5, 0), (50, 0), (100, 0), (0, 25), (0, 100), (30, 10)]:
        plan = ROUTER.desired(target(), weight, percent)
        live = [_defaulted_route(obj) if obj["kind"] == "HTTPRoute" else obj for obj in plan.apply]
        assert ROUTER.read_back(target(), live).confirms(plan), (weight, percent)


def test_a_drifted_weight_is_seen() -> None:
    plan = ROUTER.desired(target(), 20)
    live = [owned(ref("bot-stable", 50), ref("bot-canary", 50)), *services()]  # edited by hand
    observed = ROUTER.read_back(target(), live)
    assert observed.weight == 50 and observed.confirms(plan) is False


def test_a_crd_that_drops_percent_is_seen() -> None:
    """A CRD older than Gateway API v1.2 prunes ``percent``: the route then mirrors everything."""
    plan = ROUTER.desired(target(), 0, 10)
    live = [owned(ref("bot-stable", 100), ref("bot-canary", 0), filters=[mirror()]), *services()]
    observed = ROUTER.read_back(target(), live)
    assert observed.mirror_percent == 100 and observed.confirms(plan) is False


# --- finalize ------------------------------------------------------------------------------------


def test_finalize_an_owned_route_after_an_abort() -> None:
    canary_svc = services()[1]
    plan = ROUTER.finalize(target(), [canary_svc])
    assert [obj["metadata"]["name"] for obj in plan.apply] == ["bot-stable", "bot"]
    assert plan.apply[1]["spec"]["rules"] == [{"backendRefs": [{**STABLE, "weight": 100}]}]
    assert plan.delete == (ObjectRef("v1", "Service", "team", "bot-canary"),)
    assert (plan.weight, plan.mirror_percent, plan.problem) == (0, 0, None)
    live = [_defaulted_route(plan.apply[1]), plan.apply[0]]
    assert ROUTER.read_back(target(canary=None), live).confirms(plan)


def test_finalize_after_a_promotion_points_stable_at_the_new_version() -> None:
    promoted = Target("bot", "team", "uid-bot", stable="v2", canary="v1", routing=target().routing)
    plan = ROUTER.finalize(promoted)
    assert plan.apply[0]["spec"]["selector"] == version_selector("bot", "v2")
    assert plan.delete == ()  # nothing listed, nothing deleted


def test_finalize_an_existing_route_removes_our_canary_and_mirror() -> None:
    route = existing({"backendRefs": [ref("legacy", 10), ref("bot-stable", 60), ref("bot-canary", 30)],
                      "filters": [HEADERS, mirror(5)]})  # fmt: skip
    after = apply(route, ROUTER.finalize(target(route="shop"), [route]))
    assert after["spec"]["rules"][0]["backendRefs"] == [route["spec"]["rules"][0]["backendRefs"][0],
                                                        {**STABLE, "weight": 100}]  # fmt: skip
    assert after["spec"]["rules"][0]["filters"] == [HEADERS]


@pytest.mark.parametrize("live", [[], [existing({"backendRefs": [ref("cart")]})]], ids=["no-route", "no-rule"])
def test_finalize_does_not_wait_on_a_route_that_routes_nothing_to_the_canary(live: list[dict[str, Any]]) -> None:
    plan = ROUTER.finalize(target(route="shop"), live)
    assert plan.problem is None and plan.patches == ()


def test_finalize_keeps_a_foreign_canary_service() -> None:
    foreign = {**services()[1], "metadata": {"name": "bot-canary", "labels": {}}}
    assert ROUTER.finalize(target(), [foreign]).delete == ()


def test_only_sticky_sessions_are_unsupported() -> None:
    assert set(ROUTER.unsupported) == {Feature.STICKY_SESSIONS}
    assert ROUTER.desired(target(), 10, 10).unsupported == ()
    assert isinstance(JsonPatch(ObjectRef("v1", "X", "n", "x"), ()), JsonPatch)
