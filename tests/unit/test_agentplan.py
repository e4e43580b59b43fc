"""The Agent planner, table by table: what it applies, deletes, reports and announces."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from alm.core import agenttypes, statuspatch
from alm.core.agentplan import plan_agent
from alm.core.agenttypes import AgentObservations
from alm.handlers.wiring import AGENT_STATUS_KEYS
from tests.unit.builders import (
    LATER,
    NOW,
    SECRET_B64,
    SECRET_VALUE,
    agent_body,
    as_live,
    available_status,
    fixed_random,
    ready,
    version_body,
)

SOURCES = {"bot-tools": {"crm-key": SECRET_B64}}


def plan(agent: dict[str, Any] | None = None, version: dict[str, Any] | None = None,
         sources: Any = None, children: list[dict[str, Any]] | None = None, now: str = NOW,
         ) -> agenttypes.AgentPlan:
    agent = agent if agent is not None else agent_body()
    version = version if version is not None else ready(version_body())
    return plan_agent(AgentObservations(agent, version, SOURCES if sources is None else sources,
                                        children or []), now, fixed_random)


def converge(agent: dict[str, Any], version: dict[str, Any] | None = None,
             sources: Any = None) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Apply plans as a perfect API server would until nothing is left to do."""
    children: list[dict[str, Any]] = []
    agent = copy.deepcopy(agent)
    for _ in range(5):
        p = plan(agent, version, sources, children)
        live = {agenttypes.child_key(c): c for c in children}
        for obj in p.apply:
            status = available_status(obj["spec"]["replicas"]) if obj["kind"] == "Deployment" else {}
            live[agenttypes.child_key(obj)] = as_live(obj, **status)
        for obj in p.delete:
            live.pop(agenttypes.child_key(obj))
        children = list(live.values())
        agent["status"] = p.status
        if not p.apply and not p.delete:
            return agent, children
    raise AssertionError("the plan did not converge")


def kinds(objs: Any) -> list[tuple[str, str]]:
    return [(o["kind"], o["metadata"]["name"]) for o in objs]


def cond(status: dict[str, Any], type_: str) -> dict[str, Any]:
    return next(c for c in status["conditions"] if c["type"] == type_)


