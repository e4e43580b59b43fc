"""The e2e implementation of the scenarios' ``Cluster``: a real API server, a fresh namespace,
and the operator running in-process (its own thread and loop, see :mod:`alm.sandbox.operator_thread`)
watching only that namespace.

Blocking API calls made from async code here go through ``asyncio.to_thread`` so the test's
loop stays responsive (an API server emulated in this process may be served from it).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import pathlib
import secrets
import tempfile
from collections.abc import AsyncIterator, Callable
from typing import Any, TypeVar

import yaml
from kubernetes import client as k8s

from alm.handlers.registry import FINALIZER
from alm.kube import errors
from alm.kube.api import Kube
from alm.sandbox.operator_thread import OperatorThread
from tests.describe import describe_namespace
from tests.e2e.nodes import PodSimulator
from tests.e2e.settings import E2ESettings

__all__ = ["ALM_KINDS", "E2E_LABEL", "E2ECluster", "e2e_cluster", "namespaced_kubeconfig", "new_namespace_name"]

log = logging.getLogger(__name__)

T = TypeVar("T")
Obj = dict[str, Any]

E2E_LABEL = "alm.dev/e2e"
HARNESS_FIELD_MANAGER = "alm-e2e"
# Deleted first at teardown, while the operator still runs to release its finalizer.
ALM_KINDS = ("AgentRollout", "AgentRetirement", "Agent", "AgentVersion")
CLEANUP_TIMEOUT = 60.0
POLL_SECONDS = 0.25


def new_namespace_name() -> str:
    return f"alm-e2e-{secrets.token_hex(4)}"


class E2ECluster:
    """Satisfies ``tests.scenarios.Cluster`` against a real API server."""

    def __init__(self, kube: Kube, namespace: str, operator: OperatorThread, *,
                 timeout_factor: float = 1.0, simulator: PodSimulator | None = None,
                 kubeconfig: pathlib.Path | None = None) -> None:
        self.kube = kube
        self.namespace = namespace
        self.operator = operator
        self.timeout_factor = timeout_factor
        self.simulator = simulator
        self._kubeconfig = kubeconfig

    def kubeconfig(self) -> pathlib.Path:
        """The cluster's kubeconfig, copied with the test's namespace as its context's (see e2e_cluster)."""
        if self._kubeconfig is None:
            raise RuntimeError("this E2ECluster was made without a kubeconfig copy (use e2e_cluster)")
        return self._kubeconfig

    async def wait_for(self, probe: Callable[[], T | None], *, timeout: float = 30, what: str = "") -> T:
        """Poll ``probe`` (in a worker thread) until it returns something other than None/False.

        ``timeout`` is scaled by ``ALM_E2E_TIMEOUT_FACTOR``. Transient server errors (5xx,
        connection problems) are retried; anything else the probe raises propagates. If the
        operator dies meanwhile, the wait fails at once instead of timing out. A timeout is
        an ``AssertionError`` (as in the integration harness) carrying a namespace snapshot.
        """
        loop = asyncio.get_running_loop()
        budget = timeout * self.timeout_factor
        deadline = loop.time() + budget
        last_error: Exception | None = None
        while True:
            self.operator.check_alive()
            try:
                result = await asyncio.to_thread(probe)
            except errors.ServerError as exc:
                last_error, result = exc, None
            if result is not None and result is not False:
                return result
            if loop.time() >= deadline:
                label = what or getattr(probe, "__name__", "the probe")
                detail = f" (last transient error: {last_error})" if last_error else ""
                snapshot = await asyncio.to_thread(self.snapshot)
                raise AssertionError(f"timed out after {budget:.0f}s waiting for {label}{detail}\n{snapshot}")
            await asyncio.sleep(POLL_SECONDS)

    async def restart_operator(self) -> None:
        await asyncio.to_thread(self.operator.restart)

    def count_writes(self) -> int | None:
        return None  # a real API server's requests are not ours to count

    def describe_writes(self, since: int) -> str:
        return ""

    def snapshot(self) -> str:
        """A short human summary of the namespace, for failure messages (best effort, blocking)."""
        lines = [f"--- namespace {self.namespace} (operator running: {self.operator.running}) ---"]
        try:
            lines += describe_namespace(self.kube, self.namespace)
        except Exception as exc:
            lines.append(f"(snapshot incomplete: {type(exc).__name__}: {exc})")
        if self.simulator is not None and self.simulator.errors:
            lines.append(f"pod simulator errors (last 5): {self.simulator.errors[-5:]}")
        return "\n".join(lines)


