"""``kubectl alm status``: an agent's phase and conditions, then its active (or last) rollout.

Why a module: the status view is the largest of ``kubectl alm``'s views (the rollout's steps,
weight bar, analysis and approvals); :func:`render_status` draws it for people and
:func:`status_data` gives the same facts as plain data for ``-o json|yaml``. Pure: objects in,
text or data out.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from rich.console import RenderableType
from rich.table import Table

from alm.cli import kubectl_format as fmt
from alm.cli.kubectl_format import DEFAULT_WIDTH, NONE
from alm.cli.kubectl_objects import Obj, get, is_finished, name_of

__all__ = [
    "agent_summary",
    "render_status",
    "status_data",
    "step_text",
    "weight_bar",
]


def weight_bar(weight: int, width: int = 20) -> str:
    """``[█████░░░░░░░░░░░░░░░]  25% canary``: the share of new sessions sent to the target."""
    weight = max(0, min(100, int(weight)))
    filled = round(weight * width / 100)
    return f"[{'█' * filled}{'░' * (width - filled)}] {weight:>3}% canary"


def step_text(step: Obj) -> str:
    """One canary step in words: ``setWeight 20%``, ``pause 5m``, ``analysis 10m``, ``approval``."""
    if step.get("setWeight") is not None:
        return f"setWeight {step['setWeight']}%"
    if "pause" in step:
        duration = get(step, "pause", "duration")
        return f"pause {duration}" if duration else "pause (until resumed)"
    if "analysis" in step:
        duration = get(step, "analysis", "duration")
        return f"analysis {duration}" if duration else "analysis"
    if "approval" in step:
        message = get(step, "approval", "message")
        approvers = get(step, "approval", "approvers")
        text = "approval"
        if message:
            text += f": {message}"
        if approvers:
            text += f" (approvers: {', '.join(approvers)})"
        return text
    return json.dumps(dict(step), sort_keys=True)


def _strategy(rollout: Obj) -> tuple[str, Obj]:
    strategy = get(rollout, "spec", "strategy") or {}
    for kind in ("canary", "blueGreen", "shadow"):
        if kind in strategy:
            return kind, strategy[kind] or {}
    return "unknown", {}


def agent_summary(agent: Obj) -> dict[str, Any]:
    status = get(agent, "status") or {}
    return {
        "name": name_of(agent),
        "namespace": get(agent, "metadata", "namespace"),
        "phase": status.get("phase") or "Pending",
        "version": get(agent, "spec", "version"),
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
    status = get(rollout, "status") or {}
    kind, strategy = _strategy(rollout)
    steps = [step_text(s) for s in strategy.get("steps") or []] if kind == "canary" else []
    runs = status.get("analysisRuns") or []
    return {
        "name": name_of(rollout),
        "phase": status.get("phase") or "Pending",
        "strategy": kind,
        "from": get(rollout, "spec", "fromVersion"),
        "target": get(rollout, "spec", "targetVersion"),
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
    table = fmt.table("TYPE", "STATUS", "REASON", "MESSAGE")
    for c in conds:
        fmt.row(table, c.get("type"), c.get("status"), c.get("reason"), c.get("message"))
    return table


def _steps_table(data: Mapping[str, Any]) -> Table:
    table = fmt.table("", "STEP", "WHAT")
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
        fmt.row(table, mark, index, text)
    return table


def _analysis_table(analysis: Mapping[str, Any]) -> Table:
    table = fmt.table("KPI", "VALUE", "THRESHOLD", "VERDICT", "MESSAGE")
    for m in analysis["measurements"]:
        fmt.row(table, m.get("kpi"), fmt.number(m.get("value")), fmt.number(m.get("threshold")), m.get("verdict"),
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
        return fmt.render(parts, width)
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
            text += f" ({ab['kpi']} {fmt.number(ab.get('value'))} vs threshold {fmt.number(ab.get('threshold'))})"
        parts += ["", text]
    return fmt.render(parts, width)
