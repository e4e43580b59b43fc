"""Playing kubelet for a control plane without nodes (``ALM_E2E_SIMULATE_NODES=1``), as KWOK does.

Three pieces:

* :func:`register_fake_node` creates the Node ``alm-e2e-fake-node`` and writes its status
  (``Ready=True``, capacity, addresses) through the ``/status`` subresource;
* :class:`NodeHeartbeat` (a thread, session-long) renews the node's Lease and its Ready
  condition's heartbeat, or the node lifecycle controller would mark it unreachable after
  ~40 s, taint it and flip its pods to NotReady;
* :class:`PodSimulator` (a thread, per test namespace) binds Pending, unbound pods to
  the fake node through ``pods/{name}/binding`` (there is no scheduler), marks them
  Running/Ready through ``pods/{name}/status`` (there is no kubelet), and force-deletes pods
  that are being deleted (without a kubelet a bound pod's graceful deletion never ends).

Nothing here touches Deployments or ReplicaSets: their status comes from the real
controller-manager, which counts the pods we mark Ready.
"""

from __future__ import annotations

import contextlib
import datetime
import itertools
import logging
import threading
from collections.abc import Mapping
from typing import Any

from alm.kube import errors
from alm.kube.api import APPLY, MERGE, Kube

__all__ = [
    "FAKE_NODE",
    "NodeHeartbeat",
    "PodSimulator",
    "delete_fake_node",
    "force_delete_pod",
    "register_fake_node",
    "running_status",
]

log = logging.getLogger(__name__)

Obj = dict[str, Any]

FAKE_NODE = "alm-e2e-fake-node"
NODE_IP = "10.244.0.1"
LEASE_NAMESPACE = "kube-node-lease"
LEASE_SECONDS = 40
HEARTBEAT_SECONDS = 10.0
FIELD_MANAGER = "alm-e2e"

_NODE_PATH = "/api/v1/nodes"
_LEASE_PATH = f"/apis/coordination.k8s.io/v1/namespaces/{LEASE_NAMESPACE}/leases"


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _now_micro() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _node(name: str) -> Obj:
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "labels": {
                "kubernetes.io/hostname": name,
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": "amd64",
                "beta.kubernetes.io/os": "linux",
                "beta.kubernetes.io/arch": "amd64",
                "node.kubernetes.io/instance-type": "alm-e2e-fake",
                "alm.dev/e2e": "fake-node",
            },
            "annotations": {"node.alpha.kubernetes.io/ttl": "0", "alm.dev/e2e": "simulated by tests/e2e/nodes.py"},
        },
        "spec": {},
    }


