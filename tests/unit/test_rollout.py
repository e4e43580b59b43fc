"""The rollout entry points: starting, controls, supersede, invalid specs, status shape, measuring,
and the Agent side (needs_rollout)."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import pytest

from alm.api import AgentRollout, AgentRolloutSpec, AgentRolloutStatus
from alm.core import rollout, rolloutcontrols
from alm.core.rolloutcontrols import Controls
from alm.core.rolloutstart import DecisionAction, DecisionReason, needs_rollout, rollout_name, spec_hash
from alm.core.rollouttypes import MarkAgentRolloutFailed, Promote
from tests.unit.rolloutworld import STABLE, TARGET, World, at, canary, drive, spec

BODY = canary({"setWeight": 20}, {"analysis": {}}, {"approval": {}}, {"setWeight": 60},
              analysis={"interval": "30s"})
# Status fields this planner writes that the API model does not have yet (reported to the lead);
# remove a name once AgentRolloutStatus declares it.
NOT_IN_THE_API_YET: set[str] = set()


def kinds(plan: rollout.RolloutPlan) -> list[str]:
    return [type(action).__name__ for action in plan.actions]


# --- Controls -------------------------------------------------------------------------------------


@pytest.mark.parametrize(("annotations", "controls"), [
    ({}, Controls()),
    ({"other": "x"}, Controls()),
    ({"alm.dev/promote": ""}, Controls(promote=True)),
    ({"alm.dev/promote": "true"}, Controls(promote=True)),
    ({"alm.dev/promote": " Full "}, Controls(promote_full=True)),
    ({"alm.dev/abort": "bad answers"}, Controls(abort="bad answers")),
    ({"alm.dev/abort": ""}, Controls(abort="")),
    ({"alm.dev/pause": "", "alm.dev/resume": "x"}, Controls(pause=True, resume=True)),
    ({"alm.dev/approve": ""}, Controls(approve=True)),
    ({"alm.dev/approve": "3", "alm.dev/approved-by": " alice "}, Controls(approve=True, approve_step=3,
                                                                         approved_by="alice")),
    ({"alm.dev/approve": "yes"}, Controls(approve=True)),
    ({"alm.dev/approved-by": ""}, Controls(approved_by="")),
])
def test_controls_from_annotations(annotations: dict[str, str], controls: Controls) -> None:
    parsed = rolloutcontrols.from_annotations(annotations)
    assert parsed == controls
    assert set(parsed.present) == set(annotations) & set(rolloutcontrols.ANNOTATIONS)


# --- Starting -------------------------------------------------------------------------------------


@pytest.mark.parametrize(("world", "reason", "requeue", "message"), [
    (World(desired=None), "AgentNotFound", 30.0, "Agent 'bot' was not found"),
    (World(blocked_by="bot-bot-v3-abc"), "WaitingForRollout", 5.0, "Waiting for AgentRollout bot-bot-v3-abc"),
    (World(stable=None), "NoStableVersion", 5.0, "The Agent has no stable version yet"),
    (World(target_ready=False), "VersionNotReady", 5.0, "Waiting for AgentVersion bot-v2 to be Ready"),
])
def test_a_rollout_waits_in_pending_and_says_why(world: World, reason: str, requeue: float, message: str) -> None:
    world.annotations = {"alm.dev/pause": ""}
    plan = rollout.plan(BODY, None, world.observe(), at(0))
    assert plan.status["phase"] == "Pending" and plan.status["message"].startswith(message)
    assert plan.requeue_after == requeue and plan.actions == () and plan.events == ()
    progressing = next(c for c in plan.status["conditions"] if c["type"] == "Progressing")
    assert (progressing["status"], progressing["reason"]) == ("False", reason)
    assert "startedAt" not in plan.status, "commands wait for the start; nothing is consumed"


def test_starting_records_when_and_tells_once() -> None:
    plan = rollout.plan(BODY, None, World().observe(), at(0))
    assert (plan.status["phase"], plan.status["startedAt"], plan.status["stepStartedAt"]) == ("Progressing", at(0),
                                                                                                at(0))
    assert [e.reason for e in plan.events] == ["RolloutStarted"]
    assert [(a.action, a.subject, a.details["fromVersion"]) for a in plan.audit] == [
        ("rolloutStarted", "AgentRollout/bot-rollout", STABLE)]


def test_a_rollout_to_the_stable_version_succeeds_at_once() -> None:
    world = World(stable=TARGET)
    plan = rollout.plan(BODY, None, world.observe(), at(0))
    assert plan.status["phase"] == "Succeeded" and plan.actions == (Promote(TARGET, TARGET, "bot-rollout"),)


@pytest.mark.parametrize(("world", "phase", "reason", "marks_agent"), [
    (World(annotations={"alm.dev/abort": ""}), "Aborted", "AbortedByUser", True),
    (World(desired="bot-v3"), "Aborted", "Superseded", False),
])
def test_stopping_a_pending_rollout_needs_no_traffic_check(world: World, phase: str, reason: str,
                                                           marks_agent: bool) -> None:
    world.blocked_by = "another"
    plan = rollout.plan(BODY, None, world.observe(), at(0))
    assert (plan.status["phase"], plan.status["abort"]["reason"], plan.status["finishedAt"]) == (phase, reason, at(0))
    assert any(isinstance(a, MarkAgentRolloutFailed) for a in plan.actions) == marks_agent
    assert "never started" in plan.status["message"]


def test_a_newer_version_supersedes_a_running_rollout() -> None:
    world = World()
    run = drive(BODY, world, max_passes=3)
    assert run.phase == "Progressing"
    world.desired = "bot-v3"
    stopped = drive(BODY, world, status=run.status, start=run.now + 1)
    assert stopped.phase == "Aborted" and stopped.status is not None
    assert stopped.status["abort"]["reason"] == "Superseded" and stopped.status["finishedAt"]
    assert not any(isinstance(a, MarkAgentRolloutFailed) for a in stopped.actions), "not a failure"
    assert world.weight == 0 and world.scaled[TARGET] == 0


def test_an_invalid_spec_changes_nothing_and_says_what_to_fix_once() -> None:
    body = canary({"setWeight": 20, "pause": {}})
    status = {"phase": "Progressing", "currentStep": 0, "weight": 20}
    plan = rollout.plan(body, status, World().observe(), at(0))
    assert plan.status["phase"] == "Progressing" and plan.status["weight"] == 20 and plan.actions == ()
    assert "exactly one of setWeight, pause, analysis or approval" in plan.status["message"]
    invalid = next(c for c in plan.status["conditions"] if c["type"] == "Invalid")
    assert invalid["status"] == "True"
    assert [e.reason for e in plan.events] == ["InvalidSpec"]
    again = rollout.plan(body, plan.status, World().observe(), at(9))
    assert again.status == plan.status and again.events == ()


def test_a_phase_this_version_does_not_know_is_left_alone() -> None:
    status = {"phase": "Reticulating", "currentStep": 2}
    plan = rollout.plan(BODY, status, World(annotations={"alm.dev/abort": ""}).observe(), at(0))
    assert plan.status == status and plan.actions == () and plan.events == ()


def test_an_unknown_strategy_is_invalid_not_a_default() -> None:
    body = spec({"canary": {"steps": [{"setWeight": 5}]}})
    body["strategy"]["linear"] = {}
    plan = rollout.plan(body, None, World().observe(), at(0))
    assert plan.status["phase"] == "Pending" and "linear" in plan.status["message"]


# --- Status shape ---------------------------------------------------------------------------------


def statuses() -> list[dict[str, Any]]:
    """A status from every kind of pass of a few whole rollouts."""
    found = []
    for body, world in ((BODY, World()), (BODY, World(kpis={STABLE: {}, TARGET: {"successRate": 0.1}}))):
        run = drive(body, world)
        found += [plan.status for plan in run.plans]
        if run.phase == "AwaitingApproval":
            world.annotations.update({"alm.dev/approve": "", "alm.dev/approved-by": "alice"})
            found += [plan.status for plan in drive(body, world, status=run.status, start=run.now + 1).plans]
    return found


def test_every_status_fits_the_api_and_is_plain_json() -> None:
    seen = statuses()
    assert {s["phase"] for s in seen} >= {"Progressing", "AwaitingApproval", "Succeeded", "RolledBack"}
    for status in seen:
        assert set(status) <= set(rollout.OWNED_STATUS_KEYS)
        assert json.loads(json.dumps(status)) == status
        AgentRolloutStatus.model_validate({k: v for k, v in status.items() if k not in NOT_IN_THE_API_YET})


@pytest.mark.parametrize(("phase", "paused", "completed"), [
    ("Progressing", "False", "False"), ("AwaitingApproval", "True", "False"), ("Succeeded", "False", "True"),
])
def test_conditions_follow_the_phase(phase: str, paused: str, completed: str) -> None:
    status = next(s for s in statuses() if s["phase"] == phase)
    conditions = {c["type"]: c for c in status["conditions"]}
    assert conditions["Paused"]["status"] == paused and conditions["Completed"]["status"] == completed
    assert conditions["Invalid"]["status"] == "False"
    assert conditions["Progressing"]["status"] == ("True" if phase == "Progressing" else "False")


# --- Measuring ------------------------------------------------------------------------------------


def running(step: int, runs: list[dict[str, Any]], phase: str = "Progressing") -> dict[str, Any]:
    return {"phase": phase, "currentStep": step, "weight": 20, "startedAt": at(0), "stepStartedAt": at(0),
            "approvals": [], "analysisRuns": runs}


BACKGROUND = {"startedAt": at(0), "verdict": "Running", "measurements": []}
STEP_1 = {"step": 1, "startedAt": at(10), "verdict": "Running", "measurements": []}


@pytest.mark.parametrize(("status", "now", "runs"), [
    (None, 100, []),
    (running(1, [BACKGROUND, STEP_1]), 29, []),
    (running(1, [BACKGROUND, STEP_1]), 30, ["background"]),
    (running(1, [BACKGROUND, STEP_1]), 40, ["background", "step/1"]),
    (running(2, [BACKGROUND, STEP_1]), 40, ["background"]),  # step 1 is over
    (running(1, [BACKGROUND, {**STEP_1, "verdict": "Inconclusive"}]), 40, ["background"]),
    (running(1, [BACKGROUND, STEP_1], phase="Paused"), 40, ["background", "step/1"]),  # paused: still measured
    (running(1, [BACKGROUND, STEP_1], phase="Succeeded"), 40, []),
    ({**running(1, [BACKGROUND]), "abort": {"reason": "AbortedByUser", "at": at(1)}}, 40, []),
])
def test_measurements_due(status: dict[str, Any] | None, now: float, runs: list[str]) -> None:
    due = rollout.measurements_due(BODY, status, World().observe(), at(now))
    assert [request.run for request in due] == runs
    for request in due:
        assert (request.version, request.baseline, request.kpis) == (TARGET, None, ("successRate",))


def test_a_late_measurement_covers_the_whole_gap() -> None:
    due = rollout.measurements_due(BODY, running(1, [BACKGROUND]), World().observe(), at(95))
    assert [request.window_seconds for request in due] == [95.0]


def test_every_pass_measures_only_what_is_due() -> None:
    world = World()
    run = drive(BODY, world)
    assert run.phase == "AwaitingApproval"
    asked = [(request.run, request.window_seconds) for request in world.measured]
    assert ("step/1", 30.0) in asked and all(window >= 30 for _, window in asked)
    assert run.status is not None
    for run_status in run.status["analysisRuns"]:
        key = "step/1" if run_status.get("step") == 1 else "background"
        rounds = {m["measuredAt"] for m in run_status["measurements"]}
        assert len(rounds) == [name for name, _ in asked].count(key), "one request per recorded round"


# --- The Agent side -------------------------------------------------------------------------------

ROLLOUT: dict[str, Any] = {"canary": {"steps": [{"setWeight": 20}]}}
AGENT: dict[str, Any] = {"version": TARGET, "replicas": 4, "rollout": ROLLOUT}


def agent(**overrides: Any) -> dict[str, Any]:
    return {**AGENT, **overrides}


def existing(name: str, target: str = TARGET, *, phase: str | None = None, owned: bool = True,
             created: str = "2026-11-24T11:00:00Z", finished: bool = False, abort: str | None = None,
             digest: str | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "creationTimestamp": created, "annotations": {}}
    if owned:
        meta["ownerReferences"] = [{"kind": "Agent", "name": "bot", "uid": "uid-bot", "controller": True}]
    if digest:
        meta["annotations"]["alm.dev/rollout-spec-hash"] = digest
    status: dict[str, Any] = {"phase": phase or "Progressing"}
    if finished:
        status["finishedAt"] = created
    if abort:
        status["abort"] = {"reason": abort, "at": created}
    return {"metadata": meta, "spec": {"agentRef": {"name": "bot"}, "targetVersion": target}, "status": status}


def decide(spec_: dict[str, Any], status: dict[str, Any] | None, rollouts: list[dict[str, Any]]) -> Any:
    return needs_rollout(spec_, status, rollouts, agent="bot", namespace="team", uid="uid-bot", generation=3)


STABLE_STATUS = {"stableVersion": STABLE, "history": [{"version": "bot-v0", "promotedAt": at(0),
                                                        "result": "Succeeded"}]}
FAILED = "RolledBack"


@dataclasses.dataclass
class DecisionCase:
    spec: dict[str, Any]
    status: dict[str, Any] | None
    rollouts: list[dict[str, Any]]
    action: str
    reason: str
    rollout: str | None = None
    supersede: tuple[str, ...] = ()


DECISIONS = {
    "first version": DecisionCase(agent(), None, [], DecisionAction.SWITCH, DecisionReason.FIRST_VERSION),
    "already stable": DecisionCase(agent(version=STABLE), STABLE_STATUS, [], DecisionAction.NONE,
                                   DecisionReason.STABLE),
    "reverted while a rollout runs: it is superseded": DecisionCase(
        agent(version=STABLE), STABLE_STATUS, [existing("r2")], DecisionAction.NONE, DecisionReason.STABLE,
        supersede=("r2",)),
    "ours is running": DecisionCase(agent(), STABLE_STATUS, [existing("r2")], DecisionAction.WAIT,
                                    DecisionReason.IN_PROGRESS, "r2"),
    "a hand-written one is adopted": DecisionCase(agent(), STABLE_STATUS, [existing("mine", owned=False)],
                                                  DecisionAction.ADOPT, DecisionReason.ADOPTED, "mine"),
    "promoted, the Agent status catches up": DecisionCase(
        agent(), STABLE_STATUS, [existing("r2", phase="Succeeded", finished=True)], DecisionAction.NONE,
        DecisionReason.PROMOTING, "r2"),
    "failed: not retried": DecisionCase(
        agent(), STABLE_STATUS, [existing("r2", phase=FAILED, finished=True, abort="AnalysisFailed")],
        DecisionAction.NONE, DecisionReason.FAILED, "r2"),
    "aborted by a human: not retried either": DecisionCase(
        agent(), STABLE_STATUS, [existing("r2", phase="Aborted", finished=True, abort="AbortedByUser")],
        DecisionAction.NONE, DecisionReason.FAILED, "r2"),
    "still rolling back: not retried": DecisionCase(
        agent(), STABLE_STATUS, [existing("r2", phase=FAILED, abort="AnalysisFailed")],
        DecisionAction.NONE, DecisionReason.FAILED, "r2"),
    "failed, then the strategy changed: retried": DecisionCase(
        agent(), STABLE_STATUS, [existing("r2", phase=FAILED, finished=True, abort="AnalysisFailed",
                                          digest="0000000000")], DecisionAction.CREATE, DecisionReason.CREATED),
    "failed, then another version was tried: retried": DecisionCase(
        agent(), STABLE_STATUS, [existing("r2", phase=FAILED, finished=True, abort="AnalysisFailed"),
                                 existing("r3", "bot-v3", phase="Aborted", finished=True, abort="Superseded",
                                          created="2026-11-24T11:30:00Z")],
        DecisionAction.CREATE, DecisionReason.CREATED),
    "superseded earlier: not a failure": DecisionCase(
        agent(), STABLE_STATUS, [existing("r2", phase="Aborted", finished=True, abort="Superseded")],
        DecisionAction.CREATE, DecisionReason.CREATED),
    "a newer version supersedes the running one": DecisionCase(
        agent(version="bot-v3"), STABLE_STATUS, [existing("r2")], DecisionAction.CREATE, DecisionReason.CREATED,
        supersede=("r2",)),
    "no strategy: at once": DecisionCase(agent(rollout=None), STABLE_STATUS, [], DecisionAction.SWITCH,
                                         DecisionReason.NO_STRATEGY),
    "no strategy still supersedes": DecisionCase(agent(rollout=None, version="bot-v3"), STABLE_STATUS,
                                                 [existing("r2")], DecisionAction.SWITCH, DecisionReason.NO_STRATEGY,
                                                 supersede=("r2",)),
    "immediate rollback to a known-good version": DecisionCase(
        agent(version="bot-v0", rollout={**ROLLOUT, "rollback": "immediate"}), STABLE_STATUS, [],
        DecisionAction.SWITCH, DecisionReason.IMMEDIATE_ROLLBACK),
    "immediate rollback, but never stable before": DecisionCase(
        agent(rollout={**ROLLOUT, "rollback": "immediate"}), STABLE_STATUS, [], DecisionAction.CREATE,
        DecisionReason.CREATED),
    "stepped rollback to a known-good version": DecisionCase(
        agent(version="bot-v0"), STABLE_STATUS, [], DecisionAction.CREATE, DecisionReason.CREATED),
    "another agent's rollouts do not count": DecisionCase(
        agent(), STABLE_STATUS, [{**existing("x"), "spec": {"agentRef": {"name": "other"}, "targetVersion": TARGET}}],
        DecisionAction.CREATE, DecisionReason.CREATED),
}


@pytest.mark.parametrize("case", DECISIONS.values(), ids=DECISIONS.keys())
def test_needs_rollout(case: DecisionCase) -> None:
    decision = decide(case.spec, case.status, case.rollouts)
    assert (decision.action, decision.reason) == (case.action, case.reason), decision.message
    if case.rollout is not None:
        assert decision.rollout == case.rollout
    assert decision.supersede == case.supersede


def test_a_created_rollout_is_owned_named_and_valid() -> None:
    decision = decide(agent(), STABLE_STATUS, [])
    body = decision.body
    assert body is not None
    rollout_object = AgentRollout.model_validate(body)
    assert rollout_object.spec == AgentRolloutSpec.model_validate(
        {"agentRef": {"name": "bot"}, "targetVersion": TARGET, "fromVersion": STABLE,
         "strategy": ROLLOUT})
    meta = body["metadata"]
    assert meta["name"] == decision.rollout and meta["name"].startswith("bot-bot-v2-") and len(meta["name"]) <= 63
    assert meta["ownerReferences"] == [{"apiVersion": "alm.dev/v1alpha1", "kind": "Agent", "name": "bot",
                                        "uid": "uid-bot", "controller": True, "blockOwnerDeletion": True}]
    assert meta["labels"]["alm.dev/agent"] == "bot" and meta["labels"]["alm.dev/version"] == TARGET
    assert meta["annotations"]["alm.dev/agent-generation"] == "3"
    assert decide(agent(), STABLE_STATUS, []).body == body, "deterministic"


def test_the_failed_rollout_blocks_only_its_own_attempt() -> None:
    decision = decide(agent(), STABLE_STATUS, [])
    assert decision.body is not None
    failed = {**decision.body, "status": {"phase": FAILED, "finishedAt": at(9), "message": "Rolled back",
                                          "abort": {"reason": "AnalysisFailed", "at": at(9)}}}
    blocked = decide(agent(), STABLE_STATUS, [failed])
    assert blocked.reason == DecisionReason.FAILED and "not retried" in blocked.message and STABLE in blocked.message
    relaxed = agent(kpis={"minSuccessRate": 0.5})
    retried = decide(relaxed, STABLE_STATUS, [failed])
    assert retried.action == DecisionAction.CREATE and retried.rollout != decision.rollout


def test_adoption_adds_an_owner_and_labels_and_never_the_spec() -> None:
    hand_written = existing("mine", owned=False)
    hand_written["metadata"]["ownerReferences"] = [{"kind": "Team", "name": "t", "uid": "u", "controller": True}]
    decision = decide(agent(), STABLE_STATUS, [hand_written])
    assert decision.body is not None and set(decision.body) == {"metadata"}
    refs = decision.body["metadata"]["ownerReferences"]
    assert refs[0]["kind"] == "Team" and refs[1]["uid"] == "uid-bot" and refs[1]["controller"] is False


@pytest.mark.parametrize(("agent_name", "target"), [("bot", "bot-v2"), ("a" * 60, "b" * 60), ("x", "v.1-rc")])
def test_rollout_names_fit_a_label(agent_name: str, target: str) -> None:
    name = rollout_name(agent_name, target, "0123456789abcdef")
    assert len(name) <= 63 and name.endswith("-0123456789") and ".-" not in name


def test_the_spec_hash_covers_version_strategy_and_kpis() -> None:
    from alm.api import AgentSpec

    base = AgentSpec.model_validate(agent())
    assert spec_hash(base) == spec_hash(AgentSpec.model_validate(agent(replicas=9)))
    for changed in (agent(version="bot-v9"), agent(kpis={"minSuccessRate": 0.9}),
                    agent(rollout={"canary": {"steps": [{"setWeight": 50}]}})):
        assert spec_hash(AgentSpec.model_validate(changed)) != spec_hash(base)


STRATEGY_BODIES: list[dict[str, Any]] = [{"canary": {"steps": [{"setWeight": 1}]}}, {"blueGreen": {}},
                                          {"shadow": {"duration": "1m"}}]


def test_strategy_kind() -> None:
    kinds_ = [rollout.strategy_kind(AgentRolloutSpec.model_validate(spec(s)))
              for s in STRATEGY_BODIES]
    assert kinds_ == ["canary", "blueGreen", "shadow"]


# --- ScaleDownAfter: when the previous version may go --------------------------------------------

@pytest.mark.parametrize(("strategy", "now", "until"), [
    ({"blueGreen": {"scaleDownDelaySeconds": 60}}, "2026-11-24T12:00:59Z", "2026-11-24T12:01:00Z"),
    ({"blueGreen": {"scaleDownDelaySeconds": 60}}, "2026-11-24T12:01:00Z", None),  # passed: nothing kept
    ({"blueGreen": {}}, "2026-11-24T12:00:10Z", "2026-11-24T12:00:30Z"),  # the API default: 30 s
    ({"blueGreen": {"scaleDownDelaySeconds": 0}}, "2026-11-24T12:00:00Z", None),
    ({"shadow": {"duration": "1m"}}, "2026-11-24T12:00:10Z", "2026-11-24T12:00:30Z"),
    ({"canary": {"steps": [{"setWeight": 50}]}, "trafficRouting": {"type": "gatewayAPI"}},
     "2026-11-24T12:00:10Z", "2026-11-24T12:00:30Z"),
    ({"canary": {"steps": [{"setWeight": 50}]}}, "2026-11-24T12:00:00Z", None),  # replicas: v1 has no pods left
])
def test_the_scale_down_deadline_is_finished_at_plus_the_strategy_delay(
        strategy: dict[str, Any], now: str, until: str | None) -> None:
    from alm.core.rolloutstart import retained
    body = {"metadata": {"name": "r"}, "spec": {"agentRef": {"name": "bot"}, "targetVersion": "v2",
                                                 "fromVersion": "v1", "strategy": strategy},
            "status": {"phase": "Succeeded", "finishedAt": "2026-11-24T12:00:00Z"}}
    keep = retained([body], "v2", now)
    assert (keep.until if keep else None) == until
    if keep is not None:
        assert keep.version == "v1" and keep.target == "v2"
    assert retained([body], "v1", now) is None  # not the promoted version
    aborted = {**body, "status": {**body["status"], "phase": "Aborted"}}
    assert retained([aborted], "v2", now) is None
