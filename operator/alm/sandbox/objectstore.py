"""The emulated API server's object store: metadata semantics, writes, watches, garbage collection.

The store is the part of the emulator that behaves like etcd plus the generic apiserver registry:
``uid``/``resourceVersion``/``generation``/``creationTimestamp``, the status and scale
subresources, optimistic concurrency, finalizers, owner-reference garbage collection and a watch
event log. It has no HTTP in it: the HTTP layer (:mod:`alm.sandbox.apiserver`) and the simulated
controllers (:mod:`alm.sandbox.workloads`) call the same methods, so both see the same semantics.

Every method is synchronous and never awaits. In asyncio this makes each write atomic without a
lock, and lets watchers be fed with ``put_nowait`` in commit order (kmock's async bus cannot be
fed from synchronous code, and a cancelled ``Bus.get`` can lose an item, which a watch stream with
bookmarks/timeouts would hit).

Objects live in a :class:`kmock.ObjectsArray` (the emulator's ``kmock.objects``), keyed by the
*storage* version's resource, with every committed version kept in the object's history.
Stored dicts are never mutated in place: a write builds a new dict; readers get deep copies.

Simplifications (see also the emulator's docstring):

* Namespaces are auto-created when an object is written into a missing one (``auto_namespaces``);
  deleting a Namespace deletes its contents at once instead of going through ``Terminating``.
* Garbage collection is synchronous and background-style: dependents go when the owner is really
  removed; ``Orphan`` strips the owner reference; ``Foreground`` is treated as background.
  Dangling owner references at creation time are not collected.
* Deleting a CRD removes its custom objects at once, ignoring their finalizers.
* Server-side apply tracks only ``Apply`` managers; conflicts between managers are not detected,
  so ``force`` changes nothing. Fields written by PUT/PATCH are not attributed to any manager.
"""

from __future__ import annotations

import asyncio
import base64
import collections
import copy
import dataclasses
import datetime
import itertools
import random
import uuid
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Literal

import kmock

from alm.sandbox import patching
from alm.sandbox.resources import (
    BUILTIN_RESOURCES,
    CRD_KEY,
    NAMESPACES_KEY,
    Requirement,
    ResourceDef,
    matches_selectors,
    resources_from_crd,
    selector_to_string,
)

PatchType = Literal['merge', 'json', 'strategic', 'apply']
ObjectKey = tuple[kmock.resource, str | None, str]

_SYSTEM_META = ('uid', 'resourceVersion', 'creationTimestamp', 'deletionTimestamp',
                'deletionGracePeriodSeconds', 'generation', 'managedFields', 'selfLink')
_IMMUTABLE_META = ('name', 'namespace', 'uid', 'creationTimestamp', 'deletionTimestamp',
                   'deletionGracePeriodSeconds')
_NAME_ALPHABET = 'bcdfghjklmnpqrstvwxz2456789'


def _fold_string_data(rdef: ResourceDef, obj: dict[str, Any]) -> None:
    """Secrets' ``stringData`` is write-only: the server merges it into ``data`` (base64) and drops it."""
    if rdef.group == '' and rdef.plural == 'secrets' and isinstance(obj.get('stringData'), dict):
        data = obj.setdefault('data', {}) or {}
        for key, value in obj.pop('stringData').items():
            data[key] = base64.b64encode(str(value).encode()).decode()
        obj['data'] = data


def api_error(status: int, reason: str, message: str, **details: Any) -> kmock.KubernetesError:
    """An error the HTTP layer renders as a Kubernetes ``Status`` with this code and reason."""
    return kmock.KubernetesError(status=status, reason=reason, message=message, details=details or {})


def not_found(rdef: ResourceDef, name: str) -> kmock.KubernetesError:
    what = f'{rdef.plural}.{rdef.group}' if rdef.group else rdef.plural
    return api_error(404, 'NotFound', f'{what} "{name}" not found', name=name, group=rdef.group, kind=rdef.plural)


def now_rfc3339() -> str:
    return datetime.datetime.now(datetime.UTC).strftime('%Y-%m-%dT%H:%M:%SZ')


@dataclasses.dataclass(frozen=True)
class StoreEvent:
    """One committed change, as delivered to watchers (``old`` is the previous state, if any)."""

    type: str  # ADDED / MODIFIED / DELETED
    resource: kmock.resource  # the storage key
    object: dict[str, Any]
    old: dict[str, Any] | None
    rv: int


