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
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from typing import Any, TypeVar, overload

import aiohttp.web
import attrs
import kmock
import yaml
from kmock._internal import rendering  # Response/StreamingError: not re-exported by kmock 0.8

from alm.sandbox import nodeless
from alm.sandbox.apierrors import api_error
from alm.sandbox.objectstore import ObjectStore, PatchType
from alm.sandbox.resources import (
    CRD_KEY,
    Requirement,
    ResourceDef,
    parse_field_selector,
    parse_label_selector,
    resources_from_crd,
)
from alm.sandbox.watches import event_matcher, translate_event

T = TypeVar('T')

WRITE_METHODS = frozenset({'POST', 'PUT', 'PATCH', 'DELETE'})
PODS_KEY = kmock.resource(group='', version='v1', plural='pods')

_PATCH_TYPES: dict[str, PatchType] = {
    'application/merge-patch+json': 'merge',
    'application/json-patch+json': 'json',
    'application/strategic-merge-patch+json': 'strategic',
    'application/apply-patch+yaml': 'apply',
}


def status_body(error: kmock.KubernetesError) -> dict[str, Any]:
    """A ``Status`` object, as real servers answer errors (the kubernetes client parses these)."""
    return {
        'kind': 'Status', 'apiVersion': 'v1', 'metadata': {}, 'status': 'Failure',
        'message': error.message or '', 'reason': error.reason or '', 'details': error.details or {},
        'code': error.status,
    }


def parse_k8s_path(path: str) -> tuple[str | None, str | None, str | None, str | None, str | None, str | None]:
    """``(group, version, namespace, plural, name, subresource)`` of an API path (``None`` if not one)."""
    parts = [part for part in path.strip('/').split('/') if part]
    if len(parts) >= 2 and parts[0] == 'api':
        group, version, rest = '', parts[1], parts[2:]
    elif len(parts) >= 3 and parts[0] == 'apis':
        group, version, rest = parts[1], parts[2], parts[3:]
    elif len(parts) == 2 and parts[0] == 'apis':
        return parts[1], None, None, None, None, None
    else:
        return None, None, None, None, None, None
    namespace = None
    # The namespaces resource itself has subresources (status, finalize): not a namespace scope.
    if rest[:1] == ['namespaces'] and len(rest) >= 3 and not (len(rest) == 3 and rest[2] in ('status', 'finalize')):
        namespace, rest = rest[1], rest[2:]
    plural = rest[0] if rest else None
    name = rest[1] if len(rest) > 1 else None
    subresource = '/'.join(rest[2:]) or None
    return group, version, namespace, plural, name, subresource


def _guess_action(method: str, name: str | None, params: Mapping[str, str]) -> kmock.action | None:
    if method == 'GET' and params.get('watch') in ('true', '1'):
        return kmock.action.WATCH
    if method == 'GET':
        return kmock.action.FETCH if name else kmock.action.LIST
    if method == 'POST':
        return kmock.action.CREATE
    if method in ('PUT', 'PATCH'):
        return kmock.action.UPDATE
    if method == 'DELETE':
        return kmock.action.DELETE
    return None


async def parse_request(raw_request: aiohttp.web.BaseRequest, *, id: int) -> kmock.Request:
    """kmock's request parsing, with correct K8s paths and tolerant (YAML, empty) bodies."""
    body = await raw_request.read()
    text = body.decode('utf-8', errors='replace')
    try:
        data = json.loads(body) if body else None
    except ValueError:
        data = None
    group, version, namespace, plural, name, subresource = parse_k8s_path(raw_request.path)
    params = dict(raw_request.query)
    resource = None if group is None else kmock.resource(group=group, version=version, plural=plural)
    return kmock.Request(
        id=id,
        raw_request=raw_request,
        url=raw_request.url,
        method=raw_request.method,
        params=params,
        headers=dict(raw_request.headers),
        cookies=dict(raw_request.cookies),
        body=body,
        text=text,
        data=data,
        action=_guess_action(raw_request.method.upper(), name, params) if group is not None else None,
        resource=resource,
        namespace=namespace,
        name=name,
        subresource=subresource,
    )


def _header(request: kmock.Request, name: str) -> str:
    for key, value in request.headers.items():
        if key.lower() == name.lower():
            return str(value)
    return ''


