"""What the Agent planner is given and what it returns: :class:`AgentObservations` in, :class:`AgentPlan` out.

The handler (:mod:`alm.handlers.wiring`) gathers the observations and :mod:`alm.kube.shell` carries
out the plan; the planner's parts (:mod:`alm.core.agentinputs`, :mod:`alm.core.agentrollout`,
:mod:`alm.core.agentchildren`, :mod:`alm.core.agentstatus`) all read the same observations. These
types are that shared contract, kept apart so each part imports them without importing the others.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

from alm.core.agenttraffic import RolloutTraffic
from alm.core.events import EventIntent
from alm.core.rolloutstart import Decision

__all__ = ["AgentObservations", "AgentPlan", "Key", "child_key"]

Obj = dict[str, Any]
Key = tuple[str, str]  # (kind, name)


def child_key(obj: Mapping[str, Any]) -> Key:
    return (str(obj.get("kind")), str(obj.get("metadata", {}).get("name")))


@dataclasses.dataclass(frozen=True)
class AgentObservations:
    body: Mapping[str, Any]  # the Agent as last seen
    version: Mapping[str, Any] | None  # the AgentVersion named by spec.version, if it exists
    sources: Mapping[str, Mapping[str, str] | None]  # referenced Secrets' data (None: missing)
    children: Sequence[Mapping[str, Any]]  # live objects labelled as this Agent's children
    retirement: Mapping[str, Any] | None = None  # an AgentRetirement naming this Agent, if any
    rollouts: Sequence[Mapping[str, Any]] = ()  # the AgentRollouts naming this Agent
    stable: Mapping[str, Any] | None = None  # the AgentVersion named by status.stableVersion, if another
    traffic: RolloutTraffic | None = None  # the running rollout's decisions, if the handler has any


@dataclasses.dataclass(frozen=True)
class AgentPlan:
    apply: tuple[Obj, ...] = ()
    delete: tuple[Mapping[str, Any], ...] = ()  # live objects to delete
    status: Obj = dataclasses.field(default_factory=dict)
    events: tuple[EventIntent, ...] = ()
    rollout: Decision | None = None  # create or adopt ``rollout.body``; supersede ``rollout.supersede``
