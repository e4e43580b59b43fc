"""One pass of the AgentRollout planner: what it observes, what it may ask for, what it accumulates.

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
"""

from __future__ import annotations

import dataclasses
import datetime
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Any

from alm.api import AgentRolloutPhase as Phase
from alm.api import AgentRolloutSpec, AnalysisVerdict, KPIThresholds
from alm.core import analysis, conditions, weights
from alm.core.analysis import Criteria, RunReading, RunVerdict
from alm.core.audit import AuditAction, AuditIntent
from alm.core.events import EventIntent
from alm.core.rolloutcontrols import Controls

__all__ = [
    "AGENT_POLL",
    "CONFIRM",
    "GATEWAY_SCALE_DOWN_DELAY",
    "HOLDS",
    "PAUSE_GATES",
    "POLL",
    "PROGRESS_DEADLINE",
    "Action",
    "ConsumeControl",
    "MarkAgentRolloutFailed",
    "Pass",
    "Promote",
    "RolloutCond",
    "RolloutObservations",
    "RolloutReason",
    "ScaleDownAfter",
    "ScaleVersion",
    "SetMirror",
    "SetPreview",
    "SetWeight",
    "abort_message",
    "later",
    "parse_time",
    "scale_down_delay",
    "since",
]

Obj = dict[str, Any]

CONFIRM = 1.0  # traffic was sent back: look again soon to verify the router agrees
POLL = 5.0  # waiting for pods or for the router
AGENT_POLL = 30.0  # the Agent does not exist (yet)
PROGRESS_DEADLINE = 600.0  # waiting this long for pods or the router sets Progressing=False (no abort)
GATEWAY_SCALE_DOWN_DELAY = 30  # seconds the old version keeps its pods after a traffic-routed promotion


# --- Actions --------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class ScaleVersion:
    """Set the replicas of ``version``'s Deployment; ``shadow`` runs it as a shadow (tools in dry-run)."""

    version: str
    replicas: int
    shadow: bool = False


@dataclasses.dataclass(frozen=True)
class SetWeight:
    """Send ``weight`` % of new sessions to ``canary`` and the rest to ``stable``, keeping
    ``mirror_percent`` % mirrored to ``canary`` (``TrafficRouter.desired(target, weight, mirror)``)."""

    stable: str
    canary: str
    weight: int
    mirror_percent: int = 0


@dataclasses.dataclass(frozen=True)
class SetMirror:
    """Mirror ``percent`` % of ``stable``'s requests to ``shadow``, whose answers are dropped; a
    shadow serves nothing, so the weight is 0 (``TrafficRouter.desired(target, 0, percent)``)."""

    stable: str
    shadow: str
    percent: int


@dataclasses.dataclass(frozen=True)
class SetPreview:
    """Point the blue-green preview Service at ``version``; None removes it."""

    version: str | None


@dataclasses.dataclass(frozen=True)
class Promote:
    """Agent ``status.stableVersion`` := ``version``; history entry (version, promotedAt, rollout,
    Succeeded). Idempotent by ``rollout``: a repeated Promote adds no second history entry."""

    version: str
    previous: str | None
    rollout: str


@dataclasses.dataclass(frozen=True)
class ScaleDownAfter:
    """Scale ``version``'s Deployment to zero ``seconds`` after the promotion (a quick way back)."""

    version: str
    seconds: int


@dataclasses.dataclass(frozen=True)
class ConsumeControl:
    """Remove the annotation ``annotation``: the command was carried out (or refused, with an Event)."""

    annotation: str


@dataclasses.dataclass(frozen=True)
class MarkAgentRolloutFailed:
    """Agent condition ``RolloutFailed`` (True, ``reason``, ``message``) and a history entry with
    ``result`` (RolledBack or Aborted) for ``version``. Idempotent by ``rollout``."""

    version: str
    rollout: str
    result: str
    reason: str
    message: str


Action = (ScaleVersion | SetWeight | SetMirror | SetPreview | Promote | ScaleDownAfter | ConsumeControl
          | MarkAgentRolloutFailed)


