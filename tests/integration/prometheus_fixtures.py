"""A real Prometheus server for tests: the Debian package's binary on 127.0.0.1, scraping every second.

    with prometheus_fixtures.PrometheusServer({"pod-0": rt.url}, labels={"namespace": "prod"}) as prom:
        prom.wait_until("sum(alm_agent_tasks_total)", lambda v: v == 20)
        provider = PrometheusProvider(prom.url, timeout=5)

The server gets a generated config (``scrape_interval: 1s``, one static target per pod with the
labels ``namespace`` and ``pod``, as Kubernetes discovery would add them; the runtime exposes
``agent``, ``version`` and ``shadow`` itself, so nothing is relabelled), a throw-away TSDB
directory and a free port. Every wait is bounded (``/-/ready``, then queries polled) and says
what it waited for when it gives up. No process is left behind: ``stop()`` (and the ``with``
block, and an atexit hook) terminates it, and on Linux the kernel kills it if the test process
dies (``PR_SET_PDEATHSIG``, as runtime_fixtures does for agents).

``binary()`` is None when Prometheus is not installed (``apt-get install prometheus``); the tests
skip then, saying so. CI installs it. ``post_tasks`` drives traffic to runtime processes; the
scrape provider's tests use it too.
"""

from __future__ import annotations

import atexit
import base64
import concurrent.futures
import contextlib
import json
import os
import pathlib
import shutil
import subprocess
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import yaml

from alm.sandbox import procutil
from tests.integration.runtime_fixtures import RuntimeProcess

__all__ = ["BASIC_AUTH_HASH", "BASIC_AUTH_PASSWORD", "PrometheusServer", "binary", "post_tasks"]

SCRAPE_INTERVAL = 1.0
BASIC_AUTH_PASSWORD = "alm-prom-basic-auth-2f9c61d4"
BASIC_AUTH_HASH = "$2b$06$TetpgjMQNFU67EGuagx.peiguZYXHBe7xlIoiWhJeskB8TZQ/8mP6"
"""bcrypt of BASIC_AUTH_PASSWORD (cost 6: a test needs no slow hash), for ``--web.config.file``."""
_LIVE: set[PrometheusServer] = set()


def binary() -> str | None:
    """The Prometheus server binary (``ALM_PROMETHEUS_BIN`` or the Debian package's), if installed."""
    candidate = os.environ.get("ALM_PROMETHEUS_BIN") or shutil.which("prometheus") or "/usr/bin/prometheus"
    return candidate if os.access(candidate, os.X_OK) else None




