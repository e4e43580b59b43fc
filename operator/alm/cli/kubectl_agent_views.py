"""``kubectl alm list``, ``history`` and ``budget``: the per-agent summaries.

Why a module: these views read only the Agent objects (their status KPIs, version history and
today's spend), not rollouts, audit logs or retirements. Each ``render_*`` view has a ``*_data``
twin giving the same facts as plain data for ``-o json|yaml``. Pure: objects in, text or data out.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from rich.console import RenderableType

from alm.cli import kubectl_format as fmt
from alm.cli.kubectl_format import DEFAULT_WIDTH, NONE
from alm.cli.kubectl_objects import Obj, cost_today, get, name_of

__all__ = [
    "budget_data",
    "history_data",
    "list_data",
    "render_budget",
    "render_history",
    "render_list",
]


def _kpis(agent: Obj) -> Mapping[str, Any]:
    status = get(agent, "status") or {}
    version = status.get("stableVersion") or get(agent, "spec", "version")
    found = (status.get("kpis") or {}).get(version)
    return found if isinstance(found, Mapping) else {}


def _quantile(agent: Obj) -> float:
    q = get(agent, "spec", "kpis", "latencyQuantile")
    return float(q) if isinstance(q, (int, float)) else 0.95


def list_data(agents: Sequence[Obj], today: str) -> list[dict[str, Any]]:
    rows = []
    for agent in sorted(agents, key=name_of):
        status = get(agent, "status") or {}
        kpis = _kpis(agent)
        rows.append({
            "name": name_of(agent),
            "version": get(agent, "spec", "version"),
            "stable": status.get("stableVersion"),
            "canary": status.get("canaryVersion"),
            "canaryWeight": int(status.get("canaryWeight") or 0),
            "phase": status.get("phase") or "Pending",
            "successRate": kpis.get("successRate"),
            "latencySeconds": kpis.get("latencySeconds"),
            "latencyQuantile": _quantile(agent),
            "costToday": cost_today(agent, today),
        })
    return rows


def render_list(agents: Sequence[Obj], today: str, *, width: int = DEFAULT_WIDTH) -> str:
    rows = list_data(agents, today)
    if not rows:
        return "No agents found.\n"
    table = fmt.table("NAME", "VERSION", "STABLE", "CANARY", "WEIGHT", "PHASE", "SUCCESS", "LATENCY", "COST TODAY")
    for row in rows:
        latency = fmt.seconds(row["latencySeconds"])
        if row["latencySeconds"] is not None:
            latency += f" p{row['latencyQuantile'] * 100:g}"
        fmt.row(table, row["name"], row["version"], row["stable"], row["canary"], f"{row['canaryWeight']}%",
             row["phase"], fmt.percent(row["successRate"]), latency, fmt.usd(row["costToday"]["usd"]))
    return fmt.render([table], width)


# --- history ----------------------------------------------------------------------------------

def history_data(agent: Obj) -> list[dict[str, Any]]:
    return [dict(e) for e in get(agent, "status", "history") or []]


def render_history(agent: Obj, *, width: int = DEFAULT_WIDTH) -> str:
    entries = history_data(agent)
    if not entries:
        return f"Agent {name_of(agent)} has no history yet.\n"
    table = fmt.table("#", "VERSION", "RESULT", "AT", "ROLLOUT")
    for index, e in enumerate(entries):
        fmt.row(table, index, e.get("version"), e.get("result"), e.get("promotedAt"), e.get("rollout"))
    return fmt.render([table], width)


# --- budget -----------------------------------------------------------------------------------

def budget_data(agent: Obj, today: str) -> dict[str, Any]:
    budget = get(agent, "spec", "budget") or {}
    cost = cost_today(agent, today)
    cond = next((c for c in get(agent, "status", "conditions") or [] if c.get("type") == "BudgetExceeded"), None)
    return {
        "agent": name_of(agent),
        "day": today,
        "tokens": {"used": cost["tokens"], "limit": budget.get("tokensPerDay")},
        "usd": {"used": cost["usd"], "limit": budget.get("usdPerDay")},
        "onExceeded": budget.get("onExceeded", "alert") if budget else None,
        "budgetExceeded": dict(cond) if cond is not None else None,
    }


def _usage(used: float, limit: Any, fmt: Any) -> tuple[str, str, str]:
    if not isinstance(limit, (int, float)) or limit <= 0:
        return fmt(used), "no limit", NONE
    share = used / limit
    filled = min(20, round(share * 20))
    return fmt(used), fmt(limit), f"[{'█' * filled}{'░' * (20 - filled)}] {share * 100:.0f}%"


def render_budget(agent: Obj, today: str, *, width: int = DEFAULT_WIDTH) -> str:
    data = budget_data(agent, today)
    parts: list[RenderableType | str] = [f"Agent:      {data['agent']}", f"Day (UTC):  {today}"]
    if data["onExceeded"] is None:
        parts.append("Budget:     none set (spec.budget)")
    else:
        parts.append(f"On exceed:  {data['onExceeded']}")
    table = fmt.table("", "USED", "LIMIT", "")
    fmt.row(table, "tokens", *_usage(data["tokens"]["used"], data["tokens"]["limit"], fmt.number))
    fmt.row(table, "usd", *_usage(data["usd"]["used"], data["usd"]["limit"], fmt.usd))
    parts += ["", table, ""]
    cond = data["budgetExceeded"]
    if cond is None:
        parts.append("BudgetExceeded: no")
    else:
        parts.append(f"BudgetExceeded: {cond.get('status')} ({cond.get('reason')}): {cond.get('message') or ''}")
    return fmt.render(parts, width)