class RolloutReason:
    """Condition and Event reasons of AgentRollouts (part of the API: change with a CHANGELOG entry)."""

    PROGRESSING = "RolloutProgressing"
    INVALID_SPEC = "InvalidSpec"
    VALID = "Valid"
    AGENT_NOT_FOUND = "AgentNotFound"
    NO_STABLE_VERSION = "NoStableVersion"
    VERSION_NOT_READY = "VersionNotReady"
    WAITING_FOR_ROLLOUT = "WaitingForRollout"
    STARTED = "RolloutStarted"
    STEP_COMPLETED = "StepCompleted"
    SETTING_WEIGHT = "SettingWeight"
    PROGRESS_DEADLINE = "ProgressDeadlineExceeded"
    PAUSE_STEP = "PauseStep"
    PAUSED_BY_USER = "PausedByUser"
    RESUMED = "Resumed"
    ANALYSIS_RUNNING = "AnalysisRunning"
    ANALYSIS_SUCCESSFUL = "AnalysisSuccessful"
    ANALYSIS_FAILED = "AnalysisFailed"
    ANALYSIS_INCONCLUSIVE = "AnalysisInconclusive"
    AWAITING_APPROVAL = "AwaitingApproval"
    APPROVED = "Approved"
    APPROVAL_REFUSED = "ApprovalRefused"
    PREVIEW = "Preview"
    AWAITING_PROMOTION = "AwaitingPromotion"
    MIRRORING = "Mirroring"
    SWITCHING = "Switching"
    PROMOTED_BY_USER = "PromotedByUser"
    SUCCEEDED = "Succeeded"
    ABORTED_BY_USER = "AbortedByUser"
    SUPERSEDED = "Superseded"
    ROLLING_BACK = "RollingBack"
    TRAFFIC_RESTORED = "TrafficRestored"
    CONTROL_IGNORED = "ControlIgnored"
    NOT_PAUSED = "NotPaused"
    IN_PROGRESS = "InProgress"


class RolloutCond:
    """Condition types of AgentRollouts."""

    PROGRESSING = "Progressing"  # True while the rollout moves on by itself
    PAUSED = "Paused"  # True while it waits for time or a human (reason says which)
    COMPLETED = "Completed"  # True once finished (Succeeded, or rolled back with traffic verified)
    INVALID = "Invalid"  # the spec cannot be acted on


R = RolloutReason
HOLDS = (R.PAUSED_BY_USER, R.ANALYSIS_INCONCLUSIVE)  # pauses only a human ends (resume, promote)
PAUSE_GATES = (R.PAUSE_STEP, R.AWAITING_PROMOTION)


@dataclasses.dataclass(frozen=True)
class RolloutObservations:
    """What the handler saw for one AgentRollout; versions are AgentVersion names."""

    name: str
    generation: int | None = None
    desired_version: str | None = None  # the Agent's spec.version; None: the Agent was not found
    stable_version: str | None = None  # the Agent's status.stableVersion
    replicas: int = 1  # the Agent's spec.replicas: pods of a version at full size
    target_ready: bool = True  # the target AgentVersion is Ready
    target_message: str = ""  # why not, if not
    scaled: Mapping[str, int] = dataclasses.field(default_factory=dict)  # spec.replicas per version's Deployment
    ready: Mapping[str, int] = dataclasses.field(default_factory=dict)  # ready (updated) pods per version
    shadows: Collection[str] = ()  # versions whose Deployment runs as a shadow
    router_weight: int | None = None  # the canary weight the router reads back; None: unknown
    router_mirror: int | None = None  # the mirror percent the router reads back; None: unknown
    preview: str | None = None  # the version the preview Service selects, if one exists
    readings: Sequence[RunReading] = ()  # answers to this pass's Measure requests
    controls: Controls = dataclasses.field(default_factory=Controls)
    agent_kpis: KPIThresholds | None = None  # the Agent's spec.kpis, for analysis without thresholds
    blocked_by: str | None = None  # another unfinished rollout of the Agent, created earlier


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


# --- Time -----------------------------------------------------------------------------------------


def parse_time(value: str) -> datetime.datetime:
    parsed = datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=datetime.UTC)


def since(then: str, now: str) -> float:
    return (parse_time(now) - parse_time(then)).total_seconds()


def later(then: str, seconds: float) -> str:
    moment = parse_time(then) + datetime.timedelta(seconds=seconds)
    return moment.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


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