@attrs.define(kw_only=True)
class ApiServerEmulator(kmock.KubernetesEmulator):
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

    def requests_matching(
            self,
            *,
            method: str | Iterable[str] | None = None,
            resource: str | kmock.resource | None = None,
            namespace: str | None = None,
            name: str | None = None,
            subresource: str | None = None,
            writes: bool = False,
            since: int = 0,
            field_manager: str | None = None,
            user_agent: str | None = None,
    ) -> list[kmock.Request]:
        """
        The logged requests that match all the given filters, in arrival order.

        ``writes=True`` keeps POST/PUT/PATCH/DELETE only; ``resource`` takes anything
        :meth:`ObjectStore.resolve` does (``'deployments'``, ``'apps/v1/deployments'``, ``'deploy'``)
        and matches any version; ``since`` is a value of :meth:`mark`; ``user_agent`` is a substring
        (kopf sends ``kopf/<version>``, the kubernetes client ``OpenAPI-Generator/...``).
        """
        methods = {method.upper()} if isinstance(method, str) else (
            {m.upper() for m in method} if method is not None else None)
        target: tuple[str | None, str | None] | None = None
        if resource is not None:
            try:
                rdef = self.store.resolve(resource)
                target = (rdef.group, rdef.plural)
            except LookupError:  # not served (any more): match what the request said
                spec = resource if isinstance(resource, kmock.resource) else kmock.resource(resource)
                target = (spec.group, spec.plural)
        result = []
        for request in self._requests[since:]:
            verb = str(request.method.value).upper()
            if methods is not None and verb not in methods:
                continue
            if writes and verb not in WRITE_METHODS:
                continue
            if target is not None and (request.resource is None or not (
                    target[0] in (None, request.resource.group) and target[1] == request.resource.plural)):
                continue
            if namespace is not None and request.namespace != namespace:
                continue
            if name is not None and request.name != name:
                continue
            if subresource is not None and request.subresource != subresource:
                continue
            if field_manager is not None and request.params.get('fieldManager') != field_manager:
                continue
            if user_agent is not None and user_agent not in _header(request, 'User-Agent'):
                continue
            result.append(request)
        return result

    def count(self, **filters: Any) -> int:
        """How many logged requests match; takes the filters of :meth:`requests_matching`."""
        return len(self.requests_matching(**filters))

    def mark(self) -> int:
        """A position in the request log, for ``since=`` (e.g. "no writes since the resync began")."""
        return len(self._requests)

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
    # Discovery, from the store's registry (deterministic preferred versions, real subresources).

    def _groups(self) -> dict[str, list[ResourceDef]]:
        groups: dict[str, list[ResourceDef]] = {}
        for rdef in self.store.definitions:
            groups.setdefault(rdef.group, []).append(rdef)
        return groups

    def _group_info(self, group: str, defs: list[ResourceDef]) -> dict[str, Any]:
        versions = sorted({d.version for d in defs}, key=_version_priority)
        storage = [d.storage_version for d in defs if d.storage_version in versions]
        preferred = storage[0] if storage else versions[0]
        return {
            'name': group,
            'versions': [{'groupVersion': f'{group}/{v}', 'version': v} for v in versions],
            'preferredVersion': {'groupVersion': f'{group}/{preferred}', 'version': preferred},
        }

    async def _serve_root(self, request: kmock.Request) -> rendering.Payload:
        paths = {'/api', '/api/v1', '/apis', '/version'}
        for group, defs in self._groups().items():
            if group:
                paths.add(f'/apis/{group}')
                paths.update(f'/apis/{group}/{d.version}' for d in defs)
        return {'paths': sorted(paths)}

    async def _serve_apis(self, request: kmock.Request) -> rendering.Payload:
        return {
            'kind': 'APIGroupList', 'apiVersion': 'v1',
            'groups': [self._group_info(group, defs) for group, defs in sorted(self._groups().items()) if group],
        }

    async def _serve_group(self, request: kmock.Request) -> rendering.Payload:
        group = request.resource.group if request.resource is not None else None
        defs = self._groups().get(group or '')
        if not group or not defs:
            return rendering.Response(status=404, payload=status_body(api_error(
                404, 'NotFound', 'the server could not find the requested resource')))
        return {'kind': 'APIGroup', 'apiVersion': 'v1', **self._group_info(group, defs)}

    async def _serve_version(self, request: kmock.Request) -> rendering.Payload:
        group = request.resource.group if request.resource is not None else None
        version = request.resource.version if request.resource is not None else None
        defs = [d for d in self.store.definitions if d.group == group and d.version == version]
        if not defs:
            return rendering.Response(status=404, payload=status_body(api_error(
                404, 'NotFound', 'the server could not find the requested resource')))
        entries: list[dict[str, Any]] = []
        for rdef in sorted(defs, key=lambda d: d.plural):
            entries.append({
                'name': rdef.plural, 'singularName': rdef.singular, 'namespaced': rdef.namespaced,
                'kind': rdef.kind, 'verbs': list(rdef.verbs), 'shortNames': list(rdef.shortnames),
                'categories': list(rdef.categories),
            })
            for sub in rdef.subresources:
                entry: dict[str, Any] = {
                    'name': f'{rdef.plural}/{sub}', 'singularName': '', 'namespaced': rdef.namespaced,
                    'kind': rdef.kind, 'verbs': ['get', 'patch', 'update'],
                }
                if sub == 'scale':
                    entry.update(group='autoscaling', version='v1', kind='Scale')
                if sub == 'finalize':
                    entry['verbs'] = ['update']
                entries.append(entry)
        return {'kind': 'APIResourceList', 'apiVersion': 'v1', 'groupVersion': defs[0].api_version,
                'resources': entries}

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
            return 201, nodeless.bind_pod(self.store, namespace or '', name, self._body(request))
        if method == 'POST' and not name:
            return 201, self.store.create(rdef, self._body(request), namespace=namespace, dry_run=dry_run)
        if method == 'DELETE' and not name:
            labels, fields = self._selectors(params)
            deleted = self.store.delete_collection(rdef, namespace, labels=labels, fields=fields)
            return 200, {'apiVersion': rdef.api_version, 'kind': f'{rdef.kind}List',
                         'metadata': {'resourceVersion': self.store.resource_version}, 'items': deleted}
        if not name:
            raise api_error(405, 'MethodNotAllowed', f'{method} is not supported on a collection')
        if method == 'PUT':
            return 200, self.store.replace(rdef, namespace, name, self._body(request),
                                           subresource=sub, dry_run=dry_run)
        if method == 'PATCH':
            content_type = _header(request, 'Content-Type').split(';')[0].strip().lower()
            patch_type = _PATCH_TYPES.get(content_type)
            if patch_type is None:
                raise api_error(415, 'UnsupportedMediaType',
                                f'the body of the request was in an unknown format: {content_type}')
            created = patch_type == 'apply' and not sub and self.store.find(rdef, namespace, name) is None
            return 201 if created else 200, self.store.patch(
                rdef, namespace, name, self._body(request, yaml_ok=patch_type == 'apply'),
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

    def _body(self, request: kmock.Request, *, yaml_ok: bool = False) -> Any:
        if request.data is not None:
            return request.data
        if request.body and yaml_ok:
            try:
                return yaml.safe_load(request.text)
            except yaml.YAMLError as e:
                raise api_error(400, 'BadRequest', f'the body is not valid YAML: {e}') from e
        raise api_error(400, 'BadRequest', 'the body of the request is missing or is not valid JSON')

    def _selectors(self, params: Mapping[str, str]) -> tuple[list[Requirement], list[tuple[str, str, str]]]:
        try:
            return (parse_label_selector(params.get('labelSelector', '')),
                    parse_field_selector(params.get('fieldSelector', '')))
        except ValueError as e:
            raise api_error(400, 'BadRequest', str(e)) from e

    def _list(self, rdef: ResourceDef, namespace: str | None, params: Mapping[str, str]) -> dict[str, Any]:
        labels, fields = self._selectors(params)
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

    def _watch(self, rdef: ResourceDef, namespace: str | None, name: str | None,
               params: Mapping[str, str]) -> AsyncIterator[Any]:
        labels, fields = self._selectors(params)
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


def _version_priority(version: str) -> tuple[int, int, int, str]:
    """Kubernetes' version order: GA > beta > alpha, then higher numbers first."""
    match = re.fullmatch(r'v(\d+)(?:(alpha|beta)(\d+))?', version)
    if not match:
        return (3, 0, 0, version)
    major, stage, minor = int(match.group(1)), match.group(2), int(match.group(3) or 0)
    return ({None: 0, 'beta': 1, 'alpha': 2}[stage], -major, -minor, version)


class ApiServerThread:
    """
    An emulator served on its own event loop in a daemon thread.

    This is what blocking code needs: the ``kubernetes`` client (sync), ``kopf.testing.KopfRunner``
    and plain sync tests can talk to it over HTTP without deadlocking the caller's event loop,
    while async tests and ``kopf.operator()`` tasks in the caller's loop work just as well.
    Touch the store only through :meth:`call` (it runs in the server's loop thread).
    """

    def __init__(self, emulator: ApiServerEmulator | None = None, *, host: str = '127.0.0.1',
                 port: int | None = None) -> None:
        self.emulator = emulator if emulator is not None else ApiServerEmulator()
        self.host = host
        self.port = port
        self.url = ''
        self.loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._error: BaseException | None = None
        self._clients: list[Any] = []
        self.server_errors: list[Exception] = []
        """Exceptions the server caught while serving (incl. expected 404s); filled at stop()."""

    def __enter__(self) -> ApiServerThread:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()

    def start(self, timeout: float = 10.0) -> ApiServerThread:
        self._thread = threading.Thread(target=self._main, name='alm-apiserver', daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout) or self._error is not None:
            raise RuntimeError(f"The emulated API server did not start: {self._error!r}")
        return self

    def stop(self, timeout: float = 10.0) -> None:
        for api_client in self._clients:
            api_client.close()
        self._clients.clear()
        if self.loop is not None and self._stop is not None and self.loop.is_running():
            self.loop.call_soon_threadsafe(self._stop.set)
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def _main(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as e:  # reported to start() or visible via .error
            self._error = e
            self._ready.set()

    async def _serve(self) -> None:
        self.loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        async with self.emulator.serving(self.host, self.port) as url:
            self.url = url
            self._ready.set()
            await self._stop.wait()
            self.server_errors = list(self.emulator.errors)

    @overload
    def call(self, fn: Callable[..., Awaitable[T]], timeout: float = 30.0) -> T: ...

    @overload
    def call(self, fn: Callable[..., T], timeout: float = 30.0) -> T: ...

    def call(self, fn: Callable[[], Any], timeout: float = 30.0) -> Any:
        """Run ``fn()`` in the server's loop thread (awaiting it if it returns an awaitable)."""
        if self.loop is None:
            raise RuntimeError("The emulated API server is not running.")

        async def run() -> Any:
            result = fn()
            if isinstance(result, Awaitable):
                return await result
            return result

        return asyncio.run_coroutine_threadsafe(run(), self.loop).result(timeout)

    def configuration(self) -> Any:
        """A ``kubernetes.client.Configuration`` pointing at this server (no auth, plain HTTP)."""
        from kubernetes import client

        configuration = client.Configuration()
        configuration.host = self.url
        configuration.verify_ssl = False
        return configuration

    def api_client(self) -> Any:
        """A new ``kubernetes.client.ApiClient`` for this server (closed at :meth:`stop`)."""
        from kubernetes import client

        api_client = client.ApiClient(self.configuration())
        self._clients.append(api_client)
        return api_client

    def unexpected_errors(self) -> list[Exception]:
        """Server-side failures that were not deliberate API errors (i.e. emulator bugs)."""
        return [e for e in self.server_errors if not isinstance(e, kmock.KubernetesError)]

    def kubeconfig(self) -> dict[str, Any]:
        """A kubeconfig document for this server (for ``kubectl`` or tools reading kubeconfigs)."""
        return {
            'apiVersion': 'v1', 'kind': 'Config', 'current-context': 'alm-sandbox',
            'clusters': [{'name': 'alm-sandbox', 'cluster': {'server': self.url}}],
            'users': [{'name': 'alm-sandbox', 'user': {}}],
            'contexts': [{'name': 'alm-sandbox', 'context': {'cluster': 'alm-sandbox', 'user': 'alm-sandbox'}}],
        }


__all__ = [
    'CRD_KEY',
    'WRITE_METHODS',
    'ApiServerEmulator',
    'ApiServerThread',
    'parse_k8s_path',
    'resources_from_crd',
    'status_body',
]
