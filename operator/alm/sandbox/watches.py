"""Watch bookkeeping of the emulated API server: committed events, their log, and who sees what.

:class:`StoreEvent` is one committed change; :class:`WatchLog` keeps the recent events of each
resource (so a watch can resume from a resourceVersion, or get a 410 ``Expired`` once the log no
longer reaches back there) and feeds the open watches' queues in commit order. The functions at
the end decide which events a selective watcher sees, and as what. No HTTP and no storage here:
the store publishes to the log and the HTTP layer streams from the queues.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

import kmock

from alm.sandbox.apierrors import api_error
from alm.sandbox.resources import Requirement, matches_selectors


@dataclasses.dataclass(frozen=True)
class StoreEvent:
    """One committed change, as delivered to watchers (``old`` is the previous state, if any)."""

    type: str  # ADDED / MODIFIED / DELETED
    resource: kmock.resource  # the storage key
    object: dict[str, Any]
    old: dict[str, Any] | None
    rv: int


class WatchLog:
    """The recent events of each resource (by storage key) and the queues of the open watches."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._logs: dict[kmock.resource, collections.deque[StoreEvent]] = {}
        self._floors: dict[kmock.resource, int] = {}
        self._queues: dict[kmock.resource | None, set[asyncio.Queue[StoreEvent | None]]] = (
            collections.defaultdict(set))

    def events_since(self, key: kmock.resource, since: int) -> list[StoreEvent]:
        """The logged events after ``since``; a 410 ``Gone`` error if the log no longer reaches back there."""
        if since < self._floors.get(key, 0):
            raise api_error(410, 'Expired', f'too old resource version: {since} ({self._floors[key]})')
        return [event for event in self._logs.get(key, ()) if event.rv > since]

    def subscribe(self, key: kmock.resource | None) -> asyncio.Queue[StoreEvent | None]:
        """A queue that gets every later event of the resource (of all resources with ``None``)."""
        queue: asyncio.Queue[StoreEvent | None] = asyncio.Queue()
        self._queues[key].add(queue)
        return queue

    def unsubscribe(self, queue: asyncio.Queue[StoreEvent | None]) -> None:
        for queues in self._queues.values():
            queues.discard(queue)

    def close_all(self) -> None:
        """Put ``None`` ("the server is closing") in every open watch's queue."""
        for queues in self._queues.values():
            for queue in queues:
                queue.put_nowait(None)

    def publish(self, event: StoreEvent) -> None:
        """Log a committed event (dropping the oldest beyond the size) and feed the watchers."""
        log = self._logs.setdefault(event.resource, collections.deque())
        if len(log) >= self._size:
            self._floors[event.resource] = log.popleft().rv
        log.append(event)
        for queue in self._queues.get(event.resource, set()) | self._queues.get(None, set()):
            queue.put_nowait(event)


def event_matcher(
        namespace: str | None,
        name: str | None,
        labels: list[Requirement],
        fields: list[tuple[str, str, str]],
) -> Callable[[Mapping[str, Any]], bool]:
    """A predicate for objects in a watch: namespace, name, label and field selectors."""

    def matches(obj: Mapping[str, Any]) -> bool:
        meta = obj.get('metadata') or {}
        if namespace is not None and meta.get('namespace') != namespace:
            return False
        if name is not None and meta.get('name') != name:
            return False
        return matches_selectors(obj, labels, fields)

    return matches


def translate_event(event: StoreEvent, matches: Callable[[Mapping[str, Any]], bool]) -> str | None:
    """
    The event type a selective watcher should see, as a real server does: an object that starts
    matching is ADDED, one that stops matching is DELETED; ``None`` if it is not to be seen.
    """
    new_ok = matches(event.object)
    old_ok = event.old is not None and matches(event.old)
    if event.type == 'ADDED':
        return 'ADDED' if new_ok else None
    if event.type == 'DELETED':
        return 'DELETED' if new_ok or old_ok else None
    if new_ok and old_ok:
        return 'MODIFIED'
    if new_ok:
        return 'ADDED'
    if old_ok:
        return 'DELETED'
    return None
