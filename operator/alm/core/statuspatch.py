"""The smallest merge patch that turns the current status into the desired one.

Only keys the planner owns are touched (kopf keeps its own ``status.kopf``, other
controllers may add theirs); an owned key missing from the desired status is
removed with ``null``. No difference means no patch: a resync writes nothing.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

__all__ = ["status_patch"]


def status_patch(
    current: Mapping[str, Any] | None, desired: Mapping[str, Any], owned: Iterable[str]
) -> dict[str, Any] | None:
    current = current or {}
    patch: dict[str, Any] = {}
    for key in owned:
        if key in desired:
            if current.get(key) != desired[key]:
                patch[key] = desired[key]
        elif current.get(key) is not None:
            patch[key] = None
    return patch or None
