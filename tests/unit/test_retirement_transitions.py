"""The retirement phase machine, one pass at a time: every transition, what is recorded, invalid specs."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import pytest

from alm.core import retirement
from alm.core.retirementtypes import (
    CallWebhook,
    Result,
    RetirementObservations,
    RevokeRBAC,
    RevokeSecret,
    RevokeServiceAccount,
)
from tests.unit.builders import SECRET_VALUE
from tests.unit.retirement_builders import (
    ARCHIVE,
    CREDENTIALS,
    HOOK_URL,
    T0,
    agent_body,
    at,
    kinds,
    obs,
    recorded,
    spec,
    status_in,
)

# --- Every transition, one pass each ----------------------------------------------------------------


@dataclasses.dataclass
class Case:
    spec: dict[str, Any]
    status: dict[str, Any] | None
    obs: RetirementObservations
    now: str
    phase: str
    actions: list[str]
    requeue: float | None


CASES = {
    "pending, agent missing: wait for it": Case(
        spec(), None, obs(agent=None), T0, "Pending", [], 30.0),
    "pending -> draining: stop traffic, give the grace period": Case(
        spec(30), None, obs(serving=True, replicas=2, ready_replicas=2), T0, "Draining", ["StopTraffic"], 30.0),
    "pending -> draining -> revoking at once with grace 0": Case(
        spec(0), None, obs(serving=True, replicas=2, ready_replicas=2), T0, "Revoking",
        ["StopTraffic", "ScaleToZero"], 0.0),
    "draining within the grace period: wait the rest": Case(
        spec(30), status_in("Draining"), obs(), at(10), "Draining", [], 20.0),
    "draining, still routed: stop traffic again": Case(
        spec(30), status_in("Draining"), obs(serving=True), at(10), "Draining", ["StopTraffic"], 20.0),
    "draining, grace over: scale to zero": Case(
        spec(30), status_in("Draining"), obs(replicas=2, ready_replicas=2), at(30), "Draining", ["ScaleToZero"], 5.0),
    "draining, pods stopping: poll": Case(
        spec(30), status_in("Draining"), obs(ready_replicas=1), at(45), "Draining", [], 5.0),
    "draining, poll never overshoots the deadline": Case(
        spec(30), status_in("Draining"), obs(ready_replicas=1), at(58), "Draining", [], 2.0),
    "draining -> revoking when the pods are gone": Case(
        spec(30), status_in("Draining"), obs(), at(31), "Revoking", [], 0.0),
    "draining -> revoking at twice the grace, pods or not": Case(
        spec(30), status_in("Draining"), obs(replicas=1, ready_replicas=1), at(60), "Revoking", ["ScaleToZero"], 0.0),
    "revoking: credentials found are written ahead, not yet deleted": Case(
        spec(), status_in("Revoking"), obs(), T0, "Revoking", [], 0.0),
    "revoking: recorded credentials are deleted, access first": Case(
        spec(), status_in("Revoking", revoked=recorded(Result.PENDING)), obs(), T0, "Revoking",
        ["RevokeRBAC", "RevokeRBAC", "RevokeServiceAccount", "RevokeSecret", "RevokeSecret"], 1.0),
    "revoking: deletions not visible yet: confirm soon": Case(
        spec(), status_in("Revoking", revoked=recorded()), obs(credentials=CREDENTIALS[:1]), T0, "Revoking",
        ["RevokeSecret"], 1.0),
    "revoking -> archiving once all are gone": Case(
        spec(), status_in("Revoking", revoked=recorded()), obs(credentials=()), T0, "Archiving", ["WriteArchive"], 1.0),
    "revoking -> archiving when recorded ones vanished (restart)": Case(
        spec(), status_in("Revoking", revoked=recorded(Result.PENDING)), obs(credentials=()), T0, "Archiving",
        ["WriteArchive"], 1.0),
    "revoking: the webhook is written ahead": Case(
        spec(webhook=True), status_in("Revoking", revoked=recorded()), obs(credentials=()), T0, "Revoking", [], 0.0),
    "revoking: first webhook call": Case(
        spec(webhook=True), status_in("Revoking", revoked=recorded(webhook=Result.PENDING)), obs(credentials=()), T0,
        "Revoking", ["CallWebhook"], 1.0),
    "revoking: webhook backoff not over": Case(
        spec(webhook=True), status_in("Revoking", revoked=recorded(webhook=Result.PENDING),
                                      attempts={"webhook": {"count": 3, "lastAt": at(1), "lastResult": "HTTP 503"}}),
        obs(credentials=()), at(2), "Revoking", [], 3.0),
    "revoking: webhook backoff over": Case(
        spec(webhook=True), status_in("Revoking", revoked=recorded(webhook=Result.PENDING),
                                      attempts={"webhook": {"count": 3, "lastAt": at(1), "lastResult": "HTTP 503"}}),
        obs(credentials=()), at(5), "Revoking", ["CallWebhook"], 1.0),
    "revoking -> archiving after the webhook answered": Case(
        spec(webhook=True), status_in("Revoking", revoked=recorded(webhook=Result.REVOKED)), obs(credentials=()), T0,
        "Archiving", ["WriteArchive"], 1.0),
    "revoking -> failed when the webhook is out of retries": Case(
        spec(webhook=True, max_retries=2),
        status_in("Revoking", revoked=recorded(webhook=Result.PENDING),
                  attempts={"webhook": {"count": 3, "lastAt": T0, "lastResult": "HTTP 503", "retryable": True}}),
        obs(credentials=()), at(60), "Failed", [], None),
    "revoking -> failed when the webhook refuses": Case(
        spec(webhook=True),
        status_in("Revoking", revoked=recorded(webhook=Result.PENDING),
                  attempts={"webhook": {"count": 1, "lastAt": T0, "lastResult": "HTTP 401", "retryable": False}}),
        obs(credentials=()), T0, "Failed", [], None),
    "revoking: a failed webhook waits for the Kubernetes credentials": Case(
        spec(webhook=True), status_in("Revoking", revoked=recorded(webhook=Result.FAILED)),
        obs(credentials=CREDENTIALS[2:3]), T0, "Revoking", ["RevokeServiceAccount"], 1.0),
    "revoking: spec.revoke flags keep what they exclude": Case(
        spec(secrets=False, rbac=False), status_in("Revoking"), obs(), T0, "Revoking", [], 0.0),
    "archiving: write the archive": Case(
        spec(), status_in("Archiving", revoked=recorded()), obs(credentials=()), T0, "Archiving",
        ["WriteArchive"], 1.0),
    "archiving: backoff after a failed write": Case(
        spec(), status_in("Archiving", revoked=recorded(),
                          attempts={"archive": {"count": 2, "lastAt": T0, "lastResult": "Forbidden"}}),
        obs(credentials=()), at(1), "Archiving", [], 1.0),
    "archiving -> failed after the last attempt": Case(
        spec(), status_in("Archiving", revoked=recorded(),
                          attempts={"archive": {"count": 5, "lastAt": T0, "lastResult": "HTTP 500"}}),
        obs(credentials=()), at(60), "Failed", [], None),
    "archiving -> retired when written: mark the Agent": Case(
        spec(), status_in("Archiving", revoked=recorded(), archive=ARCHIVE), obs(credentials=()), T0, "Retired",
        ["MarkAgentRetired"], None),
    "retired: the Agent not marked yet": Case(
        spec(), status_in("Retired", revoked=recorded(), archive=ARCHIVE), obs(credentials=()), T0, "Retired",
        ["MarkAgentRetired"], None),
    "retired: nothing left to do": Case(
        spec(), status_in("Retired", revoked=recorded(), archive=ARCHIVE),
        obs(credentials=(), agent=agent_body("Retired")), at(3600), "Retired", [], None),
    "retired: an Agent deleted since needs no mark": Case(
        spec(), status_in("Retired", revoked=recorded(), archive=ARCHIVE), obs(credentials=(), agent=None), T0,
        "Retired", [], None),
    "retired: a credential that came back is deleted again": Case(
        spec(), status_in("Retired", revoked=recorded(), archive=ARCHIVE),
        obs(credentials=CREDENTIALS[:1], agent=agent_body("Retired")), T0, "Retired", ["RevokeSecret"], 1.0),
    "failed: waits for a human": Case(
        spec(webhook=True), status_in("Failed", revoked=recorded(webhook=Result.FAILED), history=("Revoking",)),
        obs(credentials=()), at(3600), "Failed", [], None),
    "failed -> revoking on alm.dev/retry: call the webhook again": Case(
        spec(webhook=True),
        status_in("Failed", revoked=recorded(webhook=Result.FAILED), history=("Revoking",),
                  attempts={"webhook": {"count": 6, "lastAt": T0, "lastResult": "HTTP 503"}}),
        obs(credentials=(), retry_requested=True), at(3600), "Revoking", ["ConsumeRetry", "CallWebhook"], 1.0),
    "failed -> archiving on alm.dev/retry: write again": Case(
        spec(), status_in("Failed", revoked=recorded(), history=("Revoking", "Archiving"),
                          attempts={"archive": {"count": 5, "lastAt": T0, "lastResult": "HTTP 500"}}),
        obs(credentials=(), retry_requested=True), at(3600), "Archiving", ["ConsumeRetry", "WriteArchive"], 1.0),
}


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_transition(case: Case) -> None:
    plan = retirement.plan(case.spec, case.status, case.obs, case.now)
    assert plan.status["phase"] == case.phase, plan.status.get("message")
    assert kinds(plan) == case.actions
    assert plan.requeue_after == case.requeue
    before = (case.status or {}).get("transitions", [])
    assert plan.status["transitions"][:len(before)] == before  # history is never rewritten
    assert plan.status["transitions"][-1]["phase"] == case.phase
    assert plan.status["message"]
    ready = next(c for c in plan.status["conditions"] if c["type"] == "Ready")
    assert ready["status"] == ("True" if case.phase == "Retired" else "False")


def test_revocations_are_recorded_with_their_result() -> None:
    status = status_in("Revoking", revoked=recorded(Result.PENDING))
    plan = retirement.plan(spec(), status, obs(credentials=CREDENTIALS[1:]), at(5))
    results = {(r["kind"], r["name"]): (r["result"], r["revokedAt"]) for r in plan.status["revoked"]}
    assert results[("Secret", "bot-credentials-0a1b2c3d4e")] == (Result.ALREADY_GONE, at(5))
    assert results[("ServiceAccount", "bot")] == (Result.REVOKED, at(5))
    assert plan.actions == (RevokeRBAC("RoleBinding", "bot"), RevokeRBAC("Role", "bot"), RevokeServiceAccount("bot"),
                            RevokeSecret("bot-credentials-9f8e7d6c5b"))
    assert [a.details["result"] for a in plan.audit if a.action == "credentialRevoked"].count("Revoked") == 4


def test_excluded_credentials_are_listed_as_skipped_and_never_block() -> None:
    plan = retirement.plan(spec(secrets=False), status_in("Revoking"), obs(), T0)
    results = {r["name"]: r["result"] for r in plan.status["revoked"] if r["kind"] == "Secret"}
    assert set(results.values()) == {Result.SKIPPED}
    again = retirement.plan(spec(secrets=False), plan.status, obs(), T0)
    assert not any(isinstance(a, RevokeSecret) for a in again.actions)
    done = retirement.plan(spec(secrets=False), again.status, obs(credentials=CREDENTIALS[:2]), T0)
    assert done.status["phase"] == "Archiving"


def test_the_draining_deadline_is_counted_from_the_recorded_transition() -> None:
    status = status_in("Draining", since=at(100))
    assert retirement.plan(spec(30), status, obs(replicas=2, ready_replicas=2), at(110)).requeue_after == 20.0
    assert kinds(retirement.plan(spec(30), status, obs(replicas=2, ready_replicas=2), at(130))) == ["ScaleToZero"]


def test_webhook_call_carries_a_signed_body_of_identifiers() -> None:
    status = status_in("Revoking", revoked=recorded(webhook=Result.PENDING))
    [call] = retirement.plan(spec(webhook=True), status, obs(credentials=()), T0).actions
    assert isinstance(call, CallWebhook)
    assert (call.attempt, call.max_attempts, call.url, call.secret_name, call.secret_key) == (
        1, 6, HOOK_URL, "hook", "hmac")
    body = json.loads(call.body)
    assert body["agent"] == "bot" and body["retirement"] == "retire-bot" and body["delivery"] == call.delivery
    assert {c["kind"] for c in body["credentials"]} == {"Secret", "ServiceAccount", "Role", "RoleBinding"}


def test_the_webhook_host_only_reaches_status() -> None:
    hook_spec = spec(webhook=True)
    hook_spec["revoke"]["webhook"]["url"] = f"https://hooks.example.com/revoke?token={SECRET_VALUE}"
    plan = retirement.plan(hook_spec, status_in("Revoking", revoked=recorded()), obs(credentials=()), T0)
    assert plan.status["revoked"][-1]["name"] == "hooks.example.com"
    assert SECRET_VALUE not in json.dumps(plan.status) + repr(plan.events) + repr(plan.audit)


def test_an_invalid_spec_changes_nothing_and_says_what_to_fix() -> None:
    bad = {"agentRef": {"name": "bot"}, "reason": ""}
    plan = retirement.plan(bad, None, obs(), T0)
    assert plan.actions == () and plan.requeue_after is None
    assert plan.status["phase"] == "Pending" and "reason" in plan.status["message"]
    invalid = next(c for c in plan.status["conditions"] if c["type"] == "Invalid")
    assert invalid["status"] == "True"
    assert [e.reason for e in plan.events] == ["InvalidSpec"]
    assert retirement.plan(bad, plan.status, obs(), at(10)).events == ()  # said once


def test_an_unknown_phase_is_left_alone() -> None:
    plan = retirement.plan(spec(), {"phase": "Exploding", "transitions": [{"phase": "Exploding", "at": T0}]}, obs(), T0)
    assert plan.actions == () and plan.status["phase"] == "Exploding"
