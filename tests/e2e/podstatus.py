"""Pod statuses as a kubelet writes them through ``pods/{name}/status``, for the node simulator.

:func:`running_status` is what a started pod reports (all containers running and ready);
:func:`not_ready_status` what it reports when its container exited or never passed readiness
(the agent processes of :mod:`tests.e2e.kubelet`); :func:`needs_status` says whether a pod's
stored status disagrees with a started pod's.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["NODE_IP", "needs_status", "not_ready_status", "running_status"]

Obj = dict[str, Any]

NODE_IP = "10.244.0.1"


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


def needs_status(pod: Mapping[str, Any]) -> bool:
    """Not started yet, or its Ready condition disagrees with its readiness gates (a kubelet would fix it)."""
    status = pod.get("status") or {}
    if status.get("phase") != "Running" or not status.get("podIP"):
        return True
    conditions = {c.get("type"): c.get("status") for c in status.get("conditions") or []}
    gates = [g.get("conditionType") for g in (pod.get("spec") or {}).get("readinessGates") or []]
    expected = "True" if all(conditions.get(g) == "True" for g in gates) else "False"
    return conditions.get("Ready") != expected


def not_ready_status(pod: Mapping[str, Any], pod_ip: str | None, now: str, message: str, *,
                     exit_code: int | None = None) -> Obj:
    """A started pod whose container is not ready: still running (never passed ``/readyz``), or
    terminated with ``exit_code`` (exited). Phase stays Running, as a kubelet restarting it would say;
    ``Ready``/``ContainersReady`` are False with ``message``, so no controller counts the pod."""
    status: Obj = running_status(pod, pod_ip or NODE_IP, now)["status"]
    if pod_ip is None:
        for key in ("podIP", "podIPs"):
            status.pop(key)
    reason = "ContainersNotReady"
    for condition in status["conditions"]:
        if condition["type"] in ("Ready", "ContainersReady"):
            condition.update(status="False", reason=reason, message=message)
    for container in status["containerStatuses"]:
        container["ready"] = False
        if exit_code is not None:
            container["started"] = False
            container["state"] = {"terminated": {"exitCode": exit_code, "reason": "Error", "message": message,
                                                 "startedAt": now, "finishedAt": now}}
    return {"status": status}
