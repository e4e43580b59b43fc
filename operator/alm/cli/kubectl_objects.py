"""What ``kubectl alm`` reads from API objects (plain dicts): names, phases, rollouts, cost, history.

Why a module: the commands (:mod:`alm.cli.kubectl_commands`) and the views both ask the same
questions of the objects they fetch (which rollout is active, which version to roll back to,
what was spent today); the answers live here once, with no API calls and no clock (callers pass
``today``, the UTC day the budget counts).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

__all__ = [
    "FINISHED_PHASES",
    "RETIREMENT_DONE",
    "Obj",
    "active_rollout",
    "cost_today",
    "get",
    "is_finished",
    "latest_rollout",
    "name_of",
    "previous_version",
]

Obj = Mapping[str, Any]

FINISHED_PHASES = frozenset({"Succeeded", "RolledBack", "Aborted"})
RETIREMENT_DONE = frozenset({"Retired", "Failed"})


def get(obj: Obj | None, *path: str) -> Any:
    cur: Any = obj
    for key in path:
        if not isinstance(cur, Mapping):
            return None
        cur = cur.get(key)
    return cur


def name_of(obj: Obj) -> str:
    return str(get(obj, "metadata", "name") or "")


def is_finished(rollout: Obj) -> bool:
    return get(rollout, "status", "phase") in FINISHED_PHASES


def active_rollout(rollouts: Sequence[Obj], agent: str) -> Obj | None:
    """The newest AgentRollout of ``agent`` that has not finished (one is active per Agent)."""
    mine = [r for r in rollouts if get(r, "spec", "agentRef", "name") == agent and not is_finished(r)]
    if not mine:
        return None
    return max(mine, key=lambda r: (str(get(r, "metadata", "creationTimestamp") or ""), name_of(r)))


def latest_rollout(rollouts: Sequence[Obj], agent: str) -> Obj | None:
    mine = [r for r in rollouts if get(r, "spec", "agentRef", "name") == agent]
    if not mine:
        return None
    return max(mine, key=lambda r: (str(get(r, "metadata", "creationTimestamp") or ""), name_of(r)))


def cost_today(agent: Obj, today: str) -> dict[str, Any]:
    """Tokens and US dollars spent on ``today`` (zero when status.cost counts another day)."""
    cost = get(agent, "status", "cost") or {}
    if cost.get("day") != today:
        return {"day": today, "tokens": 0, "usd": 0.0}
    return {"day": today, "tokens": int(cost.get("tokens") or 0), "usd": float(cost.get("usd") or 0.0)}


def previous_version(agent: Obj) -> str | None:
    """The version to roll back to: the newest Succeeded entry of status.history that is not spec.version."""
    current = get(agent, "spec", "version")
    for entry in reversed(get(agent, "status", "history") or []):
        if entry.get("result") == "Succeeded" and entry.get("version") and entry.get("version") != current:
            return str(entry["version"])
    return None