class ObjectStore:
    """In-memory objects with Kubernetes metadata semantics. See the module docstring."""

    def __init__(
            self,
            objects: kmock.ObjectsArray | None = None,
            resources: kmock.ResourcesArray | None = None,
            *,
            auto_namespaces: bool = True,
            event_log_size: int = 5000,
            history_limit: int | None = None,
    ) -> None:
        self.objects = objects if objects is not None else kmock.ObjectsArray()
        self.kmock_resources = resources  # kept in sync for kmock's own introspection
        self.auto_namespaces = auto_namespaces
        self.history_limit = None if history_limit is None else max(2, history_limit)
        self._event_log_size = event_log_size
        self._defs: dict[kmock.resource, ResourceDef] = {}
        self._rv = 0
        self._logs: dict[kmock.resource, collections.deque[StoreEvent]] = {}
        self._floors: dict[kmock.resource, int] = {}
        self._queues: dict[kmock.resource | None, set[asyncio.Queue[StoreEvent | None]]] = (
            collections.defaultdict(set))
        self._orphaning: set[str] = set()
        self._cluster_ips = itertools.count(10)
        for rdef in BUILTIN_RESOURCES:
            self.register(rdef)
        self.create(NAMESPACES_KEY, {'metadata': {'name': 'default'}})

    # ----------------------------------------------------------------------------------------------
    # Registry.

    def register(self, rdef: ResourceDef) -> None:
        """Serve a resource (replacing a previous definition of the same group/version/plural)."""
        self._defs[rdef.key] = rdef
        if self.kmock_resources is not None:
            self.kmock_resources[rdef.key] = kmock.ResourceInfo(
                kind=rdef.kind, singular=rdef.singular, namespaced=rdef.namespaced,
                verbs=set(rdef.verbs), shortnames=set(rdef.shortnames),
                categories=set(rdef.categories), subresources=set(rdef.subresources),
            )

    def unregister(self, key: kmock.resource) -> None:
        self._defs.pop(key, None)
        if self.kmock_resources is not None and key in self.kmock_resources:
            del self.kmock_resources[key]

    @property
    def definitions(self) -> list[ResourceDef]:
        return list(self._defs.values())

    def find_definition(self, key: kmock.resource) -> ResourceDef | None:
        """The exact group/version/plural, as addressed by a URL."""
        return self._defs.get(key)

    def resolve(self, ref: ResourceDef | kmock.resource | str) -> ResourceDef:
        """
        Find a definition by a loose reference: ``'apps/v1/deployments'``, ``'deployments'``,
        ``'deploy'``, ``'Deployment'``, ``'deployments.v1.apps'`` or a :class:`kmock.resource`.
        Prefers the core group and the storage version when the reference is ambiguous.
        """
        if isinstance(ref, ResourceDef):
            return ref
        spec = ref if isinstance(ref, kmock.resource) else kmock.resource(ref)
        if spec in self._defs:
            return self._defs[spec]
        candidates = [
            rdef for rdef in list(self._defs.values())  # a snapshot: tests may call this from another thread
            if spec.group is None or spec.group == rdef.group
            if spec.version is None or spec.version == rdef.version
            if spec.plural is None or spec.plural in rdef.names
        ]
        groups = {rdef.group for rdef in candidates}
        if len(groups) > 1:
            if '' not in groups:
                raise LookupError(f"Ambiguous resource reference: {ref!r} (groups: {sorted(groups)})")
            candidates = [rdef for rdef in candidates if rdef.group == '']
        if not candidates:
            raise LookupError(f"Unknown resource: {ref!r}")
        storage = [rdef for rdef in candidates if (rdef.storage_version or rdef.version) == rdef.version]
        return (storage or candidates)[0]

    def install_crd(self, crd: Mapping[str, Any]) -> list[ResourceDef]:
        """Store a CRD object (created or replaced) and serve the resources it defines."""
        name = (crd.get('metadata') or {}).get('name')
        body = copy.deepcopy(dict(crd))
        body.setdefault('apiVersion', 'apiextensions.k8s.io/v1')
        body.setdefault('kind', 'CustomResourceDefinition')
        if not name:
            spec = body.get('spec') or {}
            name = f"{(spec.get('names') or {}).get('plural')}.{spec.get('group')}"
            body.setdefault('metadata', {})['name'] = name
        if self.find(CRD_KEY, None, name) is None:
            self.create(CRD_KEY, body)
        else:
            body.get('metadata', {}).pop('resourceVersion', None)
            self.replace(CRD_KEY, None, name, body)
        return resources_from_crd(body)

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

    def get(self, ref: ResourceDef | kmock.resource | str, namespace: str | None, name: str,
            *, subresource: str | None = None) -> dict[str, Any]:
        """The current object (or its ``scale``); raises a 404 ``KubernetesError`` if absent."""
        rdef = self.resolve(ref)
        live = self._require(rdef, namespace, name)
        if subresource == 'scale':
            return self._scale_of(live)
        return self._served(rdef, live)

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
        queue: asyncio.Queue[StoreEvent | None] = asyncio.Queue()
        if ref is None:
            self._queues[None].add(queue)
            return [], queue
        rdef = self.resolve(ref)
        skey = rdef.storage_key
        if since is None:
            replay = [
                StoreEvent('ADDED', skey, obj, None, int((obj.get('metadata') or {}).get('resourceVersion') or 0))
                for _, obj in self._iter_live(rdef)
            ]
        elif since < self._floors.get(skey, 0):
            raise api_error(410, 'Expired', f'too old resource version: {since} ({self._floors[skey]})')
        else:
            replay = [event for event in self._logs.get(skey, ()) if event.rv > since]
        self._queues[skey].add(queue)
        return replay, queue

    def close_watch(self, queue: asyncio.Queue[StoreEvent | None]) -> None:
        for queues in self._queues.values():
            queues.discard(queue)

    def close_all_watches(self) -> None:
        """Tell every watcher to finish (used before the HTTP server shuts down)."""
        for queues in self._queues.values():
            for queue in queues:
                queue.put_nowait(None)

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
        event = StoreEvent(type_, rdef.storage_key, new, old, self._rv)
        log = self._logs.setdefault(rdef.storage_key, collections.deque())
        if len(log) >= self._event_log_size:
            self._floors[rdef.storage_key] = log.popleft().rv
        log.append(event)
        for queue in self._queues.get(rdef.storage_key, set()) | self._queues.get(None, set()):
            queue.put_nowait(event)
        return new

    # ----------------------------------------------------------------------------------------------
    # Creating.

    def create(
            self,
            ref: ResourceDef | kmock.resource | str,
            body: Mapping[str, Any],
            *,
            namespace: str | None = None,
            dry_run: bool = False,
            managed_fields: list[dict[str, Any]] | None = None,
    ) -> dict[str, Any]:
        """Create an object (409 ``AlreadyExists`` if it exists); returns the stored object."""
        rdef = self.resolve(ref)
        if not isinstance(body, Mapping):
            raise api_error(400, 'BadRequest', 'the body must be an object')
        obj = copy.deepcopy(dict(body))
        meta = obj.setdefault('metadata', {})
        if not isinstance(meta, dict):
            raise api_error(400, 'BadRequest', 'metadata must be an object')
        self._check_kind(rdef, obj)
        ns = self._namespace_of(rdef, namespace, meta)
        name = meta.get('name')
        if not name and meta.get('generateName'):
            name = meta['generateName'] + ''.join(random.choices(_NAME_ALPHABET, k=5))
        if not name or not isinstance(name, str):
            raise api_error(422, 'Invalid', 'metadata.name: Required value: name or generateName is required')
        key = self._key(rdef, ns, name)
        if self._live(key) is not None:
            raise api_error(409, 'AlreadyExists', f'{rdef.plural} "{name}" already exists',
                            name=name, group=rdef.group, kind=rdef.plural)
        if ns is not None:
            self._ensure_namespace(ns, dry_run=dry_run)
        for field in _SYSTEM_META:
            meta.pop(field, None)
        meta['name'] = name
        if ns is not None:
            meta['namespace'] = ns
        else:
            meta.pop('namespace', None)
        meta['uid'] = str(uuid.uuid4())
        meta['creationTimestamp'] = now_rfc3339()
        if rdef.generation:
            meta['generation'] = 1
        if managed_fields:
            meta['managedFields'] = managed_fields
        if rdef.has_status:
            obj.pop('status', None)
        self._defaults_on_create(rdef, obj)
        _fold_string_data(rdef, obj)
        obj['apiVersion'] = rdef.storage_api_version
        if dry_run:
            return self._served(rdef, obj)
        committed = self._commit(rdef, key, None, obj, 'ADDED')
        self._after_write(rdef, committed)
        served = self._served(rdef, committed)
        self._collect_if_orphaned(rdef, committed)
        return served

    def _collect_if_orphaned(self, rdef: ResourceDef, obj: dict[str, Any]) -> None:
        """Like the garbage collector: an object created with owner references that all point at
        objects that no longer exist is deleted at once (a late write after its owner went)."""
        meta = obj.get('metadata') or {}
        refs = meta.get('ownerReferences') or []
        if refs and not any(self.uid_alive(ref.get('uid')) for ref in refs):
            self.delete(rdef, meta.get('namespace'), meta['name'])

    def _check_kind(self, rdef: ResourceDef, obj: dict[str, Any]) -> None:
        if obj.get('kind') not in (None, '', rdef.kind):
            raise api_error(400, 'BadRequest', f"the kind {obj['kind']!r} does not match {rdef.kind!r}")
        obj['kind'] = rdef.kind
        obj['apiVersion'] = rdef.api_version

    def _namespace_of(self, rdef: ResourceDef, namespace: str | None, meta: Mapping[str, Any]) -> str | None:
        if not rdef.namespaced:
            return None
        body_ns = meta.get('namespace')
        if namespace and body_ns and body_ns != namespace:
            raise api_error(400, 'BadRequest', 'the namespace of the provided object does not match '
                                               'the namespace sent on the request')
        return str(namespace or body_ns or 'default')

    def _ensure_namespace(self, namespace: str, *, dry_run: bool) -> None:
        ns_def = self._defs[NAMESPACES_KEY]
        live = self._live(self._key(ns_def, None, namespace))
        if live is not None:
            if (live.get('metadata') or {}).get('deletionTimestamp'):
                raise api_error(403, 'Forbidden', f'unable to create new content in namespace {namespace} '
                                                  f'because it is being terminated')
            return
        if not self.auto_namespaces:
            raise api_error(404, 'NotFound', f'namespaces "{namespace}" not found',
                            name=namespace, kind='namespaces')
        if not dry_run:
            self.create(ns_def, {'metadata': {'name': namespace}})

    def _defaults_on_create(self, rdef: ResourceDef, obj: dict[str, Any]) -> None:
        """What real controllers/defaulters set at once and clients commonly rely on."""
        spec = obj.get('spec') if isinstance(obj.get('spec'), dict) else None
        if rdef.key == NAMESPACES_KEY:
            obj['status'] = {'phase': 'Active'}
        elif rdef.group == '' and rdef.plural == 'pods':
            obj['status'] = {'phase': 'Pending'}
        elif rdef.group == '' and rdef.plural == 'services' and spec is not None:
            spec.setdefault('type', 'ClusterIP')
            if spec['type'] != 'ExternalName' and 'clusterIP' not in spec:
                number = next(self._cluster_ips)
                spec['clusterIP'] = f'10.96.{number // 250}.{number % 250 + 1}'
                spec['clusterIPs'] = [spec['clusterIP']]
        elif rdef.group == 'apps' and rdef.plural in ('deployments', 'replicasets') and spec is not None:
            spec.setdefault('replicas', 1)
        elif rdef.storage_key == CRD_KEY:
            crd_spec = obj.get('spec') or {}
            versions = crd_spec.get('versions') or []
            storage = [v.get('name') for v in versions if v.get('storage')] or [crd_spec.get('version')]
            now = now_rfc3339()
            obj['status'] = {
                'acceptedNames': copy.deepcopy(crd_spec.get('names') or {}),
                'storedVersions': [v for v in storage if v],
                'conditions': [
                    {'type': 'NamesAccepted', 'status': 'True', 'reason': 'NoConflicts',
                     'message': 'no conflicts found', 'lastTransitionTime': now},
                    {'type': 'Established', 'status': 'True', 'reason': 'InitialNamesAccepted',
                     'message': 'the initial names have been accepted', 'lastTransitionTime': now},
                ],
            }

    # ----------------------------------------------------------------------------------------------
    # Updating: replace (PUT), patch (PATCH), apply (server-side apply).

    def replace(
            self,
            ref: ResourceDef | kmock.resource | str,
            namespace: str | None,
            name: str,
            body: Mapping[str, Any],
            *,
            subresource: str | None = None,
            dry_run: bool = False,
    ) -> dict[str, Any]:
        """Replace an object (or its status/scale); 409 ``Conflict`` on a stale resourceVersion."""
        rdef = self.resolve(ref)
        key = self._key(rdef, namespace, name)
        live = self._require(rdef, namespace, name)
        if not isinstance(body, Mapping):
            raise api_error(400, 'BadRequest', 'the body must be an object')
        if subresource == 'scale':
            return self._write_scale(rdef, key, live, dict(body), dry_run=dry_run)
        candidate = copy.deepcopy(dict(body))
        body_name = (candidate.get('metadata') or {}).get('name')
        if body_name and body_name != name:
            raise api_error(400, 'BadRequest', 'the name of the object does not match the name on the URL')
        self._check_precondition(candidate, live)
        return self._update(rdef, key, live, candidate, subresource=subresource, dry_run=dry_run)

    def patch(
            self,
            ref: ResourceDef | kmock.resource | str,
            namespace: str | None,
            name: str,
            patch: Any,
            *,
            patch_type: PatchType = 'merge',
            subresource: str | None = None,
            field_manager: str | None = None,
            force: bool = False,
            dry_run: bool = False,
    ) -> dict[str, Any]:
        """
        Patch an object (or its status/scale) with a merge/JSON/strategic patch or apply a config.

        A ``metadata.resourceVersion`` left in the patched object that differs from the live one
        is a 409 ``Conflict``; a failed JSON-patch ``test`` is a 422 (as kopf expects).
        """
        rdef = self.resolve(ref)
        if patch_type == 'apply':
            return self._apply(rdef, namespace, name, patch, subresource=subresource,
                               field_manager=field_manager, force=force, dry_run=dry_run)
        key = self._key(rdef, namespace, name)
        live = self._require(rdef, namespace, name)
        if patch_type == 'strategic' and rdef.custom:
            raise api_error(415, 'UnsupportedMediaType',
                            'the body of the request was in an unknown format - accepted media types '
                            'include: application/json-patch+json, application/merge-patch+json, '
                            'application/apply-patch+yaml')

        def patched(target: dict[str, Any]) -> dict[str, Any]:
            try:
                if patch_type == 'json':
                    result = patching.json_patch(target, patch)
                elif patch_type == 'strategic':
                    result = patching.strategic_merge_patch(target, patch)
                else:
                    result = patching.merge_patch(target, patch)
            except patching.PatchError as e:
                raise api_error(422, 'Invalid', str(e)) from e
            if not isinstance(result, dict):
                raise api_error(422, 'Invalid', 'the patched object is not an object')
            return result

        if subresource == 'scale':
            return self._write_scale(rdef, key, live, patched(self._scale_of(live)), dry_run=dry_run)
        candidate = patched(self._served(rdef, live))
        self._check_precondition(candidate, live)
        return self._update(rdef, key, live, candidate, subresource=subresource, dry_run=dry_run)

    def _check_precondition(self, candidate: Mapping[str, Any], live: Mapping[str, Any]) -> None:
        wanted = (candidate.get('metadata') or {}).get('resourceVersion')
        current = (live.get('metadata') or {}).get('resourceVersion')
        if wanted and wanted != current:
            name = (live.get('metadata') or {}).get('name')
            raise api_error(409, 'Conflict',
                            f'Operation cannot be fulfilled on "{name}": the object has been modified; '
                            f'please apply your changes to the latest version and try again',
                            name=name)

    def _update(
            self,
            rdef: ResourceDef,
            key: ObjectKey,
            live: dict[str, Any],
            candidate: dict[str, Any],
            *,
            subresource: str | None,
            dry_run: bool,
            managed_fields: list[dict[str, Any]] | None = None,
    ) -> dict[str, Any]:
        live_meta: dict[str, Any] = live.get('metadata') or {}
        if subresource not in (None, '', 'status'):
            raise api_error(404, 'NotFound', f'the server could not find the requested resource '
                                             f'({rdef.plural}/{subresource})')
        if subresource == 'status':
            if not rdef.has_status:
                raise api_error(404, 'NotFound', f'{rdef.plural} has no status subresource')
            new = copy.deepcopy(live)
            if 'status' in candidate:
                new['status'] = candidate['status']
            else:
                new.pop('status', None)
        else:
            new = candidate
            if rdef.has_status:
                if 'status' in live:
                    new['status'] = copy.deepcopy(live['status'])
                else:
                    new.pop('status', None)
        meta = new.setdefault('metadata', {})
        if not isinstance(meta, dict):
            raise api_error(400, 'BadRequest', 'metadata must be an object')
        new['apiVersion'] = rdef.storage_api_version
        new['kind'] = rdef.kind
        _fold_string_data(rdef, new)
        for field in _IMMUTABLE_META:
            if field in live_meta:
                meta[field] = live_meta[field]
            else:
                meta.pop(field, None)
        fields = managed_fields if managed_fields is not None else live_meta.get('managedFields')
        if fields:
            meta['managedFields'] = fields
        else:
            meta.pop('managedFields', None)
        if live_meta.get('deletionTimestamp'):
            added = set(meta.get('finalizers') or []) - set(live_meta.get('finalizers') or [])
            if added:
                raise api_error(422, 'Invalid', 'metadata.finalizers: Forbidden: no new finalizers can be '
                                                'added if the object is being deleted')
        if 'generation' in live_meta:
            meta['generation'] = live_meta['generation']
        else:
            meta.pop('generation', None)
        if rdef.generation and _spec_view(new) != _spec_view(live):
            meta['generation'] = int(live_meta.get('generation') or 0) + 1
        meta['resourceVersion'] = live_meta.get('resourceVersion')
        if new == live:
            return self._served(rdef, live)  # a no-op: no new resourceVersion, no event
        if dry_run:
            return self._served(rdef, new)
        if meta.get('deletionTimestamp') and not meta.get('finalizers') and not live_meta.get(
                'deletionGracePeriodSeconds'):  # a graceful deletion ends with the kubelet's, not here
            return self._served(rdef, self._remove(rdef, key, live, new))
        committed = self._commit(rdef, key, live, new, 'MODIFIED')
        self._after_write(rdef, committed)
        return self._served(rdef, committed)

    def _apply(
            self,
            rdef: ResourceDef,
            namespace: str | None,
            name: str,
            body: Any,
            *,
            subresource: str | None,
            field_manager: str | None,
            force: bool,
            dry_run: bool,
    ) -> dict[str, Any]:
        if not field_manager:
            raise api_error(400, 'BadRequest', 'PATCH /apply: fieldManager is required for apply requests')
        if not isinstance(body, Mapping):
            raise api_error(400, 'BadRequest', 'the applied configuration must be an object')
        config = copy.deepcopy(dict(body))
        body_meta = config.get('metadata') or {}
        if body_meta.get('name') not in (None, name):
            raise api_error(400, 'BadRequest', 'the name of the object does not match the name on the URL')
        self._check_kind(rdef, config)
        precondition = {'metadata': {'resourceVersion': body_meta.get('resourceVersion')}}
        for field in ('apiVersion', 'kind'):
            config.pop(field, None)
        config_meta = config.get('metadata') or {}
        for field in (*_SYSTEM_META, 'name', 'namespace'):
            config_meta.pop(field, None)
        if config_meta:
            config['metadata'] = config_meta
        else:
            config.pop('metadata', None)
        if subresource == 'status':
            config = {'status': config['status']} if 'status' in config else {}
        elif rdef.has_status:
            config.pop('status', None)
        new_paths = patching.field_set(config)
        entry = {
            'manager': field_manager, 'operation': 'Apply', 'apiVersion': rdef.api_version,
            'time': now_rfc3339(), 'fieldsType': 'FieldsV1', 'fieldsV1': patching.fields_v1(new_paths),
        }
        if subresource:
            entry['subresource'] = subresource

        key = self._key(rdef, namespace, name)
        live = self._live(key)
        if live is None:
            if subresource:
                raise not_found(rdef, name)
            skeleton = {'apiVersion': rdef.api_version, 'kind': rdef.kind,
                        'metadata': {'name': name, **({'namespace': namespace} if namespace else {})}}
            obj = patching.apply_merge(skeleton, config)
            return self.create(rdef, obj, namespace=namespace, dry_run=dry_run,
                               managed_fields=[entry] if new_paths else None)

        self._check_precondition(precondition, live)
        entries: list[dict[str, Any]] = copy.deepcopy((live.get('metadata') or {}).get('managedFields') or [])
        mine = next((e for e in entries
                     if e.get('manager') == field_manager and e.get('operation') == 'Apply'
                     and (e.get('subresource') or None) == (subresource or None)), None)
        old_paths = patching.paths_from_fields_v1(mine.get('fieldsV1') or {}) if mine else set()
        others: set[patching.FieldPath] = set()
        for other in entries:
            if other is not mine:
                others |= patching.paths_from_fields_v1(other.get('fieldsV1') or {})
        served = self._served(rdef, live)
        merged = patching.apply_merge(served, config)
        merged = patching.remove_fields(merged, old_paths - new_paths, keep=others | new_paths)
        unchanged = _without_managed_fields(merged) == _without_managed_fields(served)
        if mine is not None and old_paths == new_paths and unchanged:
            entry = mine  # a no-op apply keeps the entry's timestamp, so it stays a no-op
        entries = [e for e in entries if e is not mine]
        if new_paths:
            entries.append(entry)
        return self._update(rdef, key, live, merged, subresource=subresource, dry_run=dry_run,
                            managed_fields=entries)

    # ----------------------------------------------------------------------------------------------
    # Scale subresource.

    def _scale_of(self, live: Mapping[str, Any]) -> dict[str, Any]:
        meta = live.get('metadata') or {}
        spec = live.get('spec') or {}
        status = live.get('status') or {}
        return {
            'apiVersion': 'autoscaling/v1',
            'kind': 'Scale',
            'metadata': {k: meta[k] for k in ('name', 'namespace', 'uid', 'resourceVersion',
                                              'creationTimestamp') if k in meta},
            'spec': {'replicas': spec.get('replicas', 1)},
            'status': {'replicas': status.get('replicas', 0),
                       'selector': selector_to_string(spec.get('selector'))},
        }

    def _write_scale(self, rdef: ResourceDef, key: ObjectKey, live: dict[str, Any],
                     scale: dict[str, Any], *, dry_run: bool) -> dict[str, Any]:
        if not rdef.has_scale:
            raise api_error(404, 'NotFound', f'{rdef.plural} has no scale subresource')
        self._check_precondition(scale, live)
        replicas = (scale.get('spec') or {}).get('replicas')
        if not isinstance(replicas, int) or replicas < 0:
            raise api_error(422, 'Invalid', 'spec.replicas: must be a non-negative integer')
        candidate = copy.deepcopy(live)
        candidate.setdefault('spec', {})['replicas'] = replicas
        result = self._update(rdef, key, live, candidate, subresource=None, dry_run=dry_run)
        return self._scale_of(result)

    # ----------------------------------------------------------------------------------------------
    # Deleting and garbage collection.

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

    def _storage_definition(self, storage_key: kmock.resource) -> ResourceDef | None:
        for rdef in self._defs.values():
            if rdef.storage_key == storage_key:
                return rdef
        return None

    # ----------------------------------------------------------------------------------------------
    # CRDs: serving what they define.

    def _after_write(self, rdef: ResourceDef, obj: dict[str, Any]) -> None:
        if rdef.storage_key != CRD_KEY:
            return
        try:
            new_defs = resources_from_crd(obj)
        except ValueError:
            return
        if not new_defs:
            return
        wanted = {d.key for d in new_defs}
        for old in [d for d in self._defs.values() if d.custom and d.group == new_defs[0].group
                    and d.plural == new_defs[0].plural and d.key not in wanted]:
            self.unregister(old.key)
        for new_def in new_defs:
            self.register(new_def)

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


def _without_managed_fields(obj: Mapping[str, Any]) -> dict[str, Any]:
    meta = {k: v for k, v in (obj.get('metadata') or {}).items() if k != 'managedFields'}
    return {**obj, 'metadata': meta}


def _spec_view(obj: Mapping[str, Any]) -> dict[str, Any]:
    """What generation tracks: everything except metadata, status and the type identifiers."""
    return {k: v for k, v in obj.items() if k not in ('metadata', 'status', 'apiVersion', 'kind')}


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
