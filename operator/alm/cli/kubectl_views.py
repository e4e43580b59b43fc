"""``kubectl alm``'s views: plain data (API objects as dicts) in, text or script data out.

Nothing here talks to the API server or reads a clock: callers pass ``today`` (the UTC day the
budget counts) and a terminal ``width``. Each human view has a ``*_data`` twin giving the same
facts as plain JSON-able data for ``-o json|yaml``.

Tables are drawn with ``rich`` (no colour, no markup: every cell is literal text), so the output
of one input is the same on every machine; the unit tests keep snapshots of it.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from rich.console import Console, RenderableType
from rich.table import Table
from rich.text import Text

__all__ = [
    "FINISHED_PHASES",
    "active_rollout",
    "agent_summary",
    "audit_data",
    "budget_data",
    "cost_today",
    "history_data",
    "is_finished",
    "latest_rollout",
    "list_data",
    "name_of",
    "previous_version",
    "render_audit",
    "render_budget",
    "render_history",
    "render_list",
    "render_retirement",
    "render_status",
    "retirement_data",
    "status_data",
    "step_text",
    "weight_bar",
]

Obj = Mapping[str, Any]

FINISHED_PHASES = frozenset({"Succeeded", "RolledBack", "Aborted"})
RETIREMENT_DONE = frozenset({"Retired", "Failed"})
DEFAULT_WIDTH = 160  # like kubectl, output to a pipe is not wrapped at 80 columns
NONE = "-"


# --- small helpers ----------------------------------------------------------------------------

def _get(obj: Obj | None, *path: str) -> Any:
    cur: Any = obj
    for key in path:
        if not isinstance(cur, Mapping):
            return None
        cur = cur.get(key)
    return cur


def name_of(obj: Obj) -> str:
    return str(_get(obj, "metadata", "name") or "")


def _percent(value: Any, digits: int = 1) -> str:
    return NONE if not isinstance(value, (int, float)) else f"{value * 100:.{digits}f}%"


def _seconds(value: Any) -> str:
    return NONE if not isinstance(value, (int, float)) else f"{value:.2f}s"


def _usd(value: Any) -> str:
    return NONE if not isinstance(value, (int, float)) else f"${value:,.2f}"


def _number(value: Any) -> str:
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return NONE
    return f"{value:,}" if isinstance(value, int) else f"{value:.4g}"


def _text(value: Any) -> Text:
    return Text(NONE if value is None or value == "" else str(value))


def _table(*columns: str, wrap: str | None = None) -> Table:
    """A kubectl-like table; only the ``wrap`` column (default: the last) folds when space runs out."""
    table = Table(box=None, show_edge=False, pad_edge=False, header_style="", padding=(0, 2, 0, 0))
    folding = wrap if wrap is not None else columns[-1]
    for column in columns:
        table.add_column(column, overflow="fold", no_wrap=column != folding)
    return table


def _row(table: Table, *cells: Any) -> None:
    table.add_row(*(_text(cell) for cell in cells))


def _render(parts: Iterable[RenderableType | str], width: int) -> str:
    out = io.StringIO()
    console = Console(file=out, width=width, color_system=None, force_terminal=False, markup=False,
                      highlight=False, emoji=False, legacy_windows=False, soft_wrap=False)
    for part in parts:
        console.print(Text(part) if isinstance(part, str) else part)
    return "\n".join(line.rstrip() for line in out.getvalue().splitlines()) + "\n"


def weight_bar(weight: int, width: int = 20) -> str:
    """``[█████░░░░░░░░░░░░░░░]  25% canary``: the share of new sessions sent to the target."""
    weight = max(0, min(100, int(weight)))
    filled = round(weight * width / 100)
    return f"[{'█' * filled}{'░' * (width - filled)}] {weight:>3}% canary"


def is_finished(rollout: Obj) -> bool:
    return _get(rollout, "status", "phase") in FINISHED_PHASES


def active_rollout(rollouts: Sequence[Obj], agent: str) -> Obj | None:
    """The newest AgentRollout of ``agent`` that has not finished (one is active per Agent)."""
    mine = [r for r in rollouts if _get(r, "spec", "agentRef", "name") == agent and not is_finished(r)]
    if not mine:
        return None
    return max(mine, key=lambda r: (str(_get(r, "metadata", "creationTimestamp") or ""), name_of(r)))


def latest_rollout(rollouts: Sequence[Obj], agent: str) -> Obj | None:
    mine = [r for r in rollouts if _get(r, "spec", "agentRef", "name") == agent]
    if not mine:
        return None
    return max(mine, key=lambda r: (str(_get(r, "metadata", "creationTimestamp") or ""), name_of(r)))


def cost_today(agent: Obj, today: str) -> dict[str, Any]:
    """Tokens and US dollars spent on ``today`` (zero when status.cost counts another day)."""
    cost = _get(agent, "status", "cost") or {}
    if cost.get("day") != today:
        return {"day": today, "tokens": 0, "usd": 0.0}
    return {"day": today, "tokens": int(cost.get("tokens") or 0), "usd": float(cost.get("usd") or 0.0)}


def previous_version(agent: Obj) -> str | None:
    """The version to roll back to: the newest Succeeded entry of status.history that is not spec.version."""
    current = _get(agent, "spec", "version")
    for entry in reversed(_get(agent, "status", "history") or []):
        if entry.get("result") == "Succeeded" and entry.get("version") and entry.get("version") != current:
            return str(entry["version"])
    return None


# --- list -------------------------------------------------------------------------------------

def _kpis(agent: Obj) -> Mapping[str, Any]:
    status = _get(agent, "status") or {}
    version = status.get("stableVersion") or _get(agent, "spec", "version")
    found = (status.get("kpis") or {}).get(version)
    return found if isinstance(found, Mapping) else {}


def _quantile(agent: Obj) -> float:
    q = _get(agent, "spec", "kpis", "latencyQuantile")
    return float(q) if isinstance(q, (int, float)) else 0.95


def list_data(agents: Sequence[Obj], today: str) -> list[dict[str, Any]]:
    rows = []
    for agent in sorted(agents, key=name_of):
        status = _get(agent, "status") or {}
        kpis = _kpis(agent)
        rows.append({
            "name": name_of(agent),
            "version": _get(agent, "spec", "version"),
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
    table = _table("NAME", "VERSION", "STABLE", "CANARY", "WEIGHT", "PHASE", "SUCCESS", "LATENCY", "COST TODAY")
    for row in rows:
        latency = _seconds(row["latencySeconds"])
        if row["latencySeconds"] is not None:
            latency += f" p{row['latencyQuantile'] * 100:g}"
        _row(table, row["name"], row["version"], row["stable"], row["canary"], f"{row['canaryWeight']}%",
             row["phase"], _percent(row["successRate"]), latency, _usd(row["costToday"]["usd"]))
    return _render([table], width)


# --- status -----------------------------------------------------------------------------------

def step_text(step: Obj) -> str:
    """One canary step in words: ``setWeight 20%``, ``pause 5m``, ``analysis 10m``, ``approval``."""
    if step.get("setWeight") is not None:
        return f"setWeight {step['setWeight']}%"
    if "pause" in step:
        duration = _get(step, "pause", "duration")
        return f"pause {duration}" if duration else "pause (until resumed)"
    if "analysis" in step:
        duration = _get(step, "analysis", "duration")
        return f"analysis {duration}" if duration else "analysis"
    if "approval" in step:
        message = _get(step, "approval", "message")
        approvers = _get(step, "approval", "approvers")
        text = "approval"
        if message:
            text += f": {message}"
        if approvers:
            text += f" (approvers: {', '.join(approvers)})"
        return text
    return json.dumps(dict(step), sort_keys=True)


def _strategy(rollout: Obj) -> tuple[str, Obj]:
    strategy = _get(rollout, "spec", "strategy") or {}
    for kind in ("canary", "blueGreen", "shadow"):
        if kind in strategy:
            return kind, strategy[kind] or {}
    return "unknown", {}


def agent_summary(agent: Obj) -> dict[str, Any]:
    status = _get(agent, "status") or {}
    return {
        "name": name_of(agent),
        "namespace": _get(agent, "metadata", "namespace"),
        "phase": status.get("phase") or "Pending",
        "version": _get(agent, "spec", "version"),
        "stable": status.get("stableVersion"),
        "canary": status.get("canaryVersion"),
        "canaryWeight": int(status.get("canaryWeight") or 0),
        "conditions": list(status.get("conditions") or []),
    }


def _newest_measurements(run: Obj) -> list[Obj]:
    """The newest measurement of each KPI of one analysis run, in first-seen order."""
    newest: dict[str, Obj] = {}
    for m in run.get("measurements") or []:
        newest[str(m.get("kpi"))] = m
    return list(newest.values())


def _rollout_data(rollout: Obj) -> dict[str, Any]:
    status = _get(rollout, "status") or {}
    kind, strategy = _strategy(rollout)
    steps = [step_text(s) for s in strategy.get("steps") or []] if kind == "canary" else []
    runs = status.get("analysisRuns") or []
    return {
        "name": name_of(rollout),
        "phase": status.get("phase") or "Pending",
        "strategy": kind,
        "from": _get(rollout, "spec", "fromVersion"),
        "target": _get(rollout, "spec", "targetVersion"),
        "weight": int(status.get("weight") or 0),
        "currentStep": int(status.get("currentStep") or 0),
        "steps": steps,
        "message": status.get("message"),
        "approvals": list(status.get("approvals") or []),
        "awaitingApproval": status.get("phase") == "AwaitingApproval",
        "analysis": ({"step": runs[-1].get("step"), "verdict": runs[-1].get("verdict"),
                      "measurements": _newest_measurements(runs[-1])} if runs else None),
        "abort": status.get("abort"),
        "finished": is_finished(rollout),
    }


def status_data(agent: Obj, rollout: Obj | None) -> dict[str, Any]:
    return {"agent": agent_summary(agent), "rollout": _rollout_data(rollout) if rollout is not None else None}


def _conditions_table(conds: Sequence[Obj]) -> Table:
    table = _table("TYPE", "STATUS", "REASON", "MESSAGE")
    for c in conds:
        _row(table, c.get("type"), c.get("status"), c.get("reason"), c.get("message"))
    return table


def _steps_table(data: Mapping[str, Any]) -> Table:
    table = _table("", "STEP", "WHAT")
    current, finished = data["currentStep"], data["finished"]
    for index, text in enumerate(data["steps"]):
        if (finished and data["phase"] == "Succeeded") or index < current:
            mark = "✔"
        elif index == current and not finished:
            mark = "▶"
        elif index == current:
            mark = "✘"  # where a rolled back or aborted rollout stopped
        else:
            mark = " "
        _row(table, mark, index, text)
    return table


def _analysis_table(analysis: Mapping[str, Any]) -> Table:
    table = _table("KPI", "VALUE", "THRESHOLD", "VERDICT", "MESSAGE")
    for m in analysis["measurements"]:
        _row(table, m.get("kpi"), _number(m.get("value")), _number(m.get("threshold")), m.get("verdict"),
             m.get("message"))
    return table


def render_status(agent: Obj, rollout: Obj | None, *, width: int = DEFAULT_WIDTH,
                  last: Obj | None = None) -> str:
    """The agent's phase and conditions, then its active rollout (or ``last``, the newest finished one)."""
    a = agent_summary(agent)
    parts: list[RenderableType | str] = [
        f"Agent:      {a['name']} (namespace {a['namespace'] or NONE})",
        f"Phase:      {a['phase']}",
        f"Version:    {a['version'] or NONE}    stable: {a['stable'] or NONE}    "
        f"canary: {a['canary'] or NONE} ({a['canaryWeight']}%)",
    ]
    if a["conditions"]:
        parts += ["", "Conditions:", _conditions_table(a["conditions"])]
    if rollout is None:
        parts += ["", "Rollout:    none active"]
        if last is not None:
            done = _rollout_data(last)
            parts.append(f"Last:       {done['name']} -> {done['target']}: {done['phase']}")
        return _render(parts, width)
    r = _rollout_data(rollout)
    parts += [
        "",
        f"Rollout:    {r['name']} ({r['strategy']})",
        f"Phase:      {r['phase']}",
        f"Versions:   {r['from'] or a['stable'] or NONE} -> {r['target']}",
        f"Weight:     {weight_bar(r['weight'])}",
    ]
    if r["message"]:
        parts.append(f"Message:    {r['message']}")
    if r["steps"]:
        parts += ["", "Steps:", _steps_table(r)]
    if r["analysis"] is not None:
        analysis = r["analysis"]
        where = f"step {analysis['step']}" if analysis["step"] is not None else "background"
        parts += ["", f"Analysis ({where}): {analysis['verdict'] or 'Running'}"]
        if analysis["measurements"]:
            parts.append(_analysis_table(analysis))
    parts += ["", "Approval:"]
    if r["awaitingApproval"]:
        step = r["currentStep"]
        text = r["steps"][step] if step < len(r["steps"]) else "approval"
        parts.append(f"  waiting at step {step} ({text}): run 'kubectl alm approve {a['name']}'")
    for approval in r["approvals"]:
        parts.append(f"  step {approval.get('step')} approved by {approval.get('approvedBy')} "
                     f"at {approval.get('approvedAt')}")
    if not r["awaitingApproval"] and not r["approvals"]:
        parts.append("  none required so far")
    if r["abort"]:
        ab = r["abort"]
        text = f"Stopped:    {ab.get('reason')} at {ab.get('at')}"
        if ab.get("kpi"):
            text += f" ({ab['kpi']} {_number(ab.get('value'))} vs threshold {_number(ab.get('threshold'))})"
        parts += ["", text]
    return _render(parts, width)


