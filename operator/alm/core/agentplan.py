"""The Agent planner: from the Agent, its version, its Secrets and its live children
to the objects to apply, the children to delete, the status to show and the events
to post. Pure: the handler gathers the observations, :mod:`alm.kube.shell` applies
the plan.

A plan that has nothing to do is empty and its status equals the current one, so
a resync writes nothing. When the input is wrong or not there yet the plan changes
no child (the running version keeps serving) and says in a condition what to fix.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import pydantic

from alm.api import AgentSpec, AgentVersionSpec
from alm.core import conditions, credentials, naming, provisioning, validation
from alm.core.conditions import condition
from alm.core.drift import covers
from alm.core.events import EventIntent
from alm.core.problems import Problem
from alm.core.reasons import Cond, Reason
from alm.core.workload import Workload, observe_workload

__all__ = ["AgentObservations", "AgentPlan", "child_key", "plan_agent"]

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


@dataclasses.dataclass(frozen=True)
class AgentPlan:
    apply: tuple[Obj, ...] = ()
    delete: tuple[Mapping[str, Any], ...] = ()  # live objects to delete
    status: Obj = dataclasses.field(default_factory=dict)
    events: tuple[EventIntent, ...] = ()


@dataclasses.dataclass(frozen=True)
class _Resolved:
    inputs: provisioning.AgentInputs | None
    problem: Problem | None
    spec: AgentSpec | None


def plan_agent(obs: AgentObservations, now: str, generate: Callable[[int], str]) -> AgentPlan:
    """Decide everything for one Agent. ``generate(n)`` yields fresh random strings."""
    if obs.retirement is not None or (obs.body.get("status") or {}).get("phase") == "Retired":
        return _stand_down(obs, now)
    resolved = _resolve(obs, generate)
    apply: list[Obj] = []
    delete: list[Mapping[str, Any]] = []
    events: list[EventIntent] = []
    if resolved.inputs is not None:
        live = {child_key(child): child for child in obs.children}
        desired = provisioning.desired_children(resolved.inputs)
        created: list[str] = []
        updated: list[str] = []
        for obj in desired:
            have = live.get(child_key(obj))
            if have is None or not covers(have, obj):
                apply.append(obj)
                (created if have is None else updated).append(f"{obj['kind']} {obj['metadata']['name']}")
        wanted = {child_key(obj) for obj in desired}
        stale = {key: child for key, child in live.items() if key not in wanted and _deletable(child)}
        deleted: list[str] = []
        for key, child in sorted(_handover(stale, resolved.inputs, obs.children).items()):
            delete.append(child)
            deleted.append(f"{key[0]} {key[1]}")
        # One event per verb and pass, not one per child: Events are writes too.
        for reason, names in ((Reason.CREATED, created), (Reason.UPDATED, updated), (Reason.DELETED, deleted)):
            if names:
                events.append(EventIntent(reason, f"{reason} " + ", ".join(names)))
    status = _status(obs, resolved, now, pending_changes=bool(apply or delete))
    events += _problem_events(obs.body, resolved.problem)
    return AgentPlan(tuple(apply), tuple(delete), status, tuple(events))


def _stand_down(obs: AgentObservations, now: str) -> AgentPlan:
    """A retiring or retired Agent is the retirement controller's: never provisioned again.

    While a retirement runs, nothing is touched. Once retired, a spec change is only
    acknowledged (``observedGeneration``) with a condition and a warning saying it is ignored.
    """
    previous: dict[str, Any] = dict(obs.body.get("status") or {})
    if previous.get("phase") != "Retired":
        return AgentPlan(status=previous)
    generation = obs.body.get("metadata", {}).get("generation")
    status = {**previous, "observedGeneration": generation}
    events: tuple[EventIntent, ...] = ()
    if not conditions.find(previous.get("conditions"), Cond.RETIRED):
        retired = condition(Cond.RETIRED, True, Reason.RETIRED, "The Agent is retired; it is never provisioned again.")
        status["conditions"] = [*previous.get("conditions", []), *conditions.merge_conditions(None, [retired], now=now)]
    if previous.get("observedGeneration") not in (None, generation):
        events = (EventIntent(Reason.SPEC_IGNORED, "The Agent is retired: spec changes are ignored. "
                              "Create a new Agent to run this agent again.", warning=True),)
    return AgentPlan(status=status, events=events)


def _handover(
    stale: dict[Key, Mapping[str, Any]], inputs: provisioning.AgentInputs, children: Sequence[Mapping[str, Any]]
) -> dict[Key, Mapping[str, Any]]:
    """The stale children that may go now.

    The previous version's Deployment (and the credentials Secret it mounts) keeps
    serving until the new version's Deployment is available: the agent's Service
    selects both, so a version switch hands traffic over without a gap.
    """
    current = observe_workload(children, naming.deployment_name(inputs.name, inputs.version))
    ready = inputs.replicas == 0 or (
        current.available and not current.rolling_out and current.ready >= inputs.replicas
    )
    if ready:
        return stale
    kept_secrets = {
        volume.get("secret", {}).get("secretName")
        for key, child in stale.items() if key[0] == "Deployment"
        for volume in child.get("spec", {}).get("template", {}).get("spec", {}).get("volumes") or []
    }
    return {
        key: child for key, child in stale.items()
        if key[0] != "Deployment" and not (key[0] == "Secret" and key[1] in kept_secrets)
    }


def _deletable(child: Mapping[str, Any]) -> bool:
    """Only objects alm created (our managed-by label) are ever deleted."""
    labels = child.get("metadata", {}).get("labels") or {}
    return bool(labels.get(naming.MANAGED_BY_LABEL) == naming.MANAGED_BY_VALUE)


def _resolve(obs: AgentObservations, generate: Callable[[int], str]) -> _Resolved:
    meta = obs.body.get("metadata", {})
    try:
        spec = AgentSpec.model_validate(obs.body.get("spec") or {})
    except pydantic.ValidationError as exc:
        return _Resolved(None, Problem(Reason.INVALID_SPEC, validation.describe(exc, "spec"), True), None)
    version_problem = _version_problem(spec.version, obs.version)
    if version_problem is not None:
        return _Resolved(None, version_problem, spec)
    assert obs.version is not None
    version_spec = AgentVersionSpec.model_validate(obs.version.get("spec") or {})
    existing = _current_credentials(obs.children)
    creds = credentials.resolve(spec.version, version_spec, obs.sources, existing, generate)
    if creds.problem is not None:
        return _Resolved(None, creds.problem, spec)
    inputs = provisioning.AgentInputs(
        name=meta["name"],
        namespace=meta.get("namespace", ""),
        uid=meta.get("uid", ""),
        spec=spec,
        version=spec.version,
        version_spec=version_spec,
        config_map=obs.version.get("status", {})["configMapName"],
        credentials=creds.data,
        credentials_hash=creds.content_hash,
        suspended=_suspended(spec, obs.body.get("status") or {}),
    )
    return _Resolved(inputs, None, spec)


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


def _status(obs: AgentObservations, resolved: _Resolved, now: str, *, pending_changes: bool) -> Obj:
    meta = obs.body.get("metadata", {})
    previous: Mapping[str, Any] = obs.body.get("status") or {}
    inputs, problem = resolved.inputs, resolved.problem
    version = inputs.version if inputs is not None else previous.get("stableVersion")
    workload = observe_workload(obs.children, naming.deployment_name(meta["name"], version) if version else None)
    phase, ready = _phase(workload, problem, pending_changes, inputs)
    desired_conditions = [ready, _provisioned(problem, pending_changes), _invalid(problem)]
    status: Obj = {
        "phase": phase,
        "observedGeneration": meta.get("generation"),
        "replicas": workload.replicas,
        "readyReplicas": workload.ready,
        "canaryWeight": 0,
        "conditions": _keep_others(previous.get("conditions"), desired_conditions, now),
    }
    if version:
        status["stableVersion"] = version
    if inputs is not None:
        status["credentialsSecret"] = inputs.secret_name
        status["configHash"] = inputs.credentials_hash[:10]
    else:
        for key in ("credentialsSecret", "configHash"):
            if previous.get(key):
                status[key] = previous[key]
    return {key: value for key, value in status.items() if value is not None}


def _keep_others(
    previous: Sequence[Mapping[str, Any]] | None, mine: list[conditions.Condition], now: str
) -> list[conditions.Condition]:
    """Our conditions, merged, after the ones other planners own (monitoring, budgets), kept as they are."""
    types = {c["type"] for c in mine}
    others = [dict(c) for c in previous or () if c.get("type") not in types]
    return [*conditions.merge_conditions(previous, mine, now=now), *others]


def _provisioned(problem: Problem | None, pending: bool) -> conditions.Condition:
    if problem is not None:
        return condition(Cond.PROVISIONED, False, problem.reason, problem.message)
    if pending:
        return condition(Cond.PROVISIONED, False, Reason.PROVISIONING, "Applying children")
    return condition(Cond.PROVISIONED, True, Reason.PROVISIONED, "All children match the spec")


def _invalid(problem: Problem | None) -> conditions.Condition:
    if problem is not None and problem.invalid:
        return condition(Cond.INVALID, True, problem.reason, problem.message)
    return condition(Cond.INVALID, False, Reason.VALID, "The spec is valid")


def _phase(
    workload: Workload, problem: Problem | None, pending: bool, inputs: provisioning.AgentInputs | None
) -> tuple[str, conditions.Condition]:
    if problem is not None and not problem.announce and workload.exists:
        # Waiting a moment for the operator itself (a new version being rendered): the Agent is
        # on its way to a new state, not Available at the old one.
        return "Progressing", condition(Cond.READY, False, problem.reason, problem.message)
    if not workload.exists:
        if problem is not None:
            return "Pending", condition(Cond.READY, False, problem.reason, problem.message)
        return "Progressing", condition(Cond.READY, False, Reason.PROVISIONING, "Creating the agent's workload")
    desired = inputs.replicas if inputs is not None else workload.desired
    if inputs is not None and inputs.suspended and not pending:
        return "Suspended", condition(Cond.READY, False, Reason.BUDGET_SUSPENDED,
                                      "Scaled to zero: the daily budget is exceeded (see BudgetExceeded)")
    if desired == 0 and not pending:
        return "Available", condition(Cond.READY, True, Reason.SCALED_TO_ZERO, "Scaled to zero replicas")
    if pending or workload.rolling_out or workload.desired != desired:
        return "Progressing", condition(
            Cond.READY, False, Reason.ROLLING_OUT,
            f"Rolling out: {workload.updated}/{desired} replicas updated, {workload.ready} ready",
        )
    if workload.available and workload.ready >= desired:
        return "Available", condition(Cond.READY, True, Reason.AVAILABLE, f"{workload.ready}/{desired} replicas ready")
    return "Degraded", condition(
        Cond.READY, False, Reason.UNAVAILABLE,
        f"Deployment is not available: {workload.ready}/{desired} replicas ready. {workload.message}".strip(),
    )


def _problem_events(body: Mapping[str, Any], problem: Problem | None) -> list[EventIntent]:
    """A warning when a problem appears or changes, not on every pass (no event storms)."""
    if problem is None or not problem.announce:
        return []
    previous = conditions.find((body.get("status") or {}).get("conditions"), Cond.PROVISIONED)
    if previous is not None and previous.get("message") == problem.message:
        return []
    return [EventIntent(problem.reason, problem.message, warning=True)]
