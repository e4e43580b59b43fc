"""``alm sandbox``: the whole lifecycle on one machine, no cluster, no Docker.

An emulated API server (kmock, extended in :mod:`alm.sandbox.apiserver`) runs in-process; a
simulated Deployment controller runs every agent pod as a real local ``alm-agent`` process
(:class:`~alm.sandbox.processes.ProcessDeploymentController`), so the operator's scrape
provider measures real metrics; the real operator runs against it exactly as ``alm run`` would.

The story starts from the packaged example (the files of ``manifests/examples/``), tuned for
speed (1 s analysis and monitoring intervals, a simulated model per version), and plays its
beats (:mod:`alm.sandbox.beats`) while a traffic generator (:mod:`alm.sandbox.traffic`) sends
tasks to the running pods: deploy v1, measure a good canary and promote it, roll back a bad one,
pass a fix through an approval gate (the sandbox approves it) and promote it, exceed a budget,
retire the agent, verify the audit chain. Each beat's facts are
read from the API; they are printed as a timeline, or as JSON with ``-o json``.
"""

from __future__ import annotations

import contextlib
import importlib.resources
import json
import logging
import pathlib
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import yaml

from alm.api import build_crds
from alm.kube.api import Kube
from alm.sandbox import beats
from alm.sandbox.apiserverthread import ApiServerThread
from alm.sandbox.operator_thread import OperatorThread
from alm.sandbox.processes import ProcessDeploymentController
from alm.sandbox.traffic import Traffic

__all__ = ["EXAMPLE_FILES", "example_documents", "main", "render_text", "run_story"]

NAMESPACE = "default"
EXAMPLE_FILES = ("secret.yaml", "agentversion.yaml", "agent.yaml")
# Fast, reproducible simulated agents: 5 ms model calls, seeded draws.
AGENT_ENV = {"ALM_SIM_SEED": "7", "ALM_SIM_LATENCY_MS": "5"}
TITLES = {
    "deploy": "deploy v1", "canary": "canary promoted", "rollback": "canary rolled back",
    "approval": "approved, promoted", "budget": "budget exceeded", "retirement": "retired", "audit": "audit verified",
}


def example_documents() -> list[dict[str, Any]]:
    folder = importlib.resources.files("alm.sandbox") / "examples"
    docs: list[dict[str, Any]] = []
    for name in EXAMPLE_FILES:
        docs.extend(doc for doc in yaml.safe_load_all((folder / name).read_text()) if doc)
    return docs


@contextlib.contextmanager
def sandbox_cluster() -> Iterator[tuple[ApiServerThread, OperatorThread, ProcessDeploymentController]]:
    """API server + process-backed Deployment controller + operator, all stopped on exit (even on Ctrl-C)."""
    with ApiServerThread() as server:
        for crd in build_crds():
            server.call(lambda crd=crd: server.emulator.install_crd(crd))
        controller = ProcessDeploymentController(server.emulator.store, env=AGENT_ENV)
        server.call(controller.start)
        operator = OperatorThread(server.configuration())
        try:
            operator.start()
            yield server, operator, controller
        finally:
            operator.stop()
            server.call(controller.stop)


def run_story(server: ApiServerThread, timeout: float,
              on_beat: Callable[[dict[str, Any]], None] = lambda beat: None) -> dict[str, Any]:
    """Play every beat; return the timeline (and each beat's facts from the API) as plain data."""
    kube = Kube(server.api_client(), field_manager="alm-sandbox")
    started = time.monotonic()
    stage = beats.Stage(kube, NAMESPACE, deadline=started + timeout)
    timeline: list[dict[str, Any]] = []

    def play(name: str, beat: Callable[[], dict[str, Any]]) -> None:
        facts = beat()
        entry = {"beat": name, "title": TITLES[name], "elapsedSeconds": round(time.monotonic() - started, 1), **facts}
        timeline.append(entry)
        on_beat(entry)

    play("deploy", lambda: beats.deploy(stage, example_documents()))
    traffic = Traffic(kube, NAMESPACE, stage.agent)
    with traffic:
        play("canary", lambda: beats.canary(stage))
        play("rollback", lambda: beats.roll_back(stage))
        play("approval", lambda: beats.approve(stage))
        play("budget", lambda: beats.exceed_budget(stage))
    play("retirement", lambda: beats.retire(stage))
    play("audit", lambda: beats.audit_verdict(stage))
    return {
        "namespace": NAMESPACE, "agent": stage.agent, "timeline": timeline,
        "traffic": {"sent": traffic.sent, "answered": traffic.answered},
        "totalSeconds": round(time.monotonic() - started, 1),
    }


