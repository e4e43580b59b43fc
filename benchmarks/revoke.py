"""Revocation latency against the emulated API server; prints one JSON document.

For each run, on a fresh emulated API server with a freshly started operator: a live Agent (with
permissions, so it holds a scoped Secret, a ServiceAccount, a Role and a RoleBinding) is retired
with ``drain.gracePeriodSeconds: 0``; the clock runs from the POST of the AgentRetirement until
the last of those credentials is gone from the API server (checked in the server's own store
every millisecond, so the measurement adds no requests). Also reported: the time until the
retirement is Retired (archive written, Agent marked), and the operator's requests in between.

Why a fresh server per run: the emulator (kmock) matches each request against its whole request
log, so its answers slow down as requests accumulate (about +10 ms per request after a few
hundred); reusing one server would measure that, not the operator.

    python benchmarks/revoke.py --runs 30

Goal: p99 of ``secondsToLastCredentialGone`` at most 1 s.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from typing import Any

from alm.api import build_crds
from alm.kube import resources
from alm.kube.api import Kube
from alm.sandbox.apiserverthread import ApiServerThread
from alm.sandbox.operator_thread import OperatorThread
from alm.sandbox.workloads import DeploymentController

NAMESPACE = "bench-revoke"
CREDENTIAL_KINDS = ("Secret", "ServiceAccount", "Role", "RoleBinding")
BENCH_MANAGER = "alm-bench"


def _create(kube: Kube, obj: dict[str, Any]) -> None:
    kube.request("POST", resources.for_object(obj).path(obj["metadata"].get("namespace")), body=obj)


def _wait(what: str, probe: Any, timeout: float, interval: float = 0.001) -> float:
    started = time.monotonic()
    while not probe():
        if time.monotonic() - started > timeout:
            raise SystemExit(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)
    return time.monotonic()


def _credentials(kube: Kube, agent: str) -> list[tuple[str, str]]:
    found = []
    for kind in CREDENTIAL_KINDS:
        for obj in kube.list(kind, NAMESPACE, {"alm.dev/agent": agent}):
            if kind != "Secret" or obj["metadata"]["labels"].get("alm.dev/component") == "credentials":
                found.append((kind, obj["metadata"]["name"]))
    return found


def _phase(server: ApiServerThread, kind: str, name: str) -> str | None:
    """Read in the server's store: polling over HTTP would load the server being measured."""
    store = server.emulator.store
    obj = server.call(lambda: store.find(resources.for_kind(kind).plural, NAMESPACE, name)) or {}
    return (obj.get("status") or {}).get("phase")


def _setup(kube: Kube) -> None:
    _create(kube, {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "tools", "namespace": NAMESPACE},
                   "data": {"key": "c2VjcmV0"}})
    _create(kube, {"apiVersion": "alm.dev/v1alpha1", "kind": "AgentVersion",
                   "metadata": {"name": "bench-v1", "namespace": NAMESPACE},
                   "spec": {"model": {"provider": "simulated", "name": "sim"}, "instructions": "Benchmark.",
                            "tools": [{"name": "t", "type": "http", "endpoint": "https://t.example.com",
                                       "credentials": {"secretRef": {"name": "tools", "key": "key"}}}],
                            "runtime": {"image": "ghcr.io/alm-dev/alm-agent:0.1.0"}}})


def one_run(timeout: float) -> dict[str, float]:
    with ApiServerThread() as server:
        for crd in build_crds():
            server.call(lambda crd=crd: server.emulator.install_crd(crd))
        controller = DeploymentController(server.emulator.store)
        server.call(controller.start)
        operator = OperatorThread(server.configuration(), [NAMESPACE])
        operator.start()
        try:
            return _measure(server, Kube(server.api_client(), field_manager=BENCH_MANAGER), timeout)
        finally:
            operator.stop()
            server.call(controller.stop)


def _measure(server: ApiServerThread, kube: Kube, timeout: float) -> dict[str, float]:
    _setup(kube)
    agent = "bench-agent"
    _create(kube, {"apiVersion": "alm.dev/v1alpha1", "kind": "Agent",
                   "metadata": {"name": agent, "namespace": NAMESPACE},
                   "spec": {"version": "bench-v1", "replicas": 1,
                            "permissions": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get"]}]}})
    _wait(f"Agent {agent} to be Available", lambda: _phase(server, "Agent", agent) == "Available", timeout, 0.01)
    time.sleep(0.5)  # let the provisioning's trailing writes and watch events settle
    issued = _credentials(kube, agent)
    assert len(issued) == 4, issued
    store = server.emulator.store

    def all_gone() -> bool:
        return bool(server.call(lambda: all(store.find(kind, NAMESPACE, name) is None for kind, name in issued)))

    mark = server.emulator.mark()
    started = time.monotonic()
    _create(kube, {"apiVersion": "alm.dev/v1alpha1", "kind": "AgentRetirement",
                   "metadata": {"name": f"{agent}-retirement", "namespace": NAMESPACE},
                   "spec": {"agentRef": {"name": agent}, "reason": "Benchmark.",
                            "drain": {"gracePeriodSeconds": 0}}})
    gone = _wait("the last credential to go", all_gone, timeout)
    requests_until_gone = len(server.emulator.requests_matching(since=mark)) - 1
    retired = _wait("Retired", lambda: _phase(server, "AgentRetirement", f"{agent}-retirement") == "Retired",
                    timeout, 0.002)
    return {"lastCredentialGone": gone - started, "retired": retired - started,
            "operatorRequestsUntilGone": requests_until_gone}


def _percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100): an observed value, never an interpolation."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), -(-len(ordered) * q // 100)))
    return ordered[int(rank) - 1]


def _summary(values: list[float]) -> dict[str, float]:
    return {"p50": round(_percentile(values, 50), 4), "p95": round(_percentile(values, 95), 4),
            "p99": round(_percentile(values, 99), 4), "max": round(max(values), 4),
            "mean": round(statistics.fmean(values), 4)}


def run(runs: int, timeout: float) -> dict[str, Any]:
    os.environ.setdefault("ALM_RESYNC_SECONDS", "60")
    results = [one_run(timeout) for _ in range(runs)]
    gone = [r["lastCredentialGone"] for r in results]
    return {
        "runs": runs,
        "gracePeriodSeconds": 0,
        "credentialsPerAgent": 4,
        "secondsToLastCredentialGone": _summary(gone),
        "secondsToRetired": _summary([r["retired"] for r in results]),
        "operatorRequestsUntilLastCredentialGone": _summary([r["operatorRequestsUntilGone"] for r in results]),
        "goal": {"p99SecondsAtMost": 1.0, "met": _percentile(gone, 99) <= 1.0},
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--timeout", type=float, default=60)
    args = parser.parse_args()
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    json.dump(run(args.runs, args.timeout), sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