def _node_conditions(now: str, transition: Mapping[str, str] | None = None) -> list[Obj]:
    transition = transition or {}
    wanted = [
        ("Ready", "True", "KubeletReady", "kubelet is posting ready status (simulated by the alm e2e suite)"),
        ("MemoryPressure", "False", "KubeletHasSufficientMemory", "kubelet has sufficient memory available"),
        ("DiskPressure", "False", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
        ("PIDPressure", "False", "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
        ("NetworkUnavailable", "False", "RouteCreated", "simulated node network is up"),
    ]
    return [
        {"type": t, "status": s, "reason": r, "message": m, "lastHeartbeatTime": now,
         "lastTransitionTime": transition.get(t, now)}
        for t, s, r, m in wanted
    ]


def _node_status(name: str, now: str) -> Obj:
    resources = {"cpu": "32", "memory": "256Gi", "pods": "110", "ephemeral-storage": "500Gi"}
    return {
        "status": {
            "capacity": resources,
            "allocatable": resources,
            "conditions": _node_conditions(now),
            "addresses": [{"type": "InternalIP", "address": NODE_IP}, {"type": "Hostname", "address": name}],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
            "nodeInfo": {
                "architecture": "amd64", "operatingSystem": "linux", "osImage": "alm e2e fake node",
                "kernelVersion": "0.0.0", "kubeletVersion": "v0.0.0-fake", "kubeProxyVersion": "v0.0.0-fake",
                "containerRuntimeVersion": "fake://0.0.0", "machineID": "", "systemUUID": "", "bootID": "",
            },
            "phase": "Running",
        },
    }


def register_fake_node(kube: Kube, name: str = FAKE_NODE) -> Obj:
    """Create (or take over) the fake node and report it Ready. Returns the live Node."""
    kube.request("PATCH", f"{_NODE_PATH}/{name}", query={"fieldManager": FIELD_MANAGER, "force": "true"},
                 body=_node(name), content_type=APPLY)
    node = kube.request("PATCH", f"{_NODE_PATH}/{name}/status", query={"fieldManager": FIELD_MANAGER},
                        body=_node_status(name, _now()), content_type=MERGE)
    assert node is not None
    log.info("registered fake node %s", name)
    return node


def delete_fake_node(kube: Kube, name: str = FAKE_NODE) -> None:
    with contextlib.suppress(errors.NotFound):
        kube.request("DELETE", f"{_NODE_PATH}/{name}")


class NodeHeartbeat(threading.Thread):
    """Keeps the fake node alive in the node lifecycle controller's eyes: Lease + Ready heartbeat.

    A thread rather than a task: it must outlive each test's event loop (session scope).
    """

    def __init__(self, kube: Kube, name: str = FAKE_NODE, interval: float = HEARTBEAT_SECONDS) -> None:
        super().__init__(name=f"heartbeat-{name}", daemon=True)
        self.kube, self.node, self.interval = kube, name, interval
        self.stopping = threading.Event()
        self._lease_warned = False

    def stop(self, timeout: float = 15.0) -> None:
        self.stopping.set()
        if self.is_alive():
            self.join(timeout)

    def run(self) -> None:
        while not self.stopping.is_set():
            try:
                self.beat()
            except Exception as exc:
                log.warning("fake node heartbeat failed: %s", exc)
            self.stopping.wait(self.interval)

    def beat(self) -> None:
        node = self.kube.request("GET", f"{_NODE_PATH}/{self.node}")
        assert node is not None
        now = _now()
        transitions = {
            c["type"]: c["lastTransitionTime"] for c in (node.get("status") or {}).get("conditions") or []
            if c.get("lastTransitionTime") and c.get("status") == ("True" if c.get("type") == "Ready" else "False")
        }
        self.kube.request("PATCH", f"{_NODE_PATH}/{self.node}/status", query={"fieldManager": FIELD_MANAGER},
                          body={"status": {"conditions": _node_conditions(now, transitions)}}, content_type=MERGE)
        self._renew_lease(node)

    def _renew_lease(self, node: Mapping[str, Any]) -> None:
        meta = node["metadata"]
        lease = {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {
                "name": self.node,
                "namespace": LEASE_NAMESPACE,
                "ownerReferences": [{"apiVersion": "v1", "kind": "Node", "name": meta["name"], "uid": meta["uid"]}],
            },
            "spec": {"holderIdentity": self.node, "leaseDurationSeconds": LEASE_SECONDS, "renewTime": _now_micro()},
        }
        try:
            self.kube.request("PATCH", f"{_LEASE_PATH}/{self.node}",
                              query={"fieldManager": FIELD_MANAGER, "force": "true"}, body=lease, content_type=APPLY)
        except errors.ApiError as exc:  # e.g. no kube-node-lease namespace: the Ready heartbeat still counts
            if not self._lease_warned:
                log.warning("cannot renew the fake node's Lease (%s); relying on the Ready heartbeat", exc)
                self._lease_warned = True


def running_status(pod: Mapping[str, Any], pod_ip: str, now: str) -> Obj:
    """The status a kubelet reports for ``pod`` once all its containers run and pass readiness.

    Like KWOK's ``pod-ready`` stage, except for readiness gates: their conditions belong to
    whatever controller owns the gate, so they are kept as they are, and the pod is Ready only
    when all of them are True (what a kubelet does).
    """
    spec = pod.get("spec") or {}
    previous = {c.get("type"): c for c in (pod.get("status") or {}).get("conditions") or []}
    gates = [g.get("conditionType") for g in spec.get("readinessGates") or []]
    gate_conditions = [previous[g] for g in gates if g in previous]
    gates_ok = all(previous.get(g, {}).get("status") == "True" for g in gates)

    statuses = [
        {"name": c["name"], "image": c.get("image", ""), "imageID": "", "ready": True, "started": True,
         "restartCount": 0, "state": {"running": {"startedAt": now}}}
        for c in spec.get("containers") or []
    ]
    init_statuses = []
    for c in spec.get("initContainers") or []:
        base = {"name": c["name"], "image": c.get("image", ""), "imageID": "", "ready": True, "restartCount": 0}
        if c.get("restartPolicy") == "Always":  # a sidecar: keeps running
            init_statuses.append({**base, "started": True, "state": {"running": {"startedAt": now}}})
        else:
            init_statuses.append({**base, "state": {"terminated": {
                "exitCode": 0, "reason": "Completed", "startedAt": now, "finishedAt": now}}})
    conditions = [
        {"type": t, "status": "True", "lastTransitionTime": now}
        for t in ("PodScheduled", "Initialized", "ContainersReady")
    ]
    ready: Obj = {"type": "Ready", "status": "True" if gates_ok else "False", "lastTransitionTime": now}
    if not gates_ok:
        ready.update(reason="ReadinessGatesNotReady", message=f"waiting for readiness gates {gates}")
    status: Obj = {
        "phase": "Running",
        "conditions": [*conditions, ready, *gate_conditions],
        "hostIP": NODE_IP,
        "hostIPs": [{"ip": NODE_IP}],
        "podIP": pod_ip,
        "podIPs": [{"ip": pod_ip}],
        "startTime": (pod.get("status") or {}).get("startTime") or now,
        "containerStatuses": statuses,
    }
    if init_statuses:
        status["initContainerStatuses"] = init_statuses
    return {"status": status}


def _needs_status(pod: Mapping[str, Any]) -> bool:
    """Not started yet, or its Ready condition disagrees with its readiness gates (a kubelet would fix it)."""
    status = pod.get("status") or {}
    if status.get("phase") != "Running" or not status.get("podIP"):
        return True
    conditions = {c.get("type"): c.get("status") for c in status.get("conditions") or []}
    gates = [g.get("conditionType") for g in (pod.get("spec") or {}).get("readinessGates") or []]
    expected = "True" if all(conditions.get(g) == "True" for g in gates) else "False"
    return conditions.get("Ready") != expected


def force_delete_pod(kube: Kube, namespace: str, name: str, uid: str | None = None) -> bool:
    """``kubectl delete --grace-period=0 --force``; False if the pod was already gone."""
    body: Obj = {"kind": "DeleteOptions", "apiVersion": "v1", "gracePeriodSeconds": 0,
                 "propagationPolicy": "Background"}
    if uid:
        body["preconditions"] = {"uid": uid}
    try:
        kube.request("DELETE", f"/api/v1/namespaces/{namespace}/pods/{name}", body=body)
    except (errors.NotFound, errors.Conflict):  # gone, or a namesake with another uid
        return False
    return True


class PodSimulator(threading.Thread):
    """Binds, starts and finishes the pods of one namespace on the fake node (see module doc).

    A thread polling every ``interval`` seconds: it must keep going whatever the test's
    event loop is doing (scenarios call the API synchronously from it).
    """

    def __init__(self, kube: Kube, namespace: str, node: str = FAKE_NODE, interval: float = 0.5) -> None:
        super().__init__(name=f"pod-simulator-{namespace}", daemon=True)
        self.kube, self.namespace, self.node, self.interval = kube, namespace, node, interval
        self.errors: list[str] = []
        self.bound = 0
        self.started = 0
        self.force_deleted = 0
        self._ips: dict[str, str] = {}
        self._next_ip = itertools.cycle(range(2, 255))
        self.stopping = threading.Event()

    def stop(self, timeout: float = 10.0) -> None:
        self.stopping.set()
        if self.is_alive():
            self.join(timeout)
            if self.is_alive():
                log.warning("pod simulator of %s did not stop within %.0fs", self.namespace, timeout)

    def run(self) -> None:
        while not self.stopping.is_set():
            try:
                self.step()
            except Exception as exc:
                self._error(f"pod simulation step failed: {type(exc).__name__}: {exc}")
            self.stopping.wait(self.interval)

    def _error(self, message: str) -> None:
        if message not in self.errors[-5:]:
            log.warning("%s: %s", self.namespace, message)
        self.errors.append(message)
        del self.errors[:-50]

    def step(self) -> None:
        """One pass over the namespace's pods."""
        for pod in self.kube.list("Pod", self.namespace):
            meta, spec = pod["metadata"], pod.get("spec") or {}
            name, uid = meta["name"], meta.get("uid")
            node = spec.get("nodeName")
            try:
                if meta.get("deletionTimestamp"):
                    if node == self.node and force_delete_pod(self.kube, self.namespace, name, uid):
                        self.force_deleted += 1
                elif not node and (pod.get("status") or {}).get("phase", "Pending") == "Pending":
                    if self._schedulable(pod) and self._bind(name, uid):
                        self._mark_running(name)
                elif node == self.node and _needs_status(pod):
                    self._mark_running(name, pod)
            except errors.NotFound:
                continue  # deleted meanwhile
            except errors.ApiError as exc:
                self._error(f"pod {name}: {type(exc).__name__}: {exc}")

    def _schedulable(self, pod: Mapping[str, Any]) -> bool:
        """What a scheduler would check that we can: the fake node's labels satisfy the nodeSelector."""
        selector = (pod.get("spec") or {}).get("nodeSelector") or {}
        labels = _node(self.node)["metadata"]["labels"]
        unmet = {k: v for k, v in selector.items() if labels.get(k) != v}
        if unmet:
            self._error(f"pod {pod['metadata']['name']}: nodeSelector {unmet} does not match the fake node; "
                        "left Pending")
            return False
        return True

    def _bind(self, name: str, uid: str | None) -> bool:
        binding: Obj = {
            "apiVersion": "v1",
            "kind": "Binding",
            "metadata": {"name": name, "namespace": self.namespace},
            "target": {"apiVersion": "v1", "kind": "Node", "name": self.node},
        }
        if uid:
            binding["metadata"]["uid"] = uid
        try:
            self.kube.request("POST", f"/api/v1/namespaces/{self.namespace}/pods/{name}/binding", body=binding)
        except errors.Conflict:  # bound meanwhile (by someone else, or the pod was replaced)
            return False
        self.bound += 1
        log.info("%s: bound pod %s to %s", self.namespace, name, self.node)
        return True

    def _mark_running(self, name: str, pod: Mapping[str, Any] | None = None) -> None:
        if pod is None:
            pod = self.kube.get("Pod", self.namespace, name)
            if pod is None:
                return
        if pod["spec"].get("nodeName") != self.node:
            return
        uid = str(pod["metadata"].get("uid"))
        ip = (pod.get("status") or {}).get("podIP") or self._ips.get(uid) \
            or self._ips.setdefault(uid, f"10.244.0.{next(self._next_ip)}")
        self.kube.merge_patch("Pod", self.namespace, name, running_status(pod, ip, _now()), subresource="status")
        self.started += 1
        log.info("%s: pod %s is Running (simulated) at %s", self.namespace, name, ip)
