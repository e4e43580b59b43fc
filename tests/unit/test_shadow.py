"""Shadow: mirrored traffic, absolute and relative limits against stable, then the switch."""

from __future__ import annotations

from typing import Any

import pytest

from alm.core import rollout, shadow
from alm.core.rollouttypes import Promote, ScaleVersion, SetMirror, SetWeight
from tests.unit.rolloutworld import STABLE, TARGET, World, at, drive, spec

RELATIVE = {"maxSuccessRateDrop": 0.02, "maxLatencyIncreaseRatio": 0.2, "maxCostIncreaseRatio": 0.1}


def shadowing(routing: str = "gatewayAPI", **settings: Any) -> dict[str, Any]:
    body = {"duration": "1m", "mirrorPercent": 50, "analysis": {"interval": "20s"}, "relative": RELATIVE}
    return spec({"shadow": {**body, **settings}}, routing=routing)


@pytest.mark.parametrize(("percent", "total", "pods"), [(100, 4, 4), (50, 4, 2), (30, 4, 2), (10, 4, 1), (0, 4, 1),
                                                      (50, 3, 2), (50, 0, 0)])
def test_shadow_pods_match_the_mirrored_share(percent: int, total: int, pods: int) -> None:
    assert shadow.shadow_replicas(percent, total) == pods


def test_the_shadow_starts_in_shadow_mode_without_live_traffic() -> None:
    plan = rollout.plan(shadowing(), None, World(routing="gatewayAPI").observe(), at(0))
    assert plan.actions == (ScaleVersion(TARGET, 2, shadow=True),)
    assert plan.status["weight"] == 0


@pytest.mark.parametrize("routing", ["gatewayAPI", "replicas"])
def test_a_good_shadow_is_promoted(routing: str) -> None:
    world = World(routing=routing)
    run = drive(shadowing(routing), world)
    assert run.phase == "Succeeded" and run.status is not None
    mirrors = [a for a in run.actions if isinstance(a, SetMirror)]
    assert mirrors == [SetMirror(STABLE, TARGET, 50), SetMirror(STABLE, TARGET, 0)]
    assert [(a.weight, a.mirror_percent) for a in run.actions if isinstance(a, SetWeight)] == [(100, 0)], (
        "no live traffic before the switch, and no mirror after it")
    assert [a for a in run.actions if isinstance(a, Promote)] == [Promote(TARGET, STABLE, "bot-rollout")]
    assert TARGET not in world.shadows and world.scaled[TARGET] == 4
    measured = run.status["analysisRuns"][0]["measurements"]
    assert {m["kpi"] for m in measured} == {"successRate", "successRateDrop", "latencyIncreaseRatio",
                                            "costIncreaseRatio"}
    requests = world.measured
    assert requests and all(r.baseline == STABLE and r.version == TARGET for r in requests)


def test_the_analysis_starts_only_once_the_mirror_is_in_place() -> None:
    world = World(routing="gatewayAPI")
    world.scaled[TARGET] = 2
    world.shadows.add(TARGET)
    status = {"phase": "Progressing", "currentStep": 1, "weight": 0, "message": "", "startedAt": at(0),
              "stepStartedAt": at(5), "approvals": [], "analysisRuns": []}
    plan = rollout.plan(shadowing(), status, world.observe(), at(5))
    assert plan.actions == (SetMirror(STABLE, TARGET, 50),) and plan.status["analysisRuns"] == []
    world.mirror = 50
    plan = rollout.plan(shadowing(), plan.status, world.observe(), at(10))
    assert plan.status["analysisRuns"] == [{"startedAt": at(10), "verdict": "Running", "measurements": []}]
    assert plan.requeue_after == 20.0


@pytest.mark.parametrize(("kpi", "bad", "limit"), [
    ("successRate", 0.955, "successRateDrop"),  # 2.5 points below stable's 0.98
    ("latencySeconds", 1.5, "latencyIncreaseRatio"),  # 25 % slower than 1.2
    ("costPerTaskUSD", 0.0115, "costIncreaseRatio"),  # 15 % dearer
])
def test_a_shadow_worse_than_stable_by_more_than_allowed_is_rolled_back(kpi: str, bad: float, limit: str) -> None:
    world = World(routing="gatewayAPI", agent_kpis=None)
    world.kpis[TARGET][kpi] = bad
    run = drive(shadowing(analysis={"interval": "20s", "failureLimit": 0}), world)
    assert run.phase == "RolledBack" and run.status is not None
    assert (run.status["abort"]["kpi"], run.status["abort"]["threshold"]) == (limit, RELATIVE[_camel(limit)])
    assert world.mirror == 0 and world.scaled[TARGET] == 0
    assert run.status["finishedAt"], "the mirror read back 0 %: done"


def _camel(name: str) -> str:
    return {"successRateDrop": "maxSuccessRateDrop", "latencyIncreaseRatio": "maxLatencyIncreaseRatio",
            "costIncreaseRatio": "maxCostIncreaseRatio"}[name]


def test_within_the_relative_limits_even_if_a_bit_worse() -> None:
    world = World(routing="gatewayAPI")
    world.kpis[TARGET].update(successRate=0.965, latencySeconds=1.4, costPerTaskUSD=0.0109)
    run = drive(shadowing(), world)
    assert run.phase == "Succeeded"


def test_absolute_limits_apply_to_the_shadow_too() -> None:
    world = World(routing="gatewayAPI", agent_kpis={"minAlignmentScore": 0.95})
    run = drive(shadowing(analysis={"interval": "20s", "failureLimit": 0}, relative=None), world)
    assert run.phase == "RolledBack" and run.status is not None and run.status["abort"]["kpi"] == "alignmentScore"


def test_a_stable_without_data_makes_the_comparison_inconclusive() -> None:
    world = World(routing="gatewayAPI", agent_kpis=None)
    world.kpis[STABLE] = {}
    run = drive(shadowing(), world)
    assert run.phase == "Paused" and run.status is not None and "(stable)" in run.status["message"]


def test_a_mirror_that_does_not_go_off_keeps_the_rollback_unfinished() -> None:
    world = World(routing="gatewayAPI")
    world.kpis[TARGET]["successRate"] = 0.5
    body = shadowing(analysis={"interval": "20s", "failureLimit": 0})
    run = drive(body, world)
    index, aborted = next((i, p) for i, p in enumerate(run.plans) if p.status["phase"] == "RolledBack")
    assert "finishedAt" not in aborted.status and SetMirror(STABLE, TARGET, 0) in aborted.actions
    world.mirror = 50  # the router did not take it
    stuck = rollout.plan(body, aborted.status, world.observe(), at(run.times[index] + 1))
    assert "finishedAt" not in stuck.status and SetMirror(STABLE, TARGET, 0) in stuck.actions
    assert stuck.requeue_after == 1.0


def test_promote_ends_the_mirroring_early() -> None:
    world = World(routing="gatewayAPI")
    run = drive(shadowing(duration="1h"), world, max_passes=4)
    assert run.phase == "Progressing" and run.status is not None and run.status["currentStep"] == 1
    world.annotations["alm.dev/promote"] = ""
    done = drive(shadowing(duration="1h"), world, status=run.status, start=run.now + 1)
    assert done.phase == "Succeeded" and done.status is not None
    assert done.status["finishedAt"] < at(600)
