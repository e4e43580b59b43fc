"""Provisioning at scale against the emulated API server; prints one JSON document.

For N Agents (default 200) sharing one AgentVersion: the time until all are Available,
the operator's requests per agent (reads and writes, kopf's watches included), the
writes during a full resync after convergence (must be 0), and, for scale, the requests
a raw client needs to create the same children by hand.

    python benchmarks/provision.py --agents 200 --replicas 1

``--describe`` adds ``operatorWritesPerAgentByKind``: the operator's writes during provisioning
by method, resource and purpose (a child's apply, a status patch, kopf's finalizer or its
bookkeeping, an Event), with the answers that were not 2xx (409 Conflicts) counted apart.
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
from alm.sandbox.apiserver import ApiServerEmulator
from alm.sandbox.apiserverthread import ApiServerThread
from alm.sandbox.operator_thread import OperatorThread
from alm.sandbox.requestparsing import header
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


def _record_statuses() -> dict[int, int]:
    """Remember the status the emulator answers each resource request with (by request id)."""
    statuses: dict[int, int] = {}
    serve = ApiServerEmulator._serve_resource

    def recording(self: ApiServerEmulator, request: Any) -> Any:
        response = serve(self, request)
        statuses[request.id] = int(response.status or 200)
        return response

    ApiServerEmulator._serve_resource = recording  # type: ignore[method-assign]
    return statuses


def _purpose(request: Any) -> str:
    """What an operator write was for, from its method, content type, path and body."""
    method = str(request.method.value).upper()
    kopf = header(request, "User-Agent").startswith("kopf")
    who = "kopf" if kopf else "alm"
    if method != "PATCH":
        return f"{who}:{method.lower()}"
    content = header(request, "Content-Type").split(";")[0]
    if content == "application/apply-patch+yaml":
        return f"{who}:apply{'/' + request.subresource if request.subresource else ''}"
    data = request.data if isinstance(request.data, dict) else {}
    meta = data.get("metadata") or {}
    parts = []
    if "finalizers" in meta:
        parts.append("finalizers")
    if "annotations" in meta:
        parts.append("annotations")
    status = data.get("status")
    if isinstance(status, dict):
        parts.append("status.kopf" if set(status) == {"kopf"} else
                     "status+kopf" if "kopf" in status else "status")
    if isinstance(request.data, list):
        parts.append("json-patch")
    where = f"/{request.subresource}" if request.subresource else ""
    return f"{who}:patch{where}:{'+'.join(parts) or 'other'}"


def _describe(server: ApiServerThread, since: int, statuses: dict[int, int], agents: int) -> dict[str, Any]:
    """The operator's writes since ``since``, per agent, by ``purpose resource`` (and failures apart)."""
    counts: dict[str, int] = {}
    failed: dict[str, int] = {}
    for r in server.emulator.requests_matching(since=since, writes=True):
        if BENCH_AGENT in header(r, "User-Agent"):
            continue
        plural = r.resource.plural if r.resource is not None else "?"
        key = f"{_purpose(r)} {plural}"
        counts[key] = counts.get(key, 0) + 1
        status = statuses.get(r.id, 200)
        if not 200 <= status <= 299:
            failed[f"{key} -> {status}"] = failed.get(f"{key} -> {status}", 0) + 1
    per = {k: round(v / agents, 2) for k, v in sorted(counts.items(), key=lambda kv: -kv[1])}
    return {"writes": per, "failed": {k: round(v / agents, 2) for k, v in sorted(failed.items())}}


def _create(kube: Kube, obj: dict[str, Any]) -> None:
    kube.request("POST", resources.for_object(obj).path(obj["metadata"].get("namespace")), body=obj)


def run(agents: int, replicas: int, timeout: float, describe: bool = False) -> dict[str, Any]:
    statuses = _record_statuses() if describe else {}
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
            described = _describe(server, mark, statuses, agents) if describe else None
            resync_mark = server.emulator.mark()
            resync_window = 2.5 * float(os.environ["ALM_RESYNC_SECONDS"])
            time.sleep(resync_window)
            resync = _operator_requests(server, resync_mark)
            raw = _raw_baseline(server, agents, replicas)
        finally:
            operator.stop()
            server.call(controller.stop)
    per_agent = {k: round(v / agents, 2) for k, v in provisioning.items()}
    result: dict[str, Any] = {
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
    if described is not None:
        result["operatorWritesPerAgentByKind"] = described
    return result


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
    parser.add_argument("--describe", action="store_true",
                        help="also break the operator's writes down by method, resource and purpose")
    args = parser.parse_args()
    json.dump(run(args.agents, args.replicas, args.timeout, args.describe), sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
