"""The canary step machine: every step kind and control, one pass at a time, then whole rollouts."""

from __future__ import annotations

import copy
import dataclasses
import json
from typing import Any

import pytest

from alm.core import rollout, weights
from alm.core.rolloutcontrols import Controls
from alm.core.rollouttypes import (
    ConsumeControl,
    MarkAgentRolloutFailed,
    Promote,
    ScaleDownAfter,
    ScaleVersion,
    SetWeight,
)
from tests.unit.rolloutworld import STABLE, TARGET, World, at, canary, drive, one_pass, waits_on_a_human

STEPS: tuple[dict[str, Any], ...] = (
    {"setWeight": 25},  # 0
    {"pause": {"duration": "1m"}},  # 1
    {"analysis": {"duration": "1m"}},  # 2
    {"setWeight": 50},  # 3
    {"pause": {}},  # 4
    {"approval": {"message": "check the dashboards", "approvers": ["alice"]}},  # 5
    {"setWeight": 75},  # 6
)
BODY = canary(*STEPS, analysis={"interval": "30s"})
NO_BACKGROUND = canary(*STEPS)


def world_at(weight: int, **overrides: Any) -> World:
    """A world where the rollout's ``weight`` is fully in place."""
    world = World(**overrides)
    world.scaled = {STABLE: weights.stable_replicas(weight, world.replicas, world.routing),  # type: ignore[arg-type]
                    TARGET: weights.canary_replicas(weight, world.replicas)}
    world.weight = weight
    return world


def status_at(step: int, weight: int, *, since: float = 0, runs: list[dict[str, Any]] | None = None,
              approvals: list[dict[str, Any]] | None = None, hold: str | None = None) -> dict[str, Any]:
    status: dict[str, Any] = {"phase": "Progressing", "currentStep": step, "weight": weight, "message": "",
                              "startedAt": at(0), "stepStartedAt": at(since), "approvals": approvals or [],
                              "analysisRuns": runs or []}
    if hold:
        status["conditions"] = [{"type": "Paused", "status": "True", "reason": hold, "message": "",
                                 "lastTransitionTime": at(0)}]
    return status


def kinds(plan: rollout.RolloutPlan) -> list[str]:
    return [type(action).__name__ for action in plan.actions]


def reasons(plan: rollout.RolloutPlan) -> list[str]:
    return [event.reason for event in plan.events]


# --- One pass, every step kind and control -----------------------------------------------------------


@dataclasses.dataclass
class Case:
    status: dict[str, Any]
    world: World
    now: float
    phase: str
    step: int
    weight: int
    actions: list[str]
    requeue: float | None
    events: list[str] = dataclasses.field(default_factory=list)
    annotations: dict[str, str] = dataclasses.field(default_factory=dict)
    body: dict[str, Any] = dataclasses.field(default_factory=lambda: NO_BACKGROUND)


