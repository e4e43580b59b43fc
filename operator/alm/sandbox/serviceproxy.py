"""Service addresses for pods run as local processes: ``http://<service>.<namespace>.svc:<port>``.

Neither the emulator nor a node-less control plane has DNS or kube-proxy, so a pod process
given a Service URL in its env (``ALM_MIRROR_URL``, the replicas router's runtime mirroring to
``<agent>-canary``) could not reach it. :func:`rewrite_service_urls` turns such a URL into a
local one, ``http://127.0.0.1:<proxy port>/<namespace>/<service>/<port><path>``, and a
:class:`ServiceProxy` listening there forwards each request to a ready pod the Service selects
(round robin over :func:`service_backends`), as kube-proxy would; 503 when it selects none.

The pieces are shared by the sandbox (:class:`StoreServiceProxy`, on the emulator's event loop,
reading the store) and the e2e suite's node simulator (``tests/e2e/serviceproxy.py``, reading
a real API server); only where Services and pods come from differs.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterable, Mapping
from typing import Any

import aiohttp
from aiohttp import web

from alm.sandbox import procutil
from alm.sandbox.objectstore import ObjectStore

__all__ = [
    "REWRITTEN_ENV",
    "SERVICE_URL",
    "ServiceProxy",
    "StoreServiceProxy",
    "rewrite_service_urls",
    "service_backends",
    "service_urls",
]

PODS, SERVICES = "v1/pods", "v1/services"
SERVICE_URL = re.compile(r"^http://([a-z0-9-]+)\.([a-z0-9-]+)\.svc(?:\.cluster\.local)?(?::(\d+))?(/.*)?$")
"""``http://<service>.<namespace>.svc[.cluster.local][:port][/path]``: groups service, namespace, port, path."""
REWRITTEN_ENV = ("ALM_MIRROR_URL",)
"""Environment variables that may name a Service (others are left alone)."""


def service_urls(env: Mapping[str, str]) -> dict[str, tuple[str, str, int, str]]:
    """``{variable: (namespace, service, port, path)}`` for the variables that name a Service."""
    found = {}
    for key in REWRITTEN_ENV:
        match = SERVICE_URL.match(env.get(key, ""))
        if match:
            service, namespace, port, path = match.groups()
            found[key] = (namespace, service, int(port or 80), path or "")
    return found


def rewrite_service_urls(env: Mapping[str, str], proxy_base: str) -> dict[str, str]:
    """``env`` with each Service URL pointing at the proxy served at ``proxy_base`` (``http://host:port``)."""
    result = dict(env)
    for key, (namespace, service, port, path) in service_urls(env).items():
        result[key] = f"{proxy_base.rstrip('/')}/{namespace}/{service}/{port}{path}"
    return result


def _ready(pod: Mapping[str, Any]) -> bool:
    status = pod.get("status") or {}
    conditions = {c.get("type"): c.get("status") for c in status.get("conditions") or []}
    return (status.get("phase") == "Running" and bool(status.get("podIP"))
            and not (pod.get("metadata") or {}).get("deletionTimestamp") and conditions.get("Ready") == "True")


def _target_port(pod: Mapping[str, Any], target: int | str | None) -> int | None:
    ports = [p for c in (pod.get("spec") or {}).get("containers") or [] for p in c.get("ports") or []]
    if isinstance(target, int) or (isinstance(target, str) and target.isdigit()):
        return int(target)
    if target:
        return next((int(p["containerPort"]) for p in ports if p.get("name") == target), None)
    return int(ports[0]["containerPort"]) if ports else None


def service_backends(service: Mapping[str, Any] | None, pods: Iterable[Mapping[str, Any]],
                     port: int | None = None) -> list[tuple[str, int]]:
    """``(podIP, targetPort)`` of the ready pods ``service`` selects, for its port ``port``.

    The Service port is the one numbered ``port`` (else its first). Its ``targetPort`` is used
    as is when numeric, resolved against each pod's container ports when it is a name (as
    kube-proxy does), and defaults to the pod's first container port. A Service without a
    selector selects nothing here (its Endpoints would be managed by hand).
    """
    spec = (service or {}).get("spec") or {}
    selector = spec.get("selector") or {}
    if not selector:
        return []
    service_ports = spec.get("ports") or []
    chosen = next((p for p in service_ports if p.get("port") == port), service_ports[0] if service_ports else {})
    target = chosen.get("targetPort")
    backends = []
    for pod in pods:
        labels = (pod.get("metadata") or {}).get("labels") or {}
        if not _ready(pod) or any(labels.get(k) != v for k, v in selector.items()):
            continue
        resolved = _target_port(pod, target)
        if resolved is not None:
            backends.append((str(pod["status"]["podIP"]), resolved))
    return backends


class ServiceProxy:
    """The forwarding HTTP server; subclasses say which backends a Service has (:meth:`backends`).

    Started on first use (:meth:`ensure_started`) in the running event loop, on 127.0.0.1.
    """

    def __init__(self) -> None:
        self.port: int | None = None
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None
        self._turn = itertools.count()

    async def backends(self, namespace: str, service: str, port: int) -> list[tuple[str, int]]:
        raise NotImplementedError

    async def rewrite(self, env: Mapping[str, str]) -> dict[str, str]:
        """``env`` with Service URLs pointing at this proxy (started if any variable names a Service)."""
        if not service_urls(env):
            return dict(env)
        return rewrite_service_urls(env, f"http://127.0.0.1:{await self.ensure_started()}")

    async def ensure_started(self) -> int:
        if self.port is None:
            app = web.Application()
            app.router.add_route("*", "/{namespace}/{service}/{port:\\d+}", self._forward)
            app.router.add_route("*", "/{namespace}/{service}/{port:\\d+}/{path:.*}", self._forward)
            self._runner = web.AppRunner(app, access_log=None)
            await self._runner.setup()
            port = procutil.free_port()
            await web.TCPSite(self._runner, "127.0.0.1", port).start()
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60))
            self.port = port
        return self.port

    async def _forward(self, request: web.Request) -> web.Response:
        info = request.match_info
        found = await self.backends(info["namespace"], info["service"], int(info["port"]))
        if not found or self._session is None:
            return web.Response(status=503, text="no ready pod behind the Service")
        host, port = found[next(self._turn) % len(found)]
        headers: dict[str, Any] = {k: v for k, v in request.headers.items()
                                   if k.lower() not in ("host", "content-length")}
        url = f"http://{host}:{port}/{info.get('path', '')}"
        try:
            async with self._session.request(request.method, url, params=request.query,
                                             data=await request.read(), headers=headers) as answer:
                body = await answer.read()
                return web.Response(status=answer.status, body=body, content_type=answer.content_type)
        except (aiohttp.ClientError, TimeoutError) as exc:
            return web.Response(status=502, text=f"{type(exc).__name__}: {exc}")

    async def stop(self) -> None:
        if self._session is not None:
            await self._session.close()
        if self._runner is not None:
            await self._runner.cleanup()
        self._session = self._runner = None
        self.port = None


class StoreServiceProxy(ServiceProxy):
    """The sandbox's proxy: Services and pods read from the emulated store (on its event loop)."""

    def __init__(self, store: ObjectStore) -> None:
        super().__init__()
        self.store = store

    async def backends(self, namespace: str, service: str, port: int) -> list[tuple[str, int]]:
        return service_backends(self.store.find(SERVICES, namespace, service),
                                self.store.list_objects(PODS, namespace), port)
