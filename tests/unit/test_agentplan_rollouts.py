"""The Agent planner during rollouts: both versions provisioned, replicas and selector from the rollout."""

from __future__ import annotations

import copy
from typing import Any

from alm.api import AgentSpec
from alm.core import agentstatus, agenttraffic, agenttypes
from alm.core.agentplan import plan_agent
from alm.core.agenttraffic import RolloutTraffic
from alm.core.agenttypes import AgentObservations
from alm.core.rolloutstart import DecisionAction, DecisionReason, spec_hash
from tests.unit.builders import (
    NOW,
    SECRET_B64,
    agent_body,
    as_live,
    available_status,
    fixed_random,
    ready,
    version_body,
)

SOURCES = {"bot-tools": {"crm-key": SECRET_B64}}
ROLLOUT = {"canary": {"steps": [{"setWeight": 50}]}}
V1, V2 = ready(version_body()), ready(version_body("bot-v2"), "bot-v2-config-def")


def _plan(agent: dict[str, Any], children: list[dict[str, Any]], *, rollouts: list[dict[str, Any]] | None = None,
          traffic: RolloutTraffic | None = None) -> agenttypes.AgentPlan:
    version = V2 if agent["spec"]["version"] == "bot-v2" else V1
    stable = V1 if agent["spec"]["version"] == "bot-v2" else None
    return plan_agent(AgentObservations(agent, version, SOURCES, children, None, rollouts or [], stable, traffic),
                      NOW, fixed_random)


def _converged(**spec: Any) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    agent, children = agent_body(rollout=ROLLOUT, **spec), []
    for _ in range(4):
        p = _plan(agent, children)
        live = {agenttypes.child_key(c): c for c in children}
        for obj in p.apply:
            extra = available_status(obj["spec"]["replicas"]) if obj["kind"] == "Deployment" else {}
            live[agenttypes.child_key(obj)] = as_live(obj, **extra)
        for obj in p.delete:
            live.pop(agenttypes.child_key(obj))
        children, agent = list(live.values()), {**agent, "status": p.status}
    return agent, children


def _deployments(p: agenttypes.AgentPlan) -> dict[str, int]:
    return {o["metadata"]["name"]: o["spec"]["replicas"] for o in p.apply if o["kind"] == "Deployment"}


def _to(agent: dict[str, Any], version: str) -> dict[str, Any]:
    agent = copy.deepcopy(agent)
    agent["spec"]["version"] = version
    agent["metadata"]["generation"] = 2
    return agent


def test_a_version_change_with_a_strategy_creates_a_rollout_and_keeps_the_stable_version() -> None:
    agent, children = _converged()
    p = _plan(_to(agent, "bot-v2"), children)
    assert p.rollout is not None and p.rollout.action == DecisionAction.CREATE
    assert p.rollout.body is not None and p.rollout.body["spec"]["targetVersion"] == "bot-v2"
    assert _deployments(p) == {"bot-bot-v2": 0}  # the canary starts with no pods; v1 keeps its own
    assert p.delete == ()
    assert p.status["stableVersion"] == "bot-v1" and p.status["canaryVersion"] == "bot-v2"
    assert p.status["phase"] == "Progressing"
    assert [e.reason for e in p.events if e.reason == DecisionReason.CREATED] == [DecisionReason.CREATED]


def test_without_a_strategy_the_switch_is_immediate_as_before() -> None:
    agent, children = _converged()
    del agent["spec"]["rollout"]
    p = _plan(_to(agent, "bot-v2"), children)
    assert p.rollout is not None and p.rollout.action == DecisionAction.SWITCH
    assert _deployments(p) == {"bot-bot-v2": 2} and p.status["stableVersion"] == "bot-v2"
    assert "canaryVersion" not in p.status


def test_replicas_shadow_selector_and_mirror_come_from_the_rollout() -> None:
    agent, children = _converged()
    traffic = RolloutTraffic(replicas={"bot-v1": 1, "bot-v2": 1}, shadows=frozenset({"bot-v2"}),
                             service_selector={"alm.dev/agent": "bot"},
                             mirror_env={"bot-v1": {"ALM_MIRROR_URL": "http://x", "ALM_MIRROR_PERCENT": "50"}},
                             mirror_decided=True)
    p = _plan(_to(agent, "bot-v2"), children, traffic=traffic)
    assert _deployments(p) == {"bot-bot-v1": 1, "bot-bot-v2": 1}
    env = {o["metadata"]["name"]: {e["name"]: e["value"] for e in o["spec"]["template"]["spec"]["containers"][0]["env"]}
           for o in p.apply if o["kind"] == "Deployment"}
    assert env["bot-bot-v2"]["ALM_SHADOW"] == "true" and "ALM_MIRROR_URL" not in env["bot-bot-v2"]
    assert env["bot-bot-v1"]["ALM_MIRROR_PERCENT"] == "50" and env["bot-bot-v1"]["ALM_SHADOW"] == "false"


