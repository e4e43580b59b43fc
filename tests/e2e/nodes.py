"""Playing kubelet for a control plane without nodes (``ALM_E2E_SIMULATE_NODES=1``), as KWOK does.

Three pieces:

* :func:`register_fake_node` creates the Node ``alm-e2e-fake-node`` and writes its status
  (``Ready=True``, capacity, addresses) through the ``/status`` subresource;
* :class:`NodeHeartbeat` (a thread, session-long) renews the node's Lease and its Ready
  condition's heartbeat, or the node lifecycle controller would mark it unreachable after
  ~40 s, taint it and flip its pods to NotReady;
* :class:`PodSimulator` (a thread, per test namespace) binds Pending, unbound pods to
  the fake node through ``pods/{name}/binding`` (there is no scheduler), runs each agent pod
  (label ``alm.dev/agent``) as a local ``alm-agent`` process at its own loopback address
  (:mod:`tests.e2e.kubelet`) and marks it Running/Ready through ``pods/{name}/status`` once
  ``/readyz`` answers (other pods, e.g. the harness's pause pods, are marked at once with a
  fake ``10.244.0.x`` IP: there is no kubelet), and finishes pods that are being deleted:
  SIGTERM to the process, then a force-delete (without a kubelet a bound pod's graceful
  deletion never ends).

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
from tests.e2e.kubelet import READY_TIMEOUT, ProcessKubelet, grace_seconds, is_agent_pod
from tests.e2e.podstatus import NODE_IP, needs_status, not_ready_status, running_status

__all__ = [
    "FAKE_NODE",
    "NODE_IP",
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
    event loop is doing (scenarios call the API synchronously from it). With ``processes``
    (the default) agent pods run as local processes (:class:`~tests.e2e.kubelet.ProcessKubelet`,
    given ``agent_env`` on top of this process's environment); other pods only look started.
    """

    def __init__(self, kube: Kube, namespace: str, node: str = FAKE_NODE, interval: float = 0.5, *,
                 processes: bool = True, agent_env: Mapping[str, str] | None = None,
                 ready_timeout: float = READY_TIMEOUT) -> None:
        super().__init__(name=f"pod-simulator-{namespace}", daemon=True)
        self.kube, self.namespace, self.node, self.interval = kube, namespace, node, interval
        self.errors: list[str] = []
        self.bound = 0
        self.started = 0
        self.force_deleted = 0
        self._ips: dict[str, str] = {}
        self._next_ip = itertools.cycle(range(2, 255))
        self.stopping = threading.Event()
        self.kubelet = ProcessKubelet(kube, namespace, env=agent_env, ready_timeout=ready_timeout,
                                      on_error=self._error) if processes else None

    @property
    def pids(self) -> list[int]:
        """Every agent process ever started (a test can check that none outlived the simulator)."""
        return list(self.kubelet.pids) if self.kubelet is not None else []

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the loop, then every process it started (SIGTERM, ≤ 10 s, SIGKILL) and the Service proxy."""
        self.stopping.set()
        if self.is_alive():
            self.join(timeout)
            if self.is_alive():
                log.warning("pod simulator of %s did not stop within %.0fs", self.namespace, timeout)
        if self.kubelet is not None:
            self.kubelet.stop()

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
        pods = self.kube.list("Pod", self.namespace)
        for pod in pods:
            meta, spec = pod["metadata"], pod.get("spec") or {}
            name, uid = meta["name"], meta.get("uid")
            node = spec.get("nodeName")
            try:
                if meta.get("deletionTimestamp"):
                    if node == self.node:
                        self._finish(pod)
                elif not node and (pod.get("status") or {}).get("phase", "Pending") == "Pending":
                    if self._schedulable(pod) and self._bind(name, uid):
                        self._start(pod)
                elif node == self.node:
                    self._start(pod)
            except errors.NotFound:
                continue  # deleted meanwhile
            except errors.ApiError as exc:
                self._error(f"pod {name}: {type(exc).__name__}: {exc}")
        if self.kubelet is not None:
            self.kubelet.forget_missing({str(p["metadata"].get("uid")) for p in pods})

    def _finish(self, pod: Mapping[str, Any]) -> None:
        """A bound pod being deleted: stop its process (in the background) and then force-delete it."""
        name, uid = pod["metadata"]["name"], pod["metadata"].get("uid")

        def force_delete() -> None:
            if force_delete_pod(self.kube, self.namespace, name, uid):
                self.force_deleted += 1

        if self.kubelet is None or not self.kubelet.terminate(str(uid), grace_seconds(pod), then=force_delete):
            force_delete()

    def _start(self, pod: Mapping[str, Any]) -> None:
        """A pod bound to the fake node: an agent pod's process, or else only its status."""
        if self.kubelet is None or not is_agent_pod(pod):
            if needs_status(pod):
                self._mark_running(pod["metadata"]["name"], pod if pod["spec"].get("nodeName") else None)
            return
        agent = self.kubelet.sync(pod)
        status = pod.get("status") or {}
        if agent.state == "ready" and agent.ip is not None:
            if needs_status(pod) or status.get("podIP") != agent.ip:
                self._write_status(pod, running_status(pod, agent.ip, _now()), agent.ip)
                self.started += 1
                log.info("%s: pod %s runs as pid %s at %s:%s", self.namespace, pod["metadata"]["name"],
                         agent.process and agent.process.pid, agent.ip, agent.port)
        elif agent.state in ("failed", "exited") and agent.reported != agent.state:
            self._write_status(pod, not_ready_status(pod, agent.ip, _now(), agent.message,
                                                     exit_code=agent.exit_code), agent.ip)
            agent.reported = agent.state

    def _write_status(self, pod: Mapping[str, Any], body: Obj, ip: str | None) -> None:
        name = pod["metadata"]["name"]
        try:
            self.kube.merge_patch("Pod", self.namespace, name, body, subresource="status")
        except errors.Invalid as exc:
            self._error(f"pod {name}: the API server rejected its status with podIP {ip} as Invalid ({exc}); "
                        "kube-apiserver accepts a loopback pod IP (only Endpoints/EndpointSlices refuse "
                        "one), so this server validates more strictly: see docs/e2e.md")
            raise

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
