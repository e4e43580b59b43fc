"""The emulator as a control plane without nodes (alm.sandbox.nodeless): binding, graceful pod
deletion, and a Deployment controller that creates Pending pods and counts readiness from status."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import pytest

from alm.kube import errors
from alm.kube.api import MERGE, Kube
from alm.sandbox.apiserver import ApiServerEmulator
from alm.sandbox.apiserverthread import ApiServerThread
from alm.sandbox.workloads import DeploymentController

T = TypeVar("T")
NS = "nodeless"


@pytest.fixture
def nodeless() -> Iterator[tuple[ApiServerThread, Kube]]:
    with ApiServerThread(ApiServerEmulator(graceful_pod_deletion=True)) as srv:
        controller = DeploymentController(srv.emulator.store, nodeless=True)
        srv.call(controller.start)
        try:
            yield srv, Kube(srv.api_client(), field_manager="test")
        finally:
            srv.call(controller.stop)
    assert not srv.unexpected_errors()


def _eventually(probe: Callable[[], T | None], timeout: float = 10.0) -> T:
    deadline = time.monotonic() + timeout
    while True:
        result = probe()
        if result:
            return result
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def _pod(name: str, **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": NS},
            "spec": {"containers": [{"name": "main", "image": "x"}], **spec}}


def _bind(kube: Kube, name: str, node: str = "n1", uid: str | None = None) -> Any:
    meta: dict[str, Any] = {"name": name, "namespace": NS, **({"uid": uid} if uid else {})}
    return kube.request("POST", f"/api/v1/namespaces/{NS}/pods/{name}/binding",
                        body={"apiVersion": "v1", "kind": "Binding", "metadata": meta,
                              "target": {"apiVersion": "v1", "kind": "Node", "name": node}})


def _mark_ready(kube: Kube, name: str) -> None:
    kube.request("PATCH", f"/api/v1/namespaces/{NS}/pods/{name}/status", content_type=MERGE, body={"status": {
        "phase": "Running", "podIP": "127.0.0.9",
        "conditions": [{"type": "Ready", "status": "True"}, {"type": "PodScheduled", "status": "True"}]}})


def test_binding_assigns_a_node_once(nodeless: tuple[ApiServerThread, Kube]) -> None:
    _, kube = nodeless
    created = kube.request("POST", f"/api/v1/namespaces/{NS}/pods", body=_pod("p"))
    assert created is not None and not created["spec"].get("nodeName")
    with pytest.raises(errors.Conflict, match="Precondition failed"):
        _bind(kube, "p", uid="not-the-uid")
    answer = _bind(kube, "p", uid=created["metadata"]["uid"])
    assert answer is not None and answer["status"] == "Success"
    pod = kube.get("Pod", NS, "p")
    assert pod is not None and pod["spec"]["nodeName"] == "n1"
    assert [c["type"] for c in pod["status"]["conditions"] if c["status"] == "True"] == ["PodScheduled"]
    with pytest.raises(errors.Conflict, match='already assigned to node "n1"'):
        _bind(kube, "p", node="n2")
    with pytest.raises(errors.NotFound):
        _bind(kube, "nobody")


def test_a_bound_pod_is_deleted_gracefully_an_unbound_one_at_once(nodeless: tuple[ApiServerThread, Kube]) -> None:
    _, kube = nodeless
    kube.request("POST", f"/api/v1/namespaces/{NS}/pods", body=_pod("unbound"))
    kube.request("POST", f"/api/v1/namespaces/{NS}/pods", body=_pod("bound", terminationGracePeriodSeconds=7))
    _bind(kube, "bound")
    kube.delete("Pod", NS, "unbound")
    assert kube.get("Pod", NS, "unbound") is None
    kube.delete("Pod", NS, "bound")
    terminating = kube.get("Pod", NS, "bound")
    assert terminating is not None and terminating["metadata"]["deletionGracePeriodSeconds"] == 7
    assert terminating["metadata"]["deletionTimestamp"]
    _mark_ready(kube, "bound")  # a kubelet may still report on a terminating pod: it stays
    assert kube.get("Pod", NS, "bound") is not None
    with pytest.raises(errors.Conflict, match="being deleted"):
        _bind(kube, "bound")
    kube.request("DELETE", f"/api/v1/namespaces/{NS}/pods/bound", body={"gracePeriodSeconds": 0})
    assert kube.get("Pod", NS, "bound") is None


def test_the_deployment_controller_waits_for_a_kubelet(nodeless: tuple[ApiServerThread, Kube]) -> None:
    _, kube = nodeless
    labels = {"app": "web"}
    kube.apply({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "namespace": NS},
                "spec": {"replicas": 2, "selector": {"matchLabels": labels},
                         "template": {"metadata": {"labels": labels}, "spec": _pod("x")["spec"]}}})
    pods = _eventually(lambda: len(found := kube.list("Pod", NS, labels)) == 2 and found)
    assert all(not p["spec"].get("nodeName") and p["status"]["phase"] == "Pending" for p in pods)
    assert all(p["metadata"]["name"].startswith("web-") for p in pods)
    # The controller writes the status after creating the pods: wait for it rather than sleep.
    status = _eventually(lambda: (s := (kube.get("Deployment", NS, "web") or {}).get("status") or {})
                         .get("observedGeneration") == 1 and s)
    assert status.get("readyReplicas", 0) == 0 and status["observedGeneration"] == 1  # nobody ran them
    for pod in pods:
        _bind(kube, pod["metadata"]["name"])
        _mark_ready(kube, pod["metadata"]["name"])
    _eventually(lambda: ((kube.get("Deployment", NS, "web") or {}).get("status") or {}).get("availableReplicas") == 2)

    kube.merge_patch("Deployment", NS, "web", {"spec": {"replicas": 1}})
    left = _eventually(lambda: [p for p in kube.list("Pod", NS, labels) if p["metadata"].get("deletionTimestamp")])
    assert len(left) == 1 and len(kube.list("Pod", NS, labels)) == 2  # terminating, waiting for its kubelet
    kube.request("DELETE", f"/api/v1/namespaces/{NS}/pods/{left[0]['metadata']['name']}",
                 body={"gracePeriodSeconds": 0})
    _eventually(lambda: len(kube.list("Pod", NS, labels)) == 1)

    # A template change replaces the pod by a new Pending one; the old one terminates gracefully.
    kube.merge_patch("Deployment", NS, "web", {"spec": {"template": {"metadata": {"labels": {**labels, "v": "2"}}}}})
    fresh = _eventually(lambda: [p for p in kube.list("Pod", NS, {"v": "2"}) if not p["spec"].get("nodeName")])
    assert len(fresh) == 1
    old = [p for p in kube.list("Pod", NS, labels) if "v" not in p["metadata"]["labels"]]
    assert len(old) == 1 and old[0]["metadata"].get("deletionTimestamp")
    status = (kube.get("Deployment", NS, "web") or {}).get("status") or {}
    assert status.get("availableReplicas", 0) == 0
