"""A "process kubelet" for the node simulator: each agent pod runs as a local ``alm-agent``.

On a control plane without nodes nothing runs the operator's pods, yet the scenarios that
matter (KPIs scraped from real metrics, canaries analysed, traffic served) need agents that
really run. :class:`ProcessKubelet` does for a pod labelled ``alm.dev/agent`` and bound to the
fake node what the sandbox's ``ProcessDeploymentController`` does for emulated pods:

* its environment is this process's (over :data:`AGENT_DEFAULTS`: a fast simulated model), the
  simulator's ``agent_env``, then the container's literal env values;
* its ConfigMap and Secret volumes, read from the API server, become files in a private
  directory, and its container's env points there (:func:`alm.sandbox.podfiles.pod_environment`);
  a referenced ConfigMap/Secret that does not exist yet is retried every second (a kubelet's
  ``FailedMount``);
* Service URLs in the env (``ALM_MIRROR_URL``) are rewritten to a local proxy
  (:mod:`tests.e2e.serviceproxy`): there is no DNS or kube-proxy;
* the process listens on its own loopback address ``127.0.0.N`` (N from 2; all of 127/8 reaches
  ``lo`` on Linux) and the container's declared ``http`` port: the pod spec is immutable on a real
  server, so the address, not the port, tells pods apart. ``127.0.0.N`` becomes the pod's IP;
* it is Ready once ``/readyz`` answers 200; if it exits first or is not ready within 20 s the
  pod is reported not ready, with the reason and the tail of its log.

Deletion: SIGTERM (the runtime drains), up to min(``terminationGracePeriodSeconds``, 10 s) in a
background thread, then SIGKILL. Every process dies with its spawning thread at the latest
(``PR_SET_PDEATHSIG``); :attr:`ProcessKubelet.pids` lists every pid ever started.

Starting (reads, spawn, readiness wait) runs in a small thread pool, so the simulator's
0.5 s loop keeps binding and finishing other pods meanwhile. Status writes stay the loop's.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import dataclasses
import fcntl
import os
import pathlib
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable, Collection, Mapping
from typing import Any

from alm.kube.api import Kube
from alm.sandbox import podfiles, procutil
from alm.sandbox.serviceproxy import rewrite_service_urls, service_urls
from tests.e2e.serviceproxy import ServiceProxyThread

__all__ = ["AGENT_LABEL", "AgentProcess", "ProcessKubelet", "grace_seconds", "is_agent_pod"]

AGENT_LABEL = "alm.dev/agent"
READY_TIMEOUT = 20.0
MAX_GRACE_SECONDS = 10.0
DEFAULT_GRACE_SECONDS = 30.0
DEFAULT_PORT = 8080  # the runtime's own default, for a container that declares no port
MOUNT_RETRY_SECONDS = 1.0
AGENT_DEFAULTS = {"ALM_SIM_SEED": "7", "ALM_SIM_LATENCY_MS": "5"}
"""The simulated model of the integration tests' process pods: seeded and fast, so scenarios with
1 s analysis windows see tasks finish in each. This process's environment (``ALM_SIM_LATENCY_MS=200
pytest tests/e2e``), the simulator's ``agent_env`` and the pod's own env values override it."""


def is_agent_pod(pod: Mapping[str, Any]) -> bool:
    """A pod of an Agent's Deployment (the operator labels them ``alm.dev/agent``)."""
    return AGENT_LABEL in ((pod.get("metadata") or {}).get("labels") or {})