class PrometheusServer:
    """One Prometheus process scraping ``targets`` (pod name -> base URL of a runtime)."""

    def __init__(
        self,
        targets: Mapping[str, str],
        *,
        labels: Mapping[str, str] | None = None,
        basic_auth: tuple[str, str] | None = None,
        timeout: float = 30.0,
    ) -> None:
        """``basic_auth``: (user, bcrypt hash): every endpoint then needs the password."""
        exe = binary()
        if exe is None:
            raise RuntimeError("prometheus is not installed (apt-get install prometheus)")
        self.workdir = pathlib.Path(tempfile.mkdtemp(prefix="alm-prometheus-"))
        self.log_path = self.workdir / "prometheus.log"
        self.port = procutil.free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._auth_header: str | None = None
        config = self.workdir / "prometheus.yml"
        config.write_text(yaml.safe_dump(self._config(targets, labels or {})))
        args = [exe, f"--config.file={config}", f"--storage.tsdb.path={self.workdir / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}", "--storage.tsdb.retention.time=1h"]  # fmt: skip
        if basic_auth is not None:
            web = self.workdir / "web.yml"
            web.write_text(yaml.safe_dump({"basic_auth_users": {basic_auth[0]: basic_auth[1]}}))
            args.append(f"--web.config.file={web}")
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(args, cwd=self.workdir, stdin=subprocess.DEVNULL, stdout=log,
                                         stderr=subprocess.STDOUT, preexec_fn=procutil.die_with_parent)  # fmt: skip
        _LIVE.add(self)
        self.exit_code: int | None = None
        try:
            self._wait_ready(timeout)
        except BaseException:
            self.stop()
            raise

    def _config(self, targets: Mapping[str, str], labels: Mapping[str, str]) -> dict[str, Any]:
        static = [{"targets": [urllib.parse.urlsplit(url).netloc], "labels": {**labels, "pod": pod}}
                  for pod, url in targets.items()]  # fmt: skip
        # Pods that come and go (a rollout's canary) are discovered from a file, as Kubernetes
        # discovery would find them: ``set_targets`` rewrites it and Prometheus watches it.
        self.targets_file = self.workdir / "targets.json"
        self.targets_file.write_text("[]")
        return {
            "global": {"scrape_interval": f"{SCRAPE_INTERVAL:g}s", "scrape_timeout": f"{SCRAPE_INTERVAL:g}s",
                       "evaluation_interval": f"{SCRAPE_INTERVAL:g}s"},
            "scrape_configs": [{"job_name": "alm-agents", "metrics_path": "/metrics", "static_configs": static,
                                "file_sd_configs": [{"files": [str(self.targets_file)], "refresh_interval": "1s"}]}],
        }  # fmt: skip

    def set_targets(self, targets: Mapping[str, tuple[str, Mapping[str, str]]]) -> None:
        """Replace the discovered targets: pod name -> (``host:port``, its labels). Atomic for the watcher."""
        groups = [{"targets": [address], "labels": {**labels, "pod": pod}}
                  for pod, (address, labels) in targets.items()]
        partial = self.targets_file.with_suffix(".tmp")
        partial.write_text(json.dumps(groups))
        partial.replace(self.targets_file)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def login(self, user: str, password: str) -> None:
        """Send basic auth with every request of this helper (not of the provider under test)."""
        self._auth_header = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()

    # --- HTTP (blocking, stdlib only)

    def get(self, path: str, timeout: float = 5.0, auth: bool = True) -> tuple[int, bytes]:
        req = urllib.request.Request(self.url + path)
        if auth and self._auth_header:
            req.add_header("Authorization", self._auth_header)
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                return resp.status, resp.read()
        except urllib.error.HTTPError as e:
            return e.code, e.read()

    def query(self, promql: str) -> list[dict[str, Any]]:
        """The vector result of an instant query now (raises on an error answer)."""
        status, body = self.get("/api/v1/query?" + urllib.parse.urlencode({"query": promql}))
        doc = json.loads(body)
        if status != 200 or doc.get("status") != "success":
            raise RuntimeError(f"query {promql!r} failed: HTTP {status} {body[:300]!r}")
        result: list[dict[str, Any]] = doc["data"]["result"]
        return result

    def value(self, promql: str) -> float | None:
        """The single number an instant query returns now; None without a series."""
        result = self.query(promql)
        return float(result[0]["value"][1]) if result else None

    def wait_until(self, promql: str, done: Callable[[float | None], bool], timeout: float = 15.0) -> float | None:
        """Poll ``promql`` until ``done(value)``; raises, with the last value, after ``timeout``."""
        deadline = time.monotonic() + timeout
        last: float | None = None
        while time.monotonic() < deadline:
            last = self.value(promql)
            if done(last):
                return last
            time.sleep(0.1)
        raise TimeoutError(f"{promql!r} still {last} after {timeout}s\n{self.log()[-2000:]}")

    def wait_scraping(self, targets: int, timeout: float = 15.0) -> None:
        """Until every target has been scraped successfully at least once."""
        self.wait_until('count(up{job="alm-agents"} == 1)', lambda v: v == targets, timeout)

    # --- lifecycle

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.proc.poll() is None:
            with contextlib.suppress(OSError):
                if self.get("/-/ready", timeout=1)[0] in (200, 401):  # 401: up, behind basic auth
                    return
            time.sleep(0.05)
        raise RuntimeError(f"prometheus not ready after {timeout}s (exit {self.proc.poll()}):\n{self.log()}")

    def stop(self, timeout: float = 10.0) -> int:
        """SIGTERM, wait, SIGKILL if need be; remove the TSDB. Idempotent."""
        if self.exit_code is None:
            if self.proc.poll() is None:
                self.proc.terminate()
            try:
                self.exit_code = self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.exit_code = self.proc.wait()
            _LIVE.discard(self)
            shutil.rmtree(self.workdir, ignore_errors=True)
        return self.exit_code

    def __enter__(self) -> PrometheusServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


@atexit.register
def _stop_all() -> None:
    for server in list(_LIVE):
        server.stop(timeout=5)


def post_tasks(
    runtimes: Sequence[RuntimeProcess], n: int, concurrency: int = 16
) -> list[tuple[int, int, dict[str, Any]]]:
    """``n`` tasks spread round-robin over ``runtimes``: (runtime index, HTTP status, answer)."""

    def one(i: int) -> tuple[int, int, dict[str, Any]]:
        index = i % len(runtimes)
        status, doc = runtimes[index].post_task(f"task {i}")
        return index, status, doc

    with concurrent.futures.ThreadPoolExecutor(concurrency) as pool:
        return list(pool.map(one, range(n)))