CASES = {
    "setWeight: canary pods first": Case(
        status_at(0, 0), world_at(0), 1, "Progressing", 0, 25, ["ScaleVersion"], 5.0),
    "setWeight: canary ready, then stable down and traffic": Case(
        status_at(0, 25), World(scaled={STABLE: 4, TARGET: 1}), 6, "Progressing", 0, 25,
        ["ScaleVersion", "SetWeight"], 5.0),
    "setWeight: pods not ready yet": Case(
        status_at(0, 25), world_at(25, unready={TARGET: 1}), 10, "Progressing", 0, 25, [], 5.0),
    "setWeight: in place, on to a 1m pause": Case(
        status_at(0, 25), world_at(25), 10, "Paused", 1, 25, [], 60.0, ["StepCompleted"]),
    "pause: not over": Case(status_at(1, 25, since=10), world_at(25), 40, "Paused", 1, 25, [], 30.0),
    "pause: over, on to the analysis": Case(
        status_at(1, 25, since=10), world_at(25), 70, "Progressing", 2, 25, [], 30.0, ["StepCompleted"]),
    "pause: resume ends it early": Case(
        status_at(1, 25, since=10), world_at(25), 20, "Progressing", 2, 25, ["ConsumeControl"], 30.0,
        ["Resumed", "StepCompleted"], {"alm.dev/resume": ""}),
    "pause without duration: until resumed": Case(
        status_at(4, 50, since=10), world_at(50), 5000, "Paused", 4, 50, [], None),
    "pause without duration: resumed": Case(
        status_at(4, 50, since=10), world_at(50), 5000, "AwaitingApproval", 5, 50, ["ConsumeControl"], None,
        ["Resumed", "StepCompleted"], {"alm.dev/resume": "now"}),
    "approval: waiting": Case(status_at(5, 50), world_at(50), 99, "AwaitingApproval", 5, 50, [], None),
    "approval: approved by an approver": Case(
        status_at(5, 50), world_at(50), 99, "Progressing", 6, 75, ["ConsumeControl", "ConsumeControl", "ScaleVersion"],
        5.0, ["Approved", "StepCompleted"], {"alm.dev/approve": "", "alm.dev/approved-by": "alice"}),
    "approval: approved for this very step": Case(
        status_at(5, 50), world_at(50), 99, "Progressing", 6, 75, ["ConsumeControl", "ConsumeControl", "ScaleVersion"],
        5.0, ["Approved", "StepCompleted"], {"alm.dev/approve": "5", "alm.dev/approved-by": "alice"}),
    "approval: someone not allowed": Case(
        status_at(5, 50), world_at(50), 99, "AwaitingApproval", 5, 50, ["ConsumeControl", "ConsumeControl"], None,
        ["ApprovalRefused"], {"alm.dev/approve": "", "alm.dev/approved-by": "mallory"}),
    "approval: meant for another step": Case(
        status_at(5, 50), world_at(50), 99, "AwaitingApproval", 5, 50, ["ConsumeControl", "ConsumeControl"], None,
        ["ControlIgnored"], {"alm.dev/approve": "7", "alm.dev/approved-by": "alice"}),
    "an early approve does not pass the approval step reached in the same pass": Case(
        status_at(4, 50), world_at(50), 20, "AwaitingApproval", 5, 50, ["ConsumeControl", "ConsumeControl",
                                                                        "ConsumeControl"], None,
        ["Resumed", "StepCompleted", "ControlIgnored"],
        {"alm.dev/resume": "", "alm.dev/approve": "", "alm.dev/approved-by": "alice"}),
    "an early resume does not end the pause step reached in the same pass": Case(
        status_at(0, 25), world_at(25), 10, "Paused", 1, 25, ["ConsumeControl"], 60.0,
        ["Resumed", "StepCompleted", "ControlIgnored"], {"alm.dev/resume": ""}),
    "approve where nothing awaits approval": Case(
        status_at(1, 25, since=10), world_at(25), 20, "Paused", 1, 25, ["ConsumeControl"], 50.0,
        ["ControlIgnored"], {"alm.dev/approve": ""}),
    "resume where nothing is paused": Case(
        status_at(0, 25), world_at(25, unready={TARGET: 1}), 1, "Progressing", 0, 25, ["ConsumeControl"], 5.0,
        ["Resumed", "ControlIgnored"], {"alm.dev/resume": ""}),
    "last step done: 100 %": Case(
        status_at(6, 75), world_at(75), 99, "Progressing", 7, 100, ["ScaleVersion"], 5.0, ["StepCompleted"]),
    "100 % in place: promoted": Case(
        status_at(7, 100), world_at(100), 99, "Succeeded", 7, 100, ["Promote", "ScaleDownAfter"], None,
        ["Succeeded"]),
    "pause by a human: nothing advances": Case(
        status_at(1, 25, since=10), world_at(25), 70, "Paused", 1, 25, ["ConsumeControl"], 5000 - 4930.0 + 0,
        ["PausedByUser"], {"alm.dev/pause": ""}),
    "paused by a human earlier: still paused": Case(
        status_at(1, 25, since=10, hold="PausedByUser"), world_at(25), 70, "Paused", 1, 25, [], None),
    "resume after a human pause": Case(
        status_at(1, 25, since=10, hold="PausedByUser"), world_at(25), 70, "Progressing", 2, 25, ["ConsumeControl"],
        30.0, ["Resumed", "StepCompleted"], {"alm.dev/resume": ""}),
    "pause and resume together: pause wins": Case(
        status_at(0, 25), world_at(25), 10, "Paused", 0, 25, ["ConsumeControl", "ConsumeControl"], None,
        ["ControlIgnored", "PausedByUser"], {"alm.dev/resume": "", "alm.dev/pause": ""}),
    "promote: skips the current pause": Case(
        status_at(1, 25, since=10), world_at(25), 20, "Progressing", 2, 25, ["ConsumeControl"], 30.0,
        ["PromotedByUser"], {"alm.dev/promote": ""}),
    "promote: skips a setWeight, keeping its weight": Case(
        status_at(3, 25), world_at(25), 20, "Paused", 4, 50, ["ConsumeControl", "ScaleVersion"], None,
        ["PromotedByUser"], {"alm.dev/promote": ""}),
    "promote does not pass an approval step": Case(
        status_at(5, 50), world_at(50), 99, "AwaitingApproval", 5, 50, ["ConsumeControl"], None,
        ["ControlIgnored"], {"alm.dev/promote": ""}),
    "promote full: up to the next approval step": Case(
        status_at(0, 0), world_at(0), 1, "AwaitingApproval", 5, 50, ["ConsumeControl", "ScaleVersion"], None,
        ["PromotedByUser"], {"alm.dev/promote": "full"}),
    "promote full after the approval: to 100 %": Case(
        status_at(6, 75, approvals=[{"step": 5, "approvedBy": "alice", "approvedAt": at(0)}]), world_at(75), 1,
        "Progressing", 7, 100, ["ConsumeControl", "ScaleVersion"], 5.0, ["PromotedByUser"],
        {"alm.dev/promote": "FULL"}),
    "promote on a human pause also resumes": Case(
        status_at(4, 50, hold="PausedByUser"), world_at(50), 1, "AwaitingApproval", 5, 50, ["ConsumeControl"],
        None, ["PromotedByUser"], {"alm.dev/promote": ""}),
    "abort": Case(
        status_at(3, 50), world_at(50), 1, "Aborted", 3, 0,
        ["ConsumeControl", "MarkAgentRolloutFailed", "ScaleVersion", "ScaleVersion", "SetWeight"], 1.0,
        ["AbortedByUser"], {"alm.dev/abort": "answers look wrong"}),
    "abort wins over every other command": Case(
        status_at(5, 50), world_at(50), 1, "Aborted", 5, 0,
        ["ConsumeControl", "ConsumeControl", "ConsumeControl", "MarkAgentRolloutFailed", "ScaleVersion",
         "ScaleVersion", "SetWeight"], 1.0, ["AbortedByUser"],
        {"alm.dev/abort": "", "alm.dev/promote": "full", "alm.dev/approve": ""}),
}
CASES["pause by a human: nothing advances"].requeue = None


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_one_pass(case: Case) -> None:
    case.world.annotations = dict(case.annotations)
    plan = rollout.plan(case.body, case.status, case.world.observe(), at(case.now))
    assert (plan.status["phase"], plan.status["currentStep"], plan.status["weight"]) == (
        case.phase, case.step, case.weight), plan.status["message"]
    assert kinds(plan) == case.actions
    assert plan.requeue_after == case.requeue
    assert reasons(plan) == case.events
    consumed = {a.annotation for a in plan.actions if isinstance(a, ConsumeControl)}
    assert consumed == set(case.annotations), "every command is consumed, carried out or not"


