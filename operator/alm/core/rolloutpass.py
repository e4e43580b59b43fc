"""One pass of the AgentRollout planner: what it accumulates, and the moves every strategy shares.

:mod:`alm.core.rollout` starts a :class:`Pass` from the spec, the previous status and the
observations, hands it to the strategy module (:mod:`~alm.core.canary`,
:mod:`~alm.core.bluegreen`, :mod:`~alm.core.shadow`), then turns it into the frozen plan. The
helpers here are the moves every strategy shares: scale a version, route a weight and check the
router agrees, drive an analysis run, pause, roll back, promote. They only *record* intents
(actions, events, audit entries, waits); nothing here does I/O or reads a clock.

Actions are declarative and idempotent: ``ScaleVersion`` and ``SetWeight`` are issued only when
an observation (a Deployment's replicas, the router's read-back) differs from what is wanted, so a
pass over a rollout that is where it should be asks for nothing. Transitions (promote, roll back,
mark the Agent failed, consume a control) are issued once, on the pass that makes them; the shell
applies the actions in order and writes the status only after all of them succeeded.

What a pass observes and may ask for (observations, actions, reasons, conditions) is
:mod:`alm.core.rollouttypes`; timestamps are compared and shifted with :mod:`alm.core.timestamps`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

from alm.api import AgentRolloutPhase as Phase
from alm.api import AgentRolloutSpec, AnalysisVerdict
from alm.core import analysis, conditions, weights
from alm.core.analysis import Criteria, RunVerdict
from alm.core.auditactions import AuditAction, AuditIntent
from alm.core.events import EventIntent
from alm.core.rollouttypes import (
    Action,
    MarkAgentRolloutFailed,
    Promote,
    RolloutCond,
    RolloutObservations,
    ScaleDownAfter,
    ScaleVersion,
    SetMirror,
    SetPreview,
    SetWeight,
)
from alm.core.rollouttypes import RolloutReason as R
from alm.core.timestamps import later, since

__all__ = [
    "AGENT_POLL",
    "CONFIRM",
    "GATEWAY_SCALE_DOWN_DELAY",
    "POLL",
    "PROGRESS_DEADLINE",
    "Pass",
    "abort_message",
    "scale_down_delay",
]

Obj = dict[str, Any]

CONFIRM = 1.0  # traffic was sent back: look again soon to verify the router agrees
POLL = 5.0  # waiting for pods or for the router
AGENT_POLL = 30.0  # the Agent does not exist (yet)
PROGRESS_DEADLINE = 600.0  # waiting this long for pods or the router sets Progressing=False (no abort)
GATEWAY_SCALE_DOWN_DELAY = 30  # seconds the old version keeps its pods after a traffic-routed promotion


def scale_down_delay(spec: AgentRolloutSpec) -> int:
    """Seconds the previous version keeps its pods after a promotion (a quick way back): the
    blue-green ``scaleDownDelaySeconds``; GATEWAY_SCALE_DOWN_DELAY for a shadow or the gatewayAPI
    router; none for a canary with the replicas router (at 100 % its stable version has no pods left)."""
    strategy = spec.strategy
    if strategy.blue_green is not None:
        return strategy.blue_green.scale_down_delay_seconds
    if strategy.shadow is not None or strategy.traffic_routing.type == "gatewayAPI":
        return GATEWAY_SCALE_DOWN_DELAY
    return 0


def _num(value: Any) -> str:
    return f"{value:.6g}" if isinstance(value, int | float) else "unbounded"


def abort_message(info: Mapping[str, Any]) -> str:
    """status.message of an aborted rollout, from status.abort alone (so every pass says the same)."""
    at, reason = info.get("at"), info.get("reason")
    if reason == R.ANALYSIS_FAILED:
        return (f"Rolled back at {at}: analysis failed: {info.get('kpi')} measured {_num(info.get('value'))}, "
                f"limit {_num(info.get('threshold'))}")
    if reason == R.SUPERSEDED:
        return f"Superseded at {at}: the Agent's spec.version names another version"
    return f"Aborted by a human at {at}"


# --- The pass -------------------------------------------------------------------------------------


@dataclasses.dataclass
class Pass:
    """The decisions of one pass, accumulated (private and short-lived; the plan is frozen)."""

    spec: AgentRolloutSpec
    obs: RolloutObservations
    now: str
    previous: Mapping[str, Any]
    strategy_key: str  # the run key of the strategy-level analysis (background, prePromotion, shadow)
    criteria: Callable[[str], Criteria]  # the criteria of a run key
    phase: str
    step: int
    weight: int
    step_started: str | None
    started: str | None
    finished: str | None
    approvals: list[Obj]
    runs: list[Obj]
    abort_info: Obj | None
    message: str
    reason: str
    hold: str | None  # PausedByUser or AnalysisInconclusive, until resumed (or promoted)
    gate: str | None = None  # PauseStep, AwaitingPromotion or AwaitingApproval: what this step waits on
    stalled: str | None = None  # why Progressing is False although the phase is Progressing
    mirroring: int = 0  # the mirror percent the current stage wants (shadow only)
    command_step: int | None = None  # the step the commands of this pass are for (resume, approve)
    resume_pending: bool = False  # a resume this pass: a pause step may take it
    resumed_hold: bool = False  # that resume ended a hold (so it was not for nothing)
    approval_pending: bool = False  # an approve an approval step may take
    actions: list[Action] = dataclasses.field(default_factory=list)
    events: list[EventIntent] = dataclasses.field(default_factory=list)
    audit: list[AuditIntent] = dataclasses.field(default_factory=list)
    waits: list[float] = dataclasses.field(default_factory=list)

    # --- who and what ---

    @property
    def subject(self) -> str:
        return f"AgentRollout/{self.obs.name}"

    @property
    def target(self) -> str:
        return self.spec.target_version

    @property
    def stable(self) -> str:
        return self.spec.from_version or self.obs.stable_version or ""

    @property
    def routing(self) -> weights.Routing:
        return self.spec.strategy.traffic_routing.type

    @property
    def total(self) -> int:
        return max(0, self.obs.replicas)

    @property
    def done(self) -> bool:
        return self.abort_info is not None or self.phase == Phase.SUCCEEDED

    def ready(self, version: str) -> int:
        return self.obs.ready.get(version, 0)

    # --- intents ---

    def act(self, action: Action) -> None:
        if action not in self.actions:
            self.actions.append(action)

    def tell(self, reason: str, message: str, *, warning: bool = False) -> None:
        self.events.append(EventIntent(reason, message, warning=warning))

    def record(self, action: str, actor: str | None = None, **details: Any) -> None:
        base = {"agent": self.spec.agent_ref.name, "targetVersion": self.target}
        intent = AuditIntent(action, self.subject, {**base, **details})
        self.audit.append(dataclasses.replace(intent, actor=actor) if actor else intent)

    def wait(self, seconds: float) -> None:
        self.waits.append(max(0.0, seconds))

    def wait_until(self, moment: str) -> None:
        self.wait(since(self.now, moment))

    def step_deadline(self, seconds: float) -> str:
        """``seconds`` after the current step started."""
        return later(self.step_started or self.now, seconds)

    def reached(self, moment: str) -> bool:
        return since(moment, self.now) >= 0

    def enter_step(self, index: int) -> None:
        self.step, self.step_started = index, self.now

    def pause_at(self, gate: str, message: str) -> None:
        self.gate, self.reason, self.message = gate, gate, message

    # --- traffic ---

    def scale(self, version: str, replicas: int, *, shadow: bool = False) -> None:
        if not version:
            return
        if self.obs.scaled.get(version) != replicas or (version in self.obs.shadows) != shadow:
            self.act(ScaleVersion(version, replicas, shadow))

    def route(self, weight: int, *, canary: int | None = None, stable: int | None = None,
              shadow: bool = False) -> bool:
        """Ask for ``weight`` % and the pods behind it; True once the pods are ready and the router agrees.

        Pods first, traffic second, as Argo Rollouts does: the canary is scaled up at once, but
        a higher weight is sent, and the stable version scaled down, only once the canary's pods
        are ready, so no share of traffic ever lands on pods that cannot serve it. A lower weight
        (an abort, a step back) is sent at once.
        """
        want = weights.canary_replicas(weight, self.total) if canary is None else canary
        keep = weights.stable_replicas(weight, self.total, self.routing) if stable is None else stable
        before = int(self.previous.get("weight") or 0)
        ready = self.ready(self.target) >= want
        self.weight = weight
        self.scale(self.target, want, shadow=shadow)
        if ready or keep > self.obs.scaled.get(self.stable, 0):
            self.scale(self.stable, keep)
        expected = weights.expected_weight(weight, self.routing, self.ready(self.target), self.ready(self.stable))
        seen = self.obs.router_weight
        lowering = weight == 0 or (seen is not None and weight < seen)
        # A new weight is sent even when the read-back matches: with no canary pod ready yet, the
        # read-back cannot show that the replicas router's Service still selects the stable only.
        if (ready or lowering) and (seen != expected or weight != before):
            self.act(SetWeight(self.stable, self.target, weight, self.mirroring))
        return ready and self.obs.router_weight == expected

    def mirror(self, percent: int) -> bool:
        self.mirroring = percent
        if self.obs.router_mirror != percent:
            self.act(SetMirror(self.stable, self.target, percent))
        return self.obs.router_mirror == percent

    def preview(self, version: str | None) -> None:
        if self.obs.preview != version:
            self.act(SetPreview(version))

    def waiting_for_pods(self, what: str) -> None:
        """Say what is awaited; past PROGRESS_DEADLINE, also say it is stuck (no abort: no verdict)."""
        self.message = what
        self.wait(POLL)
        if self.step_started is not None and since(self.step_started, self.now) > PROGRESS_DEADLINE:
            self.stalled = f"{what}, for more than {int(PROGRESS_DEADLINE)}s (since {self.step_started})"
            old = conditions.find(self.previous.get("conditions"), RolloutCond.PROGRESSING)
            if old is None or old.get("reason") != R.PROGRESS_DEADLINE:
                self.tell(R.PROGRESS_DEADLINE, self.stalled, warning=True)

    # --- analysis ---

    def run_key(self, run: Mapping[str, Any]) -> str:
        return f"step/{run['step']}" if run.get("step") is not None else self.strategy_key

    def run_index(self, step: int | None) -> int | None:
        found = [i for i, run in enumerate(self.runs) if run.get("step") == step]
        return found[-1] if found else None

    def _restartable(self, run: Mapping[str, Any], crit: Criteria) -> bool:
        """Truly inconclusive (not merely closed by a skip) and no longer held: measure afresh."""
        return (run.get("verdict") == AnalysisVerdict.INCONCLUSIVE and self.hold is None
                and analysis.verdict(run, crit).verdict == AnalysisVerdict.INCONCLUSIVE)

    def analyse(self, key: str, step: int | None, *, baseline: str | None = None) -> tuple[Obj, RunVerdict, str]:
        """Start, record and judge the run of ``key``; roll back or hold on its verdict.

        Returns the run as now recorded, its verdict and when the next measurement is due.
        """
        crit = self.criteria(key)
        index = self.run_index(step)
        if index is None or self._restartable(self.runs[index], crit):
            self.runs.append(analysis.new_run(self.now, step))
            index = len(self.runs) - 1
        before = self.runs[index]
        run = analysis.record(before, self.obs.readings, crit, key=key, target=self.target, baseline=baseline)
        self.runs[index] = run
        result = analysis.verdict(run, crit)
        due = analysis.next_due(run, crit)
        newly = before.get("verdict") == AnalysisVerdict.RUNNING and run["verdict"] != AnalysisVerdict.RUNNING
        if run["verdict"] == AnalysisVerdict.RUNNING:
            self.wait_until(due)
        elif newly:
            self.record(AuditAction.ANALYSIS_VERDICT, run=key, verdict=run["verdict"], message=result.message)
            if run["verdict"] == AnalysisVerdict.FAILED:
                self.abort(R.ANALYSIS_FAILED, f"Analysis {key} failed: {result.message}", result.culprit)
            elif run["verdict"] == AnalysisVerdict.INCONCLUSIVE:
                self.hold = R.ANALYSIS_INCONCLUSIVE
                self.tell(R.ANALYSIS_INCONCLUSIVE, f"Analysis {key} is inconclusive: {result.message}; paused "
                          "(resume to measure again, promote to skip it, abort to roll back)", warning=True)
            else:
                self.tell(R.ANALYSIS_SUCCESSFUL, f"Analysis {key} passed: {result.message}")
        return run, result, due

    def close_runs(self) -> None:
        self.runs = [analysis.close(run, self.criteria(self.run_key(run))) for run in self.runs]

    # --- endings ---

    def abort(self, reason: str, message: str, culprit: Mapping[str, Any] | None = None) -> None:
        """All traffic back to the stable version in one step; finished once the router agrees."""
        phase = Phase.ROLLED_BACK if reason == R.ANALYSIS_FAILED else Phase.ABORTED
        details = {key: (culprit or {}).get(field) for key, field in
                   (("kpi", "kpi"), ("value", "value"), ("threshold", "threshold"))}
        self.abort_info = {"reason": reason, **{k: v for k, v in details.items() if v is not None}, "at": self.now}
        self.phase, self.reason = str(phase), reason
        self.message = abort_message(self.abort_info)
        self.hold = self.gate = None
        self.close_runs()
        if reason != R.SUPERSEDED:
            self.act(MarkAgentRolloutFailed(self.target, self.obs.name, str(phase), reason, message))
        self.tell(reason, message, warning=reason != R.SUPERSEDED)
        self.record(AuditAction.ROLLED_BACK, result=str(phase), reason=reason, message=message, **details)

    def restore(self) -> None:
        """After an abort: hold traffic at 0 % until the router reads back 0, then finish."""
        self.message = abort_message(self.abort_info or {})
        self.reason = str((self.abort_info or {}).get("reason") or R.ROLLING_BACK)
        self.weight = self.mirroring = 0
        self.scale(self.stable, self.total)
        self.scale(self.target, 0, shadow=self.target in self.obs.shadows)
        self.preview(None)
        weight_ok = self.obs.router_weight == 0
        mirror_ok = self.strategy_key != "shadow" or self.obs.router_mirror == 0
        if not weight_ok:
            self.act(SetWeight(self.stable, self.target, 0))
        if not mirror_ok:
            self.act(SetMirror(self.stable, self.target, 0))
        if weight_ok and mirror_ok:
            self.finished = self.now
            self.message += f"; all traffic is back on {self.stable or 'the stable version'}"
            self.tell(R.TRAFFIC_RESTORED, f"All traffic is back on {self.stable or 'the stable version'}")
            return
        seen = "unknown" if self.obs.router_weight is None else f"{self.obs.router_weight}%"
        self.message += f"; waiting for the router to read back 0% (it reads {seen})"
        self.wait(CONFIRM)

    def succeed(self) -> None:
        self.act(Promote(self.target, self.stable or None, self.obs.name))
        if self.stable and self.stable != self.target:
            self.act(ScaleDownAfter(self.stable, scale_down_delay(self.spec)))
        self.preview(None)
        self.close_runs()
        self.phase, self.finished, self.weight, self.hold, self.gate = str(Phase.SUCCEEDED), self.now, 100, None, None
        self.reason, self.message = R.SUCCEEDED, f"{self.target} is the stable version"
        self.tell(R.SUCCEEDED, f"Promoted {self.target} (was {self.stable or 'none'})")
        self.record(AuditAction.PROMOTED, previousVersion=self.stable or None)
