"""The e2e harness with simulated nodes, against the emulator as a node-less control plane.

No kube-apiserver runs on this machine, so this is how the node simulator's process kubelet
(tests/e2e/kubelet.py) is exercised for real: the emulator (alm.sandbox.controlplane) serves
over HTTP with binding, graceful pod deletion and a Deployment controller that waits for
Ready pods; the harness is used exactly as tests/e2e uses it (kubeconfig, CRDs applied over
HTTP, the fake Node, e2e_cluster with its operator and PodSimulator).
"""

from __future__ import annotations

import asyncio
import json
import os
import pathlib
import urllib.request
from collections.abc import AsyncIterator
from typing import Any

import pytest
from kubernetes import client as k8s

from alm.kube.api import Kube
from alm.kube.client import build_configuration
from alm.sandbox.controlplane import NodelessControlPlane
from tests import scenarios
from tests.e2e.cluster import HARNESS_FIELD_MANAGER, E2ECluster, e2e_cluster
from tests.e2e.crds import install_crds
from tests.e2e.kubeconfig import write_kubeconfig
from tests.e2e.nodes import FAKE_NODE, register_fake_node
from tests.e2e.settings import E2ESettings

pytestmark = pytest.mark.timeout(90)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie is dead for our purposes
        return pathlib.Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


@pytest.fixture
async def cluster(tmp_path: pathlib.Path) -> AsyncIterator[E2ECluster]:
    with NodelessControlPlane() as plane:
        path = write_kubeconfig(tmp_path / "kubeconfig", plane.url)
        settings = E2ESettings(kubeconfig=str(path), simulate_nodes=True, timeout_factor=1.0)
        configuration = build_configuration(kubeconfig=str(path))
        with k8s.ApiClient(configuration) as api_client:
            kube = Kube(api_client, field_manager=HARNESS_FIELD_MANAGER)
            await asyncio.to_thread(install_crds, kube)
            await asyncio.to_thread(register_fake_node, kube)
        async with e2e_cluster(configuration, settings, fake_node=FAKE_NODE) as c:
            yield c
        assert plane.server.unexpected_errors() == []


def _get(url: str) -> tuple[int, str]:
    with urllib.request.urlopen(url, timeout=10) as response:
        return response.status, response.read().decode()