def render_beat(entry: dict[str, Any]) -> str:
    return f"[{entry['elapsedSeconds']:6.1f}s] {entry['title']:<19} {entry['summary']}\n"


def render_text(report: dict[str, Any]) -> str:
    """The whole timeline and the closing line (``main`` prints the beats as they happen, then the close)."""
    return "".join(render_beat(entry) for entry in report["timeline"]) + render_close(report)


def render_close(report: dict[str, Any]) -> str:
    processes, traffic = report["processes"], report["traffic"]
    left = f"{len(processes['running'])} STILL RUNNING" if processes["running"] else "all stopped"
    return (f"\nThe story took {report['totalSeconds']}s; {traffic['answered']} tasks were served by "
            f"{len(processes['started'])} agent processes, {left}.\n")


def main(*, keep: bool = False, timeout: float = 120.0, output: str = "text") -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("kopf").setLevel(logging.ERROR)
    logging.getLogger("aiohttp.access").setLevel(logging.ERROR)
    text = output != "json"
    if text:
        sys.stdout.write(f"alm sandbox: the lifecycle of the example agent, on an emulated API server "
                         f"(timeout {timeout:.0f}s)\n\n")
        sys.stdout.flush()

    def show(entry: dict[str, Any]) -> None:
        if text:
            sys.stdout.write(render_beat(entry))
            sys.stdout.flush()

    try:
        with sandbox_cluster() as (server, operator, controller):
            report = run_story(server, timeout, show)
            if operator.error is not None:
                raise RuntimeError(f"the operator failed: {operator.error!r}")
            if keep:
                _keep_running(server, text)
            processes = list(controller.started)
        report["processes"] = {"started": processes,
                               "running": [pid for pid in processes if _alive(pid)]}
        if text:
            sys.stdout.write(render_close(report))
        else:
            sys.stdout.write(json.dumps(report, indent=2) + "\n")
    except (TimeoutError, RuntimeError) as exc:
        sys.stderr.write(f"alm sandbox: {exc}\n")
        return 1
    except KeyboardInterrupt:  # everything it started is stopped by the context managers above
        sys.stderr.write("alm sandbox: interrupted; every process it started is stopped\n")
        return 130
    return 0


def _alive(pid: int) -> bool:
    """A pid that still runs the agent runtime (not a zombie, not a recycled pid)."""
    proc = pathlib.Path(f"/proc/{pid}")
    try:
        state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
        return state != "Z" and b"alm.runtime.server" in (proc / "cmdline").read_bytes()
    except (OSError, IndexError):
        return False


def _keep_running(server: ApiServerThread, text: bool) -> None:
    path = pathlib.Path(tempfile.gettempdir()) / "alm-sandbox.kubeconfig"
    path.write_text(yaml.safe_dump(server.kubeconfig()))
    out = sys.stdout if text else sys.stderr
    out.write(f"\nThe sandbox keeps running at {server.url}.\n"
              f"  export KUBECONFIG={path}\n  kubectl alm list\n  kubectl alm history support-bot\n"
              f"  kubectl alm audit support-bot --verify\nPress Ctrl-C to stop.\n")
    out.flush()
    stop = threading.Event()
    # Ctrl-C (SIGINT, even when inherited as ignored) and SIGTERM end the wait; the caller's
    # context managers then stop the operator, every agent process and the API server.
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    with contextlib.suppress(KeyboardInterrupt):
        while not stop.wait(0.5):
            pass
    out.write("Stopped.\n")