def test_a_step_that_begins_records_when() -> None:
    plan = rollout.plan(NO_BACKGROUND, status_at(0, 25), world_at(25).observe(), at(10))
    assert plan.status["stepStartedAt"] == at(10)
    assert plan.status["message"] == f"Step 2/7 (pause 1m): paused until {at(70)}"


def test_an_approval_is_recorded_with_who_and_when_and_audited_as_them() -> None:
    world = world_at(50)
    world.annotations = {"alm.dev/approve": "", "alm.dev/approved-by": "alice"}
    plan = rollout.plan(NO_BACKGROUND, status_at(5, 50), world.observe(), at(99))
    assert plan.status["approvals"] == [{"step": 5, "approvedBy": "alice", "approvedAt": at(99)}]
    approved = [entry for entry in plan.audit if entry.action == "approved"]
    assert [(entry.actor, entry.details["step"]) for entry in approved] == [("alice", 5)]


def test_an_approval_step_without_approvers_takes_anyone() -> None:
    body = canary({"setWeight": 10}, {"approval": {}})
    world = world_at(10)
    world.annotations = {"alm.dev/approve": ""}
    plan = rollout.plan(body, status_at(1, 10), world.observe(), at(5))
    assert plan.status["approvals"] == [{"step": 1, "approvedBy": "unknown", "approvedAt": at(5)}]


