"""Pods as real local processes: each replica of an agent runs the reference runtime.

``ProcessDeploymentController`` extends the simulated Deployment controller: for every pod
it materialises the pod's config and credential volumes from the emulated store into a
private directory, starts ``alm-agent`` on a free loopback port with the container's
environment, waits for ``/readyz``, and reports the pod Running and Ready with that port
as its ``http`` container port. The operator's scrape provider then measures real metrics,
exactly as it would read real pods. Processes die with the controller (SIGTERM, then
SIGKILL; and ``PR_SET_PDEATHSIG`` if the parent thread dies first).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from typing import Any

from alm.sandbox import podfiles, procutil
from alm.sandbox.objectstore import ObjectStore
from alm.sandbox.serviceproxy import StoreServiceProxy
from alm.sandbox.workloads import DeploymentController

__all__ = ["ProcessDeploymentController"]

CONFIGMAPS, SECRETS = "v1/configmaps", "v1/secrets"


class ProcessDeploymentController(DeploymentController):
    def __init__(self, store: ObjectStore, *, workdir: pathlib.Path | None = None,
                 env: dict[str, str] | None = None, ready_timeout: float = 20.0, **kwargs: Any) -> None:
        super().__init__(store, manage_pods=True, **kwargs)
        self.workdir = workdir or pathlib.Path(tempfile.mkdtemp(prefix="alm-pods-"))
        self.env = dict(env or {})
        self.ready_timeout = ready_timeout
        self.processes: dict[tuple[str, str], subprocess.Popen[bytes]] = {}
        self.services = StoreServiceProxy(store)  # Service URLs in a pod's env reach the pods it selects
        self.started: list[int] = []  # every pid ever spawned, for callers that check none is left

    async def spawn_pod(self, deployment: dict[str, Any], index: int) -> dict[str, Any]:
        pod = await super().spawn_pod(deployment, index)
        namespace, name = pod["metadata"].get("namespace") or "", pod["metadata"]["name"]
        container = pod["spec"]["containers"][0]
        root = self.workdir / namespace / name
        env = await self.services.rewrite(self._environment(pod, container, root))
        port = procutil.free_port()
        env.update({"ALM_HOST": "127.0.0.1", "ALM_PORT": str(port)})
        root.mkdir(parents=True, exist_ok=True)
        log = (root / "agent.log").open("ab")
        process = subprocess.Popen(
            [sys.executable, "-m", "alm.runtime.server"], env=env, stdout=log, stderr=subprocess.STDOUT,
            preexec_fn=procutil.die_with_parent,
        )
        log.close()
        self.processes[(namespace, name)] = process
        self.started.append(process.pid)
        ready = await asyncio.to_thread(self._wait_ready, process, port)
        container["ports"] = [{"name": "http", "containerPort": port, "protocol": "TCP"}]
        if not ready:
            for cond in pod["status"]["conditions"]:
                if cond["type"] in ("Ready", "ContainersReady"):
                    cond["status"] = "False"
            pod["status"]["containerStatuses"][0]["ready"] = False
        return pod

    def _environment(self, pod: dict[str, Any], container: dict[str, Any], root: pathlib.Path) -> dict[str, str]:
        return podfiles.pod_environment(
            pod, container, root, base={**os.environ, **self.env},
            configmap=lambda ns, name: self.store.find(CONFIGMAPS, ns, name),
            secret=lambda ns, name: self.store.find(SECRETS, ns, name),
        )

    def _wait_ready(self, process: subprocess.Popen[bytes], port: int) -> bool:
        deadline = time.monotonic() + self.ready_timeout
        while time.monotonic() < deadline and process.poll() is None:
            with contextlib.suppress(OSError), urllib.request.urlopen(
                f"http://127.0.0.1:{port}/readyz", timeout=1
            ) as response:
                if response.status == 200:
                    return True
            time.sleep(0.1)
        return False

    async def terminate_pod(self, pod: dict[str, Any]) -> None:
        key = (pod["metadata"].get("namespace") or "", pod["metadata"]["name"])
        process = self.processes.pop(key, None)
        if process is not None:
            await asyncio.to_thread(procutil.stop_process, process)

    async def stop(self) -> None:
        await super().stop()
        await self.services.stop()
        processes, self.processes = list(self.processes.values()), {}
        await asyncio.gather(*(asyncio.to_thread(procutil.stop_process, p) for p in processes))
        shutil.rmtree(self.workdir, ignore_errors=True)

