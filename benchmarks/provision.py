"""Provisioning at scale against the emulated API server; prints one JSON document.

For N Agents (default 200) sharing one AgentVersion: the time until all are Available,
the operator's requests per agent (reads and writes, kopf's watches included), the
writes during a full resync after convergence (must be 0), and, for scale, the requests
a raw client needs to create the same children by hand.

    python benchmarks/provision.py --agents 200 --replicas 1
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Any

from alm.api import build_crds
from alm.kube import resources
from alm.kube.api import Kube
from alm.sandbox.apiserverthread import ApiServerThread
from alm.sandbox.operator_thread import OperatorThread
from alm.sandbox.workloads import DeploymentController

BENCH_AGENT = "alm-bench-client"


def _client(server: ApiServerThread) -> Kube:
    api = server.api_client()
    api.user_agent = BENCH_AGENT
    return Kube(api, field_manager="alm-bench")


def _operator_requests(server: ApiServerThread, since: int) -> dict[str, int]:
    requests = [r for r in server.emulator.requests_matching(since=since)
                if BENCH_AGENT not in dict(r.headers).get("User-Agent", "")]
    writes = sum(1 for r in requests if str(r.method.value).upper() in {"POST", "PUT", "PATCH", "DELETE"})
    return {"total": len(requests), "writes": writes, "reads": len(requests) - writes}


def _create(kube: Kube, obj: dict[str, Any]) -> None:
    kube.request("POST", resources.for_object(obj).path(obj["metadata"].get("namespace")), body=obj)


def run(agents: int, replicas: int, timeout: float) -> dict[str, Any]:
    os.environ.setdefault("ALM_RESYNC_SECONDS", "5")  # read by the operator when it starts
    ns = "bench"
    with ApiServerThread() as server:
        for crd in build_crds():
            server.call(lambda crd=crd: server.emulator.install_crd(crd))
        controller = DeploymentController(server.emulator.store)
        server.call(controller.start)
        operator = OperatorThread(server.configuration(), [ns])
        operator.start()
        kube = _client(server)
        try:
            _create(kube, {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "tools", "namespace": ns},
                           "data": {"key": "c2VjcmV0"}})
            _create(kube, {"apiVersion": "alm.dev/v1alpha1", "kind": "AgentVersion",
                           "metadata": {"name": "bench-v1", "namespace": ns},
                           "spec": {"model": {"provider": "simulated", "name": "sim"}, "instructions": "Benchmark.",
                                    "tools": [{"name": "t", "type": "http", "endpoint": "https://t.example.com",
                                               "credentials": {"secretRef": {"name": "tools", "key": "key"}}}],
                                    "runtime": {"image": "ghcr.io/alm-dev/alm-agent:0.1.0"}}})
            time.sleep(1)
            mark = server.emulator.mark()
            started = time.monotonic()
            for i in range(agents):
                _create(kube, {"apiVersion": "alm.dev/v1alpha1", "kind": "Agent",
                               "metadata": {"name": f"agent-{i:04d}", "namespace": ns},
                               "spec": {"version": "bench-v1", "replicas": replicas}})
            created = time.monotonic() - started
            while True:
                items = kube.list("Agent", ns)
                done = sum(1 for a in items if (a.get("status") or {}).get("phase") == "Available"
                           and (a.get("status") or {}).get("observedGeneration") == a["metadata"]["generation"])
                if done == agents:
                    break
                if time.monotonic() - started > timeout:
                    raise SystemExit(f"only {done}/{agents} agents Available after {timeout}s")
                time.sleep(0.25)
            all_available = time.monotonic() - started
            time.sleep(1.0)  # let trailing status writes land
            provisioning = _operator_requests(server, mark)
            resync_mark = server.emulator.mark()
            resync_window = 2.5 * float(os.environ["ALM_RESYNC_SECONDS"])
            time.sleep(resync_window)
            resync = _operator_requests(server, resync_mark)
            raw = _raw_baseline(server, agents, replicas)
        finally:
            operator.stop()
            server.call(controller.stop)
    per_agent = {k: round(v / agents, 2) for k, v in provisioning.items()}
    return {
        "agents": agents,
        "replicasPerAgent": replicas,
        "secondsToCreateAll": round(created, 2),
        "secondsUntilAllAvailable": round(all_available, 2),
        "agentsPerSecond": round(agents / all_available, 1),
        "operatorRequestsPerAgent": per_agent,
        "fullResync": {"windowSeconds": resync_window, "resyncIntervalSeconds": float(os.environ["ALM_RESYNC_SECONDS"]),
                       "operatorWrites": resync["writes"], "operatorReads": resync["reads"]},
        "rawClient": raw,
        "operatorWritesPerRawWrite": round(per_agent["writes"] / raw["writesPerAgent"], 2),
    }


def _raw_baseline(server: ApiServerThread, agents: int, replicas: int) -> dict[str, Any]:
    """The same children, created directly with one POST each (no status, no checks)."""
    from alm.api import AgentSpec, AgentVersionSpec
    from alm.core.provisioning import AgentInputs, desired_children

    kube = _client(server)
    ns = "bench-raw"
    version_spec = AgentVersionSpec.model_validate({
        "model": {"provider": "simulated", "name": "sim"}, "instructions": "Benchmark.",
        "runtime": {"image": "ghcr.io/alm-dev/alm-agent:0.1.0"}})
    mark = server.emulator.mark()
    started = time.monotonic()
    objects = 0
    for i in range(agents):
        name = f"agent-{i:04d}"
        inputs = AgentInputs(name=name, namespace=ns, uid=f"uid-{i}",
                             spec=AgentSpec.model_validate({"version": "bench-v1", "replicas": replicas}),
                             version="bench-v1", version_spec=version_spec, config_map="bench-config",
                             credentials={"agent-token": "dG9rZW4="}, credentials_hash=f"{i:010d}")
        for obj in desired_children(inputs):
            obj["metadata"].pop("ownerReferences", None)
            _create(kube, obj)
            objects += 1
    elapsed = time.monotonic() - started
    count = server.emulator.count(since=mark, user_agent=BENCH_AGENT)
    return {"objectsPerAgent": objects / agents, "writesPerAgent": count / agents,
            "seconds": round(elapsed, 2)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--agents", type=int, default=200)
    parser.add_argument("--replicas", type=int, default=1)
    parser.add_argument("--timeout", type=float, default=600)
    args = parser.parse_args()
    json.dump(run(args.agents, args.replicas, args.timeout), sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
