"""The replicas router: pods per version, the Service's scope, and the weight read back from ready pods."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

import pytest

from alm.core import naming
from alm.routers import ReplicasRouter, Target
from alm.routers.base import CANARY, Feature, ObjectRef, RuntimeMirror, version_selector
from alm.routers.replicas import service_selector, shadow_replicas

ROUTER = ReplicasRouter()
ALL = {naming.AGENT_LABEL: "bot"}
ONLY_V1 = version_selector("bot", "v1")
ONLY_V2 = version_selector("bot", "v2")
URL = {"ALM_MIRROR_URL": "http://bot-canary.team.svc:80"}


def target(replicas: int = 4, canary: str | None = "v2") -> Target:
    return Target("bot", "team", "uid-bot", stable="v1", canary=canary, replicas=replicas)


def deployment(version: str, ready: int, *, agent: str = "bot", generation: int = 1, observed: int = 1,
               env: Mapping[str, str] | None = None) -> dict[str, Any]:  # fmt: skip
    """A live Deployment as provisioning writes it, with ``ready`` ready replicas."""
    labels = naming.version_labels(agent, version, "workload")
    container = {"name": "agent", "env": [{"name": k, "value": v} for k, v in (env or {}).items()]}
    return {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": naming.deployment_name(agent, version), "namespace": "team", "labels": labels,
                     "generation": generation},
        "spec": {"template": {"metadata": {"labels": labels}, "spec": {"containers": [container]}}},
        "status": {"readyReplicas": ready, "observedGeneration": observed},
    }  # fmt: skip


def service(selector: Mapping[str, str], name: str = "bot", labels: Mapping[str, str] | None = None) -> dict[str, Any]:
    labels = naming.agent_labels("bot", "service") if labels is None else labels
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": "team", "labels": labels},
            "spec": {"selector": dict(selector), "clusterIP": "10.0.0.7"}}  # fmt: skip


# --- desired -------------------------------------------------------------------------------------


@pytest.mark.parametrize(("replicas", "weight", "pods", "expected", "selector"), [
    (10, 25, (7, 3), 30, ALL),
    (10, 5, (9, 1), 10, ALL),
    (4, 10, (3, 1), 25, ALL),     # never 0 canary pods while the weight is above 0
    (3, 50, (1, 2), 67, ALL),     # half rounds up
    (1, 20, (1, 1), 50, ALL),     # one surge pod
    (4, 90, (1, 4), 80, ALL),     # one surge pod: the stable version keeps serving below 100
    (5, 0, (5, 0), 0, ONLY_V1),   # 0 %: the Service selects the stable pods only
    (5, 100, (0, 5), 100, ONLY_V2),
])  # fmt: skip
def test_desired_weights(
    replicas: int, weight: int, pods: tuple[int, int], expected: int, selector: dict[str, str]
) -> None:
    plan = ROUTER.desired(target(replicas), weight)
    assert plan.replicas == {"v1": pods[0], "v2": pods[1]}
    assert (plan.weight, plan.mirror_percent, plan.service_selector) == (expected, 0, selector)
    assert (plan.apply, plan.patches, plan.delete, plan.runtime_mirror, plan.unsupported) == ((), (), (), None, ())
    assert plan.problem is None


@pytest.mark.parametrize("replicas", range(1, 13))
@pytest.mark.parametrize("weight", range(0, 101, 5))
def test_pods_follow_the_rules_and_read_back_what_the_plan_says(replicas: int, weight: int) -> None:
    plan = ROUTER.desired(target(replicas), weight)
    stable, canary = plan.replicas["v1"], plan.replicas["v2"]
    assert (canary >= 1) == (weight > 0)
    assert (stable >= 1) == (weight < 100)
    assert stable + canary <= replicas + 1
    assert plan.service_selector is not None
    live = [service(plan.service_selector), deployment("v1", stable), deployment("v2", canary)]
    observed = ROUTER.read_back(target(replicas), live)
    assert observed.confirms(plan), (observed, plan)


def test_steady_state_without_a_canary() -> None:
    plan = ROUTER.desired(target(3, canary=None), 0)
    assert (plan.replicas, plan.weight, plan.service_selector) == ({"v1": 3}, 0, ONLY_V1)


def test_an_agent_scaled_to_zero_has_nothing_to_split() -> None:
    plan = ROUTER.desired(target(0), 30)
    assert plan.replicas == {"v1": 0, "v2": 0}
    assert plan.weight is None
    assert [u.feature for u in plan.unsupported] == [Feature.WEIGHT]
    assert ROUTER.desired(target(0), 0).unsupported == ()


@pytest.mark.parametrize(("replicas", "mirror", "shadow_pods"), [(4, 25, 1), (10, 25, 3), (1, 5, 1), (10, 100, 10)])
def test_mirroring_is_the_stable_runtimes_job(replicas: int, mirror: int, shadow_pods: int) -> None:
    plan = ROUTER.desired(target(replicas), 0, mirror)
    assert plan.replicas == {"v1": replicas, "v2": shadow_pods}
    assert (plan.weight, plan.mirror_percent) == (0, mirror)
    assert plan.service_selector == ONLY_V1  # the shadow's pods get no live traffic
    assert plan.runtime_mirror == RuntimeMirror("v1", "http://bot-canary.team.svc:80", mirror)
    (shadow_service,) = plan.apply
    assert shadow_service["metadata"]["name"] == "bot-canary"
    assert shadow_service["spec"]["selector"] == ONLY_V2
    assert shadow_service["metadata"]["ownerReferences"][0]["uid"] == "uid-bot"
    assert [u.feature for u in plan.unsupported] == [Feature.MIRROR]
    assert "ALM_MIRROR_URL" in plan.unsupported[0].reason


def test_a_canary_with_mirroring_keeps_its_weight_pods() -> None:
    plan = ROUTER.desired(target(10), 30, 10)
    assert plan.replicas == {"v1": 7, "v2": 3}
    assert plan.weight == 30 and plan.service_selector == ALL


@pytest.mark.parametrize(("replicas", "percent", "pods"), [(0, 50, 0), (4, 0, 0), (10, 25, 3), (1, 1, 1), (3, 34, 2)])
def test_shadow_replicas(replicas: int, percent: int, pods: int) -> None:
    assert shadow_replicas(replicas, percent) == pods


def test_service_selector_scopes() -> None:
    assert service_selector(target(), 0) == ONLY_V1
    assert service_selector(target(), 1) == ALL
    assert service_selector(target(), 100) == ONLY_V2
    assert service_selector(target(canary=None), 0) == ONLY_V1


# --- read_back -----------------------------------------------------------------------------------


@pytest.mark.parametrize(("live", "weight", "mirror", "ready", "message"), [
    pytest.param([service(ALL), deployment("v1", 3), deployment("v2", 1)], 25, 0, True,
                 "1 of 4 ready pods behind Service bot are the canary's", id="both"),
    pytest.param([service(ONLY_V1), deployment("v1", 3), deployment("v2", 1)], 0, 0, True,
                 "0 of 3", id="canary-outside-the-service"),
    pytest.param([service(ONLY_V2), deployment("v1", 3), deployment("v2", 2)], 100, 0, True,
                 "2 of 2", id="canary-only"),
    pytest.param([service(ALL), deployment("v1", 3)], 0, 0, True, "0 of 3", id="canary-deployment-gone"),
    pytest.param([service(ALL), deployment("v1", 300), deployment("v2", 1)], 1, 0, True, "1 of 301",
                 id="one-pod-is-never-rounded-to-zero"),
    pytest.param([service(ALL), deployment("v0", 2), deployment("v1", 1), deployment("v2", 1)], 25, 0, True,
                 "1 of 4", id="an-old-version-still-selected-counts"),
    pytest.param([service(ALL), deployment("v1", 3), deployment("v2", 1), deployment("v2", 5, agent="other")], 25, 0,
                 True, "1 of 4", id="another-agents-pods-do-not-count"),
    pytest.param([service(ALL), deployment("v1", 3), deployment("v2", 1, generation=2)], 25, 0, False,
                 "not rolled out yet: bot-v2", id="stale-deployment-status"),
    pytest.param([deployment("v1", 3), deployment("v2", 1)], None, None, False, "Service bot not found",
                 id="service-missing"),
    pytest.param([service(ALL), deployment("v1", 0), deployment("v2", 0)], None, 0, False,
                 "no ready pod behind Service bot", id="no-ready-pods"),
    pytest.param([service({}), deployment("v1", 3)], None, 0, False, "no ready pod", id="empty-selector"),
    pytest.param([service(ONLY_V1), deployment("v1", 4, env={**URL, "ALM_MIRROR_PERCENT": "30"}), deployment("v2", 1)],
                 0, 30, True, "0 of 4", id="runtime-mirror"),
    pytest.param([service(ONLY_V1), deployment("v1", 4, env=URL)], 0, 100, True, "0 of 4",
                 id="runtime-mirror-default-percent"),
    pytest.param([service(ONLY_V1), deployment("v1", 4, env={**URL, "ALM_MIRROR_PERCENT": "lots"})], 0, None, True,
                 "0 of 4", id="runtime-mirror-unreadable"),
    pytest.param([service(ALL), deployment("v2", 2)], 100, None, True, "2 of 2", id="stable-deployment-gone"),
])  # fmt: skip
def test_read_back(
    live: list[dict[str, Any]], weight: int | None, mirror: int | None, ready: bool, message: str
) -> None:
    observed = ROUTER.read_back(target(), live)
    assert (observed.weight, observed.mirror_percent, observed.ready) == (weight, mirror, ready)
    assert message in observed.message
    assert observed.router == "replicas"


def test_a_shadow_left_behind_the_service_is_caught() -> None:
    plan = ROUTER.desired(target(4), 0, 25)
    drifted = [service(ALL), deployment("v1", 4), deployment("v2", 1)]  # someone widened the selector back
    observed = ROUTER.read_back(target(4), drifted)
    assert observed.weight == 20
    assert observed.confirms(plan) is False


def test_read_back_does_not_change_its_input() -> None:
    live = [service(ALL), deployment("v1", 3), deployment("v2", 1)]
    before = copy.deepcopy(live)
    ROUTER.read_back(target(), live)
    assert live == before


# --- finalize ------------------------------------------------------------------------------------


def test_finalize_sends_everything_to_stable_and_removes_the_shadow_service() -> None:
    shadow = service(ONLY_V2, name="bot-canary", labels=naming.agent_labels("bot", "traffic"))
    plan = ROUTER.finalize(target(4), [service(ALL), shadow])
    assert plan.replicas == {"v1": 4, "v2": 0}
    assert (plan.weight, plan.mirror_percent, plan.runtime_mirror) == (0, 0, None)
    assert plan.service_selector == ONLY_V1  # the canary's pods may linger while they stop
    assert plan.delete == (ObjectRef("v1", "Service", "team", "bot-canary"),)
    # After an abort the weight reads back at 0 at once, even with canary pods still ready.
    assert ROUTER.read_back(target(4), [service(ONLY_V1), deployment("v1", 4), deployment("v2", 1)]).confirms(plan)


@pytest.mark.parametrize("labels", [{}, {naming.AGENT_LABEL: "other", naming.MANAGED_BY_LABEL: "alm-operator"},
                                    {naming.AGENT_LABEL: "bot"}])  # fmt: skip
def test_finalize_deletes_only_what_alm_made_for_this_agent(labels: dict[str, str]) -> None:
    plan = ROUTER.finalize(target(), [service(ONLY_V2, name="bot-canary", labels=labels)])
    assert plan.delete == ()
    assert ROUTER.finalize(target(), []).delete == ()


def test_finalize_after_a_promotion_and_without_a_canary() -> None:
    promoted = Target("bot", "team", "uid-bot", stable="v2", canary="v1", replicas=3)
    assert ROUTER.finalize(promoted).replicas == {"v2": 3, "v1": 0}
    assert ROUTER.finalize(target(3, canary=None)).replicas == {"v1": 3}
    assert ROUTER.finalize(target(0)).weight is None


def test_unsupported_features_are_documented() -> None:
    assert set(ROUTER.unsupported) == {Feature.MIRROR, Feature.STICKY_SESSIONS}
    assert CANARY == "canary"
