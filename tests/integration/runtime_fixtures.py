"""Real ``alm-agent`` processes for tests: spawn on 127.0.0.1, talk to them, stop them.

    with runtime_fixtures.Pool() as pool:                       # stops everything it spawned
        rt = pool.spawn(runtime_fixtures.simulated_config(successRate=0.8, seed=1))
        status, doc = rt.post_task("hello")
        families = rt.scrape()                                  # prometheus-client parser output
        assert rt.value(families, contract.TASKS.total, outcome="success") == 1

``spawn_runtime(config, env)`` is the same for one process; ``RuntimeProcess.stop()`` is idempotent.

No process is left behind: each child binds an ephemeral port itself (``ALM_PORT=0``, read back
from its log, so no two tests race for a port), ``Pool`` and ``stop()`` terminate it, an atexit
hook stops any still running, and on Linux the child is killed by the kernel if the process that
spawned it dies (``PR_SET_PDEATHSIG``; spawn from the main thread, since the signal follows the
spawning thread). Each process gets its own directory for config, credentials and its log;
``rt.log()`` shows the log, and a failed start raises with it.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import pathlib
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families

from alm.api import AgentVersionSpec
from alm.core import versionconfig
from alm.sandbox import procutil

__all__ = ["Pool", "RuntimeProcess", "parse_metrics", "running", "simulated_config", "spawn_runtime", "value"]

ROOT = pathlib.Path(__file__).resolve().parents[2]
_LISTENING = re.compile(r"listening on http://([0-9.]+):(\d+)")
_LIVE: set[RuntimeProcess] = set()


def simulated_config(
    version: str = "bot-v1",
    *,
    tools: Sequence[Mapping[str, Any]] = (),
    pricing: tuple[float, float] = (1.0, 2.0),
    model: str = "sim-1",
    **sim: Any,
) -> dict[str, Any]:
    """The config.json the operator would render for a ``simulated`` version.

    Rendered by the operator's own ``render_config`` so the runtime is tested against the real
    shape. ``sim`` are the simulated backend's settings (``successRate=0.8``, ``latencyMs=20``,
    ``seed=1``, …); ``tools`` are ToolSpec dicts as in an AgentVersion.
    """
    spec = AgentVersionSpec.model_validate({
        "model": {
            "provider": "simulated", "name": model,
            "parameters": {"extra": {key: str(value) for key, value in sim.items()}},
            "pricing": {"inputPerMillionTokensUSD": pricing[0], "outputPerMillionTokensUSD": pricing[1]},
        },
        "instructions": "You are a simulated agent.",
        "tools": list(tools),
        "runtime": {"image": "alm-agent:test"},
    })  # fmt: skip
    return versionconfig.render_config(version, spec)


def parse_metrics(text: str) -> dict[str, Metric]:
    """Metric families by name, as the text parser reports them (counters without ``_total``)."""
    return {family.name: family for family in text_string_to_metric_families(text)}


def value(families: Mapping[str, Metric], sample: str, **labels: str) -> float:
    """The sum of the samples named ``sample`` whose labels include ``labels``."""
    total = 0.0
    for family in families.values():
        for s in family.samples:
            if s.name == sample and all(s.labels.get(k) == v for k, v in labels.items()):
                total += s.value
    return total



def _command() -> list[str]:
    script = pathlib.Path(sys.executable).parent / "alm-agent"
    return [str(script)] if script.exists() else [sys.executable, "-m", "alm.runtime.server"]


class RuntimeProcess:
    """One running ``alm-agent``; ``url`` is its base URL."""

    def __init__(self, proc: subprocess.Popen[bytes], workdir: pathlib.Path, log_path: pathlib.Path) -> None:
        self.proc = proc
        self.workdir = workdir
        self.log_path = log_path
        self.host = ""
        self.port = 0
        self.exit_code: int | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def pid(self) -> int:
        return self.proc.pid

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    # --- HTTP (blocking, stdlib only: usable from sync and async tests alike)

    def request(self, method: str, path: str, body: Any = None, timeout: float = 30.0) -> tuple[int, bytes]:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.url + path, data=data, method=method)
        if data is not None:
            req.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                return resp.status, resp.read()
        except urllib.error.HTTPError as e:
            return e.code, e.read()

    def post_task(self, text: str = "hello", timeout: float = 30.0) -> tuple[int, dict[str, Any]]:
        status, body = self.request("POST", "/v1/tasks", {"input": text}, timeout)
        return status, json.loads(body)

    def metrics_text(self) -> str:
        status, body = self.request("GET", "/metrics")
        assert status == 200, (status, body)
        return body.decode()

    def scrape(self) -> dict[str, Metric]:
        return parse_metrics(self.metrics_text())

    # --- lifecycle

    def _wait_listening(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            match = _LISTENING.search(self.log())
            if match:
                self.host, self.port = match[1], int(match[2])
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.02)
        log = self.log()
        self.stop()
        raise RuntimeError(f"alm-agent did not start (exit {self.proc.returncode}):\n{log}")

    def wait_ready(self, timeout: float = 20.0) -> None:
        """Until /readyz answers 200; raises with the log if it does not in time."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.proc.poll() is None:
            with contextlib.suppress(OSError):
                if self.request("GET", "/readyz", timeout=2)[0] == 200:
                    return
            time.sleep(0.02)
        raise RuntimeError(f"alm-agent not ready (exit {self.proc.poll()}):\n{self.log()}")

    def terminate(self) -> None:
        """Send SIGTERM (start the drain) without waiting."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)

    def wait(self, timeout: float) -> int:
        """The exit code; raises ``subprocess.TimeoutExpired`` if still running after ``timeout``."""
        return self.proc.wait(timeout)

    def stop(self, timeout: float = 15.0) -> int:
        """SIGTERM, wait up to ``timeout``, then SIGKILL; remove the work directory. Idempotent."""
        if self.exit_code is None:
            self.terminate()
            try:
                self.exit_code = self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.exit_code = self.proc.wait()
            _LIVE.discard(self)
            shutil.rmtree(self.workdir, ignore_errors=True)
        return self.exit_code

    def __enter__(self) -> RuntimeProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def spawn_runtime(
    config: Mapping[str, Any],
    env: Mapping[str, str] | None = None,
    *,
    credentials: Mapping[str, str] | None = None,
    instructions: str = "You are a simulated agent.",
    ready: bool = True,
    timeout: float = 20.0,
) -> RuntimeProcess:
    """Start ``alm-agent`` with ``config`` as its config.json; returns once it is ready.

    ``env`` overrides the defaults (ALM_AGENT=bot, ALM_SHADOW=false, ALM_DRAIN_SECONDS=10,
    ALM_AGENT_VERSION from the config, …); ALM_* of the calling environment are not inherited.
    ``credentials`` maps file names (``tool-crm``, see ``versionconfig.tool_secret_key``) to
    values, written to the process's credentials directory. ``ready=False`` returns as soon as
    the server listens (for tests of start-up failures and late configs).
    """
    workdir = pathlib.Path(tempfile.mkdtemp(prefix="alm-runtime-"))
    config_dir, credentials_dir = workdir / "config", workdir / "credentials"
    config_dir.mkdir()
    credentials_dir.mkdir()
    (config_dir / versionconfig.CONFIG_FILE).write_text(json.dumps(config))
    (config_dir / versionconfig.INSTRUCTIONS_FILE).write_text(instructions)
    for name, secret in (credentials or {}).items():
        path = credentials_dir / name
        path.write_text(secret)
        path.chmod(0o600)
    child_env = {k: v for k, v in os.environ.items() if not k.startswith("ALM_")}
    child_env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT / "operator"), os.environ.get("PYTHONPATH")]))
    child_env.update({
        "ALM_AGENT": "bot",
        "ALM_AGENT_VERSION": str(config.get("agentVersion", "bot-v1")),
        "ALM_CONFIG_FILE": str(config_dir / versionconfig.CONFIG_FILE),
        "ALM_CREDENTIALS_DIR": str(credentials_dir),
        "ALM_SHADOW": "false",
        "ALM_HOST": "127.0.0.1",
        "ALM_PORT": "0",
        "ALM_DRAIN_SECONDS": "10",
    })  # fmt: skip
    child_env.update(env or {})
    log_path = workdir / "runtime.log"
    with log_path.open("wb") as log_file:
        proc = subprocess.Popen(
            _command(), env=child_env, cwd=workdir, stdin=subprocess.DEVNULL, stdout=log_file,
            stderr=subprocess.STDOUT, preexec_fn=procutil.die_with_parent,
        )  # fmt: skip
    runtime = RuntimeProcess(proc, workdir, log_path)
    _LIVE.add(runtime)
    runtime._wait_listening(timeout)
    if ready:
        try:
            runtime.wait_ready(timeout)
        except RuntimeError:
            runtime.stop()
            raise
    return runtime


class Pool:
    """Spawn several runtimes; all are stopped when the ``with`` block ends."""

    def __init__(self) -> None:
        self.runtimes: list[RuntimeProcess] = []

    def spawn(self, config: Mapping[str, Any], env: Mapping[str, str] | None = None, **kwargs: Any) -> RuntimeProcess:
        runtime = spawn_runtime(config, env, **kwargs)
        self.runtimes.append(runtime)
        return runtime

    def __enter__(self) -> Pool:
        return self

    def __exit__(self, *exc: object) -> None:
        for runtime in self.runtimes:
            runtime.terminate()  # all drain in parallel
        for runtime in self.runtimes:
            runtime.stop()


@atexit.register
def _stop_all() -> None:
    for runtime in list(_LIVE):
        runtime.stop(timeout=5)


@contextlib.contextmanager
def running(config: Mapping[str, Any], env: Mapping[str, str] | None = None, **kwargs: Any) -> Iterator[RuntimeProcess]:
    """One runtime for the duration of a ``with`` block."""
    runtime = spawn_runtime(config, env, **kwargs)
    try:
        yield runtime
    finally:
        runtime.stop()
