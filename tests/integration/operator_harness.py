"""The real operator (kopf) against the emulated API server, as a ``Cluster`` for scenarios.

The API server runs on its own loop in a thread (``ApiServerThread``); the operator runs
in the test's event loop exactly as ``alm run`` would (``run_operator``), restricted to
the test's namespace. Tests talk to the server synchronously through the ``kubernetes``
client, as a user's ``kubectl`` would.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from typing import TypeVar

from alm.handlers.context import Context
from alm.handlers.runner import run_operator
from alm.kube.api import Kube
from alm.sandbox.apiserver import ApiServerThread

T = TypeVar("T")

USER_FIELD_MANAGER = "alm-test-user"


class OperatorThread:
    """``run_operator`` on its own event loop in a thread, like a separate process would be.

    kopf cancels every task that appeared in its loop after it started when it stops, so
    sharing the test's loop would cancel the test's own teardown.
    """

    def __init__(self, server: ApiServerThread, namespace: str) -> None:
        self.server = server
        self.namespace = namespace
        self.context: Context | None = None
        self.error: BaseException | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self, timeout: float = 30) -> None:
        self._ready.clear()
        self._thread = threading.Thread(target=self._main, name="alm-operator", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout):
            raise AssertionError(f"the operator did not become ready in {timeout} s")
        if self.error is not None:
            raise AssertionError(f"the operator failed to start: {self.error!r}")

    def stop(self, timeout: float = 30) -> None:
        if self._loop is not None and self._stop is not None and self._loop.is_running():
            self._loop.call_soon_threadsafe(self._stop.set)
        if self._thread is not None:
            self._thread.join(timeout)
            assert not self._thread.is_alive(), f"the operator did not stop within {timeout} s"
            self._thread = None

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _main(self) -> None:
        try:
            asyncio.run(self._run())
        except BaseException as exc:  # surfaced through .error and the harness's checks
            self.error = exc
        finally:
            self._ready.set()

    async def _run(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        ready = asyncio.Event()
        self.context = Context(Kube(self.server.api_client()))

        async def signal_ready() -> None:
            await ready.wait()
            self._ready.set()

        waiter = asyncio.create_task(signal_ready())
        await run_operator(self.server.configuration(), namespaces=[self.namespace], standalone=True,
                           stop_flag=self._stop, ready_flag=ready, context=self.context)
        waiter.cancel()


class EmulatedCluster:
    """One namespace on the emulated API server, with the operator watching it."""

    def __init__(self, server: ApiServerThread, namespace: str) -> None:
        self.server = server
        self.namespace = namespace
        self.kube = Kube(server.api_client(), field_manager=USER_FIELD_MANAGER)
        self.operator = OperatorThread(server, namespace)

    async def start_operator(self) -> None:
        await asyncio.to_thread(self.operator.start)

    async def stop_operator(self) -> None:
        await asyncio.to_thread(self.operator.stop)

    async def restart_operator(self) -> None:
        await self.stop_operator()
        await self.start_operator()

    def count_writes(self) -> int | None:
        return self.server.emulator.count(writes=True)

    def operator_writes(self, since: int = 0) -> int:
        """Writes sent by the operator (its field manager or kopf) since a ``mark()``."""
        emulator = self.server.emulator
        return len([r for r in emulator.requests_matching(writes=True, since=since)
                    if r.params.get("fieldManager") != USER_FIELD_MANAGER])

    async def wait_for(self, probe: Callable[[], T | None], *, timeout: float = 30, what: str = "") -> T:
        deadline = time.monotonic() + timeout
        while True:
            result = probe()
            if result is not None and result is not False:
                return result
            if self.operator.error is not None:
                raise AssertionError(f"the operator crashed while waiting for {what}: {self.operator.error!r}")
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what or probe}")
            await asyncio.sleep(0.1)
