"""Budgets and continuous monitoring, with hand-computed cases."""

from __future__ import annotations

from typing import Any

import pytest

from alm.api import AgentSpec, BudgetSpec, ModelPricing
from alm.core import budget, monitoring
from alm.core.budget import Usage
from alm.core.monitoring import KPIValues, VersionMeasurement, plan_monitoring

PRICING = ModelPricing.model_validate({"inputPerMillionTokensUSD": 0.5, "outputPerMillionTokensUSD": 1.5})
NOW, LATER = "2026-11-24T12:00:00Z", "2026-11-24T12:00:30Z"


@pytest.mark.parametrize(("usage", "expected"), [
    (Usage(20_000, 4_000), 0.016),  # 20000*0.5/1e6 + 4000*1.5/1e6
    (Usage(20_000, 4_000, cost_usd=0.5), 0.5),  # reported cost wins
    (Usage(), 0.0),
    (Usage(1_000_000, 0), 0.5),
])
def test_price(usage: Usage, expected: float) -> None:
    assert budget.price(usage, PRICING) == pytest.approx(expected)


def test_accumulate_adds_within_a_day_and_restarts_on_the_next() -> None:
    first = budget.accumulate(None, "2026-11-24", Usage(20_000, 4_000), PRICING)
    assert first == {"day": "2026-11-24", "tokens": 24_000, "usd": 0.016}
    second = budget.accumulate(first, "2026-11-24", Usage(10_000, 0), PRICING)
    assert second == {"day": "2026-11-24", "tokens": 34_000, "usd": 0.021}
    assert budget.accumulate(second, "2026-11-24", Usage(), PRICING) == second  # nothing new: same value
    assert budget.accumulate(second, "2026-11-25", Usage(0, 1_000), PRICING) == {
        "day": "2026-11-25", "tokens": 1_000, "usd": 0.0015}


@pytest.mark.parametrize(("spec", "today", "exceeded", "suspend"), [
    (None, {"tokens": 10**9, "usd": 10**6}, False, False),
    ({"tokensPerDay": 1000}, {"tokens": 999, "usd": 0}, False, False),
    ({"tokensPerDay": 1000}, {"tokens": 1000, "usd": 0}, True, False),
    ({"usdPerDay": 1.0, "onExceeded": "suspend"}, {"tokens": 0, "usd": 1.2}, True, True),
    ({"usdPerDay": 2.0, "onExceeded": "suspend"}, {"tokens": 0, "usd": 1.2}, False, False),  # budget raised
])
def test_budget_verdict(spec: Any, today: dict[str, Any], exceeded: bool, suspend: bool) -> None:
    verdict = budget.evaluate(BudgetSpec.model_validate(spec) if spec else None, today, None)
    assert (verdict.exceeded, verdict.suspend) == (exceeded, suspend)
    assert verdict.condition["status"] == ("True" if exceeded else "False")


def test_budget_events_only_on_transitions() -> None:
    spec = BudgetSpec.model_validate({"tokensPerDay": 10})
    over = budget.evaluate(spec, {"tokens": 11}, None)
    assert [e.reason for e in over.events] == ["BudgetExceeded"]
    assert budget.evaluate(spec, {"tokens": 12}, over.condition).events == ()
    assert [e.reason for e in budget.evaluate(spec, {"tokens": 0}, over.condition).events] == ["BudgetRestored"]


SPEC = AgentSpec.model_validate({
    "version": "v1", "kpis": {"minSuccessRate": 0.9, "maxLatencySeconds": 2.0},
    "monitoring": {"consecutiveBreaches": 2}, "budget": {"tokensPerDay": 100_000, "onExceeded": "suspend"},
})
GOOD = VersionMeasurement(KPIValues(success_rate=0.97, latency_seconds=0.5), Usage(1000, 200))
BAD = VersionMeasurement(KPIValues(success_rate=0.6, latency_seconds=0.5), Usage(1000, 200))
EMPTY = VersionMeasurement(KPIValues())


def run(seq: list[VersionMeasurement]) -> list[monitoring.MonitoringPlan]:
    status: dict[str, Any] = {"conditions": [{"type": "Ready", "status": "True", "reason": "Available",
                                              "message": "ok", "lastTransitionTime": NOW}]}
    plans = []
    for i, measured in enumerate(seq):
        plan = plan_monitoring(SPEC, PRICING, status, {"v1": measured}, now=f"2026-11-24T12:0{i}:00Z", day="2026-11-24")
        status = {**status, **plan.status}
        plans.append(plan)
    return plans


def degraded(plan: monitoring.MonitoringPlan) -> str:
    return next(c for c in plan.status["conditions"] if c["type"] == "Degraded")["status"]


def test_degraded_after_n_consecutive_breaches_and_cleared_on_recovery() -> None:
    plans = run([BAD, GOOD, BAD, BAD, EMPTY, BAD, GOOD])
    assert [degraded(p) for p in plans] == ["False", "False", "False", "True", "True", "True", "False"]
    assert [p.status["monitoring"]["breaches"].get("v1", 0) for p in plans] == [1, 0, 1, 2, 2, 3, 0]
    reasons = [[e.reason for e in p.events] for p in plans]
    assert reasons[3] == ["KPIThresholdBreached"] and reasons[6] == ["KPIsRecovered"]
    assert all(r == [] for i, r in enumerate(reasons) if i not in (3, 6))
    assert "success rate 0.6 below 0.9" in next(c for c in plans[3].status["conditions"]
                                                  if c["type"] == "Degraded")["message"]


def test_conditions_of_other_planners_are_kept() -> None:
    plans = run([GOOD])
    assert [c["type"] for c in plans[0].status["conditions"]] == ["Ready", "Degraded", "BudgetExceeded"]


def test_no_data_keeps_the_last_kpis_and_a_quiet_interval_changes_nothing() -> None:
    plans = run([GOOD, EMPTY])
    assert plans[1].status["kpis"] == plans[0].status["kpis"]
    assert plans[1].status["cost"] == plans[0].status["cost"]


def test_budget_exceeded_suspends() -> None:
    heavy = VersionMeasurement(KPIValues(success_rate=1.0), Usage(90_000, 20_000))
    plans = run([heavy])
    assert plans[0].suspend
    assert plans[0].status["cost"]["tokens"] == 110_000
