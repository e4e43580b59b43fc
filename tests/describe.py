"""Where a test namespace stands, in a few lines: what a timed-out wait prints on either backend."""

from __future__ import annotations

from alm.kube.api import Kube

__all__ = ["describe_namespace"]


def describe_namespace(kube: Kube, namespace: str) -> list[str]:
    """Agents and versions with phase and conditions, rollouts, Deployments, Pods, the last 10 Events.

    Blocking, and it raises what the API raises: callers decide how a failed read is shown.
    """
    lines = []
    for kind in ("Agent", "AgentVersion"):
        for obj in kube.list(kind, namespace):
            status = obj.get("status") or {}
            conditions = ", ".join(f"{c.get('type')}={c.get('status')}({c.get('reason')}: {c.get('message')})"
                                   for c in status.get("conditions") or [])
            lines.append(f"{kind} {obj['metadata']['name']}: phase={status.get('phase')} {conditions}")
    for rollout in kube.list("AgentRollout", namespace):
        status = rollout.get("status") or {}
        lines.append(f"AgentRollout {rollout['metadata']['name']}: {status.get('phase')} step "
                     f"{status.get('currentStep')} weight {status.get('weight')}: {status.get('message')}")
    for deployment in kube.list("Deployment", namespace):
        status = deployment.get("status") or {}
        lines.append(f"Deployment {deployment['metadata']['name']}: replicas={deployment['spec'].get('replicas')} "
                     f"ready={status.get('readyReplicas', 0)} available={status.get('availableReplicas', 0)}")
    for pod in kube.list("Pod", namespace):
        status = pod.get("status") or {}
        ready = {c.get("type"): c.get("status") for c in status.get("conditions") or []}.get("Ready")
        lines.append(f"Pod {pod['metadata']['name']}: phase={status.get('phase')} Ready={ready} "
                     f"ip={status.get('podIP')} node={pod['spec'].get('nodeName')} "
                     f"deleting={'deletionTimestamp' in pod['metadata']}")
    events = sorted(kube.list("Event", namespace),
                    key=lambda e: str(e.get("lastTimestamp") or e.get("eventTime") or ""))
    for event in events[-10:]:
        involved = event.get("involvedObject") or {}
        lines.append(f"Event {event.get('type')} {event.get('reason')} {involved.get('kind')}/{involved.get('name')}: "
                     f"{event.get('message')}")
    return lines
