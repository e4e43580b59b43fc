"""Watch streams of the emulated API server: replay, live events, bookmarks and timeouts.

A watch request becomes an async stream of events: the replay from the store (all objects, or
the events after the requested resourceVersion), then live events as the store commits them,
each translated for the watcher's selectors, with ``BOOKMARK`` events and the
``sendInitialEvents`` end marker when asked for, until ``timeoutSeconds`` or the server closes.
:class:`WatchStreaming` is a base of :class:`alm.sandbox.apiserver.ApiServerEmulator`.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

import kmock

from alm.sandbox.apierrors import api_error, status_body
from alm.sandbox.objectstore import ObjectStore
from alm.sandbox.requestparsing import parse_selectors
from alm.sandbox.resources import ResourceDef
from alm.sandbox.watches import event_matcher, translate_event


class WatchStreaming:
    """Serve watches from :attr:`store` (see the module docstring)."""

    __slots__ = ()
    store: ObjectStore
    bookmark_interval: float
    _closing: bool

    def _watch(self, rdef: ResourceDef, namespace: str | None, name: str | None,
               params: Mapping[str, str]) -> AsyncIterator[Any]:
        labels, fields = parse_selectors(params)
        raw_since = params.get('resourceVersion', '')
        try:
            since = None if raw_since in ('', '0') else int(raw_since)
            timeout = float(params['timeoutSeconds']) if params.get('timeoutSeconds') else None
        except ValueError as e:
            raise api_error(400, 'BadRequest', f'invalid watch parameters: {e}') from e
        return self._stream_watch(
            rdef, event_matcher(namespace, name, labels, fields), since=since, timeout=timeout,
            bookmarks=params.get('allowWatchBookmarks') == 'true',
            initial_events_end=since is None and params.get('sendInitialEvents') == 'true',
        )

    async def _stream_watch(
            self,
            rdef: ResourceDef,
            matches: Callable[[Mapping[str, Any]], bool],
            *,
            since: int | None,
            timeout: float | None,
            bookmarks: bool,
            initial_events_end: bool,
    ) -> AsyncIterator[Any]:
        yield b''  # send the headers now: clients wait for them before reading events
        if self._closing:
            return
        try:
            replay, queue = self.store.open_watch(rdef, since)
        except kmock.KubernetesError as e:
            yield {'type': 'ERROR', 'object': status_body(e)}
            return
        last_rv = int(self.store.resource_version)
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        try:
            for event in replay:
                seen_as = translate_event(event, matches)
                if seen_as is not None:
                    yield {'type': seen_as, 'object': self._as_served(rdef, event.object)}
            if initial_events_end:
                yield self._bookmark(rdef, last_rv, initial_events_end=True)
            while True:
                wait = self.bookmark_interval if bookmarks else None
                if deadline is not None:
                    remaining = deadline - loop.time()
                    if remaining <= 0:
                        return
                    wait = remaining if wait is None else min(wait, remaining)
                try:
                    item = await (queue.get() if wait is None else asyncio.wait_for(queue.get(), wait))
                except TimeoutError:
                    if bookmarks and (deadline is None or loop.time() < deadline):
                        yield self._bookmark(rdef, last_rv)
                    continue
                if item is None:
                    return
                last_rv = item.rv
                seen_as = translate_event(item, matches)
                if seen_as is not None:
                    yield {'type': seen_as, 'object': self._as_served(rdef, item.object)}
        finally:
            self.store.close_watch(queue)

    def _as_served(self, rdef: ResourceDef, obj: Mapping[str, Any]) -> dict[str, Any]:
        served = dict(obj)  # shallow: stored objects are never mutated, and this is serialized at once
        served['apiVersion'] = rdef.api_version
        return served

    def _bookmark(self, rdef: ResourceDef, rv: int, *, initial_events_end: bool = False) -> dict[str, Any]:
        meta: dict[str, Any] = {'resourceVersion': str(rv)}
        if initial_events_end:
            meta['annotations'] = {'k8s.io/initial-events-end': 'true'}
        return {'type': 'BOOKMARK', 'object': {'kind': rdef.kind, 'apiVersion': rdef.api_version, 'metadata': meta}}
