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
from alm.core.rolloutstart import Decision, DecisionAction, DecisionReason, Retained, needs_rollout, retained
from alm.core.workload import Workload, observe_workload

__all__ = ["ROLLOUT_FAILED", "AgentObservations", "AgentPlan", "RolloutTraffic", "child_key", "plan_agent"]

ROLLOUT_FAILED = "RolloutFailed"  # Agent condition: the last rollout of spec.version failed
_KEPT_COMPONENTS = ("traffic", "preview")  # a router's or blue-green's Services: the rollout's, kept while it runs

Obj = dict[str, Any]
Key = tuple[str, str]  # (kind, name)


def child_key(obj: Mapping[str, Any]) -> Key:
    return (str(obj.get("kind")), str(obj.get("metadata", {}).get("name")))


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
    decision = _decide(obs, resolved)
    mode = _mode(decision)
    rollout: _Rollout | None = None
    if mode != "switch" and resolved.spec is not None:
        rollout, resolved = _rollout_inputs(obs, resolved, resolved.spec, decision, mode, generate)
    apply: list[Obj] = []
    delete: list[Mapping[str, Any]] = []
    events: list[EventIntent] = []
    keep = _retained(obs, resolved, now) if mode == "switch" else None
    if keep is not None and resolved.inputs is not None:
        # The old version lingers: the Service selects the promoted version's pods only.
        pods = {naming.AGENT_LABEL: naming.label_value(resolved.inputs.name),
                naming.VERSION_LABEL: naming.label_value(resolved.inputs.version)}
        resolved = dataclasses.replace(resolved, inputs=dataclasses.replace(
            resolved.inputs, service_selector=tuple(sorted(pods.items()))))
    if resolved.inputs is not None:
        live = {child_key(child): child for child in obs.children}
        desired = provisioning.desired_children(resolved.inputs)
        if rollout is not None and rollout.stable is not None:
            desired += [obj for obj in provisioning.desired_children(rollout.stable)
                        if obj["kind"] in ("Secret", "Deployment") and child_key(obj) not in map(child_key, desired)]
        created: list[str] = []
        updated: list[str] = []
        for obj in desired:
            have = live.get(child_key(obj))
            if have is None or not covers(have, obj) or _selector_moved(have, obj):
                apply.append(obj)
                (created if have is None else updated).append(f"{obj['kind']} {obj['metadata']['name']}")
        wanted = {child_key(obj) for obj in desired}
        stale = {key: child for key, child in live.items() if key not in wanted and _deletable(child)}
        if rollout is not None and rollout.stable is not None:
            stale = {key: child for key, child in stale.items() if _component(child) not in _KEPT_COMPONENTS}
        if keep is not None:
            stale = _keep_previous(stale, keep, resolved.inputs.name)
        if _gateway_routed(resolved.spec):  # its HTTPRoute sends traffic to the version Services: they stay
            stale = {key: child for key, child in stale.items() if _component(child) != "traffic"}
        deleted: list[str] = []
        for key, child in sorted(_handover(stale, resolved.inputs, obs.children).items()):
            delete.append(child)
            deleted.append(f"{key[0]} {key[1]}")
        # One event per verb and pass, not one per child: Events are writes too.
        for reason, names in ((Reason.CREATED, created), (Reason.UPDATED, updated), (Reason.DELETED, deleted)):
            if names:
                events.append(EventIntent(reason, f"{reason} " + ", ".join(names)))
    status = _status(obs, resolved, now, pending_changes=bool(apply or delete))
    if rollout is not None:
        status = _rollout_status(obs, status, rollout, now)
    status["conditions"] = _rollout_failed(obs, status["conditions"], decision, now)
    events += _problem_events(obs.body, resolved.problem)
    if decision is not None and decision.action in (DecisionAction.CREATE, DecisionAction.ADOPT):
        events.append(EventIntent(decision.reason, decision.message))
    return AgentPlan(tuple(apply), tuple(delete), status, tuple(events), decision)


def _selector_moved(live: Mapping[str, Any], desired: Obj) -> bool:
    """A Service whose selector is not exactly the desired one (``covers`` alone misses a dropped key).

    After a rolled-back canary the Service ``<agent>`` selects ``{agent, version: stable}``; the next
    canary's 50 % wants ``{agent}``, which the live selector "covers": without this the Service would
    keep selecting the stable version only and the new canary would never get past 0 %."""
    if desired.get("kind") != "Service":
        return False
    want = (desired.get("spec") or {}).get("selector")
    return want is not None and dict((live.get("spec") or {}).get("selector") or {}) != dict(want)