# --- the per-test lifecycle ---------------------------------------------------------------

# Paths a kubeconfig may hold, relative to the kubeconfig's own directory (as kubectl reads them).
_CLUSTER_FILES = ("certificate-authority",)
_USER_FILES = ("client-certificate", "client-key", "tokenFile")


def _absolute(value: Any, base: pathlib.Path) -> Any:
    if isinstance(value, str) and value and not os.path.isabs(value):
        return str(base / value)
    return value


def namespaced_kubeconfig(source: str | os.PathLike[str], context: str | None, namespace: str,
                          target: pathlib.Path) -> pathlib.Path:
    """Copy the kubeconfig ``source`` to ``target`` (mode 0600) with ``namespace`` as the namespace of
    ``context`` (default: its current context), which becomes the current context.

    Credentials are copied as they are; file paths relative to ``source``'s directory (certificates,
    keys, token files, an exec plugin named by a relative path) are made absolute, so the copy
    works from another directory.
    """
    origin = pathlib.Path(source).resolve()
    document = yaml.safe_load(origin.read_text()) or {}
    name = context or document.get("current-context")
    entry = next((c for c in document.get("contexts") or [] if c.get("name") == name), None)
    if entry is None:
        raise ValueError(f"context {name!r} is not in the kubeconfig {str(source)!r}")
    entry.setdefault("context", {})["namespace"] = namespace
    document["current-context"] = name
    base = origin.parent
    for item in document.get("clusters") or []:
        cluster = item.get("cluster") or {}
        for key in _CLUSTER_FILES:
            if key in cluster:
                cluster[key] = _absolute(cluster[key], base)
    for item in document.get("users") or []:
        user = item.get("user") or {}
        for key in _USER_FILES:
            if key in user:
                user[key] = _absolute(user[key], base)
        plugin = user.get("exec") or {}
        command = plugin.get("command")
        if isinstance(command, str) and os.sep in command:  # a bare name is looked up on PATH
            plugin["command"] = _absolute(command, base)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        yaml.safe_dump(document, out, sort_keys=False)
    target.chmod(0o600)  # also when it existed with looser bits
    return target


def _create_namespace(kube: Kube, name: str) -> None:
    kube.apply({"apiVersion": "v1", "kind": "Namespace",
                "metadata": {"name": name, "labels": {E2E_LABEL: "true"}}})


def _remaining(kube: Kube, namespace: str, kinds: tuple[str, ...]) -> list[Obj]:
    return [obj for kind in kinds for obj in kube.list(kind, namespace)]


