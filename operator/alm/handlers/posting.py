"""Kubernetes Events from plans: kopf's poster queues them and writes them in the background."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import kopf

from alm.core.events import EventIntent

__all__ = ["post"]


def post(body: Mapping[str, Any], events: Iterable[EventIntent]) -> None:
    for event in events:
        kopf.event(kopf.Body(dict(body)),  # type: ignore[arg-type]
                    type=event.type, reason=event.reason, message=event.message)