# --- Rollouts: the Agent side --------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class _Rollout:
    """Two versions live: the stable one (serving) and the target (rolled out), or the stable only."""

    stable_version: str
    target: str | None  # None: the last rollout of spec.version failed; the stable version alone
    stable: provisioning.AgentInputs | None  # the stable version's inputs, when the target's are the main ones
    rollout: Mapping[str, Any] | None  # the AgentRollout concerned


def _decide(obs: AgentObservations, resolved: _Resolved) -> Decision | None:
    if resolved.spec is None:
        return None
    meta = obs.body.get("metadata", {})
    return needs_rollout(resolved.spec, obs.body.get("status") or {}, obs.rollouts, agent=str(meta.get("name")),
                         namespace=str(meta.get("namespace", "")), uid=str(meta.get("uid", "")),
                         generation=meta.get("generation"))


def _mode(decision: Decision | None) -> str:
    """switch: provision spec.version alone (as before rollouts); stable: the stable version alone
    (the last rollout of spec.version failed); both: the stable version and the target."""
    if decision is None or decision.action == DecisionAction.SWITCH or decision.reason == DecisionReason.STABLE:
        return "switch"
    return "stable" if decision.reason == DecisionReason.FAILED else "both"


def _component(child: Mapping[str, Any]) -> str:
    return str((child.get("metadata", {}).get("labels") or {}).get(naming.COMPONENT_LABEL) or "")


def _live(children: Sequence[Mapping[str, Any]], kind: str, name: str) -> Mapping[str, Any] | None:
    return next((c for c in children if child_key(c) == (kind, name)), None)


def _shape(obs: AgentObservations, inputs: provisioning.AgentInputs, default: int, *,
           service: bool) -> provisioning.AgentInputs:
    """``inputs`` with the rollout's decisions for its version (see :class:`RolloutTraffic`), else the live values."""
    traffic = obs.traffic or RolloutTraffic()
    live = _live(obs.children, "Deployment", naming.deployment_name(inputs.name, inputs.version))
    live_pod = ((live or {}).get("spec") or {}).get("template", {}).get("spec") or {}
    live_env = {e.get("name"): str(e.get("value", "")) for c in live_pod.get("containers") or ()
                for e in c.get("env") or ()}
    replicas = traffic.replicas.get(inputs.version)
    if replicas is None:
        replicas = int((live or {}).get("spec", {}).get("replicas", default)) if live is not None else default
    shadow = inputs.version in traffic.shadows if inputs.version in traffic.replicas else (
        live_env.get("ALM_SHADOW") == "true")
    if traffic.mirror_decided:
        env = dict(traffic.mirror_env.get(inputs.version) or {})
    else:
        env = {k: v for k, v in live_env.items() if str(k).startswith("ALM_MIRROR_")}
    selector: Mapping[str, str] | None = None
    if service:
        live_service = _live(obs.children, "Service", inputs.name)
        selector = traffic.service_selector or ((live_service or {}).get("spec") or {}).get("selector") or None
    return dataclasses.replace(inputs, deployment_replicas=replicas, shadow=shadow,
                               extra_env=tuple(sorted((str(k), v) for k, v in env.items())),
                               service_selector=tuple(sorted(selector.items())) if selector else None)


def _rollout_inputs(obs: AgentObservations, resolved: _Resolved, spec: AgentSpec, decision: Decision | None,
                    mode: str, generate: Callable[[int], str]) -> tuple[_Rollout | None, _Resolved]:
    """The inputs of both live versions during a rollout (the target's, if it resolves, are the main ones)."""
    stable_name = str((obs.body.get("status") or {}).get("stableVersion") or "")
    found = [r for r in obs.rollouts if r.get("metadata", {}).get("name") == (decision.rollout if decision else None)]
    rollout = found[0] if found else None
    stable_body = obs.stable if obs.stable is not None else (obs.version if stable_name == spec.version else None)
    stable = _resolve_version(obs, spec, stable_name, stable_body, generate)
    if stable.inputs is None:
        return None, resolved  # the stable version cannot be provisioned: as without rollouts, say why
    stable_inputs = _shape(obs, stable.inputs, spec.replicas, service=mode == "stable")
    if mode == "stable":
        return _Rollout(stable_name, None, None, rollout), _Resolved(stable_inputs, None, spec)
    if resolved.inputs is None:  # the target is not ready yet: the stable version alone, the problem reported
        shaped = _shape(obs, stable.inputs, spec.replicas, service=True)
        return _Rollout(stable_name, spec.version, None, rollout), _Resolved(shaped, resolved.problem, spec)
    target = _shape(obs, resolved.inputs, 0, service=True)
    return _Rollout(stable_name, spec.version, stable_inputs, rollout), _Resolved(target, None, spec)


