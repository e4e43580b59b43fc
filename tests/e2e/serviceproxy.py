"""Service URLs for the node simulator's agent processes: kube-proxy for a cluster without nodes.

A stable pod of a shadow rollout gets ``ALM_MIRROR_URL=http://<agent>-canary.<ns>.svc:<port>``.
A node-less control plane has neither cluster DNS nor kube-proxy, so the simulator rewrites such
a value (:func:`alm.sandbox.serviceproxy.rewrite_service_urls`, shared with the sandbox) to this
proxy on 127.0.0.1, which forwards each request to a ready pod the Service selects, at its
``podIP`` (the process's loopback address) and target port. Services and pods are read from the
real API server, cached for about a second. The proxy runs on its own event loop in a daemon
thread (the simulator is a thread; the test's loop is busy with the scenario), starts on first
use and stops with the simulator.
"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

from alm.kube.api import Kube
from alm.sandbox.serviceproxy import ServiceProxy, service_backends

__all__ = ["KubeServiceProxy", "ServiceProxyThread"]

CACHE_SECONDS = 1.0


class KubeServiceProxy(ServiceProxy):
    """Backends from the API server: the Service and the namespace's pods, cached ``cache_seconds``."""

    def __init__(self, kube: Kube, cache_seconds: float = CACHE_SECONDS) -> None:
        super().__init__()
        self.kube, self.cache_seconds = kube, cache_seconds
        self._cache: dict[tuple[str, str], tuple[float, Any, list[Any]]] = {}

    async def backends(self, namespace: str, service: str, port: int) -> list[tuple[str, int]]:
        now = time.monotonic()
        cached = self._cache.get((namespace, service))
        if cached is None or now - cached[0] > self.cache_seconds:
            found, pods = await asyncio.to_thread(self._read, namespace, service)
            cached = self._cache[(namespace, service)] = (now, found, pods)
        return service_backends(cached[1], cached[2], port)

    def _read(self, namespace: str, service: str) -> tuple[Any, list[Any]]:
        found = self.kube.get("Service", namespace, service)
        selector = ((found or {}).get("spec") or {}).get("selector") or {}
        return found, (self.kube.list("Pod", namespace, selector) if selector else [])


class ServiceProxyThread:
    """A :class:`KubeServiceProxy` served from its own thread and loop; :meth:`base_url` starts it."""

    def __init__(self, kube: Kube) -> None:
        self.proxy = KubeServiceProxy(kube)
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    def base_url(self, timeout: float = 10.0) -> str:
        """``http://127.0.0.1:<port>``, starting the proxy on first use (thread-safe)."""
        with self._lock:
            if self._loop is None:
                loop = asyncio.new_event_loop()
                self._thread = threading.Thread(target=loop.run_forever, name="e2e-service-proxy", daemon=True)
                self._thread.start()
                self._loop = loop
            port = asyncio.run_coroutine_threadsafe(self.proxy.ensure_started(), self._loop).result(timeout)
        return f"http://127.0.0.1:{port}"

    @property
    def running(self) -> bool:
        return self._loop is not None and self.proxy.port is not None

    def stop(self, timeout: float = 10.0) -> None:
        with self._lock:
            loop, thread, self._loop, self._thread = self._loop, self._thread, None, None
        if loop is None or thread is None:
            return
        try:
            asyncio.run_coroutine_threadsafe(self.proxy.stop(), loop).result(timeout)
        finally:
            loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout)
            if not thread.is_alive():
                loop.close()
