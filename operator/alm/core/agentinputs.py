"""From an Agent and one of its AgentVersions to the inputs that provision it, or the problem that stops it.

Resolving validates the spec, checks that the version exists, is valid and rendered, and carries
the generated credentials over from the newest scoped Secret; the result (:class:`Resolved`) is
either :class:`~alm.core.provisioning.AgentInputs` or a :class:`~alm.core.problems.Problem` to
report. The Agent planner resolves spec.version; during a rollout it resolves the stable version
too (:mod:`alm.core.agentrollout`). Pure.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import pydantic

from alm.api import AgentSpec, AgentVersionSpec
from alm.core import conditions, credentials, naming, provisioning, validation
from alm.core.agenttypes import AgentObservations
from alm.core.problems import Problem
from alm.core.reasons import Cond, Reason

__all__ = ["Resolved", "resolve", "resolve_version"]


@dataclasses.dataclass(frozen=True)
class Resolved:
    inputs: provisioning.AgentInputs | None
    problem: Problem | None
    spec: AgentSpec | None


def resolve(obs: AgentObservations, generate: Callable[[int], str]) -> Resolved:
    try:
        spec = AgentSpec.model_validate(obs.body.get("spec") or {})
    except pydantic.ValidationError as exc:
        return Resolved(None, Problem(Reason.INVALID_SPEC, validation.describe(exc, "spec"), True), None)
    return resolve_version(obs, spec, spec.version, obs.version, generate)


def resolve_version(obs: AgentObservations, spec: AgentSpec, name: str, version: Mapping[str, Any] | None,
                     generate: Callable[[int], str]) -> Resolved:
    meta = obs.body.get("metadata", {})
    version_problem = _version_problem(name, version)
    if version_problem is not None:
        return Resolved(None, version_problem, spec)
    assert version is not None
    version_spec = AgentVersionSpec.model_validate(version.get("spec") or {})
    existing = _current_credentials(obs.children)
    creds = credentials.resolve(name, version_spec, obs.sources, existing, generate)
    if creds.problem is not None:
        return Resolved(None, creds.problem, spec)
    inputs = provisioning.AgentInputs(
        name=meta["name"],
        namespace=meta.get("namespace", ""),
        uid=meta.get("uid", ""),
        spec=spec,
        version=name,
        version_spec=version_spec,
        config_map=version.get("status", {})["configMapName"],
        credentials=creds.data,
        credentials_hash=creds.content_hash,
        suspended=_suspended(spec, obs.body.get("status") or {}),
    )
    return Resolved(inputs, None, spec)


def _suspended(spec: AgentSpec, status: Mapping[str, Any]) -> bool:
    """Over budget and told to suspend: monitoring raised BudgetExceeded, the spec says suspend."""
    over = conditions.find(status.get("conditions"), "BudgetExceeded")
    return bool(spec.budget is not None and spec.budget.on_exceeded == "suspend"
                and over is not None and over.get("status") == "True")


def _version_problem(name: str, version: Mapping[str, Any] | None) -> Problem | None:
    if version is None:
        return Problem(
            Reason.VERSION_NOT_FOUND,
            f"AgentVersion {name!r} was not found in this namespace: create it or fix spec.version.",
        )
    vstatus = version.get("status") or {}
    invalid = conditions.find(vstatus.get("conditions"), Cond.INVALID)
    if invalid is not None and invalid.get("status") == "True":
        return Problem(
            Reason.VERSION_INVALID,
            f"AgentVersion {name!r} is invalid ({invalid.get('message')}): "
            "fix it by creating a corrected AgentVersion and pointing spec.version at it.",
            True,
        )
    if vstatus.get("phase") != "Ready" or not vstatus.get("configMapName"):
        return Problem(
            Reason.VERSION_NOT_READY,
            f"AgentVersion {name!r} has not been validated yet; waiting for the operator to render it.",
            announce=False,
        )
    return None


def _current_credentials(children: Sequence[Mapping[str, Any]]) -> Mapping[str, str] | None:
    """The newest scoped Secret's data, to carry generated values over."""
    secrets = [
        child for child in children
        if child.get("kind") == "Secret"
        and (child.get("metadata", {}).get("labels") or {}).get(naming.COMPONENT_LABEL) == "credentials"
    ]
    if not secrets:
        return None
    newest = max(secrets, key=lambda s: str(s.get("metadata", {}).get("creationTimestamp", "")))
    data: Mapping[str, str] = newest.get("data") or {}
    return data
