"""The AgentVersion planner: validate the snapshot, hash it, render its ConfigMap.

An invalid version gets an ``Invalid`` condition naming the field to fix and no
ConfigMap; Agents pointing at it wait with a message instead of provisioning.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import pydantic

from alm.api import AgentVersionSpec
from alm.core import conditions, validation, versionconfig
from alm.core.conditions import condition
from alm.core.drift import covers
from alm.core.events import EventIntent
from alm.core.reasons import Cond, Reason

__all__ = ["VersionPlan", "plan_version"]

Obj = dict[str, Any]


@dataclasses.dataclass(frozen=True)
class VersionPlan:
    apply: tuple[Obj, ...] = ()
    status: Obj = dataclasses.field(default_factory=dict)
    events: tuple[EventIntent, ...] = ()


def plan_version(body: Mapping[str, Any], live: Sequence[Mapping[str, Any]], now: str) -> VersionPlan:
    """``live``: the ConfigMaps currently labelled as this version's config."""
    meta = body.get("metadata", {})
    previous: Mapping[str, Any] = body.get("status") or {}
    raw_spec = dict(body.get("spec") or {})
    hash_ = versionconfig.spec_hash(raw_spec)
    try:
        spec = AgentVersionSpec.model_validate(raw_spec)
    except pydantic.ValidationError as exc:
        message = validation.describe(exc, "spec")
        status = _status(meta, previous, now, "Invalid", hash_, None, [
            condition(Cond.INVALID, True, Reason.INVALID_SPEC, message),
            condition(Cond.READY, False, Reason.INVALID_SPEC, "Fix the spec: " + message),
        ])
        announce = previous.get("phase") != "Invalid"
        warning = EventIntent(Reason.INVALID_SPEC, message, warning=True)
        return VersionPlan((), status, (warning,) if announce else ())
    config_map = versionconfig.render_config_map(meta["name"], meta.get("namespace", ""), meta.get("uid", ""),
                                                 spec, hash_)
    name = config_map["metadata"]["name"]
    current = next((cm for cm in live if cm.get("metadata", {}).get("name") == name), None)
    apply: tuple[Obj, ...] = () if current is not None and covers(current, config_map) else (config_map,)
    status = _status(meta, previous, now, "Ready", hash_, name, [
        condition(Cond.INVALID, False, Reason.VALID, "The spec is valid"),
        condition(Cond.READY, True, Reason.VALIDATED, f"Config rendered to ConfigMap {name}"),
    ])
    events: tuple[EventIntent, ...] = ()
    if apply:
        events = (EventIntent(Reason.CONFIG_RENDERED, f"Rendered ConfigMap {name}"),)
    return VersionPlan(apply, status, events)


def _status(
    meta: Mapping[str, Any], previous: Mapping[str, Any], now: str, phase: str, hash_: str,
    config_map: str | None, wanted: list[conditions.Condition],
) -> Obj:
    status: Obj = {
        "phase": phase,
        "specHash": hash_,
        "observedGeneration": meta.get("generation"),
        "conditions": conditions.merge_conditions(previous.get("conditions"), wanted, now=now),
    }
    if config_map is not None:
        status["configMapName"] = config_map
    return {key: value for key, value in status.items() if value is not None}
