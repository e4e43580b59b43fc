"""What the AgentRollout planner observes and may ask for, and the words its status is written in.

The shell (:mod:`alm.handlers.rollouts`) observes an AgentRollout into
:class:`RolloutObservations` and carries out the :data:`Action` values of a plan in order; the
reasons and condition types are part of the API (Events, ``status.conditions``). They are kept
apart from the pass (:mod:`alm.core.rolloutpass`) and the strategies so that the contract with
the shell, and with users reading conditions, is one short module that changes on purpose only.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection, Mapping, Sequence

from alm.api import KPIThresholds
from alm.core.analysis import RunReading
from alm.core.rolloutcontrols import Controls

__all__ = [
    "HOLDS",
    "PAUSE_GATES",
    "Action",
    "ConsumeControl",
    "MarkAgentRolloutFailed",
    "Promote",
    "RolloutCond",
    "RolloutObservations",
    "RolloutReason",
    "ScaleDownAfter",
    "ScaleVersion",
    "SetMirror",
    "SetPreview",
    "SetWeight",
]


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
