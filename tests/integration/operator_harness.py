"""The real operator (kopf) against the emulated API server, as a ``Cluster`` for scenarios.

The API server runs on its own loop in a thread (``ApiServerThread``); the operator runs
in the test's event loop exactly as ``alm run`` would (``run_operator``), restricted to
the test's namespace. Tests talk to the server synchronously through the ``kubernetes``
client, as a user's ``kubectl`` would.
"""

from __future__ import annotations

import asyncio
import pathlib
import tempfile
import time
from collections.abc import Callable
from typing import TypeVar

from alm.kube import errors
from alm.kube.api import Kube
from alm.sandbox.apiserverthread import ApiServerThread
from alm.sandbox.operator_thread import OperatorThread
from tests.describe import describe_namespace
from tests.e2e.kubeconfig import write_kubeconfig

T = TypeVar("T")

USER_FIELD_MANAGER = "alm-test-user"
KUBECONFIG_USER = "alm-it-user"  # the user (and cluster, context) the kubeconfig names; the emulator has no auth


class EmulatedCluster:
    """One namespace on the emulated API server, with the operator watching it."""

    def __init__(self, server: ApiServerThread, namespace: str) -> None:
        self.server = server
        self.namespace = namespace
        self.kube = Kube(server.api_client(), field_manager=USER_FIELD_MANAGER)
        self.operator = OperatorThread(server.configuration(), [namespace])
        self._tmp: tempfile.TemporaryDirectory[str] | None = None

    def kubeconfig(self) -> pathlib.Path:
        """A kubeconfig for this server whose context's namespace is the test's (written on first use)."""
        if self._tmp is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="alm-it-kubeconfig-")
        path = pathlib.Path(self._tmp.name) / "kubeconfig"
        if not path.exists():
            write_kubeconfig(path, self.server.url, name=KUBECONFIG_USER, namespace=self.namespace)
        return path

    def close(self) -> None:
        """Remove the kubeconfig's directory (the operator is stopped separately)."""
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    async def start_operator(self) -> None:
        await asyncio.to_thread(self.operator.start)

    async def stop_operator(self) -> None:
        await asyncio.to_thread(self.operator.stop)

    async def restart_operator(self) -> None:
        await self.stop_operator()
        await self.start_operator()

    def count_writes(self) -> int | None:
        return self.server.emulator.count(writes=True)

    def snapshot(self) -> str:
        """Where the namespace stands, for a timeout's message: Agents, rollouts, Deployments, Pods."""
        try:
            return "\n".join(describe_namespace(self.kube, self.namespace))
        except errors.ApiError as exc:  # e.g. no CRDs on this server: the timeout's message still goes out
            return f"(no snapshot: {exc})"

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
                raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what or probe}\n{self.snapshot()}")
            await asyncio.sleep(0.1)
