"""The operator on its own event loop in a thread, for the sandbox and the tests.

kopf cancels every task that appeared in its loop after it started when it stops, so an
operator that shares a loop with other work (a test's teardown, the sandbox's story) would
cancel that work too. A thread with its own loop behaves like the separate process the
operator is in production.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence

from kubernetes import client as k8s

from alm.handlers.context import Context
from alm.handlers.runner import run_operator
from alm.kube.api import Kube

__all__ = ["OperatorThread"]


class OperatorThread:
    """``run_operator`` on its own event loop in a thread, like a separate process would be.

    kopf cancels every task that appeared in its loop after it started when it stops, so
    sharing the test's loop would cancel the test's own teardown.
    """

    def __init__(self, configuration: k8s.Configuration, namespaces: Sequence[str] = ()) -> None:
        self.configuration = configuration
        self.namespaces = list(namespaces)
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
        self.context = Context(Kube(k8s.ApiClient(self.configuration)))

        async def signal_ready() -> None:
            await ready.wait()
            self._ready.set()

        waiter = asyncio.create_task(signal_ready())
        await run_operator(self.configuration, namespaces=self.namespaces, standalone=True,
                           stop_flag=self._stop, ready_flag=ready, context=self.context)
        waiter.cancel()
