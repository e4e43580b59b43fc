"""An emulated Kubernetes API server good enough to run the real operator (kopf) against.

:class:`ApiServerEmulator` extends kmock's :class:`kmock.KubernetesEmulator`: requests still go
through kmock's server, request log and reaction DSL (``emulator['patch', ...] << 500`` injects a
failure; ``list(emulator)`` or ``emulator.count(...)`` inspects traffic) and objects still live in
``emulator.objects`` with their history. What kmock does naively — merging dicts on every write —
is replaced by :class:`alm.sandbox.objectstore.ObjectStore`, which behaves like a real server:
uid/resourceVersion/generation, 409 conflicts, the status and scale subresources, merge/JSON/
strategic patches, server-side apply with managedFields, label and field selectors, watches that
resume from a resourceVersion, finalizers and owner-reference garbage collection.

Differences from stock kmock worth knowing:

* A request answered by a user reaction with a payload never reaches the store, so it changes
  nothing (stock kmock applies writes even when intercepted). That is what a failure injection
  wants: ``emulator['patch', emulator.resource('apps/v1/deployments')] << 409``.
* Paths under ``/api/v1/namespaces`` are parsed correctly (kmock 0.8 cannot parse the bare
  ``/api/v1/namespaces`` and takes ``/api/v1/namespaces/x`` for a namespace, not an object).

Known gaps against a real API server: no authentication/authorization, admission, validation
against schemas (OpenAPI or CEL), defaulting beyond a few fields, protobuf/CBOR/Table output,
OpenAPI documents, ``pods/log``/``exec``/``eviction``; also see the store's docstring.

The emulator is assembled from bases, each in its own module: :mod:`alm.sandbox.discovery`
(``/api``, ``/apis``), :mod:`alm.sandbox.watchstream` (watch streams) and
:mod:`alm.sandbox.requestlog` (querying the request log); request parsing is in
:mod:`alm.sandbox.requestparsing`. This module routes resource requests to the store.
:class:`alm.sandbox.apiserverthread.ApiServerThread` serves it from a background thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator, Mapping
from typing import Any

import aiohttp.web
import attrs
import kmock
from kmock._internal import rendering  # Response/StreamingError: not re-exported by kmock 0.8

from alm.sandbox import nodeless
from alm.sandbox.apierrors import api_error, status_body
from alm.sandbox.discovery import Discovery
from alm.sandbox.objectstore import ObjectStore
from alm.sandbox.requestlog import RequestLog
from alm.sandbox.requestparsing import PATCH_TYPES, header, parse_request, parse_selectors, request_body
from alm.sandbox.resources import ResourceDef
from alm.sandbox.watchstream import WatchStreaming

PODS_KEY = kmock.resource(group='', version='v1', plural='pods')


@attrs.define(kw_only=True)
class ApiServerEmulator(Discovery, WatchStreaming, RequestLog, kmock.KubernetesEmulator):
    """
    kmock's Kubernetes emulator with the semantics of a real API server (see the module docstring).

    Public API beyond kmock's: :attr:`store` (the :class:`ObjectStore`, for direct synchronous
    access from the event loop's thread), :meth:`install_crd`, :meth:`requests_matching`,
    :meth:`count`, :meth:`mark`, and :meth:`serving` to run it on a local port.
    """

    auto_namespaces: bool = True
    history_limit: int | None = None
    event_log_size: int = 5000
    bookmark_interval: float = 20.0
    graceful_pod_deletion: bool = False
    """Delete bound pods gracefully, as a real server does (see :mod:`alm.sandbox.nodeless`)."""
    store: ObjectStore = attrs.field(init=False)
    _closing: bool = attrs.field(default=False, init=False)
    _resource_reaction: Any = attrs.field(default=None, init=False)
    _builtin_reactions: int = attrs.field(default=0, init=False)

    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        self.store = ObjectStore(
            self._objects, self._resources, auto_namespaces=self.auto_namespaces,
            event_log_size=self.event_log_size, history_limit=self.history_limit,
        )
        # Above kmock's own fallbacks (which merge dicts naively), below any user reaction.
        self._resource_reaction = (self.fallback ** 1)[self._is_resource_request] << self._serve_resource
        self._builtin_reactions = len(self._payloads)

    # ----------------------------------------------------------------------------------------------
    # Public helpers.

    def install_crd(self, crd: Mapping[str, Any]) -> list[ResourceDef]:
        """Store a CRD manifest and serve its resources (all served versions, one storage)."""
        return self.store.install_crd(crd)

    @contextlib.asynccontextmanager
    async def serving(self, host: str = '127.0.0.1', port: int | None = None) -> AsyncIterator[str]:
        """Serve over HTTP on ``host:port`` (a free port by default); yields the base URL."""
        self._closing = False
        async with self, kmock.Server(self, host=host, port=port) as server:
            try:
                yield str(server.url).rstrip('/')
            finally:
                self.close_watches()
                await asyncio.sleep(0)  # let the streams see the end before the server stops

    def close_watches(self) -> None:
        """End every open watch stream now and refuse new ones (clients reconnect elsewhere)."""
        self._closing = True
        self.store.close_all_watches()

    # ----------------------------------------------------------------------------------------------
    # Request parsing: kmock's loop, with our path parser (see the module docstring).

    async def __call__(self, raw_request: aiohttp.web.BaseRequest) -> aiohttp.web.StreamResponse:
        await raw_request.read()
        raw_response: aiohttp.web.StreamResponse | None = None
        try:
            if self.limit is not None and len(self._requests) >= self.limit:
                raise RuntimeError('Too many requests have been served so far.')
            request = await parse_request(raw_request, id=len(self._requests))
            self._requests.append(request)
            try:
                return await self._handle(request)
            except rendering.StreamingError as e:
                raw_response = e.args[0]
                if e.__cause__ is not None:
                    raise e.__cause__ from None
                raise
        except Exception as e:
            if not self._errors:
                raise
            self._errors[-1].append(e)
            if raw_response is None or not raw_response.prepared:
                return await self._render_error(e)
            await self._stream_error(e, raw_response)
            await raw_response.write_eof()
            return raw_response

    async def _handle(self, request: kmock.Request) -> aiohttp.web.StreamResponse:
        # Skip KubernetesEmulator._handle: it merges every write into kmock.objects before any
        # reaction runs. Writes happen in our fallback reaction, through the store, instead.
        # Fast path: with no user reaction to honour, kmock's matching (which walks the whole
        # request log for every request, so a long run slows down steadily) can be skipped.
        if len(self._payloads) == self._builtin_reactions and self._is_resource_request(request):
            response: aiohttp.web.StreamResponse = await self._resource_reaction(request)
            return response
        return await kmock.RawHandler._handle(self, request)

    # ----------------------------------------------------------------------------------------------
    # Resource requests.

    def _is_resource_request(self, request: kmock.Request) -> bool:
        return request.resource is not None and request.resource.plural is not None

    def _serve_resource(self, request: kmock.Request) -> rendering.Response:
        try:
            status, payload = self._dispatch(request)
        except kmock.KubernetesError as e:
            return rendering.Response(status=e.status, payload=status_body(e))
        return rendering.Response(status=status, payload=payload)

    def _dispatch(self, request: kmock.Request) -> tuple[int, Any]:
        assert request.resource is not None
        rdef = self.store.find_definition(request.resource)
        if rdef is None or (request.namespace is not None and not rdef.namespaced):
            raise api_error(404, 'NotFound', 'the server could not find the requested resource')
        namespace = request.namespace if rdef.namespaced else None
        name, sub, params = request.name, request.subresource, request.params
        if sub is not None and sub not in rdef.subresources:
            raise api_error(404, 'NotFound', 'the server could not find the requested resource')
        method = str(request.method.value).upper()
        dry_run = bool(params.get('dryRun'))

        if method == 'GET' and params.get('watch') in ('true', '1'):
            return 200, self._watch(rdef, namespace, name, params)
        if method == 'GET' and name:
            return 200, self.store.get(rdef, namespace, name, subresource=sub)
        if method == 'GET':
            return 200, self._list(rdef, namespace, params)
        if method == 'POST' and sub == 'binding' and rdef.key == PODS_KEY and name:
            return 201, nodeless.bind_pod(self.store, namespace or '', name, request_body(request))
        if method == 'POST' and not name:
            return 201, self.store.create(rdef, request_body(request), namespace=namespace, dry_run=dry_run)
        if method == 'DELETE' and not name:
            labels, fields = parse_selectors(params)
            deleted = self.store.delete_collection(rdef, namespace, labels=labels, fields=fields)
            return 200, {'apiVersion': rdef.api_version, 'kind': f'{rdef.kind}List',
                         'metadata': {'resourceVersion': self.store.resource_version}, 'items': deleted}
        if not name:
            raise api_error(405, 'MethodNotAllowed', f'{method} is not supported on a collection')
        if method == 'PUT':
            return 200, self.store.replace(rdef, namespace, name, request_body(request),
                                           subresource=sub, dry_run=dry_run)
        if method == 'PATCH':
            content_type = header(request, 'Content-Type').split(';')[0].strip().lower()
            patch_type = PATCH_TYPES.get(content_type)
            if patch_type is None:
                raise api_error(415, 'UnsupportedMediaType',
                                f'the body of the request was in an unknown format: {content_type}')
            created = patch_type == 'apply' and not sub and self.store.find(rdef, namespace, name) is None
            return 201 if created else 200, self.store.patch(
                rdef, namespace, name, request_body(request, yaml_ok=patch_type == 'apply'),
                patch_type=patch_type, subresource=sub, field_manager=params.get('fieldManager'),
                force=params.get('force') == 'true', dry_run=dry_run)
        if method == 'DELETE':
            options = request.data if isinstance(request.data, dict) else {}
            policy = params.get('propagationPolicy') or options.get('propagationPolicy')
            grace = None
            if self.graceful_pod_deletion and rdef.key == PODS_KEY:
                requested = params.get('gracePeriodSeconds', options.get('gracePeriodSeconds'))
                grace = nodeless.deletion_grace(self.store.get(rdef, namespace, name), requested) or None
            return 200, self.store.delete(rdef, namespace, name, preconditions=options.get('preconditions'),
                                          propagation_policy=policy, dry_run=dry_run, grace_seconds=grace)
        raise api_error(405, 'MethodNotAllowed', f'{method} is not supported here')

    def _list(self, rdef: ResourceDef, namespace: str | None, params: Mapping[str, str]) -> dict[str, Any]:
        labels, fields = parse_selectors(params)
        items = self.store.list_objects(rdef, namespace, labels=labels, fields=fields)
        resource_version = self.store.resource_version
        meta: dict[str, Any] = {'resourceVersion': resource_version}
        limit = int(params['limit']) if params.get('limit', '').isdigit() else 0
        if params.get('continue'):
            match = re.fullmatch(r'(\d+)-(\d+)', params['continue'])
            if not match:
                raise api_error(400, 'BadRequest', 'invalid continue token')
            resource_version, offset = match.group(1), int(match.group(2))
            meta['resourceVersion'] = resource_version
            items = items[offset:]
        else:
            offset = 0
        if limit and len(items) > limit:
            meta['continue'] = f'{resource_version}-{offset + limit}'
            meta['remainingItemCount'] = len(items) - limit
            items = items[:limit]
        return {'apiVersion': rdef.api_version, 'kind': f'{rdef.kind}List', 'metadata': meta, 'items': items}


__all__ = [
    'ApiServerEmulator',
]