def test_the_abort_names_who_and_why_in_events_and_audit_not_in_spec() -> None:
    world = world_at(50)
    world.annotations = {"alm.dev/abort": "answers look wrong"}
    plan = rollout.plan(NO_BACKGROUND, status_at(3, 50), world.observe(), at(1))
    assert plan.status["abort"] == {"reason": "AbortedByUser", "at": at(1)}
    assert any("answers look wrong" in event.message for event in plan.events)
    assert [entry.action for entry in plan.audit] == ["manualOverride", "rolledBack"]
    failed = [a for a in plan.actions if isinstance(a, MarkAgentRolloutFailed)]
    assert failed == [MarkAgentRolloutFailed(TARGET, "bot-rollout", "Aborted", "AbortedByUser",
                                             "Aborted by a human: answers look wrong")]
    assert "finishedAt" not in plan.status, "not done until the router reads 0 %"


# --- Whole rollouts -----------------------------------------------------------------------------------


def approve(world: World, who: str = "alice") -> None:
    world.annotations.update({"alm.dev/approve": "", "alm.dev/approved-by": who})


def finish(body: dict[str, Any], world: World, **kwargs: Any) -> Any:
    """Drive, answering every human gate: resume pauses, approve approvals (as alice)."""
    run = drive(body, world, **kwargs)
    passes, times = list(run.plans), list(run.times)
    for _ in range(10):
        if run.status is not None and run.status.get("finishedAt"):
            break
        if run.phase == "AwaitingApproval":
            approve(world)
        else:
            world.annotations["alm.dev/resume"] = ""
        run = drive(body, world, status=run.status, start=run.now + 60)
        passes += run.plans
        times += run.times
    run.plans, run.times = passes, times
    return run


@pytest.mark.parametrize("routing", ["replicas", "gatewayAPI"])
def test_a_good_canary_reaches_100_percent_and_becomes_stable(routing: str) -> None:
    world = World(routing=routing)
    run = finish(canary(*STEPS, analysis={"interval": "30s"}, routing=routing), world)
    assert run.phase == "Succeeded", run.status and run.status["message"]
    assert run.status is not None and run.status["weight"] == 100
    promotes = [a for a in run.actions if isinstance(a, Promote)]
    assert promotes == [Promote(TARGET, STABLE, "bot-rollout")]
    delay = 30 if routing == "gatewayAPI" else 0
    assert [a for a in run.actions if isinstance(a, ScaleDownAfter)] == [ScaleDownAfter(STABLE, delay)]
    assert [r["verdict"] for r in run.status["analysisRuns"]] == ["Successful", "Successful"]
    weights_set = [a.weight for a in run.actions if isinstance(a, SetWeight)]
    assert weights_set == sorted(weights_set) and weights_set[-1] == 100
    assert run.status["approvals"][0]["approvedBy"] == "alice"


