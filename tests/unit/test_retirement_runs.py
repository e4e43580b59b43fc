"""Whole retirements in a simulated world: the full story, idempotency, restarts, the archive it writes."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from alm.core import archive, retirement, retirementpass
from alm.core.retirementtypes import (
    CallWebhook,
    Result,
    RevokeRBAC,
    RevokeSecret,
    RevokeServiceAccount,
    ScaleToZero,
    WriteArchive,
)
from tests.unit.builders import SECRET_B64, SECRET_VALUE
from tests.unit.retirement_builders import (
    ARCHIVE,
    CREDENTIALS,
    T0,
    World,
    agent_body,
    assert_retired_cleanly,
    at,
    drive,
    obs,
    one_pass,
    recorded,
    spec,
    status_in,
)

# --- The whole story, with a simulated world ---------------------------------------------------------


@pytest.mark.parametrize(("grace", "webhook"), [(30, False), (30, True), (0, False), (0, True), (1, True)])
def test_a_full_retirement(grace: int, webhook: bool) -> None:
    run = drive(spec(grace, webhook=webhook), World())
    assert_retired_cleanly(run)
    hooks = [a for a in run.actions if isinstance(a, CallWebhook)]
    assert len(hooks) == (1 if webhook else 0)
    if webhook:
        assert run.status is not None
        assert run.status["revoked"][-1] == {"kind": "Webhook", "name": "hooks.example.com",
                                             "revokedAt": run.status["revoked"][-1]["revokedAt"], "result": "Revoked"}
    assert run.waits[-1] is None


def test_credentials_go_within_a_few_passes_with_grace_zero() -> None:
    """The benchmark's path: creation to the last credential gone, without waiting on anything."""
    run = drive(spec(0), World())
    last_revoke = max(i for i, p in enumerate(run.plans)
                      if any(isinstance(a, RevokeSecret | RevokeServiceAccount | RevokeRBAC) for a in p.actions))
    assert last_revoke <= 1
    assert all(w == 0.0 for w in run.waits[:last_revoke])


def test_the_grace_period_is_waited_out_by_requeueing() -> None:
    run = drive(spec(30), World())
    scaled = next(i for i, p in enumerate(run.plans) if any(isinstance(a, ScaleToZero) for a in p.actions))
    assert run.times[scaled] == at(30)
    assert run.waits[0] == 30.0


def test_pods_that_will_not_stop_do_not_hold_the_credentials() -> None:
    run = drive(spec(30), World(sticky_pods=True))
    assert run.status is not None and run.status["phase"] == "Retired"
    revoking = next(t["at"] for t in run.status["transitions"] if t["phase"] == "Revoking")
    assert revoking == at(60)


def test_every_audit_record_and_event_is_emitted_once() -> None:
    run = drive(spec(0, webhook=True), World())
    records = [(a.action, json.dumps(a.details, sort_keys=True)) for p in run.plans for a in p.audit]
    assert len(records) == len(set(records))
    actions = [r[0] for r in records]
    for expected in ("retirementDraining", "retirementRevoking", "retirementArchiving", "retired",
                     "revocationWebhookCalled"):
        assert actions.count(expected) == 1
    assert actions.count("credentialRevoked") == len(CREDENTIALS) + 1
    assert all(a.subject == "AgentRetirement/retire-bot" for p in run.plans for a in p.audit)
    retired = next(a for p in run.plans for a in p.audit if a.action == "retired")
    assert run.status is not None and retired.details["archive"] == run.status["archive"]


# --- Idempotency and stable output --------------------------------------------------------------------


@pytest.mark.parametrize(("grace", "webhook"), [(30, True), (0, False)])
def test_a_plan_applied_twice_issues_nothing_new(grace: int, webhook: bool) -> None:
    """After each pass's actions took effect, planning again at the same moment repeats none of them."""
    body, world, status, now = spec(grace, webhook=webhook), World(), None, 0.0
    for _ in range(40):
        plan = one_pass(body, status, world, at(now))
        status = plan.status
        again = retirement.plan(body, status, world.observe(), at(now))
        assert not [a for a in again.actions if a in plan.actions], (status["phase"], again.actions)
        if plan.requeue_after is None:
            break
        now += plan.requeue_after
    assert status is not None and status["phase"] == "Retired"


def test_same_inputs_give_byte_identical_status() -> None:
    body, world, status, now = spec(30, webhook=True), World(), None, 0.0
    for _ in range(40):
        observed = world.observe()
        first = retirement.plan(body, status, observed, at(now))
        second = retirement.plan(copy.deepcopy(body), copy.deepcopy(status), observed, at(now))
        assert json.dumps(first.status, sort_keys=True) == json.dumps(second.status, sort_keys=True)
        assert first.actions == second.actions
        status = one_pass(body, status, world, at(now)).status
        if first.requeue_after is None:
            break
        now += first.requeue_after or 0


