"""``alm sandbox``: the whole operator on one machine, no cluster, no Docker.

An emulated API server (kmock, extended in :mod:`alm.sandbox.apiserver`) runs in-process
with a simulated Deployment controller; the real operator runs against it exactly as
``alm run`` would. The story applies the packaged example (a Secret, an AgentVersion and an
Agent, the same files as ``manifests/examples/``), waits for the agent to be Available, and
reports what the operator did. Later releases extend the story with rollouts, budgets and
retirement.
"""

from __future__ import annotations

import contextlib
import importlib.resources
import json
import logging
import pathlib
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from typing import Any

import yaml

from alm.api import build_crds
from alm.kube import resources
from alm.kube.api import Kube
from alm.sandbox.apiserver import ApiServerThread
from alm.sandbox.operator_thread import OperatorThread
from alm.sandbox.workloads import DeploymentController

__all__ = ["EXAMPLE_FILES", "example_documents", "main", "run_story"]

NAMESPACE = "default"
EXAMPLE_FILES = ("secret.yaml", "agentversion.yaml", "agent.yaml")
CHILD_KINDS = ("ServiceAccount", "Role", "RoleBinding", "Secret", "Service", "NetworkPolicy",
               "PodDisruptionBudget", "Deployment")


def example_documents() -> list[dict[str, Any]]:
    folder = importlib.resources.files("alm.sandbox") / "examples"
    docs: list[dict[str, Any]] = []
    for name in EXAMPLE_FILES:
        docs.extend(doc for doc in yaml.safe_load_all((folder / name).read_text()) if doc)
    return docs


@contextlib.contextmanager
def sandbox_cluster() -> Iterator[tuple[ApiServerThread, OperatorThread]]:
    """API server + Deployment controller + operator, all stopped on exit (even on Ctrl-C)."""
    with ApiServerThread() as server:
        for crd in build_crds():
            server.call(lambda crd=crd: server.emulator.install_crd(crd))
        controller = DeploymentController(server.emulator.store, delay=0.5)
        server.call(controller.start)
        operator = OperatorThread(server.configuration())
        try:
            operator.start()
            yield server, operator
        finally:
            operator.stop()
            server.call(controller.stop)


def _wait(probe: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = probe()
        if result:
            return result
        time.sleep(0.1)
    raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")


def run_story(server: ApiServerThread, timeout: float) -> dict[str, Any]:
    """Apply the example, wait for the agent, and return what happened as plain data."""
    kube = Kube(server.api_client(), field_manager="alm-sandbox")
    started = time.monotonic()
    agent_name = ""
    for doc in example_documents():
        doc["metadata"]["namespace"] = NAMESPACE
        kube.request("POST", resources.for_object(doc).path(NAMESPACE), body=doc)
        if doc["kind"] == "Agent":
            agent_name = doc["metadata"]["name"]

    def available() -> dict[str, Any] | None:
        agent = kube.get("Agent", NAMESPACE, agent_name) or {}
        status = agent.get("status") or {}
        ok = status.get("phase") == "Available" and status.get("observedGeneration") == agent["metadata"]["generation"]
        return agent if ok else None

    try:
        agent = _wait(available, timeout, f"Agent {agent_name} to become Available")
    except TimeoutError as exc:
        status = (kube.get("Agent", NAMESPACE, agent_name) or {}).get("status") or {}
        ready: dict[str, Any] = next((c for c in status.get("conditions") or [] if c.get("type") == "Ready"), {})
        phase = status.get("phase", "not reconciled")
        raise TimeoutError(f"{exc}; it is {phase}: {ready.get('message', '')}") from None
    elapsed = time.monotonic() - started
    children = [
        {"kind": kind, "name": obj["metadata"]["name"]}
        for kind in CHILD_KINDS
        for obj in kube.list(kind, NAMESPACE, {"alm.dev/agent": agent_name})
    ]
    version = kube.get("AgentVersion", NAMESPACE, agent["spec"]["version"]) or {}
    events = sorted(kube.list("Event", NAMESPACE), key=lambda e: str(e.get("firstTimestamp") or ""))
    return {
        "agent": {"name": agent_name, "namespace": NAMESPACE, "status": _public_status(agent["status"])},
        "agentVersion": {"name": version["metadata"]["name"], "status": _public_status(version.get("status") or {})},
        "children": children,
        "events": [
            {"object": f"{e['involvedObject'].get('kind')}/{e['involvedObject'].get('name')}",
             "type": e.get("type"), "reason": e.get("reason"), "message": e.get("message")}
            for e in events
        ],
        "secondsToAvailable": round(elapsed, 2),
    }


def _public_status(status: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in status.items() if key != "kopf"}


def render_text(report: dict[str, Any]) -> str:
    agent, version = report["agent"], report["agentVersion"]
    status = agent["status"]
    lines = [
        f"Agent {agent['namespace']}/{agent['name']} is {status['phase']} "
        f"(version {status.get('stableVersion')}, {status.get('readyReplicas')}/{status.get('replicas')} ready) "
        f"after {report['secondsToAvailable']}s",
        "",
        "Conditions:",
        *[f"  {c['type']:<12} {c['status']:<6} {c['reason']}: {c['message']}" for c in status.get("conditions", [])],
        "",
        f"AgentVersion {version['name']}: {version['status'].get('phase')}, "
        f"spec hash {str(version['status'].get('specHash'))[:12]}…, config in ConfigMap "
        f"{version['status'].get('configMapName')}",
        "",
        "Children the operator created (server-side apply, owned by the Agent):",
        *[f"  {c['kind']:<20} {c['name']}" for c in report["children"]],
        "",
        "Events:",
        *[f"  {e['type']:<8} {e['object']:<36} {e['reason']}: {e['message']}" for e in report["events"]],
    ]
    return "\n".join(lines) + "\n"


def main(*, keep: bool = False, timeout: float = 120.0, output: str = "text") -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("kopf").setLevel(logging.ERROR)
    try:
        with sandbox_cluster() as (server, operator):
            report = run_story(server, timeout)
            if output == "json":
                sys.stdout.write(json.dumps(report, indent=2) + "\n")
            else:
                sys.stdout.write(render_text(report))
            if operator.error is not None:
                raise RuntimeError(f"the operator failed: {operator.error!r}")
            if keep:
                _keep_running(server)
    except TimeoutError as exc:
        sys.stderr.write(f"alm sandbox: {exc}\n")
        return 1
    return 0


def _keep_running(server: ApiServerThread) -> None:
    path = pathlib.Path(tempfile.gettempdir()) / "alm-sandbox.kubeconfig"
    path.write_text(yaml.safe_dump(server.kubeconfig()))
    sys.stdout.write(f"\nThe sandbox keeps running at {server.url}.\n"
                     f"  export KUBECONFIG={path}\n  kubectl get agents\nPress Ctrl-C to stop.\n")
    sys.stdout.flush()
    stop = threading.Event()
    with contextlib.suppress(KeyboardInterrupt):
        stop.wait()
