"""Service addresses for the sandbox's process pods: ``http://<service>.<namespace>.svc:<port>``.

The emulator has no DNS and no kube-proxy, so a pod process given a Service URL in its env
(``ALM_MIRROR_URL``, the replicas router's runtime mirroring to ``<agent>-canary``) could not
reach it. :class:`ServiceProxy` rewrites such a URL to a local one,
``http://127.0.0.1:<port>/<namespace>/<service>``, and forwards each request arriving there to
a Running pod the Service selects (round robin), as kube-proxy would; 503 when it selects none.
It runs on the emulator's event loop (the store is only read there) and starts on first use.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Mapping
from typing import Any

import aiohttp
from aiohttp import web

from alm.sandbox import procutil
from alm.sandbox.objectstore import ObjectStore

__all__ = ["ServiceProxy"]

PODS, SERVICES = "v1/pods", "v1/services"
_SERVICE_URL = re.compile(r"^http://([a-z0-9-]+)\.([a-z0-9-]+)\.svc(?:\.cluster\.local)?(?::\d+)?(/.*)?$")
_REWRITTEN = ("ALM_MIRROR_URL",)  # env variables that may name a Service


class ServiceProxy:
    def __init__(self, store: ObjectStore) -> None:
        self.store = store
        self.port: int | None = None
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None
        self._turn = itertools.count()

    async def rewrite(self, env: Mapping[str, str]) -> dict[str, str]:
        """``env`` with Service URLs pointing at this proxy (started if needed)."""
        result = dict(env)
        for key in _REWRITTEN:
            match = _SERVICE_URL.match(result.get(key, ""))
            if match:
                service, namespace, rest = match.groups()
                result[key] = f"http://127.0.0.1:{await self._start()}/{namespace}/{service}{rest or ''}"
        return result

    def backend(self, namespace: str, service: str) -> int | None:
        """The port of a Running pod the Service selects (round robin), None if none."""
        found = self.store.find(SERVICES, namespace, service)
        selector = ((found or {}).get("spec") or {}).get("selector") or {}
        if not selector:
            return None
        ports = [
            pod["spec"]["containers"][0]["ports"][0]["containerPort"]
            for pod in self.store.list_objects(PODS, namespace)
            if (pod.get("status") or {}).get("phase") == "Running" and pod["spec"]["containers"][0].get("ports")
            and all((pod["metadata"].get("labels") or {}).get(k) == v for k, v in selector.items())
        ]
        return ports[next(self._turn) % len(ports)] if ports else None

    async def _start(self) -> int:
        if self.port is None:
            app = web.Application()
            app.router.add_route("*", "/{namespace}/{service}/{path:.*}", self._forward)
            self._runner = web.AppRunner(app, access_log=None)
            await self._runner.setup()
            port = procutil.free_port()
            await web.TCPSite(self._runner, "127.0.0.1", port).start()
            self._session = aiohttp.ClientSession()
            self.port = port
        return self.port

    async def _forward(self, request: web.Request) -> web.Response:
        port = self.backend(request.match_info["namespace"], request.match_info["service"])
        if port is None or self._session is None:
            return web.Response(status=503, text="no ready pod behind the Service")
        headers: dict[str, Any] = {k: v for k, v in request.headers.items()
                                   if k.lower() not in ("host", "content-length")}
        url = f"http://127.0.0.1:{port}/{request.match_info['path']}"
        try:
            async with self._session.request(request.method, url, data=await request.read(),
                                             headers=headers) as answer:
                body = await answer.read()
                return web.Response(status=answer.status, body=body, content_type=answer.content_type)
        except aiohttp.ClientError as exc:
            return web.Response(status=502, text=f"{type(exc).__name__}: {exc}")

    async def stop(self) -> None:
        if self._session is not None:
            await self._session.close()
        if self._runner is not None:
            await self._runner.cleanup()
        self._session = self._runner = None
        self.port = None