async def _poll_until_gone(kube: Kube, namespace: str, kinds: tuple[str, ...], timeout: float) -> list[Obj]:
    """Wait until nothing of ``kinds`` is left; return what is left when the time is up."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        try:
            left = await asyncio.to_thread(_remaining, kube, namespace, kinds)
        except errors.NotFound:
            return []
        if not left or loop.time() >= deadline:
            return left
        await asyncio.sleep(0.5)


async def _delete_alm_objects(kube: Kube, namespace: str) -> None:
    """Delete our custom objects while the operator runs (it releases its finalizer on Agents).

    Whatever still carries a finalizer after CLEANUP_TIMEOUT has its finalizers removed so
    the namespace can go, and the test errors: the operator did not finish a deletion.
    """
    def delete_all() -> None:
        for obj in _remaining(kube, namespace, ALM_KINDS):
            with contextlib.suppress(errors.Conflict):  # replaced meanwhile by a namesake: left for the next pass
                kube.delete(obj["kind"], namespace, obj["metadata"]["name"], uid=obj["metadata"].get("uid"))

    try:
        await asyncio.to_thread(delete_all)
    except errors.NotFound:
        return
    left = await _poll_until_gone(kube, namespace, ALM_KINDS, CLEANUP_TIMEOUT)
    if not left:
        return
    stuck = [f"{o['kind']}/{o['metadata']['name']} finalizers={o['metadata'].get('finalizers')}" for o in left]

    def release() -> None:
        for obj in left:
            if obj["metadata"].get("finalizers"):
                with contextlib.suppress(errors.NotFound):
                    kube.merge_patch(obj["kind"], namespace, obj["metadata"]["name"],
                                     {"metadata": {"finalizers": None}})

    await asyncio.to_thread(release)
    raise AssertionError(f"not deleted {CLEANUP_TIMEOUT:.0f}s after teardown asked (the operator owns "
                         f"{FINALIZER}): {stuck}; finalizers removed by the harness")


async def _delete_namespace(kube: Kube, namespace: str, simulator: PodSimulator | None) -> None:
    """Ask for the namespace's deletion; with simulated nodes, also see its pods through."""
    await asyncio.to_thread(kube.delete, "Namespace", None, namespace)
    if simulator is None:
        return  # real kubelets finish the pods; the namespace terminates on its own
    left = await _poll_until_gone(kube, namespace, ("Pod",), CLEANUP_TIMEOUT)
    if left:
        log.warning("%d pod(s) of %s still there %.0fs after the namespace's deletion",
                    len(left), namespace, CLEANUP_TIMEOUT)


@contextlib.asynccontextmanager
async def e2e_cluster(configuration: k8s.Configuration, settings: E2ESettings, *,
                      fake_node: str | None = None) -> AsyncIterator[E2ECluster]:
    """Fresh namespace + (simulated pods) + the operator; all undone in reverse order on exit.

    Teardown: our custom objects are deleted while the operator still runs (it must release
    its finalizer), then the operator stops, then the namespace is deleted (with simulated
    nodes, its pods are seen through before the simulator stops), and last the per-test copy
    of the kubeconfig (``E2ECluster.kubeconfig()``, for ``kubectl alm``) is removed.
    """
    namespace = new_namespace_name()
    api_client = k8s.ApiClient(configuration)
    kube = Kube(api_client, field_manager=HARNESS_FIELD_MANAGER)
    operator = OperatorThread(configuration, [namespace])
    simulator: PodSimulator | None = None
    async with contextlib.AsyncExitStack() as stack:
        stack.callback(api_client.close)
        workdir = pathlib.Path(stack.enter_context(tempfile.TemporaryDirectory(prefix=f"{namespace}-")))
        kubeconfig = namespaced_kubeconfig(settings.kubeconfig, settings.context, namespace,
                                           workdir / "kubeconfig")
        await asyncio.to_thread(_create_namespace, kube, namespace)
        log.info("created namespace %s", namespace)
        if fake_node is not None:
            sim_client = k8s.ApiClient(configuration)
            stack.callback(sim_client.close)
            simulator = PodSimulator(Kube(sim_client, field_manager=HARNESS_FIELD_MANAGER), namespace,
                                     node=fake_node)
            simulator.start()
            stack.push_async_callback(asyncio.to_thread, simulator.stop)
        stack.push_async_callback(_delete_namespace, kube, namespace, simulator)
        await asyncio.to_thread(operator.start)
        stack.push_async_callback(asyncio.to_thread, operator.stop)
        stack.push_async_callback(_delete_alm_objects, kube, namespace)
        yield E2ECluster(kube, namespace, operator, timeout_factor=settings.timeout_factor, simulator=simulator,
                         kubeconfig=kubeconfig)
