"""How a version's KPIs are judged: KPI thresholds, custom PromQL queries and analysis settings.

Why a module: the analysis settings are shared by the Agent (``spec.kpis``) and by every rollout
strategy (background, per-step and pre-promotion analysis); they are the vocabulary of "is this
version good enough", apart from how traffic moves (:mod:`alm.api.rolloutstrategy`).
"""

from __future__ import annotations

from typing import Self

from pydantic import ConfigDict, Field, model_validator

from alm.api.base import AlmModel, CelRule, count_set, list_map, validations
from alm.api.values import DNS1123Label, Duration

__all__ = ["AnalysisSpec", "CustomQuery", "KPIThresholds"]


class KPIThresholds(AlmModel):
    """Limits on the five agent KPIs; a version breaching any set limit fails analysis."""

    min_success_rate: float | None = Field(None, ge=0, le=1)
    """Lowest acceptable fraction of tasks that succeed (0..1)."""
    max_latency_seconds: float | None = Field(None, gt=0)
    """Highest acceptable task latency, in seconds, at latencyQuantile."""
    latency_quantile: float = Field(0.95, gt=0, lt=1)
    """Which quantile of task latency maxLatencySeconds applies to (0.95 = p95)."""
    max_cost_per_task_usd: float | None = Field(None, ge=0, alias="maxCostPerTaskUSD")
    """Highest acceptable mean model cost of one task, in US dollars."""
    max_tool_error_rate: float | None = Field(None, ge=0, le=1)
    """Highest acceptable fraction of tool calls that fail (0..1)."""
    min_alignment_score: float | None = Field(None, ge=0, le=1)
    """Lowest acceptable evaluation (alignment) score (0..1)."""


_QUERY_BOUND = CelRule("has(self.min) || has(self.max)", "a custom query needs min or max, otherwise it can never fail")


class CustomQuery(AlmModel):
    """A PromQL query whose (scalar) result must stay within [min, max]."""

    model_config = ConfigDict(json_schema_extra=validations(_QUERY_BOUND))

    name: DNS1123Label
    """Name of the measurement, as shown in analysis results."""
    query: str = Field(min_length=1)
    """PromQL returning one number; {{version}}, {{agent}} and {{namespace}} are substituted."""
    min: float | None = None
    """Lowest acceptable value (inclusive)."""
    max: float | None = None
    """Highest acceptable value (inclusive)."""

    @model_validator(mode="after")
    def _check_rules(self) -> Self:
        _QUERY_BOUND.check(count_set(self.min, self.max) > 0)
        return self


class AnalysisSpec(AlmModel):
    """How a version is judged: measure every interval, stop after too many failures."""

    interval: Duration = "30s"
    """Time between measurements, a duration such as 30s or 1m."""
    failure_limit: int = Field(0, ge=0)
    """Failed measurements tolerated; one more fails the analysis (and rolls back). The default 0
    rolls back on the first failed measurement, as in Argo Rollouts."""
    inconclusive_limit: int = Field(2, ge=0)
    """Inconclusive measurements (no data, query errors) tolerated before the rollout pauses."""
    thresholds: KPIThresholds | None = None
    """KPI limits; when absent, the Agent's spec.kpis apply."""
    queries: list[CustomQuery] = Field(default_factory=list, max_length=32, json_schema_extra=list_map("name"))
    """Extra PromQL checks (needs the prometheus metric provider)."""