def test_after_a_restart_the_live_split_is_kept_until_the_rollout_decides() -> None:
    agent, children = _converged()
    moving = _to(agent, "bot-v2")
    first = _plan(moving, children, traffic=RolloutTraffic(replicas={"bot-v1": 1, "bot-v2": 1},
                                                           service_selector={"alm.dev/version": "bot-v2"}))
    live = {agenttypes.child_key(c): c for c in children}
    for obj in first.apply:
        live[agenttypes.child_key(obj)] = as_live(obj, **(available_status(obj["spec"]["replicas"])
                                                      if obj["kind"] == "Deployment" else {}))
    restarted = _plan({**moving, "status": first.status}, list(live.values()), traffic=None)
    assert restarted.apply == () and restarted.delete == ()  # nothing moves


def test_a_leftover_version_goes_once_the_canary_has_the_pods_the_rollout_asked_for() -> None:
    """A rolled-back version still up when the next canary starts must not outlive the canary's
    handover: it would stay behind the Service and hold the canary's weight below its step."""
    agent, children = _converged()
    (v1,) = [c for c in children if c["kind"] == "Deployment"]
    leftover = copy.deepcopy(v1)
    leftover["metadata"]["name"] = "bot-bot-v9"
    leftover["metadata"]["labels"]["alm.dev/version"] = "bot-v9"
    leftover["spec"]["replicas"] = 1
    moving = _to(agent, "bot-v2")
    traffic = RolloutTraffic(replicas={"bot-v1": 1, "bot-v2": 1}, service_selector={"alm.dev/agent": "bot"})
    first = _plan(moving, [*children, leftover], traffic=traffic)
    assert [o["metadata"]["name"] for o in first.delete if o["kind"] == "Deployment"] == []  # v2 not up yet
    (canary,) = [o for o in first.apply if o["metadata"]["name"] == "bot-bot-v2"]
    live = [*children, leftover, as_live(canary, **available_status(1))]
    second = _plan({**moving, "status": first.status}, live, traffic=traffic)
    assert [o["metadata"]["name"] for o in second.delete if o["kind"] == "Deployment"] == ["bot-bot-v9"]


def test_a_failed_rollout_serves_the_stable_version_and_says_so() -> None:
    agent, children = _converged()
    moving = _to(agent, "bot-v2")
    failed = {"apiVersion": "alm.dev/v1alpha1", "kind": "AgentRollout",
              "metadata": {"name": "bot-bot-v2-x", "creationTimestamp": NOW,
                           "annotations": {"alm.dev/rollout-spec-hash": spec_hash(AgentSpec.model_validate(
                               moving["spec"]))}},
              "spec": {"agentRef": {"name": "bot"}, "targetVersion": "bot-v2", "strategy": ROLLOUT},
              "status": {"phase": "RolledBack", "finishedAt": NOW, "abort": {"reason": "AnalysisFailed", "at": NOW}}}
    canary = as_live({**next(c for c in children if c["kind"] == "Deployment"),
                      "metadata": {**next(c for c in children if c["kind"] == "Deployment")["metadata"],
                                   "name": "bot-bot-v2"}})
    p = _plan(moving, [*children, canary], rollouts=[failed])
    assert p.rollout is not None and p.rollout.reason == DecisionReason.FAILED
    assert [o["metadata"]["name"] for o in p.delete] == ["bot-bot-v2"]
    assert p.status["stableVersion"] == "bot-v1" and p.status["phase"] == "Progressing"  # deleting the canary
    settled = _plan({**moving, "status": p.status}, children, rollouts=[failed])
    assert settled.apply == () and settled.delete == () and settled.status["phase"] == "Degraded"
    rollout_failed = next(c for c in p.status["conditions"] if c["type"] == agentstatus.ROLLOUT_FAILED)
    assert rollout_failed["status"] == "True" and rollout_failed["reason"] == "AnalysisFailed"
    # Reverting spec.version clears it.
    back = _plan({**agent, "status": p.status}, children, rollouts=[failed])
    cleared = next(c for c in back.status["conditions"] if c["type"] == agentstatus.ROLLOUT_FAILED)
    assert cleared["status"] == "False" and back.status["phase"] == "Available"


