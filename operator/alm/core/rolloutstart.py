"""The Agent side of rollouts: does this Agent need an AgentRollout, and which one?

Called by the Agent controller whenever it looks at an Agent, with the AgentRollouts of the
namespace. Pure: it returns a :class:`Decision` and, to create one, the whole object.

==================================================  ========  =============================================
situation                                           action    notes
==================================================  ========  =============================================
no stable version yet (first deploy)                switch    provisioned at once, as without rollouts
``spec.version`` is the stable version              none      unfinished rollouts elsewhere are superseded
an unfinished rollout for the target, ours          wait      it is running (or Pending behind another)
an unfinished rollout for the target, hand-written  adopt     owner reference + labels, spec untouched
the newest rollout for the target succeeded         none      the Agent's status is catching up
the newest rollout for the target failed, and       none      ``RolloutFailed``: not retried until
its spec hash is the current one                              spec.version or spec.rollout/kpis change
no ``spec.rollout``                                 switch    at once (as before rollouts existed)
``rollback: immediate`` and the target is in the    switch    a known-good version skips the steps
history as Succeeded
otherwise                                           create    ``<agent>-<target>-<hash>``, owned by the Agent
==================================================  ========  =============================================

Whatever the action, unfinished rollouts of the Agent for *another* version are listed in
``supersede``: each aborts itself (phase Aborted, reason Superseded) on its next pass, because its
target is no longer the Agent's ``spec.version``; a new rollout waits in Pending until they finish.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import pydantic

from alm.api import API_VERSION, AgentRolloutPhase, AgentRolloutSpec, AgentSpec
from alm.core import hashing, naming
from alm.core.rolloutpass import scale_down_delay
from alm.core.rollouttypes import RolloutReason
from alm.core.timestamps import later, since

__all__ = [
    "AGENT_GENERATION_ANNOTATION",
    "SPEC_HASH_ANNOTATION",
    "Decision",
    "DecisionAction",
    "DecisionReason",
    "Retained",
    "is_finished",
    "needs_rollout",
    "retained",
    "rollout_name",
    "spec_hash",
]

Obj = dict[str, Any]
SPEC_HASH_ANNOTATION = "alm.dev/rollout-spec-hash"
AGENT_GENERATION_ANNOTATION = "alm.dev/agent-generation"
_ACTIVE = (AgentRolloutPhase.PROGRESSING, AgentRolloutPhase.PAUSED, AgentRolloutPhase.AWAITING_APPROVAL)
_NAME_MAX = 63  # rollout names show up in label values and history entries: keep them label-sized


class DecisionAction:
    NONE = "none"
    SWITCH = "switch"  # move the Agent to spec.version at once (no AgentRollout)
    CREATE = "create"
    ADOPT = "adopt"
    WAIT = "wait"


class DecisionReason:
    FIRST_VERSION = "FirstVersion"
    STABLE = "Stable"
    IN_PROGRESS = "RolloutInProgress"
    ADOPTED = "RolloutAdopted"
    PROMOTING = "Promoting"
    FAILED = "RolloutFailed"
    NO_STRATEGY = "NoStrategy"
    IMMEDIATE_ROLLBACK = "ImmediateRollback"
    CREATED = "RolloutCreated"


@dataclasses.dataclass(frozen=True)
class Decision:
    action: str  # a DecisionAction
    reason: str  # a DecisionReason (for the Agent's conditions and events)
    message: str
    rollout: str | None = None  # the AgentRollout concerned: created, adopted, running or failed
    body: Obj | None = None  # create: the AgentRollout; adopt: a merge patch of its metadata
    supersede: tuple[str, ...] = ()  # unfinished rollouts of the Agent for another version


def _meta(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    return obj.get("metadata") or {}


def _status(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    return obj.get("status") or {}


def _target(obj: Mapping[str, Any]) -> str:
    return str((obj.get("spec") or {}).get("targetVersion") or "")


@dataclasses.dataclass(frozen=True)
class Retained:
    """The previous version a promotion keeps alive until ``until`` (``ScaleDownAfter``)."""

    version: str | None  # the rollout's fromVersion; None: not recorded (every previous version)
    target: str  # the version promoted
    until: str  # RFC 3339: finishedAt + the strategy's scale-down delay
    rollout: str


def retained(rollouts: Sequence[Mapping[str, Any]], stable: str | None, now: str) -> Retained | None:
    """The newest Succeeded rollout to ``stable`` whose scale-down delay has not passed at ``now``.

    Derived from the AgentRollout alone (``finishedAt`` + the delay of its strategy), so a restarted
    operator keeps and removes the old version at the same moment. A promotion in flight (the Agent
    already names ``stable``, the rollout's status is not written yet) keeps it too, as if finished now."""
    found: list[Retained] = []
    for body in rollouts:
        status = _status(body)
        phase, finished = status.get("phase"), status.get("finishedAt")
        in_flight = phase in _ACTIVE and not finished
        if not (in_flight or (phase == AgentRolloutPhase.SUCCEEDED and finished)) or _target(body) != stable:
            continue
        try:
            spec = AgentRolloutSpec.model_validate(body.get("spec") or {})
            until = later(now if in_flight else str(finished), scale_down_delay(spec))
        except (pydantic.ValidationError, ValueError):
            continue
        if spec.from_version != spec.target_version and since(now, until) > 0:
            found.append(Retained(spec.from_version, spec.target_version, until, str(_meta(body).get("name") or "")))
    return max(found, key=lambda r: r.until) if found else None


def is_finished(rollout: Mapping[str, Any]) -> bool:
    """Succeeded, or stopped with its traffic verified back on stable (finishedAt set)."""
    status = _status(rollout)
    return status.get("phase") == AgentRolloutPhase.SUCCEEDED or bool(status.get("finishedAt"))


def _failed(rollout: Mapping[str, Any]) -> bool:
    status = _status(rollout)
    reason = (status.get("abort") or {}).get("reason")
    return status.get("phase") in (AgentRolloutPhase.ROLLED_BACK, AgentRolloutPhase.ABORTED) and (
        reason != RolloutReason.SUPERSEDED)


def _age(rollout: Mapping[str, Any]) -> tuple[str, int, str]:
    """Sort key, oldest first: creation time, then the Agent generation it was made for, then name."""
    meta = _meta(rollout)
    generation = str((meta.get("annotations") or {}).get(AGENT_GENERATION_ANNOTATION) or "0")
    return str(meta.get("creationTimestamp") or ""), int(generation) if generation.isdigit() else 0, str(
        meta.get("name") or "")


def spec_hash(spec: AgentSpec) -> str:
    """What a rollout attempt is made of: a failed attempt is retried only when this changes."""
    return hashing.short_hash({
        "targetVersion": spec.version,
        "strategy": spec.rollout.to_k8s() if spec.rollout else None,
        "kpis": spec.kpis.to_k8s() if spec.kpis else None,
    })


def rollout_name(agent: str, target: str, digest: str) -> str:
    """``<agent>-<target>-<digest>``, shortened to 63 characters (the digest keeps it unique)."""
    base = f"{agent}-{target}"
    room = _NAME_MAX - 11
    return f"{base[:room].rstrip('-.')}-{digest[:10]}"


def _owned(rollout: Mapping[str, Any], agent: str, uid: str) -> bool:
    return any(ref.get("kind") == "Agent" and (ref.get("uid") == uid if uid else ref.get("name") == agent)
               for ref in _meta(rollout).get("ownerReferences") or ())


def _labels(agent: str, target: str) -> dict[str, str]:
    return {**naming.agent_labels(agent, "rollout"), naming.VERSION_LABEL: naming.label_value(target)}


def _body(spec: AgentSpec, stable: str, *, agent: str, namespace: str, uid: str, generation: int | None) -> Obj:
    digest = spec_hash(spec)
    name = rollout_name(agent, spec.version, hashing.short_hash({"spec": digest, "generation": generation}))
    assert spec.rollout is not None
    return {
        "apiVersion": API_VERSION, "kind": "AgentRollout",
        "metadata": {
            "name": name, "namespace": namespace, "labels": _labels(agent, spec.version),
            "annotations": {SPEC_HASH_ANNOTATION: digest, AGENT_GENERATION_ANNOTATION: str(generation or 0)},
            "ownerReferences": [naming.owner_reference("Agent", agent, uid)],
        },
        "spec": {"agentRef": {"name": agent}, "targetVersion": spec.version, "fromVersion": stable,
                 "strategy": spec.rollout.to_k8s()},
    }


def _adoption(rollout: Mapping[str, Any], agent: str, uid: str) -> Obj:
    refs = list(_meta(rollout).get("ownerReferences") or ())
    controlled = any(ref.get("controller") for ref in refs)
    refs.append(naming.owner_reference("Agent", agent, uid, controller=not controlled))
    return {"metadata": {"ownerReferences": refs, "labels": _labels(agent, _target(rollout))}}


def _known_good(status: Mapping[str, Any], version: str) -> bool:
    return any(entry.get("version") == version and entry.get("result") == "Succeeded"
               for entry in status.get("history") or ())


def _failure(rollout: Mapping[str, Any]) -> str:
    status = _status(rollout)
    return str(status.get("message") or status.get("phase"))


def _about_existing(spec: AgentSpec, stable: str, mine: Sequence[Mapping[str, Any]], agent: str, uid: str,
                    supersede: tuple[str, ...]) -> Decision | None:
    """The decision the Agent's rollouts for the target already imply, if any."""
    target = spec.version
    live = [r for r in mine if _target(r) == target and not is_finished(r) and not _status(r).get("abort")]
    if live:
        name = str(_meta(live[-1]).get("name"))
        if not _owned(live[-1], agent, uid):
            return Decision(DecisionAction.ADOPT, DecisionReason.ADOPTED, f"Adopting AgentRollout {name} for {target}",
                            name, _adoption(live[-1], agent, uid), supersede)
        return Decision(DecisionAction.WAIT, DecisionReason.IN_PROGRESS, f"AgentRollout {name} is rolling out "
                        f"{target}", name, supersede=supersede)
    newest = mine[-1] if mine else None
    if newest is None or _target(newest) != target:
        return None  # never tried, or another version was tried since: a fresh attempt
    name = str(_meta(newest).get("name"))
    if _status(newest).get("phase") == AgentRolloutPhase.SUCCEEDED:
        return Decision(DecisionAction.NONE, DecisionReason.PROMOTING, f"AgentRollout {name} promoted {target}",
                        name, supersede=supersede)
    recorded = (_meta(newest).get("annotations") or {}).get(SPEC_HASH_ANNOTATION)
    if _failed(newest) and recorded in (None, spec_hash(spec)):
        return Decision(DecisionAction.NONE, DecisionReason.FAILED, (
            f"AgentRollout {name} did not promote {target}: {_failure(newest)}. It is not retried until "
            f"spec.version, spec.rollout or spec.kpis change; {stable} keeps serving"), name, supersede=supersede)
    return None


def needs_rollout(
    agent_spec: AgentSpec | Mapping[str, Any],
    agent_status: Mapping[str, Any] | None,
    existing_rollouts: Sequence[Mapping[str, Any]],
    *,
    agent: str,
    namespace: str,
    uid: str = "",
    generation: int | None = None,
) -> Decision:
    """Decide what the Agent ``agent`` needs for its ``spec.version`` (see the module table).

    ``existing_rollouts`` may hold every AgentRollout of the namespace; only this Agent's count.
    """
    spec = agent_spec if isinstance(agent_spec, AgentSpec) else AgentSpec.model_validate(agent_spec)
    status: Mapping[str, Any] = agent_status or {}
    target, stable = spec.version, str(status.get("stableVersion") or "")
    mine = sorted((r for r in existing_rollouts if ((r.get("spec") or {}).get("agentRef") or {}).get("name") == agent),
                  key=_age)
    supersede = tuple(str(_meta(r).get("name")) for r in mine if not is_finished(r) and _target(r) != target)
    if not stable:
        return Decision(DecisionAction.SWITCH, DecisionReason.FIRST_VERSION,
                        f"No stable version yet: {target} is provisioned at once", supersede=supersede)
    if target == stable:
        return Decision(DecisionAction.NONE, DecisionReason.STABLE, f"{target} is the stable version",
                        supersede=supersede)
    decided = _about_existing(spec, stable, mine, agent, uid, supersede)
    if decided is not None:
        return decided
    if spec.rollout is None:
        return Decision(DecisionAction.SWITCH, DecisionReason.NO_STRATEGY,
                        f"No spec.rollout: switching to {target} at once", supersede=supersede)
    if spec.rollout.rollback == "immediate" and _known_good(status, target):
        return Decision(DecisionAction.SWITCH, DecisionReason.IMMEDIATE_ROLLBACK,
                        f"{target} was stable before (rollback: immediate): switching at once", supersede=supersede)
    body = _body(spec, stable, agent=agent, namespace=namespace, uid=uid, generation=generation)
    name = str(body["metadata"]["name"])
    return Decision(DecisionAction.CREATE, DecisionReason.CREATED, f"Rolling out {target} with AgentRollout {name}",
                    name, body, supersede)
