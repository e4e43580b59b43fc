"""The emulated API server on its own event loop in a daemon thread, for blocking callers.

Kept apart from the emulator because running it is a job of its own: sync code (the
``kubernetes`` client, ``kopf.testing.KopfRunner``, plain tests, ``kubectl``) talks to it over
HTTP, and :meth:`ApiServerThread.call` runs code in the server's loop, where the store lives.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar, overload

import kmock

from alm.sandbox.apiserver import ApiServerEmulator

T = TypeVar('T')


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