@pytest.mark.parametrize(("routing", "sent"), [
    ("gatewayAPI", [25, 50, 75, 100]),
    ("replicas", [25, 100]),  # between 1 and 99 % the pods are the weight: only the Service scope changes
])
def test_the_weight_follows_the_steps_in_order(routing: str, sent: list[int]) -> None:
    run = finish(canary(*STEPS, analysis={"interval": "30s"}, routing=routing), World(routing=routing))
    assert [a.weight for a in run.actions if isinstance(a, SetWeight)] == sent
    canary_pods = [a.replicas for a in run.actions if isinstance(a, ScaleVersion) and a.version == TARGET]
    assert canary_pods == [1, 2, 3, 4]


@pytest.mark.parametrize("routing", ["gatewayAPI", "replicas"])
def test_traffic_moves_only_to_ready_pods_and_capacity_never_drops(routing: str) -> None:
    """Pods take 12 s to start: after every pass, traffic sent to the canary is backed by ready canary
    pods, and the ready pods of both versions never fall below the Agent's replicas."""
    world = World(routing=routing, startup=12)
    body = canary(*STEPS, routing=routing)
    status: dict[str, Any] | None = None
    now = 0.0
    for _ in range(60):
        plan = one_pass(body, status, world, at(now))
        status = plan.status
        ready = world.ready()
        if world.weight > 0:
            assert ready.get(TARGET, 0) >= weights.canary_replicas(world.weight, 4), (now, world.weight, ready)
        assert ready.get(TARGET, 0) + ready.get(STABLE, 0) >= 4, (now, ready)
        if status.get("finishedAt"):
            break
        if waits_on_a_human(status):
            world.annotations.update({"alm.dev/resume": "", "alm.dev/approve": "", "alm.dev/approved-by": "alice"})
        now += plan.requeue_after or 1
    assert status is not None and status["phase"] == "Succeeded"


def test_a_bad_canary_is_rolled_back_with_the_kpi_value_threshold_and_time() -> None:
    world = World()
    world.kpis[TARGET]["successRate"] = 0.6
    run = drive(BODY, world)
    assert run.phase == "RolledBack"
    assert run.status is not None
    abort = run.status["abort"]
    assert (abort["reason"], abort["kpi"], abort["value"], abort["threshold"]) == ("AnalysisFailed", "successRate",
                                                                                  0.6, 0.95)
    assert run.status["weight"] == 0 and world.weight == 0 and world.scaled[TARGET] == 0
    assert world.scaled[STABLE] == 4, "the stable version is back at full size"
    assert run.status["finishedAt"] > abort["at"], "finished only once the router read back 0 %"
    assert run.events.count("TrafficRestored") == 1
    failed = [a for a in run.actions if isinstance(a, MarkAgentRolloutFailed)]
    assert len(failed) == 1 and failed[0].result == "RolledBack" and "successRate 0.6 < 0.95" in failed[0].message
    assert not any(isinstance(a, Promote) for a in run.actions)
    assert run.status["message"].startswith(f"Rolled back at {abort['at']}: analysis failed: successRate measured "
                                            "0.6, limit 0.95; all traffic is back on bot-v1")


def test_a_stuck_router_keeps_the_rollout_unfinished_until_it_reads_0() -> None:
    world = world_at(50)
    world.annotations = {"alm.dev/abort": ""}
    world.stuck = 50
    run = drive(NO_BACKGROUND, world, status=status_at(3, 50), max_passes=5)
    assert run.phase == "Aborted" and run.status is not None and "finishedAt" not in run.status
    assert [p.requeue_after for p in run.plans] == [1.0] * 5
    assert all(SetWeight(STABLE, TARGET, 0) in p.actions for p in run.plans), "0 % is re-applied every pass"
    assert "it reads 50%" in run.status["message"]
    world.stuck = None
    done = drive(NO_BACKGROUND, world, status=run.status, start=run.now + 1)
    assert done.status is not None and done.status["finishedAt"] == at(run.now + 1)
    assert done.status["message"] == f"Aborted by a human at {at(0)}; all traffic is back on bot-v1"


