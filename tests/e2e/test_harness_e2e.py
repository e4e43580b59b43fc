"""Checks of the e2e harness itself, on the same cluster as the scenarios.

When a scenario times out on a new cluster, these say whether the harness is the problem:
CRDs served, namespace and operator up and restartable, and (node-less clusters) the fake
node Ready and the pod simulation driving real controllers (Deployment → ReplicaSet → Pods).
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from alm.kube.api import Kube
from tests.e2e.cluster import E2E_LABEL, E2ECluster
from tests.e2e.crds import crd_ready, load_crds
from tests.e2e.nodes import FAKE_NODE, NODE_IP

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]

Obj = dict[str, Any]


@pytest.fixture
def simulated(fake_node: str | None) -> str:
    if fake_node is None:
        pytest.skip("needs ALM_E2E_SIMULATE_NODES=1 (a node-less control plane)")
    return fake_node


def _restricted_pod_spec() -> Obj:
    """Passes the Pod Security 'restricted' profile; the image is never pulled on a node-less cluster."""
    return {
        "automountServiceAccountToken": False,
        "securityContext": {"runAsNonRoot": True, "runAsUser": 65532, "seccompProfile": {"type": "RuntimeDefault"}},
        "containers": [{
            "name": "main", "image": "registry.k8s.io/pause:3.10",
            "securityContext": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}},
        }],
    }


def _ready(obj: Obj | None) -> bool:
    conditions = ((obj or {}).get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


def test_crds_are_served(e2e_kube: Kube, e2e_crds: list[str]) -> None:
    for crd in load_crds():
        ready, why = crd_ready(e2e_kube, crd)
        assert ready, f"{crd['metadata']['name']}: {why}"
    assert sorted(e2e_crds) == sorted(c["metadata"]["name"] for c in load_crds())


async def test_namespace_and_operator(cluster: E2ECluster) -> None:
    ns = await asyncio.to_thread(cluster.kube.get, "Namespace", None, cluster.namespace)
    assert ns is not None and ns["metadata"]["labels"][E2E_LABEL] == "true"
    assert cluster.operator.running
    assert cluster.count_writes() is None
    # The custom resources answer in the test namespace (empty: nobody made any yet).
    assert await asyncio.to_thread(cluster.kube.list, "Agent", cluster.namespace) == []
    await cluster.restart_operator()
    assert cluster.operator.running and cluster.operator.starts == 2


async def test_wait_for_times_out_with_a_snapshot(cluster: E2ECluster) -> None:
    cluster.timeout_factor = 1.0
    with pytest.raises(AssertionError, match=f"(?s)nothing at all.*namespace {cluster.namespace}"):
        await cluster.wait_for(lambda: None, timeout=0.5, what="nothing at all")
    assert await cluster.wait_for(lambda: 42, timeout=0.5) == 42


def test_fake_node_is_ready(e2e_kube: Kube, simulated: str) -> None:
    node = e2e_kube.request("GET", f"/api/v1/nodes/{simulated}")
    assert node is not None and _ready(node), node and node.get("status")
    assert node["status"]["allocatable"]["pods"] == "110"
    assert not [t for t in node["spec"].get("taints") or [] if t.get("effect") == "NoExecute"]


async def test_pod_is_bound_started_and_force_deleted(cluster: E2ECluster, simulated: str) -> None:
    kube, ns = cluster.kube, cluster.namespace
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "probe", "namespace": ns},
           "spec": _restricted_pod_spec()}
    await asyncio.to_thread(kube.request, "POST", f"/api/v1/namespaces/{ns}/pods", body=pod)

    def running() -> Obj | None:
        live = kube.get("Pod", ns, "probe")
        return live if _ready(live) and (live or {}).get("status", {}).get("phase") == "Running" else None

    live = await cluster.wait_for(running, timeout=30, what="the pod Running and Ready")
    assert live["spec"]["nodeName"] == FAKE_NODE
    assert live["status"]["hostIP"] == NODE_IP and live["status"]["podIP"].startswith("10.244.0.")
    assert live["status"]["containerStatuses"][0]["state"]["running"]
    await asyncio.to_thread(kube.delete, "Pod", ns, "probe")
    await cluster.wait_for(lambda: kube.get("Pod", ns, "probe") is None, timeout=30, what="the pod gone")


async def test_deployment_becomes_available_and_scales_down(cluster: E2ECluster, simulated: str) -> None:
    """The controller-manager, not us, must turn our Running/Ready pods into Deployment status."""
    kube, ns = cluster.kube, cluster.namespace
    labels = {"app": "harness-probe"}
    deployment = {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "harness-probe", "namespace": ns},
        "spec": {"replicas": 2, "selector": {"matchLabels": labels},
                 "template": {"metadata": {"labels": labels}, "spec": _restricted_pod_spec()}},
    }
    await asyncio.to_thread(kube.apply, deployment)

    def available(replicas: int) -> bool:
        live = kube.get("Deployment", ns, "harness-probe") or {}
        status = live.get("status") or {}
        return bool(status.get("availableReplicas", 0) == replicas and status.get("replicas", 0) == replicas
                    and status.get("observedGeneration") == live["metadata"].get("generation"))

    await cluster.wait_for(lambda: available(2), timeout=60, what="2 available replicas")
    await asyncio.to_thread(kube.merge_patch, "Deployment", ns, "harness-probe", {"spec": {"replicas": 0}})
    await cluster.wait_for(lambda: available(0) and not kube.list("Pod", ns, labels), timeout=60,
                           what="scaled to 0, pods gone")
