"""``AgentRollout``: one transition of an Agent from one version to another.

The operator creates one (owned by the Agent) when ``Agent.spec.version`` changes; one may also
be written by hand. Human commands (promote, abort, pause, resume, approve, retry) arrive as
annotations and are recorded in status; the spec is never written by the operator.
"""

from __future__ import annotations

import enum
from typing import Any, Literal

from pydantic import Field

from alm.api.base import API_VERSION, AlmModel, list_map
from alm.api.rolloutstrategy import RolloutStrategy
from alm.api.values import (
    Condition,
    DNS1123Subdomain,
    KopfState,
    LocalObjectRef,
)

__all__ = [
    "AgentRollout",
    "AgentRolloutPhase",
    "AgentRolloutSpec",
    "AgentRolloutStatus",
    "AnalysisRun",
    "AnalysisVerdict",
    "Approval",
    "Measurement",
    "MeasurementVerdict",
    "RolloutAbort",
]


class AgentRolloutSpec(AlmModel):
    """Which Agent moves to which version, and how."""

    agent_ref: LocalObjectRef
    """The Agent (same namespace)."""
    target_version: DNS1123Subdomain
    """The AgentVersion to move to."""
    from_version: DNS1123Subdomain | None = None
    """The AgentVersion moved from; absent means the Agent's stable version at the start."""
    strategy: RolloutStrategy
    """Canary, blue-green or shadow, with traffic routing and analysis."""


class AgentRolloutPhase(enum.StrEnum):
    """Lifecycle phase of an AgentRollout.

    - Pending: accepted, not started (waiting for the target version to be Ready, or for another
      rollout of the Agent to finish).
    - Progressing: executing steps.
    - Paused: stopped by a pause step, the pause annotation, or an inconclusive analysis (the
      message says which); resumes with the resume annotation or when the pause ends.
    - AwaitingApproval: stopped at an approval step until someone approves.
    - Succeeded: the target version is now stable.
    - RolledBack: analysis failed; traffic went back to the previous version.
    - Aborted: stopped by a human (abort annotation); traffic went back to the previous version.
    """

    PENDING = "Pending"
    PROGRESSING = "Progressing"
    PAUSED = "Paused"
    AWAITING_APPROVAL = "AwaitingApproval"
    SUCCEEDED = "Succeeded"
    ROLLED_BACK = "RolledBack"
    ABORTED = "Aborted"


class AnalysisVerdict(enum.StrEnum):
    """Verdict of an analysis run.

    - Running: still measuring.
    - Successful: every measurement within limits.
    - Failed: more failed measurements than failureLimit; the rollout rolls back.
    - Inconclusive: more inconclusive measurements than inconclusiveLimit; the rollout pauses.
    """

    RUNNING = "Running"
    SUCCESSFUL = "Successful"
    FAILED = "Failed"
    INCONCLUSIVE = "Inconclusive"


class MeasurementVerdict(enum.StrEnum):
    """Verdict of one measurement.

    - Successful: within the threshold.
    - Failed: breached the threshold.
    - Inconclusive: not enough data to judge (e.g. no tasks in the window).
    - Error: the measurement itself failed (e.g. a query error); counts as inconclusive.
    - Baseline: the scrape provider only took its baseline (the version's first scrape, or the
      first after an operator restart); the next measurement judges. Counts as nothing.
    """

    SUCCESSFUL = "Successful"
    FAILED = "Failed"
    INCONCLUSIVE = "Inconclusive"
    ERROR = "Error"
    BASELINE = "Baseline"


class Approval(AlmModel):
    """A recorded human approval."""

    step: int = Field(ge=0)
    """Index of the approval step."""
    approved_by: str
    """Who approved."""
    approved_at: str
    """When (RFC 3339)."""


class Measurement(AlmModel):
    """One KPI or custom query measured once."""

    kpi: str
    """The KPI (successRate, latencySeconds, costPerTaskUSD, toolErrorRate, alignmentScore) or
    custom query name."""
    value: float | None = None
    """Measured value; absent when there was no data or an error."""
    threshold: float | None = None
    """The limit it was compared with."""
    verdict: MeasurementVerdict
    """Successful, Failed, Inconclusive, Error or Baseline."""
    measured_at: str
    """When (RFC 3339)."""
    message: str | None = None
    """Why, for Inconclusive and Error."""


class AnalysisRun(AlmModel):
    """One analysis (a step's, the background one, or pre-promotion)."""

    step: int | None = Field(None, ge=0)
    """Index of the analysis step; absent for background and pre-promotion analysis."""
    started_at: str
    """When the run started (RFC 3339)."""
    verdict: AnalysisVerdict = AnalysisVerdict.RUNNING
    """Running, Successful, Failed or Inconclusive."""
    measurements: list[Measurement] = Field(default_factory=list)
    """Measurements so far (the newest ones)."""


class RolloutAbort(AlmModel):
    """Why the rollout stopped early."""

    reason: str
    """Short reason, e.g. AnalysisFailed or AbortedByUser."""
    kpi: str | None = None
    """The KPI that failed, if analysis caused it."""
    value: float | None = None
    """Its measured value."""
    threshold: float | None = None
    """Its limit."""
    at: str
    """When (RFC 3339)."""


class AgentRolloutStatus(AlmModel):
    """Progress of the rollout."""

    # No docstring: the CRD shows the enum's, which documents every phase.
    phase: AgentRolloutPhase = AgentRolloutPhase.PENDING
    current_step: int = Field(0, ge=0)
    """Index of the step being executed (canary)."""
    weight: int = Field(0, ge=0, le=100)
    """Percentage of new sessions currently sent to the target version."""
    message: str | None = None
    """What is happening or what is awaited, for humans."""
    started_at: str | None = None
    """When the rollout started (RFC 3339)."""
    step_started_at: str | None = None
    """When the current step began (RFC 3339): pause deadlines and auto-promotion count from it."""
    finished_at: str | None = None
    """When it reached Succeeded, RolledBack or Aborted (RFC 3339)."""
    approvals: list[Approval] = Field(default_factory=list)
    """Approvals given."""
    analysis_runs: list[AnalysisRun] = Field(default_factory=list)
    """Analysis runs, oldest first."""
    abort: RolloutAbort | None = None
    """Why the rollout stopped early."""
    conditions: list[Condition] = Field(default_factory=list, json_schema_extra=list_map("type"))
    """Standard conditions (Progressing, Invalid, ...)."""
    observed_generation: int | None = Field(None, ge=0)
    """The metadata.generation this status describes."""
    kopf: KopfState | None = None
    """Progress and diff-base kopf stores in status instead of annotations (GitOps-friendly)."""


class AgentRollout(AlmModel):
    """One transition of an Agent from one version to another."""

    api_version: Literal["alm.dev/v1alpha1"] = API_VERSION
    """alm.dev/v1alpha1"""
    kind: Literal["AgentRollout"] = "AgentRollout"
    """AgentRollout"""
    metadata: dict[str, Any] = Field(default_factory=dict)
    """Standard object metadata."""
    spec: AgentRolloutSpec
    """Which Agent, which version, which strategy."""
    status: AgentRolloutStatus | None = None
    """Observed state, written by the operator."""
