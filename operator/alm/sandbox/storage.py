"""The emulated API server's storage: objects, resourceVersions, reads and the one commit path.

This is the etcd-like layer under the store's semantics (:mod:`alm.sandbox.objectstore` adds
creating, updating and applying on top; :mod:`alm.sandbox.deletion` adds deleting and garbage
collection). Objects live in a :class:`kmock.ObjectsArray` (the emulator's ``kmock.objects``),
keyed by the *storage* version's resource, with every committed version kept in the object's
history. Stored dicts are never mutated in place: a write builds a new dict; readers get deep
copies. :meth:`StoredObjects._commit` is the only place where objects change: it bumps the
global resourceVersion and publishes the event to the :class:`~alm.sandbox.watches.WatchLog`.
"""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Iterator, Mapping
from typing import Any

import kmock

from alm.sandbox.apierrors import not_found
from alm.sandbox.registry import ResourceRegistry
from alm.sandbox.resources import Requirement, ResourceDef, matches_selectors
from alm.sandbox.watches import StoreEvent, WatchLog

ObjectKey = tuple[kmock.resource, str | None, str]


class StoredObjects(ResourceRegistry):
    """Objects by storage key, namespace and name, with their history and the watch log."""

    def __init__(
            self,
            objects: kmock.ObjectsArray | None = None,
            resources: kmock.ResourcesArray | None = None,
            *,
            event_log_size: int = 5000,
            history_limit: int | None = None,
    ) -> None:
        super().__init__(resources)
        self.objects = objects if objects is not None else kmock.ObjectsArray()
        self.history_limit = None if history_limit is None else max(2, history_limit)
        self._rv = 0
        self._watches = WatchLog(event_log_size)

    # ----------------------------------------------------------------------------------------------
    # Reading.

    @property
    def resource_version(self) -> str:
        """The current global resourceVersion (of the latest committed change)."""
        return str(self._rv)

    def _key(self, rdef: ResourceDef, namespace: str | None, name: str) -> ObjectKey:
        return rdef.storage_key, namespace if rdef.namespaced else None, name

    def _live(self, key: ObjectKey) -> dict[str, Any] | None:
        if key not in self.objects:
            return None
        obj = self.objects[key]
        return None if obj.deleted else obj.raw

    def _iter_live(self, rdef: ResourceDef | None = None, namespace: str | None = None,
                   ) -> Iterator[tuple[ObjectKey, dict[str, Any]]]:
        items = []
        for key, obj in self.objects.items():
            if obj.deleted:
                continue
            if rdef is not None and key[0] != rdef.storage_key:
                continue
            if namespace is not None and key[1] != namespace:
                continue
            items.append((key, obj.raw))
        items.sort(key=lambda item: (item[0][1] or '', item[0][2]))
        yield from items

    def find(self, ref: ResourceDef | kmock.resource | str, namespace: str | None, name: str,
             ) -> dict[str, Any] | None:
        """The current object (a deep copy) or ``None``."""
        rdef = self.resolve(ref)
        live = self._live(self._key(rdef, namespace, name))
        return None if live is None else self._served(rdef, live)

    def list_objects(
            self,
            ref: ResourceDef | kmock.resource | str,
            namespace: str | None = None,
            *,
            labels: list[Requirement] | None = None,
            fields: list[tuple[str, str, str]] | None = None,
    ) -> list[dict[str, Any]]:
        """Matching objects (deep copies), ordered by namespace and name."""
        rdef = self.resolve(ref)
        return [
            self._served(rdef, obj)
            for key, obj in self._iter_live(rdef, namespace if rdef.namespaced else None)
            if matches_selectors(obj, labels or (), fields or ())
        ]

    def _served(self, rdef: ResourceDef, obj: Mapping[str, Any]) -> dict[str, Any]:
        """A deep copy of a stored object as seen through the requested version."""
        result = copy.deepcopy(dict(obj))
        result['apiVersion'] = rdef.api_version
        return result

    def _require(self, rdef: ResourceDef, namespace: str | None, name: str) -> dict[str, Any]:
        live = self._live(self._key(rdef, namespace, name))
        if live is None:
            raise not_found(rdef, name)
        return live

    def uid_alive(self, uid: str | None) -> bool:
        return bool(uid) and any(
            (obj.get('metadata') or {}).get('uid') == uid for _, obj in self._iter_live())

    # ----------------------------------------------------------------------------------------------
    # Watching.

    def open_watch(self, ref: ResourceDef | kmock.resource | str | None, since: int | None = None,
                   ) -> tuple[list[StoreEvent], asyncio.Queue[StoreEvent | None]]:
        """
        Subscribe to changes, atomically with what happened before.

        With ``since=None``: synthetic ADDED events for all current objects. With a resourceVersion:
        the logged events after it (a 410 ``Gone`` error if the log no longer reaches back there).
        The queue then gets every later event; ``None`` in it means "the server is closing".
        ``ref=None`` subscribes to all resources (without replay).
        """
        if ref is None:
            return [], self._watches.subscribe(None)
        rdef = self.resolve(ref)
        skey = rdef.storage_key
        if since is None:
            replay = [
                StoreEvent('ADDED', skey, obj, None, int((obj.get('metadata') or {}).get('resourceVersion') or 0))
                for _, obj in self._iter_live(rdef)
            ]
        else:
            replay = self._watches.events_since(skey, since)
        return replay, self._watches.subscribe(skey)

    def close_watch(self, queue: asyncio.Queue[StoreEvent | None]) -> None:
        self._watches.unsubscribe(queue)

    def close_all_watches(self) -> None:
        """Tell every watcher to finish (used before the HTTP server shuts down)."""
        self._watches.close_all()

    # ----------------------------------------------------------------------------------------------
    # Committing (the only place where objects change and events are emitted).

    def _commit(self, rdef: ResourceDef, key: ObjectKey, old: dict[str, Any] | None,
                new: dict[str, Any], type_: str) -> dict[str, Any]:
        self._rv += 1
        new['metadata']['resourceVersion'] = str(self._rv)
        if key in self.objects:
            self.objects[key].history.append(new)
        else:
            self.objects[key] = new
        if type_ == 'DELETED':
            self.objects[key].delete()
        if self.history_limit is not None:
            history = self.objects[key].history
            if len(history) > self.history_limit:
                del history[:len(history) - self.history_limit]
        self._watches.publish(StoreEvent(type_, rdef.storage_key, new, old, self._rv))
        return new
