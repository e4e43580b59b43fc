"""What a running AgentRollout decided about its Agent's children, handed to the Agent planner.

The rollout controller (:mod:`alm.handlers.rolloutacting`) records its decisions here, per Agent,
and the Agent planner (:mod:`alm.core.agentplan`) builds the children from them: the contract
between the two writers of an Agent's traffic, kept in one small module so neither side has to
read the other's internals to know who decides what.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

__all__ = ["RolloutTraffic", "traffic_after_finish", "traffic_for"]


@dataclasses.dataclass(frozen=True)
class RolloutTraffic:
    """What the running AgentRollout decided about the Agent's children (kept by the rollout handler).

    During a rollout two writers would otherwise fight over the same fields: provisioning wants
    ``spec.replicas`` pods of ``spec.version`` behind a Service over every pod, the rollout wants
    its own split. So the Agent planner stays the *only* writer of the children (one field
    manager, no race between two passes) and takes from the rollout what is the rollout's: each
    version's replicas and shadow mode (``ScaleVersion``), the Service's selector and the stable
    runtime's mirror env (the router's ``RouterPlan``). What the rollout has not decided (after an
    operator restart, before its first pass) is kept as it is live, so a restart never moves traffic.
    """

    replicas: Mapping[str, int] = dataclasses.field(default_factory=dict)  # per version
    shadows: frozenset[str] = frozenset()  # versions whose runtime runs as a shadow
    service_selector: Mapping[str, str] | None = None  # of the Service <agent>; None: as live
    mirror_env: Mapping[str, Mapping[str, str]] = dataclasses.field(default_factory=dict)  # per version; None: as live
    mirror_decided: bool = False  # mirror_env is the router's decision (else: as live)
    rollout: str = ""  # the AgentRollout these decisions are (the one that owns the Agent's traffic)


def traffic_for(current: RolloutTraffic | None, rollout: str) -> RolloutTraffic:
    """The decisions ``rollout`` builds on: its own, or none when ``current`` is another rollout's.

    One rollout at a time owns an Agent's traffic; a new one starts from nothing decided (the live
    split is kept until it decides), never from a finished rollout's leftovers."""
    if current is not None and current.rollout == rollout:
        return current
    return RolloutTraffic(rollout=rollout)


def traffic_after_finish(current: RolloutTraffic | None, rollout: str) -> RolloutTraffic | None:
    """The Agent's decisions once ``rollout`` has finished: dropped when they are its own, else kept.

    A finished rollout is passed again (every Agent pass, its scale-down timer): it must never drop
    the decisions of the rollout that followed it (a rolled-back canary would block the fix)."""
    if current is None or current.rollout in ("", rollout):
        return None
    return current