def _bindable(host: str, port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


class _Loopback:
    """Loopback addresses 127.0.0.N, unique among the live agent pods on this machine.

    Within this process a set says which are taken; across processes (two test runs at once) an
    exclusive ``flock`` on ``<tmp>/alm-e2e-loopback/<address>.lock``, held while the pod lives and
    dropped by the kernel if this process dies. An address whose port is taken anyway is skipped.
    """

    def __init__(self, lock_dir: pathlib.Path | None = None) -> None:
        self._lock = threading.Lock()
        self._held: dict[int, int] = {}  # N -> the lock file's descriptor
        self.lock_dir = lock_dir or pathlib.Path(tempfile.gettempdir()) / "alm-e2e-loopback"

    def acquire(self, port: int) -> str:
        self.lock_dir.mkdir(exist_ok=True)
        with self._lock:
            for n in range(2, 255):
                if n in self._held:
                    continue
                fd = os.open(self.lock_dir / f"127.0.0.{n}.lock", os.O_RDWR | os.O_CREAT, 0o600)
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except OSError:
                    os.close(fd)
                    continue
                if not _bindable(f"127.0.0.{n}", port):
                    os.close(fd)
                    continue
                self._held[n] = fd
                return f"127.0.0.{n}"
        raise RuntimeError(f"no loopback address 127.0.0.2-254 is free with port {port}")

    def release(self, ip: str) -> None:
        with self._lock:
            fd = self._held.pop(int(ip.rsplit(".", 1)[1]), None)
        if fd is not None:
            os.close(fd)  # drops the flock


LOOPBACK = _Loopback()


@dataclasses.dataclass
class AgentProcess:
    """One agent pod's process and where it stands.

    ``state``: waiting (a volume's object is missing; retried) → starting → ready | failed;
    ready → exited; any → stopping → stopped.
    """

    namespace: str
    name: str
    uid: str
    grace: float
    state: str = "starting"
    message: str = ""
    ip: str | None = None
    port: int | None = None
    process: subprocess.Popen[bytes] | None = None
    log_path: pathlib.Path | None = None
    exit_code: int | None = None
    reported: str | None = None
    """The state whose pod status the simulator last wrote (it writes each failure once)."""
    retry_at: float = 0.0
    future: concurrent.futures.Future[None] | None = None
    cancelled: threading.Event = dataclasses.field(default_factory=threading.Event)

    def log_tail(self, size: int = 600) -> str:
        if self.log_path is None or not self.log_path.exists():
            return ""
        with self.log_path.open("rb") as f:
            f.seek(max(0, self.log_path.stat().st_size - size))
            return f.read().decode(errors="replace").strip()


def grace_seconds(pod: Mapping[str, Any]) -> float:
    """The pod's deletion grace period (as the deletion set it), else its ``terminationGracePeriodSeconds``."""
    meta, spec = pod.get("metadata") or {}, pod.get("spec") or {}
    for value in (meta.get("deletionGracePeriodSeconds"), spec.get("terminationGracePeriodSeconds")):
        if value is not None:
            return float(value)
    return DEFAULT_GRACE_SECONDS


class ProcessKubelet:
    """Runs the agent pods of one namespace as local processes (see the module docstring)."""

    def __init__(self, kube: Kube, namespace: str, *, env: Mapping[str, str] | None = None,
                 ready_timeout: float = READY_TIMEOUT, max_grace: float = MAX_GRACE_SECONDS,
                 on_error: Callable[[str], None] | None = None, workers: int = 8) -> None:
        self.kube, self.namespace = kube, namespace
        self.env = dict(env or {})
        self.ready_timeout, self.max_grace = ready_timeout, max_grace
        self.on_error = on_error or (lambda message: None)
        self.workdir = pathlib.Path(tempfile.mkdtemp(prefix=f"alm-e2e-{namespace}-"))
        self.agents: dict[str, AgentProcess] = {}
        self.pids: list[int] = []
        self.exit_codes: dict[int, int] = {}
        """pid → exit code of each process this kubelet stopped (0: it drained; -9: it was killed)."""
        self._popens: list[subprocess.Popen[bytes]] = []
        self._lock = threading.Lock()
        self._pool = concurrent.futures.ThreadPoolExecutor(workers, thread_name_prefix=f"kubelet-{namespace}")
        self._terminations: list[threading.Thread] = []
        self.services = ServiceProxyThread(kube)

    # --- the simulator's loop calls these ----------------------------------------------------------

    def sync(self, pod: Mapping[str, Any]) -> AgentProcess:
        """A bound agent pod that is not being deleted: start its process once, retry a missing
        volume, notice an exit. Returns where it stands (never blocks on the process)."""
        meta = pod["metadata"]
        uid = str(meta["uid"])
        with self._lock:
            agent = self.agents.get(uid)
            if agent is None:
                agent = self.agents[uid] = AgentProcess(self.namespace, meta["name"], uid, grace_seconds(pod))
                agent.future = self._pool.submit(self._start, agent, pod)
            elif agent.state == "waiting" and time.monotonic() >= agent.retry_at:
                agent.state = "starting"
                agent.future = self._pool.submit(self._start, agent, pod)
            elif agent.state == "ready" and agent.process is not None and agent.process.poll() is not None:
                agent.state, agent.exit_code = "exited", agent.process.returncode
                agent.message = f"container agent exited with code {agent.exit_code} after being ready"
                self._report(agent)
        return agent

    def terminate(self, uid: str, grace: float | None = None,
                  then: Callable[[], None] | None = None) -> bool:
        """Stop the pod's process in the background (SIGTERM, ≤ min(grace, max_grace) s, SIGKILL),
        then call ``then``. False (and nothing done) if this kubelet never started that pod."""
        with self._lock:
            agent = self.agents.get(uid)
            if agent is None:
                return False
            if agent.state in ("stopping", "stopped"):
                return True
            agent.state = "stopping"
            agent.cancelled.set()
        seconds = min(agent.grace if grace is None else grace, self.max_grace)
        thread = threading.Thread(target=self._terminate, args=(agent, seconds, then),
                                  name=f"terminate-{agent.name}", daemon=True)
        self._terminations.append(thread)
        thread.start()
        return True

    def forget_missing(self, live: Collection[str]) -> None:
        """Pods that vanished (deleted at once, their namespace gone): their processes stop too."""
        for uid, agent in list(self.agents.items()):
            if uid in live:
                continue
            if agent.state == "stopped":
                with self._lock:
                    self.agents.pop(uid, None)
            else:
                self.terminate(uid)

    def alive(self) -> list[int]:
        """Pids of started processes that still run."""
        return [p.pid for p in self._popens if p.poll() is None]

    def stop(self) -> None:
        """Stop every process this kubelet started, its proxy, and remove its files."""
        for uid in list(self.agents):
            self.terminate(uid)
        for thread in list(self._terminations):
            thread.join(self.max_grace + 5)
        for process in self._popens:
            if process.poll() is None:
                process.kill()
                process.wait(5)
        self._pool.shutdown(wait=True, cancel_futures=True)
        self.services.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)

    # --- workers -------------------------------------------------------------------------------------

    def _report(self, agent: AgentProcess) -> None:
        tail = agent.log_tail()
        self.on_error(f"pod {agent.name}: {agent.message}" + (f"; its log ends with: {tail}" if tail else ""))

    def _start(self, agent: AgentProcess, pod: Mapping[str, Any]) -> None:
        try:
            self._spawn(agent, pod)
            ready = self._wait_ready(agent)
        except Exception as exc:
            ready, agent.message = False, f"could not start the agent process: {type(exc).__name__}: {exc}"
        with self._lock:
            if agent.cancelled.is_set() or agent.state != "starting":
                return  # being deleted, or waiting for a volume
            if ready:
                agent.state = "ready"
                return
            agent.state = "failed"
            if agent.process is not None and agent.process.poll() is not None:
                agent.exit_code = agent.process.returncode
                agent.message = f"container agent exited with code {agent.exit_code} before /readyz answered"
            elif agent.process is not None:
                agent.message = (f"container agent not ready: /readyz did not answer 200 "
                                 f"within {self.ready_timeout:.0f}s")
        self._report(agent)

    def _spawn(self, agent: AgentProcess, pod: Mapping[str, Any]) -> None:
        container = pod["spec"]["containers"][0]
        root = self.workdir / f"{agent.name}-{agent.uid[:8]}"
        missing: list[str] = []

        def lookup(kind: str) -> podfiles.Lookup:
            def find(namespace: str, name: str) -> Any:
                found = self.kube.get(kind, namespace, name)
                if found is None:
                    missing.append(f"{kind} {name}")
                return found
            return find

        env = podfiles.pod_environment(pod, container, root, configmap=lookup("ConfigMap"), secret=lookup("Secret"),
                                       base={**AGENT_DEFAULTS, **os.environ, **self.env})
        if missing:
            with self._lock:
                if agent.state == "starting":
                    agent.state, agent.retry_at = "waiting", time.monotonic() + MOUNT_RETRY_SECONDS
                    agent.message = f"MountVolume.SetUp failed: {', '.join(missing)} not found"
            return
        if service_urls(env):
            env = rewrite_service_urls(env, self.services.base_url())
        port = podfiles.container_port(container) or DEFAULT_PORT
        ip = LOOPBACK.acquire(port)
        agent.ip, agent.port = ip, port
        env.update({"ALM_HOST": ip, "ALM_PORT": str(port)})
        agent.log_path = root / "agent.log"
        root.mkdir(parents=True, exist_ok=True)
        with agent.log_path.open("ab") as log:
            process = subprocess.Popen([sys.executable, "-m", "alm.runtime.server"], env=env, cwd=root,
                                       stdout=log, stderr=subprocess.STDOUT, preexec_fn=procutil.die_with_parent)
        with self._lock:
            agent.process = process
            self._popens.append(process)
            self.pids.append(process.pid)

    def _wait_ready(self, agent: AgentProcess) -> bool:
        if agent.process is None:
            return False
        deadline = time.monotonic() + self.ready_timeout
        url = f"http://{agent.ip}:{agent.port}/readyz"
        while time.monotonic() < deadline and agent.process.poll() is None and not agent.cancelled.is_set():
            with contextlib.suppress(OSError), urllib.request.urlopen(url, timeout=1) as response:
                if response.status == 200:
                    return True
            agent.cancelled.wait(0.1)
        return False

    def _terminate(self, agent: AgentProcess, grace: float, then: Callable[[], None] | None) -> None:
        if agent.future is not None:
            with contextlib.suppress(Exception):
                agent.future.result(self.ready_timeout + 30)  # the start notices the cancellation
        if agent.process is not None:
            agent.exit_code = self.exit_codes[agent.process.pid] = procutil.stop_process(agent.process, grace)
        if agent.ip is not None:
            LOOPBACK.release(agent.ip)
        agent.state = "stopped"
        if then is not None:
            try:
                then()
            except Exception as exc:
                self.on_error(f"pod {agent.name}: after stopping its process: {type(exc).__name__}: {exc}")
