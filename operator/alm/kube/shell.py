"""Applies the core's plans: children in order, deletions, then status once, then events.

Status is written last and only when it differs (see ``core.statuspatch``), so a
pass that applied nothing and changed nothing sends no request at all.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from alm.core.events import EventIntent
from alm.core.statuspatch import status_patch
from alm.kube.api import Kube

__all__ = ["EventPoster", "Outcome", "execute"]

log = logging.getLogger(__name__)

EventPoster = Callable[[Mapping[str, Any], EventIntent], None]


@dataclasses.dataclass
class Outcome:
    """What the API server returned for each write, for the caller's freshness cache."""

    applied: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    deleted: list[Mapping[str, Any]] = dataclasses.field(default_factory=list)
    patched: dict[str, Any] | None = None  # the parent after its status patch

    @property
    def wrote(self) -> bool:
        return bool(self.applied or self.deleted or self.patched is not None)


def execute(
    kube: Kube,
    body: Mapping[str, Any],
    *,
    apply: Sequence[Mapping[str, Any]] = (),
    delete: Sequence[Mapping[str, Any]] = (),
    status: Mapping[str, Any] | None = None,
    owned_status: Iterable[str] = (),
    events: Sequence[EventIntent] = (),
    post_event: EventPoster | None = None,
    settle: Callable[[Outcome], Mapping[str, Any] | None] | None = None,
) -> Outcome:
    """Carry out one plan for ``body``.

    ``settle``, when the plan applied or deleted children, is asked (with what the API server
    returned) for the status to write instead of ``status``: the one the next pass would compute
    from those children. ``None`` keeps ``status``. It saves the status write that only says
    "applying children" just before the next pass says they are applied.
    """
    outcome = Outcome()
    for obj in apply:
        outcome.applied.append(kube.apply(obj))
    for child in delete:
        meta = child.get("metadata", {})
        kube.delete(str(child.get("kind")), meta.get("namespace"), meta["name"], uid=meta.get("uid"))
        outcome.deleted.append(child)
    if settle is not None and status is not None and (outcome.applied or outcome.deleted):
        status = settle(outcome) or status
    meta = body.get("metadata", {})
    if status is not None:
        patch = status_patch(body.get("status"), status, owned_status)
        if patch is not None:
            outcome.patched = kube.merge_patch(str(body.get("kind")), meta.get("namespace"), meta["name"],
                                               {"status": patch}, subresource="status") or {}
            if "phase" in patch:
                log.info("%s %s/%s phase -> %s", body.get("kind"), meta.get("namespace"), meta["name"],
                         patch["phase"])
    if post_event is not None:
        for event in events:
            post_event(body, event)
    return outcome
