"""The real operator (kopf) against the emulated API server, as a ``Cluster`` for scenarios.

The API server runs on its own loop in a thread (``ApiServerThread``); the operator runs
in the test's event loop exactly as ``alm run`` would (``run_operator``), restricted to
the test's namespace. Tests talk to the server synchronously through the ``kubernetes``
client, as a user's ``kubectl`` would.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import TypeVar

from alm.kube.api import Kube
from alm.sandbox.apiserver import ApiServerThread
from alm.sandbox.operator_thread import OperatorThread

T = TypeVar("T")

USER_FIELD_MANAGER = "alm-test-user"


class EmulatedCluster:
    """One namespace on the emulated API server, with the operator watching it."""

    def __init__(self, server: ApiServerThread, namespace: str) -> None:
        self.server = server
        self.namespace = namespace
        self.kube = Kube(server.api_client(), field_manager=USER_FIELD_MANAGER)
        self.operator = OperatorThread(server.configuration(), [namespace])

    async def start_operator(self) -> None:
        await asyncio.to_thread(self.operator.start)

    async def stop_operator(self) -> None:
        await asyncio.to_thread(self.operator.stop)

    async def restart_operator(self) -> None:
        await self.stop_operator()
        await self.start_operator()

    def count_writes(self) -> int | None:
        return self.server.emulator.count(writes=True)

    def describe_writes(self, since: int) -> str:
        """The writes logged after the ``since``-th, one line each, for failure messages."""
        requests = self.server.emulator.requests_matching(writes=True)[max(since, 0):]
        return "\n".join(f"  {getattr(r.method, 'value', r.method)} {r.url}" for r in requests)

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