# --- history ----------------------------------------------------------------------------------

def history_data(agent: Obj) -> list[dict[str, Any]]:
    return [dict(e) for e in _get(agent, "status", "history") or []]


def render_history(agent: Obj, *, width: int = DEFAULT_WIDTH) -> str:
    entries = history_data(agent)
    if not entries:
        return f"Agent {name_of(agent)} has no history yet.\n"
    table = _table("#", "VERSION", "RESULT", "AT", "ROLLOUT")
    for index, e in enumerate(entries):
        _row(table, index, e.get("version"), e.get("result"), e.get("promotedAt"), e.get("rollout"))
    return _render([table], width)


# --- audit ------------------------------------------------------------------------------------

def audit_data(entries: Sequence[Obj], verdict: Mapping[str, Any] | None) -> dict[str, Any]:
    return {"entries": [dict(e) for e in entries], "verdict": dict(verdict) if verdict is not None else None}


def _details(details: Any, limit: int = 80) -> str:
    text = json.dumps(details, sort_keys=True, separators=(",", ":")) if details else ""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def render_audit(agent: str, entries: Sequence[Obj], verdict: Mapping[str, Any] | None, *,
                 width: int = DEFAULT_WIDTH) -> str:
    parts: list[RenderableType | str] = []
    if not entries:
        parts.append(f"Agent {agent} has no audit entries.")
    else:
        table = _table("SEQ", "AT", "ACTOR", "ACTION", "SUBJECT", "DETAILS")
        for e in entries:
            if "malformed" in e:
                _row(table, "?", None, None, "(malformed)", None, e["malformed"])
            else:
                _row(table, e.get("seq"), e.get("at"), e.get("actor"), e.get("action"), e.get("subject"),
                     _details(e.get("details")))
        parts.append(table)
    if verdict is not None:
        if verdict.get("ok"):
            parts += ["", f"Verified: {verdict.get('message')}"]
        else:
            parts += ["", f"TAMPERED ({verdict.get('kind')}, seq {verdict.get('seq')}): {verdict.get('message')}"]
    return _render(parts, width)


