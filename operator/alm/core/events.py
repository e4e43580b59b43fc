"""What the operator wants to tell humans: Kubernetes Events as plain values."""

from __future__ import annotations

import dataclasses

__all__ = ["EventIntent"]


@dataclasses.dataclass(frozen=True)
class EventIntent:
    reason: str
    message: str
    warning: bool = False

    @property
    def type(self) -> str:
        return "Warning" if self.warning else "Normal"
