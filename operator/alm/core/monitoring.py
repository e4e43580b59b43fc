"""Continuous monitoring: KPIs into status, Degraded after N breaching intervals in a row.

Each interval the operator measures every live version of an Agent; this planner folds the
measurements into ``status.kpis`` (with ``observedAt``), counts consecutive breaching
intervals per version (``status.monitoring.breaches``), raises the ``Degraded`` condition
when a count reaches ``spec.monitoring.consecutiveBreaches`` and clears it on the first
healthy interval, and keeps today's spending and the budget verdict. An interval without
data is neither a breach nor a recovery: the counters stay as they are.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from alm.api import AgentSpec, KPIThresholds, ModelPricing
from alm.core import budget, conditions
from alm.core.conditions import condition
from alm.core.events import EventIntent
from alm.core.reasons import Cond

__all__ = ["KPIValues", "MonitoringPlan", "VersionMeasurement", "breaches", "plan_monitoring"]

OWNED_CONDITIONS = (Cond.DEGRADED, budget.BUDGET_CONDITION)


@dataclasses.dataclass(frozen=True)
class KPIValues:
    success_rate: float | None = None
    latency_seconds: float | None = None
    cost_per_task_usd: float | None = None
    tool_error_rate: float | None = None
    alignment_score: float | None = None

    @property
    def empty(self) -> bool:
        return all(v is None for v in dataclasses.astuple(self))


@dataclasses.dataclass(frozen=True)
class VersionMeasurement:
    kpis: KPIValues
    usage: budget.Usage = dataclasses.field(default_factory=budget.Usage)


@dataclasses.dataclass(frozen=True)
class MonitoringPlan:
    status: dict[str, Any]  # kpis, cost, monitoring, conditions: merged into Agent.status
    events: tuple[EventIntent, ...] = ()
    suspend: bool = False
    budget_verdict: budget.BudgetVerdict | None = None  # its ``transition`` is a budget action to audit


def breaches(thresholds: KPIThresholds | None, kpis: KPIValues) -> list[str]:
    """Human-readable breaches; a KPI without a value never breaches (no data is not a verdict)."""
    if thresholds is None:
        return []
    checks = [
        ("success rate", kpis.success_rate, thresholds.min_success_rate, "<"),
        (f"p{round(thresholds.latency_quantile * 100)} latency", kpis.latency_seconds,
         thresholds.max_latency_seconds, ">"),
        ("cost per task", kpis.cost_per_task_usd, thresholds.max_cost_per_task_usd, ">"),
        ("tool error rate", kpis.tool_error_rate, thresholds.max_tool_error_rate, ">"),
        ("alignment score", kpis.alignment_score, thresholds.min_alignment_score, "<"),
    ]
    found = []
    for label, value, limit, bad in checks:
        if value is None or limit is None:
            continue
        if (bad == "<" and value < limit) or (bad == ">" and value > limit):
            found.append(f"{label} {value:.4g} {'below' if bad == '<' else 'above'} {limit:g}")
    return found


def _kpi_status(kpis: KPIValues, now: str) -> dict[str, Any]:
    doc = {
        "successRate": kpis.success_rate, "latencySeconds": kpis.latency_seconds,
        "costPerTaskUSD": kpis.cost_per_task_usd, "toolErrorRate": kpis.tool_error_rate,
        "alignmentScore": kpis.alignment_score,
    }
    rounded = {key: round(value, 6) for key, value in doc.items() if value is not None}
    return {**rounded, "observedAt": now}


def plan_monitoring(
    spec: AgentSpec, pricing: ModelPricing, status: Mapping[str, Any],
    measurements: Mapping[str, VersionMeasurement], *, now: str, day: str,
) -> MonitoringPlan:
    """Fold one interval's measurements (by version) into the Agent's status."""
    previous_kpis: Mapping[str, Any] = status.get("kpis") or {}
    previous_breaches: Mapping[str, int] = (status.get("monitoring") or {}).get("breaches") or {}
    needed = spec.monitoring.consecutive_breaches if spec.monitoring is not None else 3
    kpis: dict[str, Any] = {}
    counts: dict[str, int] = {}
    reasons: dict[str, list[str]] = {}
    usage = budget.Usage()
    for version, measured in sorted(measurements.items()):
        usage = budget.Usage(usage.input_tokens + measured.usage.input_tokens,
                             usage.output_tokens + measured.usage.output_tokens,
                             _add(usage.cost_usd, measured.usage.cost_usd))
        if measured.kpis.empty:  # no data this interval: keep what we knew
            if version in previous_kpis:
                kpis[version] = previous_kpis[version]
            counts[version] = int(previous_breaches.get(version, 0))
            continue
        kpis[version] = _kpi_status(measured.kpis, now)
        found = breaches(spec.kpis, measured.kpis)
        counts[version] = int(previous_breaches.get(version, 0)) + 1 if found else 0
        if found:
            reasons[version] = found
    degraded = {v: reasons.get(v, ["breaching"]) for v, n in counts.items() if n >= needed}
    cost = budget.accumulate(status.get("cost"), day, usage, pricing)
    previous_conditions = status.get("conditions") or []
    verdict = budget.evaluate(spec.budget, cost, conditions.find(previous_conditions, budget.BUDGET_CONDITION))
    degraded_cond = _degraded_condition(degraded, needed)
    events = list(verdict.events) + _degraded_events(conditions.find(previous_conditions, Cond.DEGRADED),
                                                     degraded_cond)
    merged = conditions.merge_conditions(previous_conditions, [degraded_cond, verdict.condition], now=now)
    others = [c for c in previous_conditions if c.get("type") not in OWNED_CONDITIONS]
    new_status = {
        "kpis": kpis,
        "cost": cost,
        "monitoring": {"breaches": {v: n for v, n in counts.items() if n}},
        "conditions": [*others, *merged],
    }
    return MonitoringPlan(new_status, tuple(events), verdict.suspend, verdict)


def _add(a: float | None, b: float | None) -> float | None:
    return None if a is None and b is None else (a or 0.0) + (b or 0.0)


def _degraded_condition(degraded: Mapping[str, list[str]], needed: int) -> conditions.Condition:
    if not degraded:
        return condition(Cond.DEGRADED, False, "KPIsWithinThresholds", "Every measured KPI is within its threshold")
    detail = "; ".join(f"{version}: {', '.join(found)}" for version, found in sorted(degraded.items()))
    return condition(Cond.DEGRADED, True, "KPIThresholdBreached",
                     f"KPIs breached their thresholds for {needed} consecutive intervals ({detail})")


def _degraded_events(previous: Mapping[str, Any] | None, current: conditions.Condition) -> list[EventIntent]:
    was = previous is not None and previous.get("status") == "True"
    if current["status"] == "True" and not was:
        return [EventIntent("KPIThresholdBreached", current["message"], warning=True)]
    if was and current["status"] != "True":
        return [EventIntent("KPIsRecovered", "KPIs are back within their thresholds")]
    return []
