"""Deleting in the emulated API server: finalizers, graceful deletion and garbage collection.

A layer of the store (under :class:`alm.sandbox.objectstore.ObjectStore`), kept apart because
what a deletion sets off is a job of its own: an object with finalizers is only marked
(``deletionTimestamp``); a graceful deletion waits for a deletion with grace 0; removing an object
collects its dependents by owner reference (``Orphan`` strips the reference instead), removing a
Namespace removes its contents and removing a CRD removes its custom objects and stops serving them.

Simplifications: garbage collection is synchronous and background-style (``Foreground`` is
treated as background); a Namespace's contents go at once instead of through ``Terminating``;
a CRD's objects go ignoring their finalizers.
"""

from __future__ import annotations

import copy
import datetime
from collections.abc import Mapping
from typing import Any

import kmock

from alm.sandbox.apierrors import api_error
from alm.sandbox.defaulting import now_rfc3339
from alm.sandbox.resources import CRD_KEY, NAMESPACES_KEY, Requirement, ResourceDef, resources_from_crd
from alm.sandbox.storage import ObjectKey, StoredObjects


class DeletingStore(StoredObjects):
    """Stored objects that can be deleted, with what a deletion sets off (see the module docstring)."""

    def __init__(
            self,
            objects: kmock.ObjectsArray | None = None,
            resources: kmock.ResourcesArray | None = None,
            *,
            event_log_size: int = 5000,
            history_limit: int | None = None,
    ) -> None:
        super().__init__(objects, resources, event_log_size=event_log_size, history_limit=history_limit)
        self._orphaning: set[str] = set()

    def delete(
            self,
            ref: ResourceDef | kmock.resource | str,
            namespace: str | None,
            name: str,
            *,
            preconditions: Mapping[str, Any] | None = None,
            propagation_policy: str | None = None,
            dry_run: bool = False,
            grace_seconds: int | None = None,
    ) -> dict[str, Any]:
        """
        Delete an object: with finalizers, only mark it (``deletionTimestamp``); otherwise remove it
        and collect its dependents. Returns the object as of the deletion.

        ``grace_seconds`` > 0 is a graceful deletion (what a real server does to a pod bound to a
        node): the object is only marked, with ``deletionGracePeriodSeconds``, until a deletion
        with 0 (a kubelet's, or ``--force``) removes it.
        """
        rdef = self.resolve(ref)
        key = self._key(rdef, namespace, name)
        live = self._require(rdef, namespace, name)
        meta = live.get('metadata') or {}
        for field in ('uid', 'resourceVersion'):
            wanted = (preconditions or {}).get(field)
            if wanted and wanted != meta.get(field):
                raise api_error(409, 'Conflict', f'Precondition failed: {field} in precondition: {wanted}, '
                                                 f'{field} in object meta: {meta.get(field)}')
        if dry_run:
            return self._served(rdef, live)
        if propagation_policy == 'Orphan' and meta.get('uid'):
            self._orphaning.add(meta['uid'])
        if grace_seconds and not meta.get('deletionTimestamp'):
            new = copy.deepcopy(live)
            deadline = datetime.datetime.now(datetime.UTC) + datetime.timedelta(seconds=grace_seconds)
            new['metadata']['deletionTimestamp'] = deadline.strftime('%Y-%m-%dT%H:%M:%SZ')
            new['metadata']['deletionGracePeriodSeconds'] = grace_seconds
            return self._served(rdef, self._commit(rdef, key, live, new, 'MODIFIED'))
        if grace_seconds:
            return self._served(rdef, live)  # already terminating: a kubelet finishes it
        return self._served(rdef, self._delete_now(rdef, key, live))

    def delete_collection(
            self,
            ref: ResourceDef | kmock.resource | str,
            namespace: str | None = None,
            *,
            labels: list[Requirement] | None = None,
            fields: list[tuple[str, str, str]] | None = None,
    ) -> list[dict[str, Any]]:
        rdef = self.resolve(ref)
        return [
            self.delete(rdef, obj['metadata'].get('namespace'), obj['metadata']['name'])
            for obj in self.list_objects(rdef, namespace, labels=labels, fields=fields)
        ]

    def _delete_now(self, rdef: ResourceDef, key: ObjectKey, live: dict[str, Any]) -> dict[str, Any]:
        meta = live.get('metadata') or {}
        if meta.get('finalizers'):
            if meta.get('deletionTimestamp'):
                return live
            new = copy.deepcopy(live)
            new['metadata']['deletionTimestamp'] = now_rfc3339()
            new['metadata']['deletionGracePeriodSeconds'] = 0
            return self._commit(rdef, key, live, new, 'MODIFIED')
        return self._remove(rdef, key, live, copy.deepcopy(live))

    def _remove(self, rdef: ResourceDef, key: ObjectKey, live: dict[str, Any],
                final: dict[str, Any]) -> dict[str, Any]:
        committed = self._commit(rdef, key, live, final, 'DELETED')
        meta = committed.get('metadata') or {}
        if rdef.storage_key == CRD_KEY:
            self._forget_crd(committed)
        elif rdef.key == NAMESPACES_KEY:
            for (res, ns, name), obj in list(self._iter_live()):
                dep_def = self._storage_definition(res)
                if ns == meta.get('name') and dep_def is not None:
                    self._delete_now(dep_def, (res, ns, name), obj)
        uid = meta.get('uid')
        if uid:
            self._collect_garbage(uid, orphan=uid in self._orphaning)
            self._orphaning.discard(uid)
        return committed

    def _collect_garbage(self, owner_uid: str, *, orphan: bool) -> None:
        for key, obj in list(self._iter_live()):
            refs = (obj.get('metadata') or {}).get('ownerReferences') or []
            if not any(ref.get('uid') == owner_uid for ref in refs):
                continue
            dep_def = self._storage_definition(key[0])
            current = self._live(key)
            if dep_def is None or current is None:
                continue
            remaining = [ref for ref in refs if ref.get('uid') != owner_uid]
            if orphan or any(self.uid_alive(ref.get('uid')) for ref in remaining):
                new = copy.deepcopy(current)
                if remaining:
                    new['metadata']['ownerReferences'] = remaining
                else:
                    new['metadata'].pop('ownerReferences', None)
                self._commit(dep_def, key, current, new, 'MODIFIED')
            else:
                self._delete_now(dep_def, key, current)

    def _forget_crd(self, crd: dict[str, Any]) -> None:
        try:
            defs = resources_from_crd(crd)
        except ValueError:
            return
        storage = {d.storage_key for d in defs}
        for key, obj in list(self._iter_live()):
            if key[0] in storage:
                self._commit(defs[0], key, obj, copy.deepcopy(obj), 'DELETED')
        for rdef in defs:
            self.unregister(rdef.key)