def _task(url: str) -> dict[str, Any]:
    request = urllib.request.Request(url, data=json.dumps({"input": "hello"}).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 200
        answer: dict[str, Any] = json.loads(response.read())
        return answer


async def test_an_agent_runs_as_local_processes_and_leaves_none_behind(cluster: E2ECluster) -> None:
    ns, kube, simulator = cluster.namespace, cluster.kube, cluster.simulator
    assert simulator is not None and simulator.kubelet is not None
    scenarios.create(cluster, scenarios.agent_version(ns, "bot-v1", tools=False))
    scenarios.create(cluster, scenarios.agent(ns, replicas=2))
    await scenarios.wait_phase(cluster, "bot", "Available", timeout=45)

    pods = await asyncio.to_thread(kube.list, "Pod", ns, {"alm.dev/agent": "bot"})
    assert len(pods) == 2
    ips = sorted(p["status"]["podIP"] for p in pods)
    assert len(set(ips)) == 2 and all(ip.startswith("127.0.0.") and ip != "127.0.0.1" for ip in ips), ips
    for pod in pods:
        assert pod["spec"]["nodeName"] == FAKE_NODE
        port = next(p["containerPort"] for p in pod["spec"]["containers"][0]["ports"] if p["name"] == "http")
        base = f"http://{pod['status']['podIP']}:{port}"
        status, metrics = await asyncio.to_thread(_get, f"{base}/metrics")
        assert status == 200 and "alm_" in metrics  # the real runtime's metric contract
        answer = await asyncio.to_thread(_task, f"{base}/v1/tasks")
        assert answer["outcome"] in ("success", "failure"), answer
    pids = simulator.pids
    assert len(pids) == 2 and all(_alive(pid) for pid in pids)

    await asyncio.to_thread(kube.delete, "Agent", ns, "bot")

    def gone() -> bool:
        return not kube.list("Pod", ns, {"alm.dev/agent": "bot"}) and not any(_alive(pid) for pid in pids)

    await cluster.wait_for(gone, timeout=30, what="the agent's pods and processes gone")
    assert simulator.pids == pids  # nothing restarted meanwhile
    assert not simulator.errors, simulator.errors


def _pod_state(kube: Kube, ns: str, name: str) -> dict[str, Any]:
    return (kube.get("Pod", ns, name) or {}).get("status") or {}


async def test_a_deleted_agent_pod_drains_and_is_replaced(cluster: E2ECluster) -> None:
    """A pod's deletion: SIGTERM, the runtime drains and exits 0, the pod is force-deleted, a
    replacement runs. Its Service URL env reaches the agent's pods through the local proxy."""
    ns, kube, simulator = cluster.namespace, cluster.kube, cluster.simulator
    assert simulator is not None and simulator.kubelet is not None
    mirror = [{"name": "ALM_MIRROR_URL", "value": f"http://bot.{ns}.svc:80"},
              {"name": "ALM_MIRROR_PERCENT", "value": "0"}]
    scenarios.create(cluster, scenarios.agent_version(
        ns, "bot-v1", tools=False, runtime={"image": "ghcr.io/alm-dev/alm-agent:0.1.0", "env": mirror}))
    scenarios.create(cluster, scenarios.agent(ns, replicas=1))
    await scenarios.wait_phase(cluster, "bot", "Available", timeout=45)
    [pod] = await asyncio.to_thread(kube.list, "Pod", ns, {"alm.dev/agent": "bot"})
    [pid] = simulator.pids

    environ = dict(item.split("=", 1) for item in
                   pathlib.Path(f"/proc/{pid}/environ").read_text().split("\0") if "=" in item)
    proxy = simulator.kubelet.services.base_url()
    assert environ["ALM_MIRROR_URL"] == f"{proxy}/{ns}/bot/80"
    assert environ["ALM_HOST"] == pod["status"]["podIP"] and environ["ALM_PORT"] == "8080"
    status, _ = await asyncio.to_thread(_get, f"{environ['ALM_MIRROR_URL']}/readyz")
    assert status == 200  # the Service bot (targetPort http) → the pod's 127.0.0.N:8080

    await asyncio.to_thread(kube.delete, "Pod", ns, pod["metadata"]["name"])
    assert (await asyncio.to_thread(kube.get, "Pod", ns, pod["metadata"]["name"]) or {}).get(
        "metadata", {}).get("deletionTimestamp"), "a bound pod terminates gracefully"

    def replaced() -> bool:
        pods = kube.list("Pod", ns, {"alm.dev/agent": "bot"})
        return (len(pods) == 1 and pods[0]["metadata"]["uid"] != pod["metadata"]["uid"]
                and (pods[0].get("status") or {}).get("phase") == "Running" and len(simulator.pids) == 2)

    await cluster.wait_for(replaced, timeout=30, what="the pod force-deleted and replaced")
    assert simulator.kubelet.exit_codes.get(pid) == 0, simulator.kubelet.exit_codes  # drained, not killed
    assert not _alive(pid) and simulator.force_deleted >= 1


async def test_an_agent_pod_waits_for_its_config_and_reports_a_crash(cluster: E2ECluster) -> None:
    ns, kube, simulator = cluster.namespace, cluster.kube, cluster.simulator
    assert simulator is not None and simulator.kubelet is not None
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "broken", "namespace": ns,
                                                           "labels": {"alm.dev/agent": "broken"}},
           "spec": {"containers": [{
               "name": "agent", "image": "x", "ports": [{"name": "http", "containerPort": 8080}],
               "env": [{"name": "ALM_CONFIG_FILE", "value": "/etc/alm/config/config.json"}],
               "volumeMounts": [{"name": "config", "mountPath": "/etc/alm/config"}]}],
               "volumes": [{"name": "config", "configMap": {"name": "broken-config"}}]}}
    await asyncio.to_thread(kube.request, "POST", f"/api/v1/namespaces/{ns}/pods", body=pod)

    def waiting() -> bool:
        return any(a.state == "waiting" and "ConfigMap broken-config" in a.message
                   for a in simulator.kubelet.agents.values())

    await cluster.wait_for(waiting, timeout=15, what="the pod waiting for its ConfigMap")
    assert _pod_state(kube, ns, "broken").get("phase") == "Pending" and not simulator.pids
    await asyncio.to_thread(kube.apply, {"apiVersion": "v1", "kind": "ConfigMap",
                                         "metadata": {"name": "broken-config", "namespace": ns},
                                         "data": {"config.json": "{not json"}})

    def crashed() -> dict[str, Any] | None:
        status = _pod_state(kube, ns, "broken")
        containers = status.get("containerStatuses") or []
        return status if containers and "terminated" in containers[0]["state"] else None

    status = await cluster.wait_for(crashed, timeout=30, what="the crash reported")
    terminated = status["containerStatuses"][0]["state"]["terminated"]
    assert terminated["exitCode"] == 1 and "before /readyz answered" in terminated["message"]
    ready = {c["type"]: c["status"] for c in status["conditions"]}
    assert ready["Ready"] == "False" and ready["ContainersReady"] == "False"
    assert status["podIP"].startswith("127.0.0.")
    assert any("broken" in e and "exited with code 1" in e for e in simulator.errors), simulator.errors