# --- budget -----------------------------------------------------------------------------------

def budget_data(agent: Obj, today: str) -> dict[str, Any]:
    budget = _get(agent, "spec", "budget") or {}
    cost = cost_today(agent, today)
    cond = next((c for c in _get(agent, "status", "conditions") or [] if c.get("type") == "BudgetExceeded"), None)
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
    table = _table("", "USED", "LIMIT", "")
    _row(table, "tokens", *_usage(data["tokens"]["used"], data["tokens"]["limit"], _number))
    _row(table, "usd", *_usage(data["usd"]["used"], data["usd"]["limit"], _usd))
    parts += ["", table, ""]
    cond = data["budgetExceeded"]
    if cond is None:
        parts.append("BudgetExceeded: no")
    else:
        parts.append(f"BudgetExceeded: {cond.get('status')} ({cond.get('reason')}): {cond.get('message') or ''}")
    return _render(parts, width)


# --- retirement -------------------------------------------------------------------------------

def retirement_data(retirement: Obj) -> dict[str, Any]:
    status = _get(retirement, "status") or {}
    return {
        "name": name_of(retirement),
        "agent": _get(retirement, "spec", "agentRef", "name"),
        "reason": _get(retirement, "spec", "reason"),
        "phase": status.get("phase") or "Pending",
        "message": status.get("message"),
        "revoked": list(status.get("revoked") or []),
        "archive": status.get("archive"),
    }


def render_retirement(retirement: Obj, *, width: int = DEFAULT_WIDTH) -> str:
    data = retirement_data(retirement)
    parts: list[RenderableType | str] = [
        f"Retirement: {data['name']} (agent {data['agent']})",
        f"Reason:     {data['reason']}",
        f"Phase:      {data['phase']}",
    ]
    if data["message"]:
        parts.append(f"Message:    {data['message']}")
    if data["revoked"]:
        table = _table("KIND", "NAME", "RESULT", "REVOKED AT")
        for r in data["revoked"]:
            _row(table, r.get("kind"), r.get("name"), r.get("result"), r.get("revokedAt"))
        parts += ["", "Revocation receipts:", table]
    archive = data["archive"]
    if archive:
        parts += ["", f"Archive:    {archive.get('location')} ({archive.get('sizeBytes')} bytes, "
                      f"{archive.get('parts', 1)} part(s))",
                  f"SHA-256:    {archive.get('sha256')}"]
    return _render(parts, width)