# --- ScaleDownAfter: the previous version lingers after a promotion, then goes ----------------------

BLUE_GREEN = {"blueGreen": {"scaleDownDelaySeconds": 30}}


def _promoted(strategy: dict[str, Any], finished: str, *, from_version: str | None = "bot-v1") -> dict[str, Any]:
    spec: dict[str, Any] = {"agentRef": {"name": "bot"}, "targetVersion": "bot-v2", "strategy": strategy}
    if from_version is not None:
        spec["fromVersion"] = from_version
    return {"apiVersion": "alm.dev/v1alpha1", "kind": "AgentRollout",
            "metadata": {"name": "bot-bot-v2-x", "creationTimestamp": "2026-11-24T11:50:00Z"},
            "spec": spec, "status": {"phase": "Succeeded", "finishedAt": finished, "weight": 100}}


def _after_promotion() -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """v2 promoted and provisioned alone, v1's Deployment (and its credentials) still live."""
    _, old = _converged()
    agent, children = _converged(version="bot-v2")
    names = {agenttypes.child_key(c) for c in children}
    lingering = [c for c in old if c["kind"] in ("Deployment", "Secret") and agenttypes.child_key(c) not in names]
    assert [c["metadata"]["name"] for c in lingering if c["kind"] == "Deployment"] == ["bot-bot-v1"]
    return agent, [*children, *lingering]


def _selector(p: agenttypes.AgentPlan, children: list[dict[str, Any]]) -> dict[str, str]:
    service = next((o for o in p.apply if agenttypes.child_key(o) == ("Service", "bot")), None)
    service = service or next(c for c in children if agenttypes.child_key(c) == ("Service", "bot"))
    return dict(service["spec"]["selector"])


def test_the_previous_version_is_kept_out_of_the_service_until_the_scale_down_delay_has_passed() -> None:
    agent, children = _after_promotion()
    rollout = _promoted(BLUE_GREEN, "2026-11-24T11:59:40Z")  # 20 s ago: 10 s left
    p = _plan(agent, children, rollouts=[rollout])
    assert p.delete == ()  # v1's Deployment (and the credentials it mounts) stays
    assert _selector(p, children) == {"alm.dev/agent": "bot", "alm.dev/version": "bot-v2"}
    assert not any(o["kind"] == "Deployment" for o in p.apply)  # v1 stays as the rollout left it
    later = _plan(agent, children, rollouts=[_promoted(BLUE_GREEN, "2026-11-24T11:59:30Z")])  # the delay is over
    assert [o["metadata"]["name"] for o in later.delete if o["kind"] == "Deployment"] == ["bot-bot-v1"]
    assert _selector(later, children) == {"alm.dev/agent": "bot"}  # back to every pod of the Agent


def test_a_canary_with_the_replicas_router_keeps_nothing_and_gateway_and_shadow_keep_30_seconds() -> None:
    agent, children = _after_promotion()
    finished = "2026-11-24T11:59:45Z"  # 15 s ago
    canary = _plan(agent, children, rollouts=[_promoted(ROLLOUT, finished)])
    assert [o["metadata"]["name"] for o in canary.delete if o["kind"] == "Deployment"] == ["bot-bot-v1"]
    gateway = {**ROLLOUT, "trafficRouting": {"type": "gatewayAPI"}}
    for strategy in (gateway, {"shadow": {"duration": "1m"}}):
        kept = _plan(agent, children, rollouts=[_promoted(strategy, finished)])
        assert kept.delete == (), strategy


def test_without_a_from_version_every_previous_deployment_is_kept() -> None:
    agent, children = _after_promotion()
    p = _plan(agent, children, rollouts=[_promoted(BLUE_GREEN, "2026-11-24T11:59:50Z", from_version=None)])
    assert p.delete == ()