def _rollout_status(obs: AgentObservations, status: Obj, rollout: _Rollout, now: str) -> Obj:
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


def _rollout_failed(obs: AgentObservations, current: list[conditions.Condition], decision: Decision | None,
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
    selects both, so a version switch hands traffic over without a gap. During a
    rollout "available" means the pods the rollout asked for (a 50 % canary of two
    replicas has one): waiting for ``spec.replicas`` there would keep a rolled-back
    version's pods behind the Service for good, and the next canary's weight with them.
    """
    current = observe_workload(children, naming.deployment_name(inputs.name, inputs.version))
    ready = inputs.pods == 0 or (
        current.available and not current.rolling_out and current.ready >= inputs.pods
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


def _gateway_routed(spec: AgentSpec | None) -> bool:
    """Rollouts of the Agent route through an HTTPRoute (its ``<agent>-stable`` Service outlives them)."""
    return spec is not None and spec.rollout is not None and spec.rollout.traffic_routing.type == "gatewayAPI"


def _retained(obs: AgentObservations, resolved: _Resolved, now: str) -> Retained | None:
    """The previous version a promotion keeps until its scale-down delay has passed (``ScaleDownAfter``)."""
    if resolved.spec is None:
        return None
    return retained(obs.rollouts, resolved.spec.version, now)


def _keep_previous(stale: dict[Key, Mapping[str, Any]], keep: Retained, agent: str) -> dict[Key, Mapping[str, Any]]:
    """``stale`` without what the promotion keeps until ``keep.until``: the previous version's
    Deployment as the rollout left it (every stale Deployment when the rollout names no fromVersion),
    the credentials Secret it mounts, and the router's Services still in use."""
    kept = {key for key in stale if key[0] == "Deployment" and (
        keep.version is None or key[1] == naming.deployment_name(agent, keep.version))}
    secrets = {
        volume.get("secret", {}).get("secretName")
        for key in kept
        for volume in stale[key].get("spec", {}).get("template", {}).get("spec", {}).get("volumes") or []
    }
    return {key: child for key, child in stale.items() if key not in kept
            and not (key[0] == "Secret" and key[1] in secrets) and _component(child) not in _KEPT_COMPONENTS}


def _deletable(child: Mapping[str, Any]) -> bool:
    """Only objects alm created (our managed-by label) are ever deleted."""
    labels = child.get("metadata", {}).get("labels") or {}
    return bool(labels.get(naming.MANAGED_BY_LABEL) == naming.MANAGED_BY_VALUE)


def _resolve(obs: AgentObservations, generate: Callable[[int], str]) -> _Resolved:
    try:
        spec = AgentSpec.model_validate(obs.body.get("spec") or {})
    except pydantic.ValidationError as exc:
        return _Resolved(None, Problem(Reason.INVALID_SPEC, validation.describe(exc, "spec"), True), None)
    return _resolve_version(obs, spec, spec.version, obs.version, generate)


def _resolve_version(obs: AgentObservations, spec: AgentSpec, name: str, version: Mapping[str, Any] | None,
                     generate: Callable[[int], str]) -> _Resolved:
    meta = obs.body.get("metadata", {})
    version_problem = _version_problem(name, version)
    if version_problem is not None:
        return _Resolved(None, version_problem, spec)
    assert version is not None
    version_spec = AgentVersionSpec.model_validate(version.get("spec") or {})
    existing = _current_credentials(obs.children)
    creds = credentials.resolve(name, version_spec, obs.sources, existing, generate)
    if creds.problem is not None:
        return _Resolved(None, creds.problem, spec)
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
