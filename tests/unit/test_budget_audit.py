"""Budget actions in the audit log: which entry a transition makes, and when the log already has it."""

from __future__ import annotations

from typing import Any

import pytest

from alm.api import AgentSpec, BudgetSpec, ModelPricing
from alm.core import auditactions, auditchain, budget
from alm.core.monitoring import KPIValues, VersionMeasurement, plan_monitoring

DAY = "2026-11-24"
SUSPEND = BudgetSpec.model_validate({"tokensPerDay": 1000, "onExceeded": "suspend"})
ALERT = BudgetSpec.model_validate({"tokensPerDay": 1000})


def _intent(spec: BudgetSpec | None, tokens: int, previous: dict[str, Any] | None = None,
            day: str = DAY) -> tuple[budget.BudgetVerdict, auditactions.AuditIntent]:
    today = {"day": day, "tokens": tokens, "usd": 0.25}
    verdict = budget.evaluate(spec, today, previous)
    return verdict, budget.audit_intent("bot", spec, today, verdict)


def _log(*intents: auditactions.AuditIntent) -> list[dict[str, Any]]:
    entries: list[dict[str, Any]] = [dict(auditchain.append([], at="2026-11-24T00:00:00Z", actor="alm-operator",
                                                            action="created", subject="Agent/bot", details={}))]
    for intent in intents:
        entries.append(dict(auditchain.append(entries, at="2026-11-24T12:00:00Z", actor=intent.actor,
                                              action=str(intent.action), subject=intent.subject,
                                              details=intent.details)))
    return entries


def test_exceeding_with_suspend_is_a_budget_suspended_action() -> None:
    verdict, intent = _intent(SUSPEND, 1200)
    assert verdict.transition
    assert (intent.action, intent.subject, intent.actor) == ("budgetSuspended", "Agent/bot", "alm-operator")
    assert intent.details == {"day": DAY, "tokens": 1200, "usd": 0.25, "tokensPerDay": 1000, "usdPerDay": None,
                              "onExceeded": "suspend", "message": verdict.condition["message"]}


def test_exceeding_an_alert_only_budget_is_a_budget_exceeded_action() -> None:
    verdict, intent = _intent(ALERT, 1200)
    assert verdict.transition and intent.action == "budgetExceeded" and intent.details["onExceeded"] == "alert"


def test_only_transitions_are_actions() -> None:
    over, _ = _intent(SUSPEND, 1200)
    assert not _intent(SUSPEND, 1500, over.condition)[0].transition  # still over
    assert not _intent(SUSPEND, 10)[0].transition  # within budget, never over
    restored, intent = _intent(BudgetSpec.model_validate({"tokensPerDay": 5000}), 1500, over.condition)
    assert restored.transition and intent.action == "budgetRestored" and intent.details["tokensPerDay"] == 5000
    new_day, intent = _intent(SUSPEND, 0, over.condition, day="2026-11-25")
    assert new_day.transition and intent.action == "budgetRestored"
    removed, intent = _intent(None, 1500, over.condition)  # the budget removed
    assert removed.transition and intent.action == "budgetRestored" and intent.details["tokensPerDay"] is None


def test_recorded_when_the_newest_budget_entry_holds_the_same_state() -> None:
    over = _intent(SUSPEND, 1200)[1]
    alert = _intent(ALERT, 1200)[1]
    within = _intent(SUSPEND, 10, _intent(SUSPEND, 1200)[0].condition)[1]
    tomorrow = _intent(SUSPEND, 1200, day="2026-11-25")[1]
    assert not budget.recorded(over, _log())  # nothing yet
    assert budget.recorded(within, _log())  # nothing to restore
    assert budget.recorded(over, _log(over))  # a repeated pass (crash before its status write)
    assert budget.recorded(over, _log(alert))  # over is over, whatever the action then
    assert not budget.recorded(within, _log(over))
    assert budget.recorded(within, _log(over, within))
    assert not budget.recorded(over, _log(over, within))  # over again, after a restore
    assert not budget.recorded(tomorrow, _log(over))  # a new day's overrun is a new action
    # Other actions after the budget entry do not hide it.
    entries = _log(over)
    entries.append(dict(auditchain.append(entries, at="2026-11-24T13:00:00Z", actor="alm-operator",
                                          action="rolloutStarted", subject="AgentRollout/r", details={})))
    assert budget.recorded(over, entries) and not budget.recorded(within, entries)


@pytest.mark.parametrize(("tokens", "transition"), [(1200, True), (10, False)])
def test_the_monitoring_plan_carries_the_budget_verdict(tokens: int, transition: bool) -> None:
    spec = AgentSpec.model_validate({"version": "v1", "budget": {"tokensPerDay": 1000, "onExceeded": "suspend"}})
    measured = {"v1": VersionMeasurement(KPIValues(success_rate=1.0), budget.Usage(tokens, 0))}
    plan = plan_monitoring(spec, ModelPricing(), {}, measured, now="2026-11-24T12:00:00Z", day=DAY)
    assert plan.budget_verdict is not None and plan.budget_verdict.transition is transition
    again = plan_monitoring(spec, ModelPricing(), plan.status, {}, now="2026-11-24T12:00:30Z", day=DAY)
    assert again.budget_verdict is not None and not again.budget_verdict.transition