@pytest.mark.parametrize(("spec", "expected_kinds"), [
    ({}, ["ServiceAccount", "Secret", "Service", "PodDisruptionBudget", "Deployment"]),
    ({"replicas": 1}, ["ServiceAccount", "Secret", "Service", "Deployment"]),
    ({"replicas": 1, "permissions": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get"]}]},
     ["ServiceAccount", "Role", "RoleBinding", "Secret", "Service", "Deployment"]),
    ({"replicas": 1, "egress": [{"cidr": "10.1.0.0/16", "ports": [{"port": 443}]}]},
     ["ServiceAccount", "Secret", "Service", "NetworkPolicy", "Deployment"]),
])
def test_fresh_agent_gets_its_children_in_order(spec: dict[str, Any], expected_kinds: list[str]) -> None:
    p = plan(agent_body(**spec))
    assert [o["kind"] for o in p.apply] == expected_kinds
    assert p.delete == ()
    assert p.status["phase"] == "Progressing"
    assert all(o["metadata"]["ownerReferences"][0]["uid"] == "uid-bot" for o in p.apply)
    assert all(o["metadata"]["labels"]["alm.dev/agent"] == "bot" for o in p.apply)


def test_converged_agent_is_available_and_a_resync_writes_nothing() -> None:
    agent, children = converge(agent_body())
    assert agent["status"]["phase"] == "Available"
    assert cond(agent["status"], "Ready")["status"] == "True"
    assert cond(agent["status"], "Provisioned")["status"] == "True"
    again = plan(agent, children=children, now=LATER)
    assert again.apply == () and again.delete == () and again.events == ()
    assert statuspatch.status_patch(agent["status"], again.status, AGENT_STATUS_KEYS) is None


@pytest.mark.parametrize("edit", ["replicas", "image", "delete-service", "label"])
def test_drift_is_repaired_by_reapplying_only_the_drifted_child(edit: str) -> None:
    agent, children = converge(agent_body())
    deployment = next(c for c in children if c["kind"] == "Deployment")
    if edit == "replicas":
        deployment["spec"]["replicas"] = 7
    elif edit == "image":
        deployment["spec"]["template"]["spec"]["containers"][0]["image"] = "evil:latest"
    elif edit == "label":
        deployment["metadata"]["labels"]["alm.dev/agent"] = "other"
    else:
        children = [c for c in children if c["kind"] != "Service"]
    p = plan(agent, children=children)
    assert kinds(p.apply) == ([("Service", "bot")] if edit == "delete-service" else [("Deployment", "bot-bot-v1")])


def test_server_defaults_and_foreign_fields_are_not_drift() -> None:
    agent, children = converge(agent_body())
    for child in children:
        child["metadata"].setdefault("annotations", {})["someone.else/note"] = "x"
    assert plan(agent, children=children).apply == ()


@pytest.mark.parametrize(("version", "sources", "reason", "invalid"), [
    (None, SOURCES, "VersionNotFound", False),
    (version_body(), SOURCES, "VersionNotReady", False),
    (ready(version_body()), {"bot-tools": None}, "SecretNotFound", False),
    (ready(version_body()), {"bot-tools": {"other": SECRET_B64}}, "SecretKeyNotFound", False),
])
def test_missing_inputs_change_nothing_and_say_what_to_fix(
    version: Any, sources: Any, reason: str, invalid: bool
) -> None:
    p = plan_agent(AgentObservations(agent_body(), version, sources, []), NOW, fixed_random)
    assert p.apply == () and p.delete == ()
    assert p.status["phase"] == "Pending"
    ready_cond = cond(p.status, "Ready")
    assert (ready_cond["status"], ready_cond["reason"]) == ("False", reason)
    assert cond(p.status, "Invalid")["status"] == ("True" if invalid else "False")
    if reason == "VersionNotReady":  # transient, resolved by the operator itself: no warning
        assert p.events == ()
    else:
        assert [e.reason for e in p.events] == [reason] and p.events[0].warning


def test_a_problem_is_announced_once_not_on_every_pass() -> None:
    first = plan_agent(AgentObservations(agent_body(), None, {}, []), NOW, fixed_random)
    agent = agent_body()
    agent["status"] = first.status
    second = plan_agent(AgentObservations(agent, None, {}, []), LATER, fixed_random)
    assert second.events == ()
    assert second.status == first.status  # same timestamps: no write


def test_invalid_agent_spec_is_reported_with_the_field_to_fix() -> None:
    p = plan(agent_body(replicas=-1))
    assert p.apply == ()
    invalid = cond(p.status, "Invalid")
    assert invalid["status"] == "True"
    assert "spec.replicas" in invalid["message"]


def test_invalid_version_blocks_provisioning_and_keeps_the_running_workload() -> None:
    agent, children = converge(agent_body())
    agent["spec"]["version"] = "bot-v2"
    broken = version_body("bot-v2")
    broken["status"] = {"phase": "Invalid", "conditions": [
        {"type": "Invalid", "status": "True", "reason": "InvalidSpec", "message": "spec.runtime: Field required"}]}
    p = plan(agent, broken, children=children)
    assert p.apply == () and p.delete == ()
    assert cond(p.status, "Invalid")["reason"] == "VersionInvalid"
    assert "spec.runtime" in cond(p.status, "Invalid")["message"]
    assert p.status["stableVersion"] == "bot-v1"
    assert p.status["phase"] == "Available"  # v1 still serves


def test_switching_version_replaces_the_workload_and_keeps_the_token() -> None:
    agent, children = converge(agent_body())
    old_secret = next(c for c in children if c["kind"] == "Secret")
    agent["spec"]["version"] = "bot-v2"
    v2 = ready(version_body("bot-v2", tools=[]), "bot-v2-config-def")
    p = plan(agent, v2, {}, children)
    applied = {o["kind"]: o for o in p.apply}
    assert applied["Deployment"]["metadata"]["name"] == "bot-bot-v2"
    assert applied["Secret"]["data"]["agent-token"] == old_secret["data"]["agent-token"]
    assert "tool-crm" not in applied["Secret"]["data"]
    assert p.delete == ()  # v1 serves until v2 is available: no gap
    assert p.status["stableVersion"] == "bot-v2"
    assert p.status["phase"] == "Progressing"
    agent, children = converge(agent, v2, {})
    assert sorted(c["metadata"]["name"] for c in children if c["kind"] in ("Deployment", "Secret")) == sorted(
        ["bot-bot-v2", applied["Secret"]["metadata"]["name"]])
    assert old_secret["metadata"]["name"] not in {c["metadata"]["name"] for c in children}


def test_the_old_version_keeps_serving_while_the_new_one_is_not_available() -> None:
    agent, children = converge(agent_body())
    agent["spec"]["version"] = "bot-v2"
    v2 = ready(version_body("bot-v2"), "bot-v2-config-def")
    first = plan(agent, v2, children=children)
    new_deployment = next(o for o in first.apply if o["kind"] == "Deployment")
    unavailable = as_live(new_deployment, observedGeneration=1, updatedReplicas=2, readyReplicas=1, replicas=2,
                          conditions=[{"type": "Available", "status": "False"}])
    p = plan(agent, v2, children=[*children, unavailable])
    assert p.delete == ()


@pytest.mark.parametrize(("change", "deleted"), [
    ({"replicas": 1}, ["PodDisruptionBudget"]),
    ({"permissions": []}, ["Role", "RoleBinding"]),
    ({"egress": None}, ["NetworkPolicy"]),
])
def test_removing_a_feature_deletes_its_children(change: dict[str, Any], deleted: list[str]) -> None:
    agent, children = converge(agent_body(
        permissions=[{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get"]}],
        egress=[{"cidr": "10.1.0.0/16"}],
    ))
    agent["spec"].update(change)
    if change.get("egress", "") is None:
        del agent["spec"]["egress"]
    p = plan(agent, children=children)
    assert sorted(o["kind"] for o in p.delete) == sorted(deleted)


def test_objects_not_made_by_alm_are_never_deleted() -> None:
    agent, children = converge(agent_body())
    stranger = as_live({"apiVersion": "v1", "kind": "ConfigMap",
                        "metadata": {"name": "x", "namespace": "team", "labels": {"alm.dev/agent": "bot"}}})
    assert plan(agent, children=[*children, stranger]).delete == ()


def test_pods_are_restricted_and_get_credentials_only_as_files() -> None:
    deployment = next(o for o in plan().apply if o["kind"] == "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["automountServiceAccountToken"] is False
    assert container["securityContext"] == {
        "allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True, "runAsNonRoot": True,
        "capabilities": {"drop": ["ALL"]}, "seccompProfile": {"type": "RuntimeDefault"},
    }
    assert all("valueFrom" not in e for e in container["env"])
    secret_volume = next(v for v in pod["volumes"] if v["name"] == "credentials")
    assert secret_volume["secret"]["secretName"].startswith("bot-credentials-")
    assert "alm.dev/config-hash" in deployment["spec"]["template"]["metadata"]["annotations"]


def test_a_credential_change_rolls_the_pods() -> None:
    def pod_hash(sources: Any) -> str:
        deployment = next(o for o in plan(sources=sources).apply if o["kind"] == "Deployment")
        return str(deployment["spec"]["template"]["metadata"]["annotations"]["alm.dev/config-hash"])

    assert pod_hash(SOURCES) != pod_hash({"bot-tools": {"crm-key": "b3RoZXI="}})


def test_credential_values_never_reach_status_or_events() -> None:
    for p in (plan(), plan(sources={"bot-tools": {"other": SECRET_B64}})):
        text = json.dumps(p.status) + json.dumps([e.message for e in p.events])
        assert SECRET_VALUE not in text and SECRET_B64 not in text


@pytest.mark.parametrize(("status", "phase", "reason"), [
    ({}, "Progressing", "RollingOut"),
    ({"observedGeneration": 1, "updatedReplicas": 2, "readyReplicas": 0, "replicas": 2,
      "conditions": [{"type": "Available", "status": "False", "message": "pods crash"}]},
     "Degraded", "DeploymentUnavailable"),
    (available_status(2), "Available", "Available"),
])
def test_phase_follows_the_deployment(status: dict[str, Any], phase: str, reason: str) -> None:
    agent, children = converge(agent_body())
    for child in children:
        if child["kind"] == "Deployment":
            child["status"] = status
    p = plan(agent, children=children)
    assert p.status["phase"] == phase
    assert cond(p.status, "Ready")["reason"] == reason


def test_scaled_to_zero_is_available() -> None:
    agent, _ = converge(agent_body(replicas=0))
    assert agent["status"]["phase"] == "Available"
    assert cond(agent["status"], "Ready")["reason"] == "ScaledToZero"


def test_a_retiring_agent_is_left_alone() -> None:
    agent, children = converge(agent_body())
    children = [c for c in children if c["kind"] != "Deployment"]  # scaled away by the retirement
    p = plan_agent(AgentObservations(agent, ready(version_body()), SOURCES, children,
                                     retirement={"metadata": {"name": "bye"}}), LATER, fixed_random)
    assert p.apply == () and p.delete == () and p.events == ()
    assert statuspatch.status_patch(agent["status"], p.status, AGENT_STATUS_KEYS) is None


def test_a_retired_agent_acknowledges_spec_changes_and_ignores_them() -> None:
    agent, _ = converge(agent_body())
    agent["status"]["phase"] = "Retired"
    agent["spec"]["replicas"] = 5
    agent["metadata"]["generation"] = 2
    p = plan_agent(AgentObservations(agent, ready(version_body()), SOURCES, []), LATER, fixed_random)
    assert p.apply == () and p.delete == ()
    assert p.status["phase"] == "Retired" and p.status["observedGeneration"] == 2
    assert cond(p.status, "Retired")["status"] == "True"
    assert [e.reason for e in p.events] == ["SpecIgnored"]
    agent["status"] = p.status
    again = plan_agent(AgentObservations(agent, ready(version_body()), SOURCES, []), LATER, fixed_random)
    assert again.events == () and again.status == p.status


def test_conditions_written_by_other_planners_survive() -> None:
    agent, children = converge(agent_body())
    budget_cond = {"type": "BudgetExceeded", "status": "False", "reason": "WithinBudget", "message": "ok",
                   "lastTransitionTime": NOW}
    agent["status"]["conditions"].append(budget_cond)
    p = plan(agent, children=children, now=LATER)
    assert budget_cond in p.status["conditions"]
    assert statuspatch.status_patch(agent["status"], p.status, AGENT_STATUS_KEYS) is None


@pytest.mark.parametrize(("on_exceeded", "replicas", "phase"), [("suspend", 0, "Suspended"), ("alert", 2, "Available")])
def test_over_budget_suspends_only_when_told(on_exceeded: str, replicas: int, phase: str) -> None:
    agent, children = converge(agent_body(budget={"tokensPerDay": 10, "onExceeded": on_exceeded}))
    agent["status"]["conditions"].append({"type": "BudgetExceeded", "status": "True", "reason": "Exceeded",
                                          "message": "over", "lastTransitionTime": NOW})
    agent, children = converge(agent)
    (deployment,) = [c for c in children if c["kind"] == "Deployment"]
    assert deployment["spec"]["replicas"] == replicas
    assert agent["status"]["phase"] == phase
    assert {c["kind"] for c in children} >= {"ServiceAccount", "Secret", "Service"}  # everything else kept


def test_a_version_switch_is_progressing_while_the_new_version_renders() -> None:
    agent, children = converge(agent_body())
    agent["spec"]["version"] = "bot-v2"
    agent["metadata"]["generation"] = 2
    p = plan(agent, version_body("bot-v2"), children=children)  # exists, not rendered yet
    assert p.status["phase"] == "Progressing"
    assert cond(p.status, "Ready")["reason"] == "VersionNotReady"
