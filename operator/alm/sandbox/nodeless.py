"""The pod lifecycle of a control plane without nodes, for the emulator.

A real API server + kube-controller-manager with no scheduler and no kubelet (what the e2e
suite's node simulator, ``ALM_E2E_SIMULATE_NODES=1``, is for) differs from the emulator's usual
shortcut (pods created Running by the Deployment controller) in three ways, all emulated here:

* **binding:** pods start Pending without ``spec.nodeName``; a scheduler (or the simulator)
  POSTs a ``Binding`` to ``pods/{name}/binding`` (:func:`bind_pod`), which sets the node and the
  ``PodScheduled`` condition; binding a pod twice, or a terminating one, is a 409 Conflict;
* **graceful deletion:** deleting a pod bound to a node that has not finished only marks it
  (``deletionTimestamp`` + ``deletionGracePeriodSeconds``, from the request or the pod's
  ``terminationGracePeriodSeconds``, 30 s by default); the kubelet deletes it again with grace 0
  once its containers stopped (:func:`deletion_grace`, :func:`delete_pod`). Unbound pods go at once;
* **readiness from status:** the Deployment controller counts the pods whose ``Ready``
  condition a kubelet set (``DeploymentController(nodeless=True)`` in :mod:`alm.sandbox.workloads`).

Garbage collection and namespace deletion still remove pods at once (a kubelet stand-in sees
them vanish). Binding is always served (harmless for the emulator's other users); graceful deletion over HTTP
only with ``ApiServerEmulator(graceful_pod_deletion=True)``, since the usual shortcut's pods have
no kubelet to finish them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from alm.sandbox.apierrors import api_error
from alm.sandbox.defaulting import now_rfc3339
from alm.sandbox.objectstore import ObjectStore

__all__ = ["DEFAULT_GRACE_SECONDS", "bind_pod", "delete_pod", "deletion_grace"]

PODS = "v1/pods"
DEFAULT_GRACE_SECONDS = 30


def bind_pod(store: ObjectStore, namespace: str, name: str, binding: Any) -> dict[str, Any]:
    """``POST pods/{name}/binding``: assign the pod to ``binding.target.name``; a ``Status`` Success."""
    if not isinstance(binding, Mapping) or binding.get("kind", "Binding") != "Binding":
        raise api_error(400, "BadRequest", "the body must be a Binding")
    target = binding.get("target") or {}
    node = target.get("name")
    if not node or target.get("kind", "Node") != "Node":
        raise api_error(422, "Invalid", "Binding.target: Required value: the name of a Node")
    pod = store.get(PODS, namespace, name)
    meta, spec = pod["metadata"], pod.get("spec") or {}
    wanted_uid = (binding.get("metadata") or {}).get("uid")
    if wanted_uid and wanted_uid != meta.get("uid"):
        raise api_error(409, "Conflict", f"Operation cannot be fulfilled on pods/binding \"{name}\": "
                                         f"Precondition failed: UID in precondition: {wanted_uid}, "
                                         f"UID in object meta: {meta.get('uid')}")
    if meta.get("deletionTimestamp"):
        raise api_error(409, "Conflict", f"Operation cannot be fulfilled on pods/binding \"{name}\": "
                                         "pod is being deleted, cannot be assigned to a host")
    if spec.get("nodeName"):
        raise api_error(409, "Conflict", f"Operation cannot be fulfilled on pods/binding \"{name}\": "
                                         f"pod {name} is already assigned to node \"{spec['nodeName']}\"")
    bound = store.replace(PODS, namespace, name, {**pod, "spec": {**spec, "nodeName": node}})
    status = dict(bound.get("status") or {})
    conditions = [c for c in status.get("conditions") or [] if c.get("type") != "PodScheduled"]
    status["conditions"] = [{"type": "PodScheduled", "status": "True", "lastTransitionTime": now_rfc3339()},
                            *conditions]
    status.setdefault("phase", "Pending")
    store.replace(PODS, namespace, name, {**bound, "status": status}, subresource="status")
    return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}


def deletion_grace(pod: Mapping[str, Any], requested: Any = None) -> int:
    """How long a deletion of ``pod`` waits for its kubelet; 0 means it goes at once.

    As kube-apiserver decides: an unbound pod, or one that has finished (Succeeded/Failed),
    goes at once; otherwise the request's ``gracePeriodSeconds`` if given, else the pod's
    ``terminationGracePeriodSeconds``, else 30.
    """
    spec, status = pod.get("spec") or {}, pod.get("status") or {}
    if not spec.get("nodeName") or status.get("phase") in ("Succeeded", "Failed"):
        return 0
    if requested is not None and str(requested).lstrip("-").isdigit():
        return max(0, int(requested))
    grace = spec.get("terminationGracePeriodSeconds")
    return DEFAULT_GRACE_SECONDS if grace is None else max(0, int(grace))


def delete_pod(store: ObjectStore, namespace: str, name: str, *, grace: Any = None) -> dict[str, Any]:
    """Delete a pod as a real server would (gracefully when :func:`deletion_grace` says so)."""
    pod = store.get(PODS, namespace, name)
    return store.delete(PODS, namespace, name, grace_seconds=deletion_grace(pod, grace) or None)
