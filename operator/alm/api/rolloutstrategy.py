"""The rollout strategy: how a new version replaces the old (canary, blue-green or shadow).

Why a module: one strategy type is shared by ``Agent.spec.rollout`` (the default) and
``AgentRollout.spec.strategy`` (one transition); it holds the canary steps, the blue-green and
shadow settings, traffic routing (replicas or Gateway API) and the rollback mode.
"""

from __future__ import annotations

from typing import Literal, Self

from pydantic import ConfigDict, Field, model_validator

from alm.api.analysis import AnalysisSpec, CustomQuery, KPIThresholds
from alm.api.base import AlmModel, CelRule, count_set, list_map, validations
from alm.api.values import DNS1123Label, DNS1123Subdomain, Duration

__all__ = [
    "ApprovalStep",
    "BlueGreenStrategy",
    "CanaryStep",
    "CanaryStrategy",
    "GatewayAPIRouting",
    "ParentRef",
    "PauseStep",
    "RollbackMode",
    "RolloutStrategy",
    "ShadowRelativeThresholds",
    "ShadowStrategy",
    "StepAnalysis",
    "TrafficRouting",
    "TrafficRoutingType",
]


def _exactly_one_rule(what: str, *aliases: str) -> CelRule:
    checks = ", ".join(f"has(self.{alias})" for alias in aliases)
    names = ", ".join(aliases[:-1]) + f" or {aliases[-1]}"
    return CelRule(f"[{checks}].exists_one(x, x)", f"{what} must set exactly one of {names}")



class PauseStep(AlmModel):
    """Wait before the next step."""

    duration: Duration | None = None
    """How long to wait; absent means until resumed by hand (the resume annotation)."""


class StepAnalysis(AlmModel):
    """Measure the canary for a while before the next step."""

    duration: Duration | None = None
    """How long to measure; absent means one measurement interval."""
    thresholds: KPIThresholds | None = None
    """KPI limits for this step; absent means the strategy's, then the Agent's."""
    queries: list[CustomQuery] | None = Field(None, max_length=32, json_schema_extra=list_map("name"))
    """Extra PromQL checks for this step."""


class ApprovalStep(AlmModel):
    """Stop until a human approves (the approve annotation); the approval is audited."""

    message: str | None = None
    """What the approver should check."""
    approvers: list[str] | None = None
    """Users allowed to approve; absent means anyone who may annotate the AgentRollout."""


_ONE_ACTION = _exactly_one_rule("a canary step", "setWeight", "pause", "analysis", "approval")


class CanaryStep(AlmModel):
    """One step of a canary: exactly one of setWeight, pause, analysis or approval."""

    model_config = ConfigDict(json_schema_extra=validations(_ONE_ACTION))

    set_weight: int | None = Field(None, ge=0, le=100)
    """Send this percentage of new sessions to the canary."""
    pause: PauseStep | None = None
    """Wait, for a duration or until resumed."""
    analysis: StepAnalysis | None = None
    """Measure the canary's KPIs before going on."""
    approval: ApprovalStep | None = None
    """Wait for a human approval."""

    @model_validator(mode="after")
    def _check_rules(self) -> Self:
        _ONE_ACTION.check(count_set(self.set_weight, self.pause, self.analysis, self.approval) == 1)
        return self


class CanaryStrategy(AlmModel):
    """Shift traffic to the new version step by step, measuring as it goes."""

    steps: list[CanaryStep] = Field(min_length=1, max_length=64)
    """The steps, in order; reaching the end promotes the new version."""
    analysis: AnalysisSpec | None = None
    """Background analysis running during the whole canary."""


class BlueGreenStrategy(AlmModel):
    """Run the new version beside the old one, then switch all traffic at once."""

    preview_service: bool = True
    """Create a preview Service that reaches only the new version."""
    pre_promotion_analysis: AnalysisSpec | None = None
    """Analysis of the preview before the switch."""
    auto_promotion_seconds: int | None = Field(None, ge=0)
    """Switch automatically this long after the new version is ready; absent waits for promote."""
    scale_down_delay_seconds: int = Field(30, ge=0)
    """Keep the old version this long after the switch, for a quick way back."""


class ShadowRelativeThresholds(AlmModel):
    """Limits on the shadow version compared with the stable one on the same traffic."""

    max_success_rate_drop: float | None = Field(None, ge=0, le=1)
    """Largest acceptable drop of success rate (absolute, 0..1)."""
    max_latency_increase_ratio: float | None = Field(None, ge=0)
    """Largest acceptable latency increase as a ratio (0.2 = 20% slower)."""
    max_cost_increase_ratio: float | None = Field(None, ge=0)
    """Largest acceptable cost-per-task increase as a ratio."""


class ShadowStrategy(AlmModel):
    """Mirror live traffic to the new version without serving its answers.

    Tool calls of a shadow version run in dry-run (recorded and measured, not executed) unless
    the tool is declared readOnly, so a shadow causes no side effects.
    """

    duration: Duration
    """How long to mirror before judging."""
    mirror_percent: int = Field(100, ge=0, le=100)
    """Percentage of requests mirrored to the shadow."""
    analysis: AnalysisSpec | None = None
    """Absolute KPI analysis of the shadow."""
    relative: ShadowRelativeThresholds | None = None
    """Limits relative to the stable version."""


class ParentRef(AlmModel):
    """A Gateway API parent (usually a Gateway) an HTTPRoute attaches to."""

    name: DNS1123Subdomain
    """Name of the Gateway."""
    namespace: DNS1123Label | None = None
    """Namespace of the Gateway; absent means the Agent's namespace."""
    section_name: DNS1123Subdomain | None = None
    """A listener of the Gateway."""


class GatewayAPIRouting(AlmModel):
    """Settings of the Gateway API router."""

    http_route_name: DNS1123Subdomain | None = None
    """Use this existing HTTPRoute (only our backendRefs and filters are patched); absent means the
    operator creates and owns one."""
    parent_refs: list[ParentRef] = Field(default_factory=list)
    """Parents of the HTTPRoute the operator creates."""


TrafficRoutingType = Literal["replicas", "gatewayAPI"]


class TrafficRouting(AlmModel):
    """How traffic is split between versions."""

    type: TrafficRoutingType = "replicas"
    """replicas: the weight is the canary's share of ready pods behind one Service (no mesh, no
    mirroring). gatewayAPI: weighted backendRefs (and RequestMirror) on an HTTPRoute."""
    gateway_api: GatewayAPIRouting | None = Field(None, alias="gatewayAPI")
    """Settings for type gatewayAPI."""


RollbackMode = Literal["stepped", "immediate"]

_ONE_STRATEGY = _exactly_one_rule("a rollout strategy", "canary", "blueGreen", "shadow")


class RolloutStrategy(AlmModel):
    """How a new version replaces the old: exactly one of canary, blueGreen or shadow."""

    model_config = ConfigDict(json_schema_extra=validations(_ONE_STRATEGY))

    canary: CanaryStrategy | None = None
    """Shift traffic step by step."""
    blue_green: BlueGreenStrategy | None = None
    """Switch all traffic at once after a preview."""
    shadow: ShadowStrategy | None = None
    """Mirror traffic to the new version, then promote it if it measures well."""
    traffic_routing: TrafficRouting = TrafficRouting()
    """How traffic is split."""
    rollback: RollbackMode = "stepped"
    """stepped: walk the weight back down; immediate: send everything to stable at once."""

    @model_validator(mode="after")
    def _check_rules(self) -> Self:
        _ONE_STRATEGY.check(count_set(self.canary, self.blue_green, self.shadow) == 1)
        return self
