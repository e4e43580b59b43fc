"""Blue-green: preview without traffic, pre-promotion analysis, auto or manual promotion, the switch."""

from __future__ import annotations

from typing import Any

import pytest

from alm.core import rollout
from alm.core.rollouttypes import Promote, ScaleDownAfter, ScaleVersion, SetPreview, SetWeight
from tests.unit.rolloutworld import STABLE, TARGET, World, at, drive, spec


def bluegreen(routing: str = "gatewayAPI", **settings: Any) -> dict[str, Any]:
    return spec({"blueGreen": settings}, routing=routing)


def status_at(stage: int, *, since: float = 0, runs: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return {"phase": "Progressing", "currentStep": stage, "weight": 0, "message": "", "startedAt": at(0),
            "stepStartedAt": at(since), "approvals": [], "analysisRuns": runs or []}


def previewing(routing: str = "gatewayAPI", **overrides: Any) -> World:
    world = World(routing=routing, **overrides)
    world.scaled[TARGET] = world.replicas
    world.preview = TARGET
    return world


@pytest.mark.parametrize("routing", ["gatewayAPI", "replicas"])
def test_the_preview_runs_at_full_size_without_live_traffic(routing: str) -> None:
    world = World(routing=routing)
    plan = rollout.plan(bluegreen(routing), None, world.observe(), at(0))
    assert plan.actions == (SetPreview(TARGET), ScaleVersion(TARGET, 4))
    assert (plan.status["phase"], plan.status["currentStep"], plan.status["weight"]) == ("Progressing", 0, 0)
    for action in plan.actions:
        world.apply(action)
    assert world.router_weight() == 0, "preview pods receive no live traffic, whatever the router"


def test_no_preview_service_when_not_wanted() -> None:
    plan = rollout.plan(bluegreen(previewService=False), None, World().observe(), at(0))
    assert not any(isinstance(a, SetPreview) for a in plan.actions)


def test_the_preview_waits_for_every_pod() -> None:
    world = previewing(unready={TARGET: 1})
    plan = rollout.plan(bluegreen(), status_at(0), world.observe(), at(30))
    assert plan.status["currentStep"] == 0 and plan.requeue_after == 5.0
    assert plan.status["message"] == "Preview: 3 of 4 pods of bot-v2 ready (no live traffic)"


@pytest.mark.parametrize(("seconds", "now", "stage", "phase", "requeue"), [
    (60, 10, 2, "Paused", 60.0),  # ready at 10: promotes at 70
    (60, 69, 2, "Paused", 1.0),
    (60, 70, 3, "Progressing", 5.0),
    (0, 10, 3, "Progressing", 5.0),  # 0: right after the preview is ready
])
def test_auto_promotion_timing(seconds: int, now: float, stage: int, phase: str, requeue: float) -> None:
    status = status_at(2, since=10)
    plan = rollout.plan(bluegreen(autoPromotionSeconds=seconds), status, previewing().observe(), at(now))
    assert (plan.status["currentStep"], plan.status["phase"], plan.requeue_after) == (stage, phase, requeue)
    if stage == 3:
        assert SetWeight(STABLE, TARGET, 100) in plan.actions


def test_auto_promotion_counts_from_when_the_preview_became_ready_not_from_the_analysis_end() -> None:
    runs = [{"startedAt": at(10), "verdict": "Successful", "measurements": []}]
    plan = rollout.plan(bluegreen(autoPromotionSeconds=60, prePromotionAnalysis={}), status_at(2, since=200, runs=runs),
                        previewing().observe(), at(200))
    assert plan.status["currentStep"] == 3, "the analysis took longer than the wait: promote at once"


def test_without_auto_promotion_it_waits_for_promote() -> None:
    world = previewing()
    plan = rollout.plan(bluegreen(), status_at(2, since=10), world.observe(), at(5000))
    assert (plan.status["phase"], plan.requeue_after) == ("Paused", None)
    assert "waiting for promote" in plan.status["message"]
    paused = next(c for c in plan.status["conditions"] if c["type"] == "Paused")
    assert (paused["status"], paused["reason"]) == ("True", "AwaitingPromotion")
    world.annotations["alm.dev/promote"] = ""
    promoted = rollout.plan(bluegreen(), plan.status, world.observe(), at(5001))
    assert promoted.status["currentStep"] == 3 and SetWeight(STABLE, TARGET, 100) in promoted.actions


@pytest.mark.parametrize("stage", [0, 1, 2])
def test_promote_skips_to_the_switch_from_any_stage(stage: int) -> None:
    world = previewing()
    world.annotations["alm.dev/promote"] = "full"
    plan = rollout.plan(bluegreen(prePromotionAnalysis={}), status_at(stage), world.observe(), at(1))
    assert plan.status["currentStep"] == 3
    assert [r["verdict"] for r in plan.status["analysisRuns"]] in ([], ["Inconclusive"])


def test_the_switch_waits_for_the_pods_of_the_new_version() -> None:
    world = World(routing="gatewayAPI", unready={TARGET: 4})
    world.scaled[TARGET] = 4
    plan = rollout.plan(bluegreen(), status_at(3), world.observe(), at(1))
    assert plan.status["phase"] == "Progressing" and "0 of 4 pods ready" in plan.status["message"]


@pytest.mark.parametrize(("routing", "delay"), [("gatewayAPI", 30), ("replicas", 0), ("gatewayAPI", 600)])
def test_a_full_blue_green(routing: str, delay: int) -> None:
    world = World(routing=routing)
    run = drive(bluegreen(routing, autoPromotionSeconds=60, scaleDownDelaySeconds=delay,
                          prePromotionAnalysis={"interval": "10s"}), world)
    assert run.phase == "Succeeded" and run.status is not None
    assert run.status["finishedAt"] == at(70)  # ready at 5, promoted 60 s later, verified 5 s after
    assert [a for a in run.actions if isinstance(a, Promote)] == [Promote(TARGET, STABLE, "bot-rollout")]
    assert [a for a in run.actions if isinstance(a, ScaleDownAfter)] == [ScaleDownAfter(STABLE, delay)]
    assert world.scaled == {STABLE: 4, TARGET: 4}, "the old version keeps its pods until the delay is over"
    assert world.preview is None
    assert [a.weight for a in run.actions if isinstance(a, SetWeight)] == [100]


def test_a_failing_pre_promotion_analysis_rolls_back_before_any_traffic_moved() -> None:
    world = World(routing="gatewayAPI")
    world.kpis[TARGET]["successRate"] = 0.5
    run = drive(bluegreen(autoPromotionSeconds=0, prePromotionAnalysis={"interval": "10s", "failureLimit": 0}),
                world)
    assert run.phase == "RolledBack" and run.status is not None
    assert run.status["abort"]["kpi"] == "successRate" and run.status["currentStep"] == 1
    assert world.scaled[TARGET] == 0 and world.preview is None
    assert not any(isinstance(a, SetWeight) and a.weight > 0 for a in run.actions)


def test_a_preview_without_traffic_is_inconclusive_and_pauses() -> None:
    world = World(routing="gatewayAPI")
    world.kpis[TARGET] = {}
    run = drive(bluegreen(autoPromotionSeconds=0, prePromotionAnalysis={"interval": "10s"}), world)
    assert run.phase == "Paused" and run.status is not None and run.status["currentStep"] == 1
    assert "inconclusive" in run.status["message"]


def test_abort_during_the_preview() -> None:
    world = previewing()
    world.annotations["alm.dev/abort"] = "not today"
    run = drive(bluegreen(), world, status=status_at(2, since=10), start=20)
    assert run.phase == "Aborted" and run.status is not None and run.status["finishedAt"] == at(20)
    assert world.scaled[TARGET] == 0 and world.preview is None
