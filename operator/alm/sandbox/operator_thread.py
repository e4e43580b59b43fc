"""The operator on its own event loop in a thread: for the sandbox, the benchmarks and the tests.

Why not the caller's loop: when kopf stops it cancels every task that appeared in its loop after
it started ("hung tasks") — in a shared loop that is the caller itself (a test, its teardown, the
sandbox's story). A thread with its own loop behaves like the operator's own process in
production, and can be stopped and restarted at will.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Sequence

from kubernetes import client as k8s

from alm.handlers.context import Context
from alm.handlers.runner import run_operator
from alm.kube.api import Kube

__all__ = ["READY_TIMEOUT", "STOP_TIMEOUT", "OperatorThread"]

log = logging.getLogger(__name__)

READY_TIMEOUT = 60.0
STOP_TIMEOUT = 30.0


class OperatorThread:
    """Start, stop and restart the operator (watching ``namespaces``, or all); blocking calls."""

    def __init__(self, configuration: k8s.Configuration, namespaces: Sequence[str] = ()) -> None:
        self.configuration = configuration
        self.namespaces = list(namespaces)
        self.context: Context | None = None
        self.starts = 0
        self.error: BaseException | None = None
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._main_task: asyncio.Task[None] | None = None
        self._ready = threading.Event()
        self._stopping = False

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def check_alive(self) -> None:
        """Raise if the operator ended without being asked to (a crash, or kopf giving up)."""
        if self._thread is not None and not self._thread.is_alive() and not self._stopping:
            raise RuntimeError(f"the operator exited unexpectedly: {self.error!r}") from self.error

    def start(self, timeout: float = READY_TIMEOUT) -> None:
        assert not self.running, "the operator is already running"
        self.error, self._stopping = None, False
        self._ready.clear()
        self.starts += 1
        self._thread = threading.Thread(target=self._main, name=f"alm-operator-{self.starts}", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout):
            with contextlib.suppress(Exception):
                self.stop()
            raise TimeoutError(f"the operator was not ready within {timeout:.0f}s")
        if not self._thread.is_alive():
            raise RuntimeError(f"the operator exited during startup: {self.error!r}") from self.error
        log.info("operator #%d is ready, watching %s", self.starts, ", ".join(self.namespaces) or "all namespaces")

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """Set kopf's stop flag and wait (bounded); raise if it crashed before or while stopping."""
        thread = self._thread
        if thread is None:
            return
        crashed = not thread.is_alive()
        self._stopping = True
        loop, stop = self._loop, self._stop
        if loop is not None and stop is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                loop.call_soon_threadsafe(stop.set)
        thread.join(timeout)
        if thread.is_alive():
            task = self._main_task
            if loop is not None and task is not None:
                with contextlib.suppress(RuntimeError):
                    loop.call_soon_threadsafe(task.cancel)
            thread.join(5)
            self._thread = None
            raise TimeoutError(f"the operator did not stop within {timeout:.0f}s of its stop flag")
        self._thread = None
        if crashed:
            raise RuntimeError(f"the operator had exited unexpectedly: {self.error!r}") from self.error
        if self.error is not None:
            raise RuntimeError(f"the operator failed while stopping: {self.error!r}") from self.error
        log.info("operator #%d stopped", self.starts)

    def restart(self) -> None:
        self.stop()
        self.start()

    def _main(self) -> None:
        try:
            asyncio.run(self._run())
            if not self._stopping:
                self.error = RuntimeError("run_operator returned without being stopped")
        except BaseException as exc:
            self.error = exc
            log.exception("the operator crashed")
        finally:
            self._ready.set()  # never leave start() waiting for a dead operator

    async def _run(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop, ready = asyncio.Event(), asyncio.Event()
        self._main_task = asyncio.current_task()
        api_client = k8s.ApiClient(self.configuration)

        async def signal_ready() -> None:
            await ready.wait()
            self._ready.set()

        waiter = asyncio.create_task(signal_ready())
        try:
            self.context = Context(Kube(api_client))
            await run_operator(self.configuration, namespaces=self.namespaces, standalone=True,
                               stop_flag=self._stop, ready_flag=ready, context=self.context)
        finally:
            waiter.cancel()
            api_client.close()  # type: ignore[no-untyped-call]
