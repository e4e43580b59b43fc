"""The AgentRollout planner: one pass from (spec, status, observations, now) to a frozen plan.

::

                 target Ready, no other rollout
    Pending ───────────────────────────────────► Progressing ⇄ Paused / AwaitingApproval
       │ abort, superseded                            │  steps done        │ analysis failed   │ abort, superseded
       ▼                                              ▼                    ▼                   ▼
    Aborted                                       Succeeded            RolledBack            Aborted
                                                                  (finishedAt once the router reads 0 %)

The strategy modules (:mod:`~alm.core.canary`, :mod:`~alm.core.bluegreen`,
:mod:`~alm.core.shadow`) decide the steps; this module starts the rollout, carries out the
human controls (:mod:`~alm.core.rolloutcontrols`), aborts a superseded rollout, verifies traffic
after an abort and writes the status once. Measuring is split off so the shell can do it
between two pure calls::

    requests = measurements_due(spec, status, observations, now)    # Measure values
    readings = [every Reading the MetricProvider returns for them]   # errors as readings, too
    plan(spec, status, replace(observations, readings=readings), now)

The status is a function of its inputs only: no timestamp is written unless something happened
at ``now`` (a step began, a measurement was recorded, an approval given), so a resync with
nothing new produces a byte-identical status and no event, and a restarted operator resumes at
the same step. :func:`needs_rollout` (from :mod:`alm.core.rolloutstart`) is the Agent side.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

import pydantic

from alm.api import AgentRolloutPhase as Phase
from alm.api import AgentRolloutSpec, AnalysisVerdict, KPIThresholds
from alm.core import analysis, bluegreen, canary, conditions, shadow, validation
from alm.core.analysis import Criteria, Measure
from alm.core.auditactions import AuditAction, AuditIntent
from alm.core.events import EventIntent
from alm.core.rolloutpass import AGENT_POLL, POLL, Pass
from alm.core.rolloutstart import Decision, needs_rollout
from alm.core.rollouttypes import (
    HOLDS,
    PAUSE_GATES,
    Action,
    ConsumeControl,
    RolloutCond,
    RolloutObservations,
)
from alm.core.rollouttypes import RolloutReason as R
from alm.core.timestamps import parse_time, since

__all__ = [
    "OWNED_STATUS_KEYS",
    "STRATEGIES",
    "Decision",
    "RolloutPlan",
    "measurements_due",
    "needs_rollout",
    "plan",
    "strategy_kind",
]

Obj = dict[str, Any]
OWNED_STATUS_KEYS = ("phase", "currentStep", "weight", "message", "startedAt", "finishedAt", "stepStartedAt",
                     "approvals", "analysisRuns", "abort", "conditions", "observedGeneration")
_ACTIVE = (Phase.PROGRESSING, Phase.PAUSED, Phase.AWAITING_APPROVAL)


@dataclasses.dataclass(frozen=True)
class _Strategy:
    key: str  # run key of its strategy-level analysis
    advance: Callable[[Pass], None]
    promote: Callable[[Pass, bool], str | None]
    criteria: Callable[[AgentRolloutSpec, str, KPIThresholds | None], Criteria]


STRATEGIES: Mapping[str, _Strategy] = {
    "canary": _Strategy(canary.KEY, canary.advance, canary.promote, canary.criteria),
    "blueGreen": _Strategy(bluegreen.KEY, bluegreen.advance, bluegreen.promote, bluegreen.criteria),
    "shadow": _Strategy(shadow.KEY, shadow.advance, shadow.promote, shadow.criteria),
}


@dataclasses.dataclass(frozen=True)
class RolloutPlan:
    """Do ``actions`` in order, then write ``status`` once (keys :data:`OWNED_STATUS_KEYS`), post
    ``events``, append ``audit`` to the Agent's log (subject ``subject``), look again after
    ``requeue_after`` seconds (None: only when something changes)."""

    status: Obj
    actions: tuple[Action, ...] = ()
    requeue_after: float | None = None
    events: tuple[EventIntent, ...] = ()
    audit: tuple[AuditIntent, ...] = ()
    subject: str = ""


def strategy_kind(spec: AgentRolloutSpec) -> str:
    """canary, blueGreen or shadow (the API guarantees exactly one)."""
    strategy = spec.strategy
    return "canary" if strategy.canary else "blueGreen" if strategy.blue_green else "shadow"


# --- One pass -------------------------------------------------------------------------------------


def _hold(status: Mapping[str, Any]) -> str | None:
    paused = conditions.find(status.get("conditions"), RolloutCond.PAUSED)
    if paused and paused.get("status") == "True" and paused.get("reason") in HOLDS:
        return str(paused["reason"])
    return None


def _start(spec: AgentRolloutSpec, previous: Mapping[str, Any], obs: RolloutObservations, now: str) -> Pass:
    prev = copy.deepcopy(dict(previous))
    strategy = STRATEGIES[strategy_kind(spec)]
    phase = str(prev.get("phase") or Phase.PENDING)
    return Pass(
        spec=spec, obs=obs, now=now, previous=previous, strategy_key=strategy.key,
        criteria=lambda key: strategy.criteria(spec, key, obs.agent_kpis),
        phase=str(Phase.PROGRESSING) if phase in _ACTIVE else phase,
        step=int(prev.get("currentStep") or 0), weight=int(prev.get("weight") or 0),
        step_started=prev.get("stepStartedAt"), started=prev.get("startedAt"), finished=prev.get("finishedAt"),
        approvals=list(prev.get("approvals") or []), runs=list(prev.get("analysisRuns") or []),
        abort_info=prev.get("abort"), message=str(prev.get("message") or ""), reason=R.PROGRESSING, hold=_hold(prev),
    )


def _begin(p: Pass) -> bool:
    """Start a Pending rollout if nothing stands in the way; say what does otherwise."""
    obs = p.obs
    waits = [
        (obs.desired_version is None, R.AGENT_NOT_FOUND, AGENT_POLL,
         f"Agent {p.spec.agent_ref.name!r} was not found in this namespace: create it or fix spec.agentRef"),
        (bool(obs.blocked_by), R.WAITING_FOR_ROLLOUT, POLL, f"Waiting for AgentRollout {obs.blocked_by} to finish"),
        (not p.stable, R.NO_STABLE_VERSION, POLL, "The Agent has no stable version yet to roll out from"),
        (not obs.target_ready, R.VERSION_NOT_READY, POLL,
         f"Waiting for AgentVersion {p.target} to be Ready" + (f": {obs.target_message}" if obs.target_message
                                                               else "")),
    ]
    for blocked, reason, seconds, message in waits:
        if blocked:
            p.reason, p.message = reason, message
            p.wait(seconds)
            return False
    p.phase, p.started, p.weight = str(Phase.PROGRESSING), p.now, 0
    p.enter_step(0)
    kind = strategy_kind(p.spec)
    p.tell(R.STARTED, f"Rolling out {p.target} (from {p.stable}, {kind})")
    p.record(AuditAction.ROLLOUT_STARTED, fromVersion=p.stable, strategy=kind)
    if p.target == p.stable:
        p.succeed()
    return True


def _superseded(p: Pass) -> bool:
    desired = p.obs.desired_version
    return desired is not None and desired != p.target


def _abort_requested(p: Pass) -> None:
    why = (p.obs.controls.abort or "").strip()
    p.record(AuditAction.MANUAL_OVERRIDE, command="abort", reason=why or None)
    p.abort(R.ABORTED_BY_USER, "Aborted by a human" + (f": {why}" if why else ""))


def _commands(p: Pass, strategy: _Strategy) -> None:
    """Promote, approve, resume and pause, in that order; pause wins over resume."""
    controls = p.obs.controls
    if controls.promote or controls.promote_full:
        command = "promote-full" if controls.promote_full else "promote"
        before = p.step
        refused = strategy.promote(p, controls.promote_full)
        if refused:
            p.tell(R.CONTROL_IGNORED, f"{command} refused: {refused}", warning=True)
        else:
            p.hold = None
            p.tell(R.PROMOTED_BY_USER, f"{command}: currentStep {before} -> {p.step}")
            p.record(AuditAction.MANUAL_OVERRIDE, command=command, fromStep=before, toStep=p.step)
    # Resume and approve apply to the step the rollout is at now (after a promote), never to a
    # step it reaches later in this pass: an early command must not pass the next gate.
    p.command_step = p.step
    p.approval_pending = controls.approve
    if controls.resume and controls.pause:
        p.tell(R.CONTROL_IGNORED, "resume ignored: alm.dev/pause was given too, and pause wins", warning=True)
    elif controls.resume:
        # Resume ends whatever pauses: a hold, and a pause step (which takes resume_pending).
        p.record(AuditAction.MANUAL_OVERRIDE, command="resume", step=p.step)
        p.tell(R.RESUMED, "Resumed")
        p.resumed_hold, p.hold, p.resume_pending = p.hold is not None, None, True
    if controls.pause:
        p.hold = R.PAUSED_BY_USER
        p.tell(R.PAUSED_BY_USER, "Paused by a human (alm.dev/pause)")
        p.record(AuditAction.MANUAL_OVERRIDE, command="pause", step=p.step)


def _leftovers(p: Pass) -> None:
    """Commands no step took: consumed all the same, with an Event saying why nothing happened."""
    if p.resume_pending and not p.resumed_hold:
        p.tell(R.CONTROL_IGNORED, "resume: nothing is paused", warning=True)
    if p.approval_pending:
        wanted = p.obs.controls.approve_step
        at = p.command_step if p.command_step is not None else p.step
        where = f"step {wanted} was named, the rollout is at currentStep {at}" if wanted not in (None, at) else (
            f"currentStep {at} is not an approval step")
        p.tell(R.CONTROL_IGNORED, f"approve: {where}", warning=True)
    p.resume_pending = p.approval_pending = False


def _ignore_controls(p: Pass, why: str) -> None:
    for annotation in p.obs.controls.present:
        p.act(ConsumeControl(annotation))
        p.tell(R.CONTROL_IGNORED, f"{annotation} ignored: {why}", warning=True)


def _hold_message(p: Pass) -> None:
    if p.hold == R.PAUSED_BY_USER:
        p.reason = R.PAUSED_BY_USER
        p.message = f"Paused by a human at currentStep {p.step}; annotate alm.dev/resume to go on"
        return
    stuck = [(p.run_key(run), analysis.verdict(run, p.criteria(p.run_key(run)))) for run in p.runs
             if run.get("verdict") == AnalysisVerdict.INCONCLUSIVE]
    found = [f"{key}: {result.message}" for key, result in stuck if result.verdict == AnalysisVerdict.INCONCLUSIVE]
    p.reason = R.ANALYSIS_INCONCLUSIVE
    p.message = (f"Paused: analysis inconclusive ({'; '.join(found[-1:]) or 'no data'}); annotate alm.dev/resume "
                 "to measure again, alm.dev/promote to skip it, alm.dev/abort to roll back")


def _finished(p: Pass) -> None:
    """Nothing moves any more; status says what it said when the rollout finished."""
    _ignore_controls(p, "the rollout is finished")
    progressing = conditions.find(p.previous.get("conditions"), RolloutCond.PROGRESSING)
    p.reason = str(progressing.get("reason")) if progressing else p.phase


def _active(p: Pass, strategy: _Strategy) -> None:
    controls = p.obs.controls
    for annotation in controls.present:
        p.act(ConsumeControl(annotation))
    if controls.abort is not None:
        _abort_requested(p)
    elif _superseded(p):
        p.abort(R.SUPERSEDED, f"Superseded: the Agent now wants {p.obs.desired_version}")
    else:
        _commands(p, strategy)
        strategy.advance(p)
        _leftovers(p)
    if p.abort_info is not None:
        p.restore()
    elif p.hold and not p.done:
        _hold_message(p)


def _stop_pending(p: Pass) -> None:
    """Nothing was ever routed: a rollout stopped before it started needs no traffic verified."""
    for annotation in p.obs.controls.present:
        p.act(ConsumeControl(annotation))
    if p.obs.controls.abort is not None:
        _abort_requested(p)
    else:
        p.abort(R.SUPERSEDED, f"Superseded before it started: the Agent now wants {p.obs.desired_version}")
    p.finished = p.now
    p.message += "; it never started, so no traffic moved"


def _pass(p: Pass, strategy: _Strategy) -> None:
    if p.finished is not None or p.phase == Phase.SUCCEEDED:
        _finished(p)
    elif p.abort_info is not None:
        _ignore_controls(p, "the rollout was aborted")
        p.restore()
    elif p.phase == Phase.PENDING and (p.obs.controls.abort is not None or _superseded(p)):
        _stop_pending(p)
    elif p.phase == Phase.PENDING:
        if _begin(p) and not p.done:
            _active(p, strategy)
    else:
        _active(p, strategy)


# --- Status ---------------------------------------------------------------------------------------


def _phase(p: Pass) -> str:
    if p.abort_info is not None or p.phase in (Phase.SUCCEEDED, Phase.PENDING):
        return p.phase
    if p.hold or p.gate in PAUSE_GATES:
        return str(Phase.PAUSED)
    return str(Phase.AWAITING_APPROVAL if p.gate == R.AWAITING_APPROVAL else Phase.PROGRESSING)


def _conditions(p: Pass, phase: str) -> list[conditions.Condition]:
    moving = phase == Phase.PROGRESSING and p.stalled is None
    paused = phase in (Phase.PAUSED, Phase.AWAITING_APPROVAL)
    progress = R.PROGRESS_DEADLINE if p.stalled else p.reason
    return [
        conditions.condition(RolloutCond.PROGRESSING, moving, progress, p.stalled or p.message),
        conditions.condition(RolloutCond.PAUSED, paused, (p.hold or p.gate or p.reason) if paused else R.NOT_PAUSED,
                             p.message if paused else ""),
        conditions.condition(RolloutCond.COMPLETED, p.finished is not None, phase if p.finished else R.IN_PROGRESS,
                             p.message if p.finished else ""),
        conditions.condition(RolloutCond.INVALID, False, R.VALID, "The spec is valid"),
    ]


def _status(p: Pass) -> Obj:
    phase = _phase(p)
    status: Obj = {
        "phase": phase, "currentStep": p.step, "weight": p.weight, "message": p.message,
        "startedAt": p.started, "finishedAt": p.finished, "stepStartedAt": p.step_started,
        "approvals": p.approvals, "analysisRuns": p.runs, "abort": p.abort_info,
        "conditions": conditions.merge_conditions(p.previous.get("conditions"), _conditions(p, phase), now=p.now),
        "observedGeneration": p.obs.generation,
    }
    return {key: value for key, value in status.items() if value is not None}


def _parse(spec: AgentRolloutSpec | Mapping[str, Any]) -> AgentRolloutSpec | str:
    if isinstance(spec, AgentRolloutSpec):
        return spec
    try:
        return AgentRolloutSpec.model_validate(spec)
    except pydantic.ValidationError as exc:
        return validation.describe(exc, "spec")


def plan(
    spec: AgentRolloutSpec | Mapping[str, Any],
    status: Mapping[str, Any] | None,
    observations: RolloutObservations,
    now: str,
) -> RolloutPlan:
    """Decide the next step of one AgentRollout. ``spec`` may be raw (validated here) or a model."""
    previous: Mapping[str, Any] = status or {}
    if previous.get("phase") not in (None, *Phase):
        return RolloutPlan(status=dict(previous))  # a phase this version does not know: change nothing
    parsed = _parse(spec)
    if isinstance(parsed, str):
        return _invalid(previous, observations, now, parsed)
    p = _start(parsed, previous, observations, now)
    _pass(p, STRATEGIES[strategy_kind(parsed)])
    return RolloutPlan(
        status=_status(p), actions=tuple(p.actions), requeue_after=min(p.waits) if p.waits else None,
        events=tuple(p.events), audit=tuple(p.audit), subject=p.subject,
    )


def _invalid(previous: Mapping[str, Any], obs: RolloutObservations, now: str, message: str) -> RolloutPlan:
    """A spec the operator cannot act on changes nothing but says what to fix (once)."""
    status = dict(copy.deepcopy(previous))
    status.setdefault("phase", str(Phase.PENDING))
    status["message"] = "Fix the spec: " + message
    status["observedGeneration"] = obs.generation
    status["conditions"] = conditions.merge_conditions(previous.get("conditions"), [
        conditions.condition(RolloutCond.PROGRESSING, False, R.INVALID_SPEC, "Fix the spec: " + message),
        conditions.condition(RolloutCond.INVALID, True, R.INVALID_SPEC, message),
    ], now=now)
    status = {key: value for key, value in status.items() if value is not None}
    announce = previous.get("message") != status["message"]
    events = (EventIntent(R.INVALID_SPEC, message, warning=True),) if announce else ()
    return RolloutPlan(status=status, events=events, subject=f"AgentRollout/{obs.name}")


# --- Measuring ------------------------------------------------------------------------------------


def measurements_due(
    spec: AgentRolloutSpec | Mapping[str, Any],
    status: Mapping[str, Any] | None,
    observations: RolloutObservations,
    now: str,
) -> tuple[Measure, ...]:
    """What the MetricProvider must measure before :func:`plan` runs: every running analysis run
    of the current step (and the strategy-level one) whose next round is due at ``now``."""
    previous = status or {}
    parsed = _parse(spec)
    if isinstance(parsed, str) or previous.get("phase") not in _ACTIVE or previous.get("abort"):
        return ()
    p = _start(parsed, previous, observations, now)
    latest = {run.get("step"): run for run in p.runs}  # the newest run per step (None: strategy-level)
    requests = []
    for step, run in latest.items():
        if run.get("verdict") != AnalysisVerdict.RUNNING or step not in (None, p.step):
            continue
        key = p.run_key(run)
        crit = p.criteria(key)
        due = analysis.next_due(run, crit)
        if not p.reached(due):
            continue
        measured = [str(m["measuredAt"]) for m in run.get("measurements") or ()]
        last = max(measured, key=parse_time) if measured else str(run["startedAt"])
        window = max(crit.interval, float(round(since(last, now))))
        requests.append(Measure(run=key, version=p.target, baseline=p.stable if crit.relative else None,
                                window_seconds=window, kpis=crit.kpis, queries=crit.queries,
                                latency_quantile=crit.latency_quantile))
    return tuple(requests)
