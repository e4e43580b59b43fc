"""What a Deployment's status says about an agent's pods, in the terms alm decides on."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

from alm.core import conditions

__all__ = ["Workload", "observe_workload"]


@dataclasses.dataclass(frozen=True)
class Workload:
    exists: bool = False
    desired: int = 0
    replicas: int = 0
    ready: int = 0
    updated: int = 0
    available: bool = False
    rolling_out: bool = False
    message: str = ""


def observe_workload(children: Sequence[Mapping[str, Any]], deployment: str | None) -> Workload:
    """Summarise the named Deployment among ``children`` (absent: ``exists=False``)."""
    for child in children:
        meta = child.get("metadata", {})
        if child.get("kind") != "Deployment" or meta.get("name") != deployment:
            continue
        spec = child.get("spec") or {}
        status = child.get("status") or {}
        desired = int(spec.get("replicas", 1))
        updated = int(status.get("updatedReplicas", 0))
        observed = int(status.get("observedGeneration", 0))
        available = conditions.find(status.get("conditions"), "Available")
        rolling = observed < int(meta.get("generation", 1)) or updated < desired
        return Workload(
            exists=True,
            desired=desired,
            replicas=int(status.get("replicas", 0)),
            ready=int(status.get("readyReplicas", 0)),
            updated=updated,
            available=bool(available and available.get("status") == "True"),
            rolling_out=rolling,
            message=str(available.get("message", "")) if available else "",
        )
    return Workload()
