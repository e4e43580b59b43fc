"""What an AgentRetirement pass sees: the retired Agent, its children and credentials, and the clock.

:mod:`alm.handlers.retirement` reads the cluster through :func:`observe` into the planner's
:class:`~alm.core.retirementtypes.RetirementObservations`, and keeps the live objects the actions
need (uids, names) beside them in a :class:`Seen`. Reading is kept apart from acting
(:mod:`alm.handlers.retirementacting`) so what the planner is shown can be checked in one place:
which children count as the retired Agent's (owned by it, or ours once it is gone, never a
successor's), which Secrets are credentials, and what only the archive pass reads.

Times are RFC 3339 with milliseconds (:func:`now_ms`), so grace periods and backoff are never cut
short by the rounding of whole seconds.
"""

from __future__ import annotations

import dataclasses
import datetime
from collections.abc import Mapping
from typing import Any

from alm.api import AgentRetirementPhase
from alm.core import naming
from alm.core.retirementtypes import RETRY_ANNOTATION, Credential, RetirementObservations
from alm.handlers import auditing
from alm.kube import errors
from alm.kube.api import Kube

__all__ = [
    "CREDENTIAL_KINDS",
    "Seen",
    "agent_credentials",
    "archive_inputs",
    "is_live",
    "now_ms",
    "observe",
    "to_datetime",
]

CREDENTIAL_KINDS = ("RoleBinding", "Role", "ServiceAccount", "Secret")  # API access, identity, then keys
CREDENTIALS_COMPONENT = "credentials"

Obj = dict[str, Any]


def now_ms() -> str:
    """Now, RFC 3339 with milliseconds (UTC)."""
    moment = datetime.datetime.now(datetime.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"



@dataclasses.dataclass(frozen=True)
class Seen:
    """The observations, plus the live objects the actions need (uids, names)."""

    obs: RetirementObservations
    namespace: str
    agent_name: str
    agent: Obj | None
    credentials: dict[tuple[str, str], Obj]
    traffic: list[Obj]
    deployments: list[Obj]


def is_live(obj: Mapping[str, Any]) -> bool:
    return not obj.get("metadata", {}).get("deletionTimestamp")


def _owned(obj: Mapping[str, Any], agent_uid: str | None, foreign_uid: str | None = None) -> bool:
    meta = obj.get("metadata", {})
    owners = {ref.get("uid") for ref in meta.get("ownerReferences") or []}
    if agent_uid:
        return agent_uid in owners
    # The Agent is gone: its children are being garbage-collected; ours still count until then,
    # but never those of a new Agent that took the name since.
    ours = (meta.get("labels") or {}).get(naming.MANAGED_BY_LABEL) == naming.MANAGED_BY_VALUE
    return ours and (foreign_uid is None or foreign_uid not in owners)


def _children(
    kube: Kube, kind: str, namespace: str, agent: str, agent_uid: str | None, foreign_uid: str | None = None
) -> list[Obj]:
    try:
        found = kube.list(kind, namespace, {naming.AGENT_LABEL: naming.label_value(agent)})
    except errors.NotFound:  # the kind is not served (no Gateway API CRDs): nothing of it exists
        return []
    return [obj for obj in found if is_live(obj) and _owned(obj, agent_uid, foreign_uid)]


def agent_credentials(
    kube: Kube, namespace: str, agent: str, agent_uid: str | None, foreign_uid: str | None = None
) -> dict[tuple[str, str], Obj]:
    """The live credential-bearing objects alm made for the Agent, keyed (kind, name)."""
    found: dict[tuple[str, str], Obj] = {}
    for kind in CREDENTIAL_KINDS:
        for obj in _children(kube, kind, namespace, agent, agent_uid, foreign_uid):
            labels = obj.get("metadata", {}).get("labels") or {}
            if kind == "Secret" and labels.get(naming.COMPONENT_LABEL) != CREDENTIALS_COMPONENT:
                continue  # archives and audit data are labelled with the Agent too: never revoked
            found[(kind, str(obj["metadata"]["name"]))] = obj
    return found


def archive_inputs(kube: Kube, namespace: str, agent_name: str, agent: Mapping[str, Any] | None) -> Obj:
    """What only the archive needs: the Agent's versions and rollouts, and its audit log."""
    rollouts = [r for r in kube.list("AgentRollout", namespace)
                if ((r.get("spec") or {}).get("agentRef") or {}).get("name") == agent_name]
    status = (agent or {}).get("status") or {}
    names = {(agent or {}).get("spec", {}).get("version"), status.get("stableVersion"), status.get("canaryVersion")}
    names |= {h.get("version") for h in status.get("history") or []}
    names |= {(r.get("spec") or {}).get("targetVersion") for r in rollouts}
    versions = [v for v in kube.list("AgentVersion", namespace) if v["metadata"]["name"] in names]
    return {"versions": versions, "rollouts": rollouts, "audit": auditing.load(kube, namespace, agent_name)}


def to_datetime(value: str) -> datetime.datetime:
    return datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))


def _successor(agent: Mapping[str, Any], retirement_body: Mapping[str, Any]) -> bool:
    """Whether ``agent`` was created after the retirement started: a new Agent under the old name.

    The retired Agent existed when the retirement entered Draining; a later one is not its
    business (it must be neither marked Retired nor stripped of its credentials).
    """
    transitions = (retirement_body.get("status") or {}).get("transitions") or []
    started = next((t.get("at") for t in transitions if t.get("phase") == AgentRetirementPhase.DRAINING), None)
    created = agent.get("metadata", {}).get("creationTimestamp")
    return bool(started and created) and to_datetime(str(created)) > to_datetime(str(started))


def observe(kube: Kube, body: Mapping[str, Any]) -> Seen:
    meta = body.get("metadata", {})
    namespace, spec = str(meta.get("namespace")), body.get("spec") or {}
    agent_name = str((spec.get("agentRef") or {}).get("name") or "")
    agent = kube.get("Agent", namespace, agent_name) if agent_name else None
    foreign = None
    if agent is not None and _successor(agent, body):
        foreign, agent = agent.get("metadata", {}).get("uid"), None
    uid = (agent or {}).get("metadata", {}).get("uid")
    credentials = agent_credentials(kube, namespace, agent_name, uid, foreign) if agent_name else {}
    traffic = _children(kube, "Service", namespace, agent_name, uid, foreign) if agent_name else []
    if ((agent or {}).get("spec") or {}).get("exposure", {}).get("httpRoute"):
        traffic += _children(kube, "HTTPRoute", namespace, agent_name, uid)
    deployments = _children(kube, "Deployment", namespace, agent_name, uid, foreign) if agent_name else []
    obs = RetirementObservations(
        name=str(meta.get("name")), namespace=namespace, uid=str(meta.get("uid", "")),
        generation=meta.get("generation"), agent=agent, serving=bool(traffic),
        replicas=sum(int((d.get("spec") or {}).get("replicas") or 0) for d in deployments),
        ready_replicas=sum(int((d.get("status") or {}).get("readyReplicas") or 0) for d in deployments),
        credentials=tuple(Credential(kind, name) for kind, name in credentials),
        retry_requested=RETRY_ANNOTATION in (meta.get("annotations") or {}),
    )
    return Seen(obs, namespace, agent_name, agent, credentials, traffic, deployments)