def test_only_a_succeeded_rollout_to_the_current_version_keeps_anything() -> None:
    agent, children = _after_promotion()
    failed = {**_promoted(BLUE_GREEN, "2026-11-24T11:59:50Z"), "status": {"phase": "RolledBack",
                                                                          "finishedAt": "2026-11-24T11:59:50Z"}}
    other = {**_promoted(BLUE_GREEN, "2026-11-24T11:59:50Z"),
             "spec": {**_promoted(BLUE_GREEN, NOW)["spec"], "targetVersion": "bot-v3"}}
    for rollout in (failed, other):
        p = _plan(agent, children, rollouts=[rollout])
        assert [o["metadata"]["name"] for o in p.delete if o["kind"] == "Deployment"] == ["bot-bot-v1"]


def test_a_promotion_in_flight_keeps_the_previous_version_before_the_rollout_status_says_succeeded() -> None:
    agent, children = _after_promotion()  # the Agent already names bot-v2 stable: Promote came first
    in_flight = {**_promoted(BLUE_GREEN, NOW), "status": {"phase": "Progressing", "currentStep": 3}}
    assert _plan(agent, children, rollouts=[in_flight]).delete == ()
    canary = {**_promoted(ROLLOUT, NOW), "status": {"phase": "Progressing", "currentStep": 1}}
    assert [o["metadata"]["name"] for o in _plan(agent, children, rollouts=[canary]).delete] == ["bot-bot-v1"]


def test_the_version_services_of_a_gateway_routed_agent_outlive_its_rollouts() -> None:
    agent, children = _after_promotion()
    stable_service = {"apiVersion": "v1", "kind": "Service",
                      "metadata": {"name": "bot-stable", "namespace": "team",
                                   "labels": {"app.kubernetes.io/managed-by": "alm-operator", "alm.dev/agent": "bot",
                                              "alm.dev/component": "traffic"}},
                      "spec": {"selector": {"alm.dev/agent": "bot", "alm.dev/version": "bot-v2"}}}
    replicas = _plan(agent, [*children, stable_service])
    assert ("Service", "bot-stable") in [agenttypes.child_key(o) for o in replicas.delete]
    gateway = {**agent, "spec": {**agent["spec"], "rollout": {**ROLLOUT, "trafficRouting": {"type": "gatewayAPI"}}}}
    routed = _plan(gateway, [*children, stable_service])
    assert ("Service", "bot-stable") not in [agenttypes.child_key(o) for o in routed.delete]


def test_after_a_rolled_back_canary_the_next_canary_widens_the_service_selector() -> None:
    # The rollback left the Service on the stable version; the fix's 50 % selects both versions. The live
    # selector "covers" the wider one (it has every key of it): the Service must be applied all the same.
    agent, children = _converged()
    children = copy.deepcopy(children)
    service = next(c for c in children if agenttypes.child_key(c) == ("Service", "bot"))
    service["spec"]["selector"] = {"alm.dev/agent": "bot", "alm.dev/version": "bot-v1"}
    traffic = RolloutTraffic(replicas={"bot-v1": 1, "bot-v2": 1}, service_selector={"alm.dev/agent": "bot"},
                             rollout="bot-bot-v2-1")
    p = _plan(_to(agent, "bot-v2"), children, traffic=traffic)
    (applied,) = [o for o in p.apply if agenttypes.child_key(o) == ("Service", "bot")]
    assert applied["spec"]["selector"] == {"alm.dev/agent": "bot"}
    settled = [c for c in children if agenttypes.child_key(c) != ("Service", "bot")] + [as_live(applied)]
    assert not [o for o in _plan(_to(agent, "bot-v2"), settled, traffic=traffic).apply if o["kind"] == "Service"]


def test_only_the_rollout_that_owns_the_agents_traffic_builds_on_or_drops_its_decisions() -> None:
    old = RolloutTraffic(service_selector={"alm.dev/agent": "bot", "alm.dev/version": "bot-v1"}, rollout="r-v2")
    assert agenttraffic.traffic_for(old, "r-v2") is old
    assert agenttraffic.traffic_for(old, "r-v3") == RolloutTraffic(rollout="r-v3")  # a new rollout starts afresh
    assert agenttraffic.traffic_for(None, "r-v3") == RolloutTraffic(rollout="r-v3")
    new = RolloutTraffic(service_selector={"alm.dev/agent": "bot"}, rollout="r-v3")
    assert agenttraffic.traffic_after_finish(new, "r-v2") is new  # the rolled-back rollout's passes keep the fix's
    assert agenttraffic.traffic_after_finish(new, "r-v3") is None
    assert agenttraffic.traffic_after_finish(RolloutTraffic(), "r-v2") is None
    assert agenttraffic.traffic_after_finish(None, "r-v2") is None
