"""Kubernetes-style conditions that only change when their meaning changes.

``lastTransitionTime`` moves only when ``status`` flips; rewriting it on every pass
would make each resync a write (and a watch event, and another reconcile: a hot loop).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

__all__ = ["condition", "find", "merge_conditions"]

Condition = dict[str, Any]


def condition(type_: str, status: bool | str, reason: str, message: str) -> Condition:
    """A condition without a timestamp; :func:`merge_conditions` supplies one."""
    if isinstance(status, bool):
        status = "True" if status else "False"
    return {"type": type_, "status": status, "reason": reason, "message": message}


def find(conditions: Iterable[Mapping[str, Any]] | None, type_: str) -> Mapping[str, Any] | None:
    for cond in conditions or ():
        if cond.get("type") == type_:
            return cond
    return None


def merge_conditions(
    previous: Sequence[Mapping[str, Any]] | None,
    desired: Sequence[Condition],
    *,
    now: str,
    generation: int | None = None,
) -> list[Condition]:
    """Desired conditions, keeping the old transition time where the status is unchanged.

    Conditions not in ``desired`` are dropped: the planner always states every
    condition it owns, so an absent one means it no longer applies.
    """
    merged: list[Condition] = []
    for cond in desired:
        old = find(previous, cond["type"])
        unchanged = old is not None and old.get("status") == cond["status"]
        since = old.get("lastTransitionTime") if unchanged and old is not None else None
        item = dict(cond)
        item["lastTransitionTime"] = since or now
        if generation is not None:
            item["observedGeneration"] = generation
        merged.append(item)
    return merged