def test_a_router_that_cannot_be_read_never_counts_as_0() -> None:
    world = world_at(50)
    world.annotations = {"alm.dev/abort": ""}
    status = rollout.plan(NO_BACKGROUND, status_at(3, 50), world.observe(), at(0)).status
    unknown = dataclasses.replace(world.observe(), router_weight=None)
    plan = rollout.plan(NO_BACKGROUND, status, unknown, at(1))
    assert "finishedAt" not in plan.status and "it reads unknown" in plan.status["message"]


def test_no_data_pauses_with_a_message_instead_of_hanging_then_resume_measures_again() -> None:
    world = World()
    world.kpis[TARGET]["successRate"] = None
    run = drive(canary({"setWeight": 20}, {"analysis": {"duration": "1m"}}), world)
    assert run.phase == "Paused" and run.status is not None
    assert "analysis inconclusive" in run.status["message"] and "no tasks in the window" in run.status["message"]
    assert run.plans[-1].requeue_after is None, "nothing to wait for but a human"
    assert run.events.count("AnalysisInconclusive") == 1
    assert run.status["analysisRuns"][-1]["verdict"] == "Inconclusive"
    world.kpis[TARGET]["successRate"] = 0.99
    world.annotations["alm.dev/resume"] = ""
    resumed = drive(canary({"setWeight": 20}, {"analysis": {"duration": "1m"}}), world, status=run.status,
                    start=run.now + 100)
    assert resumed.phase == "Succeeded"
    assert resumed.status is not None
    assert [r["verdict"] for r in resumed.status["analysisRuns"]] == ["Inconclusive", "Successful"]


def test_an_inconclusive_analysis_can_be_skipped_with_promote() -> None:
    world = World()
    world.kpis[TARGET]["successRate"] = None
    body = canary({"setWeight": 20}, {"analysis": {}}, {"setWeight": 60})
    run = drive(body, world)
    world.annotations["alm.dev/promote"] = ""
    promoted = drive(body, world, status=run.status, start=run.now + 5)
    assert promoted.phase == "Succeeded"
    assert promoted.status is not None and promoted.status["analysisRuns"][0]["verdict"] == "Inconclusive"


def test_the_background_analysis_rolls_back_even_during_a_pause() -> None:
    body = canary(*STEPS, analysis={"interval": "30s", "failureLimit": 0})
    world = World()
    run = drive(body, world, max_passes=3)
    assert run.phase == "Paused" and run.status is not None and run.status["currentStep"] == 1
    world.kpis[TARGET]["successRate"] = 0.1
    bad = drive(body, world, status=run.status, start=run.now)
    assert bad.phase == "RolledBack" and bad.status is not None
    assert bad.status["analysisRuns"][0]["verdict"] == "Failed" and bad.status["currentStep"] == 1


def test_the_background_analysis_must_pass_once_before_the_promotion() -> None:
    body = canary({"setWeight": 50}, analysis={"interval": "1m"})
    run = drive(body, World())
    assert run.phase == "Succeeded" and run.status is not None
    assert run.status["finishedAt"] >= at(60), "not promoted before the first measurement"
    assert run.status["analysisRuns"][0]["verdict"] == "Successful"


def test_promote_full_ends_the_background_analysis_too() -> None:
    world = World()
    world.annotations["alm.dev/promote"] = "full"
    body = canary({"setWeight": 50}, {"pause": {}}, analysis={"interval": "1h"})
    run = drive(body, world)
    assert run.phase == "Succeeded" and run.status is not None
    assert run.status["finishedAt"] < at(60)
    assert run.status["analysisRuns"][0]["verdict"] == "Inconclusive", "closed without data: not a success"