@pytest.mark.parametrize("phase", ["Draining", "Retired", "Failed"])
def test_a_resync_that_finds_nothing_new_rewrites_no_timestamp(phase: str) -> None:
    statuses = {
        "Draining": (status_in("Draining"), obs(ready_replicas=1)),
        "Retired": (status_in("Retired", revoked=recorded(), archive=ARCHIVE),
                    obs(credentials=(), agent=agent_body("Retired"))),
        "Failed": (status_in("Failed", revoked=recorded(webhook=Result.FAILED), history=("Revoking",)),
                   obs(credentials=())),
    }
    status, observed = statuses[phase]
    first = retirement.plan(spec(30, webhook=True), status, observed, at(40)).status
    later = retirement.plan(spec(30, webhook=True), first, observed, at(50)).status
    assert later == first


# --- Restarts -------------------------------------------------------------------------------------------


def _happy_passes(body: dict[str, Any]) -> int:
    return len(drive(body, World()).plans)


@pytest.mark.parametrize(("grace", "webhook"), [(30, True), (0, True), (0, False)])
def test_a_restart_after_any_pass_resumes_and_completes(grace: int, webhook: bool) -> None:
    """The operator is killed after acting but before writing status, at every pass in turn."""
    body = spec(grace, webhook=webhook)
    for crash in range(_happy_passes(body)):
        run = drive(body, World(), crash=frozenset({crash}))
        assert_retired_cleanly(run)


def test_killed_between_revoking_and_archiving() -> None:
    """The credentials were deleted but the status still says Pending for them: nothing is lost."""
    body, world = spec(0), World()
    status = one_pass(body, None, world, T0).status  # drained at once (grace 0), credentials written ahead
    assert status["phase"] == "Revoking" and {r["result"] for r in status["revoked"]} == {Result.PENDING}
    now = 0.0
    lost = one_pass(body, status, world, at(now))  # deletes everything, then the process dies
    assert lost.status["phase"] == "Revoking" and not world.credentials
    run = drive(body, world, status=status, start=now + 1)
    assert_retired_cleanly(run)
    results = {r["result"] for r in run.status["revoked"]} if run.status else set()
    assert results == {Result.ALREADY_GONE}


def test_restarted_twice_in_a_row_still_completes() -> None:
    body = spec(0, webhook=True)
    run = drive(body, World(), crash=frozenset({1, 2}))
    assert_retired_cleanly(run)


# --- The archive it writes ------------------------------------------------------------------------


def test_archive_plan_names_where_it_went() -> None:
    status = status_in("Archiving", revoked=recorded())
    for target, prefix in [("configMap", "configmap/bot-archive-"), ("secret", "secret/bot-archive-"),
                           ("pvc", "pvc/vault/bot/")]:
        body = spec() | {"archive": {"to": target, **({"claimName": "vault"} if target == "pvc" else {})}}
        planned = retirement.plan(body, status, obs(credentials=()), T0)
        [write] = planned.actions
        assert planned.requeue_after == (retirement.JOB_POLL if target == "pvc" else retirementpass.CONFIRM)
        assert isinstance(write, WriteArchive) and write.location.startswith(prefix)
        assert write.target == target and write.bundle.sha256 in json.dumps(write.objects[-1]["metadata"])
        if target == "pvc":
            assert write.location == f"pvc/vault/bot/{write.bundle.sha256}" and write.claim_name == "vault"
            assert all(o["kind"] == "ConfigMap" for o in write.objects), "staging ConfigMaps"
            assert write.deadline_seconds == 600, "the API's default bound on the copy Job"


def test_the_copy_job_deadline_comes_from_the_spec() -> None:
    body = spec() | {"archive": {"to": "pvc", "claimName": "vault", "jobDeadlineSeconds": 45}}
    [write] = retirement.plan(body, status_in("Archiving", revoked=recorded()), obs(credentials=()), T0).actions
    assert isinstance(write, WriteArchive) and write.deadline_seconds == 45
    job = archive.pvc_job(write.objects, agent="bot", namespace="team", claim="vault",
                          deadline_seconds=write.deadline_seconds)
    assert job["spec"]["activeDeadlineSeconds"] == 45


def test_no_credential_value_leaks_through_a_retirement() -> None:
    world = World()
    assert world.agent is not None
    world.agent["status"]["note"] = "rotated"
    run = drive(spec(0, webhook=True), world)
    everything = json.dumps(run.status) + repr([p.events for p in run.plans]) + repr([p.audit for p in run.plans])
    for secret in (SECRET_VALUE, SECRET_B64):
        assert secret not in everything


def test_status_holds_plain_json() -> None:
    """Phases are StrEnum members in code; status must carry plain strings (what the API server returns)."""
    run = drive(spec(0, webhook=True), World())
    assert run.status is not None
    assert json.loads(json.dumps(run.status)) == run.status
    assert all(type(t["phase"]) is str for t in run.status["transitions"])
    assert type(run.status["phase"]) is str
