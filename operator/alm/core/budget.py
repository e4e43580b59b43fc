"""Daily budgets: what an Agent has spent today and whether it may go on spending.

Spending is accumulated per UTC day from the usage deltas monitoring measures each interval
(tokens always; cost as the agent reports it, or priced from its version's model pricing
when it reports none). The verdict is a pure function of today's totals and the budget, so
a new day (totals start again at zero) or a raised budget lifts a suspension by itself, and
no timer or stored "suspended" flag can get out of step with reality.

Each transition of the verdict (within budget -> exceeded, and back) is a budget action for the
audit log: :func:`audit_intent` is its entry (``budgetSuspended`` when the Agent is scaled to
zero, ``budgetExceeded`` when it only alerts, ``budgetRestored`` when spending is within the
budget again), and :func:`recorded` tells whether the log already holds it, so a pass repeated
after a crash or a restart never appends it twice.

Worked example: pricing 0.5 USD per million input tokens and 1.5 per million output tokens;
an interval with 20 000 input and 4 000 output tokens and no reported cost costs
20 000 * 0.5 / 1e6 + 4 000 * 1.5 / 1e6 = 0.01 + 0.006 = 0.016 USD.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

from alm.api import BudgetSpec, ModelPricing
from alm.core.auditactions import AuditAction, AuditIntent
from alm.core.conditions import Condition, condition
from alm.core.events import EventIntent

__all__ = ["AUDITED_ACTIONS", "BudgetVerdict", "Usage", "accumulate", "audit_intent", "evaluate", "price",
           "recorded"]

BUDGET_CONDITION = "BudgetExceeded"
_OVER = (AuditAction.BUDGET_EXCEEDED, AuditAction.BUDGET_SUSPENDED)
AUDITED_ACTIONS = (*_OVER, AuditAction.BUDGET_RESTORED)


@dataclasses.dataclass(frozen=True)
class Usage:
    """What the agent consumed during one measured interval (deltas, not totals)."""

    input_tokens: float = 0.0
    output_tokens: float = 0.0
    cost_usd: float | None = None  # None: the agent reports no cost; price it from the version


@dataclasses.dataclass(frozen=True)
class BudgetVerdict:
    exceeded: bool
    suspend: bool  # scale to zero now (onExceeded: suspend and over budget)
    condition: Condition
    events: tuple[EventIntent, ...] = ()
    transition: bool = False  # the verdict changed (exceeded, or within budget again): a budget action


def price(usage: Usage, pricing: ModelPricing) -> float:
    """Cost of ``usage`` in USD: as reported, or from the model's per-million-token prices."""
    if usage.cost_usd is not None:
        return usage.cost_usd
    return (usage.input_tokens * pricing.input_per_million_tokens_usd
            + usage.output_tokens * pricing.output_per_million_tokens_usd) / 1_000_000


def accumulate(previous: Mapping[str, Any] | None, day: str, usage: Usage, pricing: ModelPricing) -> dict[str, Any]:
    """Today's totals (``status.cost``) after adding ``usage``; a new UTC day starts from zero.

    Tokens are whole numbers in status; cost keeps 6 decimals (a micro-dollar), so the stored
    value is stable and a pass with no usage writes nothing.
    """
    same_day = previous is not None and previous.get("day") == day
    tokens = int(previous.get("tokens", 0)) if same_day and previous else 0
    usd = float(previous.get("usd", 0.0)) if same_day and previous else 0.0
    tokens += round(usage.input_tokens + usage.output_tokens)
    usd = round(usd + price(usage, pricing), 6)
    return {"day": day, "tokens": tokens, "usd": usd}


def evaluate(spec: BudgetSpec | None, today: Mapping[str, Any], previous_condition: Mapping[str, Any] | None
             ) -> BudgetVerdict:
    """Is today's spending within the budget? Announce only the transitions."""
    over: list[str] = []
    if spec is not None:
        if spec.tokens_per_day is not None and int(today.get("tokens", 0)) >= spec.tokens_per_day:
            over.append(f"{today.get('tokens')} tokens today, budget {spec.tokens_per_day}")
        if spec.usd_per_day is not None and float(today.get("usd", 0.0)) >= spec.usd_per_day:
            over.append(f"{float(today.get('usd', 0.0)):.4f} USD today, budget {spec.usd_per_day:g}")
    exceeded = bool(over)
    suspend = exceeded and spec is not None and spec.on_exceeded == "suspend"
    if exceeded:
        action = "scaled to zero until the next UTC day or a higher budget" if suspend else "alerting only"
        cond = condition(BUDGET_CONDITION, True, "Exceeded", f"Daily budget exceeded ({'; '.join(over)}): {action}")
    else:
        cond = condition(BUDGET_CONDITION, False, "WithinBudget", "Spending is within the daily budget")
    was = previous_condition is not None and previous_condition.get("status") == "True"
    events: tuple[EventIntent, ...] = ()
    if exceeded and not was:
        events = (EventIntent("BudgetExceeded", cond["message"], warning=True),)
    elif was and not exceeded:
        events = (EventIntent("BudgetRestored", "Spending is within the daily budget again"),)
    return BudgetVerdict(exceeded, suspend, cond, events, transition=bool(events))


def audit_intent(agent: str, spec: BudgetSpec | None, today: Mapping[str, Any], verdict: BudgetVerdict
                 ) -> AuditIntent:
    """The audit entry of the budget state ``verdict`` stands for: what was spent, against what budget."""
    if not verdict.exceeded:
        action = AuditAction.BUDGET_RESTORED
    else:
        action = AuditAction.BUDGET_SUSPENDED if verdict.suspend else AuditAction.BUDGET_EXCEEDED
    details: dict[str, Any] = {
        "day": today.get("day"), "tokens": int(today.get("tokens", 0)), "usd": float(today.get("usd", 0.0)),
        "tokensPerDay": spec.tokens_per_day if spec is not None else None,
        "usdPerDay": spec.usd_per_day if spec is not None else None,
        "onExceeded": spec.on_exceeded if spec is not None else None,
        "message": verdict.condition["message"],
    }
    return AuditIntent(action, f"Agent/{agent}", details)


def recorded(intent: AuditIntent, entries: Sequence[Mapping[str, Any]]) -> bool:
    """Whether the log's newest budget entry already records the state of ``intent``.

    Over budget (``budgetExceeded``/``budgetSuspended``) is recorded by an over-budget entry of the
    same day (a new day's overrun is a new action); within budget by ``budgetRestored``, or by no
    budget entry at all (nothing to restore).
    """
    last = next((e for e in reversed(entries) if e.get("action") in AUDITED_ACTIONS), None)
    if intent.action not in _OVER:
        return last is None or last.get("action") == AuditAction.BUDGET_RESTORED
    return (last is not None and last.get("action") in _OVER
            and (last.get("details") or {}).get("day") == intent.details.get("day"))