def test_a_broken_stable_never_blocks_a_fix() -> None:
    world = World(unready={STABLE: 4})
    run = finish(BODY, world)
    assert run.phase == "Succeeded"


def test_canary_pods_that_never_get_ready_say_so_but_do_not_roll_back() -> None:
    world = World(unready={TARGET: 9})
    run = drive(NO_BACKGROUND, world, max_passes=200)
    assert run.phase == "Progressing" and run.status is not None
    progressing = next(c for c in run.status["conditions"] if c["type"] == "Progressing")
    assert (progressing["status"], progressing["reason"]) == ("False", "ProgressDeadlineExceeded")
    assert run.events.count("ProgressDeadlineExceeded") == 1
    assert "0 of 1 canary pods ready" in progressing["message"]


# --- Restarts and stable output --------------------------------------------------------------------


def test_a_restart_after_any_pass_resumes_and_completes() -> None:
    clean = finish(BODY, World())
    assert clean.status is not None
    for crash in range(len(clean.plans)):
        run = finish(BODY, World(), crash=frozenset({crash}))
        assert run.phase == "Succeeded", crash
        assert run.status is not None
        assert run.status["currentStep"] == clean.status["currentStep"]
        assert [r["verdict"] for r in run.status["analysisRuns"]] == ["Successful", "Successful"]
        assert [a["step"] for a in run.status["approvals"]] == [5]
        assert {a for a in run.actions if isinstance(a, Promote)} == {Promote(TARGET, STABLE, "bot-rollout")}


def test_the_same_inputs_give_byte_identical_plans_at_every_pass() -> None:
    world = World()
    status: dict[str, Any] | None = None
    now = 0.0
    for _ in range(40):
        snapshot = copy.deepcopy(world)
        restarted = json.loads(json.dumps(status)) if status is not None else None  # as read back from the API
        plans = [rollout.plan(BODY, given, copy.deepcopy(snapshot).observe(), at(now)) for given in (status, restarted)]
        assert json.dumps(plans[0].status, sort_keys=True) == json.dumps(plans[1].status, sort_keys=True)
        assert plans[0].actions == plans[1].actions and plans[0].events == plans[1].events
        plan = one_pass(BODY, status, world, at(now))
        status = plan.status
        if status.get("finishedAt") or plan.requeue_after is None:
            break
        now += plan.requeue_after or 1


def test_a_resync_with_nothing_new_writes_the_same_status_and_tells_nothing() -> None:
    """A pass replayed on its own result, seeing the same world at the same time, changes nothing and
    tells nothing: a resync writes nothing (no hot loop), whatever step the rollout is at."""
    run = finish(BODY, World())
    world = World()
    status: dict[str, Any] | None = None
    for now in run.times:
        seen = dataclasses.replace(world.observe(), controls=Controls())
        first = rollout.plan(BODY, status, seen, at(now))
        again = rollout.plan(BODY, first.status, seen, at(now))
        assert again.status == first.status, at(now)
        assert again.events == () and again.audit == (), at(now)
        plan = one_pass(BODY, status, world, at(now))
        status = plan.status
        if status.get("finishedAt"):
            break
        if status["phase"] == "AwaitingApproval":
            approve(world)
        elif waits_on_a_human(status):
            world.annotations["alm.dev/resume"] = ""


def test_a_finished_rollout_stays_finished_and_ignores_commands() -> None:
    run = finish(BODY, World())
    assert run.status is not None
    world = run.world
    world.annotations = {"alm.dev/abort": "", "alm.dev/promote": ""}
    plan = rollout.plan(BODY, run.status, world.observe(), at(run.now + 1000))
    assert plan.status == run.status
    assert kinds(plan) == ["ConsumeControl", "ConsumeControl"]
    assert reasons(plan) == ["ControlIgnored", "ControlIgnored"]
    assert plan.requeue_after is None
