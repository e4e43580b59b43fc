"""What an Agent's status says: its phase, its conditions, and the warnings the planner posts.

:func:`agent_status` turns the resolved inputs and the live workload into ``phase``, replicas and
the Ready / Provisioned / Invalid conditions (keeping the conditions other planners own, such as
monitoring's); during a rollout :func:`rollout_status` and :func:`rollout_failed` add the canary's
view and the ``RolloutFailed`` condition. Kept apart from the decisions about children so the
words users read (``kubectl get agents``) are in one module. Pure.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from alm.core import conditions, naming, provisioning
from alm.core.agentinputs import Resolved
from alm.core.agentrollout import RolloutVersions
from alm.core.agenttypes import AgentObservations
from alm.core.conditions import condition
from alm.core.events import EventIntent
from alm.core.problems import Problem
from alm.core.reasons import Cond, Reason
from alm.core.rolloutstart import Decision, DecisionAction, DecisionReason
from alm.core.workload import Workload, observe_workload

__all__ = ["ROLLOUT_FAILED", "agent_status", "problem_events", "rollout_failed", "rollout_status"]

ROLLOUT_FAILED = "RolloutFailed"  # Agent condition: the last rollout of spec.version failed

Obj = dict[str, Any]


def rollout_status(obs: AgentObservations, status: Obj, rollout: RolloutVersions, now: str) -> Obj:
    """The stable version stays ``stableVersion`` until the rollout promotes; the target is the canary."""
    status = {**status, "stableVersion": rollout.stable_version}
    if rollout.target is None:
        if status.get("phase") == "Available":
            status["phase"] = "Degraded"  # the stable version serves, but spec.version did not roll out
        return status
    names = {naming.deployment_name(obs.body["metadata"]["name"], v) for v in (rollout.stable_version, rollout.target)}
    deployments = [c for c in obs.children if c.get("kind") == "Deployment" and c["metadata"]["name"] in names]
    replicas = sum(int((d.get("status") or {}).get("replicas") or 0) for d in deployments)
    ready = sum(int((d.get("status") or {}).get("readyReplicas") or 0) for d in deployments)
    weight = int(((rollout.rollout or {}).get("status") or {}).get("weight") or 0)
    name = (rollout.rollout or {}).get("metadata", {}).get("name", "")
    wanted = int((obs.body.get("spec") or {}).get("replicas") or 0)
    serving = ready >= max(1, wanted) or wanted == 0
    message = f"Rolling out {rollout.target} with AgentRollout {name}: {weight}% of new sessions; {ready} pods ready"
    ready_cond = condition(Cond.READY, serving, Reason.AVAILABLE if serving else Reason.ROLLING_OUT, message)
    return {**status, "phase": "Progressing", "replicas": replicas, "readyReplicas": ready,
            "canaryVersion": rollout.target, "canaryWeight": weight,
            "conditions": _put(status.get("conditions"), ready_cond, now)}


def rollout_failed(obs: AgentObservations, current: list[conditions.Condition], decision: Decision | None,
                    now: str) -> list[conditions.Condition]:
    """``RolloutFailed``: True while spec.version names a version whose last rollout failed; cleared once
    the Agent is on a stable version again or a new rollout starts; left alone otherwise."""
    before = conditions.find(current, ROLLOUT_FAILED)
    if decision is None:
        return current
    if decision.reason == DecisionReason.FAILED:
        failed = next((r for r in obs.rollouts if r.get("metadata", {}).get("name") == decision.rollout), {})
        reason = str(((failed.get("status") or {}).get("abort") or {}).get("reason") or ROLLOUT_FAILED)
        wanted = condition(ROLLOUT_FAILED, True, reason, decision.message)
    elif before is not None and decision.action in (DecisionAction.SWITCH, DecisionAction.CREATE, DecisionAction.NONE):
        wanted = condition(ROLLOUT_FAILED, False, decision.reason, decision.message)
    else:
        return current
    return _put(current, wanted, now)


def _put(current: Sequence[Mapping[str, Any]] | None, wanted: conditions.Condition,
         now: str) -> list[conditions.Condition]:
    """``current`` with ``wanted`` merged in at its place (appended when new): a stable order, no rewrites."""
    merged = conditions.merge_conditions(current, [wanted], now=now)[0]
    found = [dict(c) for c in current or ()]
    for i, cond in enumerate(found):
        if cond.get("type") == wanted["type"]:
            found[i] = merged
            return found
    return [*found, merged]


def agent_status(obs: AgentObservations, resolved: Resolved, now: str, *, pending_changes: bool) -> Obj:
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


def problem_events(body: Mapping[str, Any], problem: Problem | None) -> list[EventIntent]:
    """A warning when a problem appears or changes, not on every pass (no event storms)."""
    if problem is None or not problem.announce:
        return []
    previous = conditions.find((body.get("status") or {}).get("conditions"), Cond.PROVISIONED)
    if previous is not None and previous.get("message") == problem.message:
        return []
    return [EventIntent(problem.reason, problem.message, warning=True)]
