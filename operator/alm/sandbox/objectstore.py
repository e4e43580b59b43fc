"""The emulated API server's object store: creating, updating, patching and applying objects.

The store is the part of the emulator that behaves like etcd plus the generic apiserver registry:
``uid``/``resourceVersion``/``generation``/``creationTimestamp``, the status and scale
subresources, optimistic concurrency, finalizers, owner-reference garbage collection and a watch
event log. It has no HTTP in it: the HTTP layer (:mod:`alm.sandbox.apiserver`) and the simulated
controllers (:mod:`alm.sandbox.workloads`) call the same methods, so both see the same semantics.

:class:`ObjectStore` is the top of a stack of layers, each in its own module: the registry of
served resources (:mod:`alm.sandbox.registry`), storage, reads, watches and the commit path
(:mod:`alm.sandbox.storage`, :mod:`alm.sandbox.watches`), deleting and garbage collection
(:mod:`alm.sandbox.deletion`); this module adds the writes that create and update objects. What
the server fills in by itself is in :mod:`alm.sandbox.defaulting`, the field ownership of
server-side apply in :mod:`alm.sandbox.applying` and the patch algorithms in
:mod:`alm.sandbox.patching`.

Every method is synchronous and never awaits. In asyncio this makes each write atomic without a
lock, and lets watchers be fed with ``put_nowait`` in commit order (kmock's async bus cannot be
fed from synchronous code, and a cancelled ``Bus.get`` can lose an item, which a watch stream with
bookmarks/timeouts would hit).

Simplifications (see also the emulator's docstring and :mod:`alm.sandbox.deletion`):

* Namespaces are auto-created when an object is written into a missing one (``auto_namespaces``).
  Dangling owner references at creation time are not collected.
* Server-side apply tracks only ``Apply`` managers; conflicts between managers are not detected,
  so ``force`` changes nothing. Fields written by PUT/PATCH are not attributed to any manager.
"""

from __future__ import annotations

import copy
import itertools
import random
import uuid
from collections.abc import Mapping
from typing import Any, Literal

import kmock

from alm.sandbox import applying, patching
from alm.sandbox.apierrors import api_error, not_found
from alm.sandbox.defaulting import (
    IMMUTABLE_META,
    NAME_ALPHABET,
    SYSTEM_META,
    check_kind,
    defaults_on_create,
    fold_string_data,
    now_rfc3339,
    spec_view,
)
from alm.sandbox.deletion import DeletingStore
from alm.sandbox.resources import (
    BUILTIN_RESOURCES,
    CRD_KEY,
    NAMESPACES_KEY,
    ResourceDef,
    resources_from_crd,
    selector_to_string,
)
from alm.sandbox.storage import ObjectKey

PatchType = Literal['merge', 'json', 'strategic', 'apply']


class ObjectStore(DeletingStore):
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
        super().__init__(objects, resources, event_log_size=event_log_size, history_limit=history_limit)
        self.auto_namespaces = auto_namespaces
        self._cluster_ips = itertools.count(10)
        for rdef in BUILTIN_RESOURCES:
            self.register(rdef)
        self.create(NAMESPACES_KEY, {'metadata': {'name': 'default'}})

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

    def get(self, ref: ResourceDef | kmock.resource | str, namespace: str | None, name: str,
            *, subresource: str | None = None) -> dict[str, Any]:
        """The current object (or its ``scale``); raises a 404 ``KubernetesError`` if absent."""
        rdef = self.resolve(ref)
        live = self._require(rdef, namespace, name)
        if subresource == 'scale':
            return self._scale_of(live)
        return self._served(rdef, live)

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
        check_kind(rdef, obj)
        ns = self._namespace_of(rdef, namespace, meta)
        name = meta.get('name')
        if not name and meta.get('generateName'):
            name = meta['generateName'] + ''.join(random.choices(NAME_ALPHABET, k=5))
        if not name or not isinstance(name, str):
            raise api_error(422, 'Invalid', 'metadata.name: Required value: name or generateName is required')
        key = self._key(rdef, ns, name)
        if self._live(key) is not None:
            raise api_error(409, 'AlreadyExists', f'{rdef.plural} "{name}" already exists',
                            name=name, group=rdef.group, kind=rdef.plural)
        if ns is not None:
            self._ensure_namespace(ns, dry_run=dry_run)
        for field in SYSTEM_META:
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
        defaults_on_create(rdef, obj, self._cluster_ips)
        fold_string_data(rdef, obj)
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
        fold_string_data(rdef, new)
        for field in IMMUTABLE_META:
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
        if rdef.generation and spec_view(new) != spec_view(live):
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
        config, precondition, new_paths, entry = applying.applied_configuration(
            rdef, name, body, subresource=subresource, field_manager=field_manager)

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
        merged, entries = applying.merge_applied(
            self._served(rdef, live), (live.get('metadata') or {}).get('managedFields') or [],
            config, new_paths, entry, field_manager=field_manager, subresource=subresource)
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
