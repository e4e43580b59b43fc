"""The retirement phase machine: every transition, idempotency, restarts, retries, the archive."""

from __future__ import annotations

import copy
import dataclasses
import datetime
import hashlib
import itertools
import json
from typing import Any

import pytest

from alm.core import archive, auditchain, retirement, retirementpass
from alm.core.retirementtypes import (
    CallWebhook,
    ConsumeRetry,
    Credential,
    MarkAgentRetired,
    Outcome,
    Result,
    RetirementObservations,
    RetirementPlan,
    RevokeRBAC,
    RevokeSecret,
    RevokeServiceAccount,
    ScaleToZero,
    StopTraffic,
    WriteArchive,
)
from alm.core.revocation import WebhookOutcome
from tests.unit.builders import SECRET_B64, SECRET_VALUE

T0 = "2026-11-24T12:00:00Z"
HOOK_URL = "https://hooks.example.com/revoke"
CREDENTIALS = (
    Credential("Secret", "bot-credentials-0a1b2c3d4e"),
    Credential("Secret", "bot-credentials-9f8e7d6c5b"),
    Credential("ServiceAccount", "bot"),
    Credential("Role", "bot"),
    Credential("RoleBinding", "bot"),
)


def at(seconds: float) -> str:
    moment = datetime.datetime(2026, 11, 24, 12, 0, 0, tzinfo=datetime.UTC) + datetime.timedelta(seconds=seconds)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def spec(grace: int = 30, *, webhook: bool = False, max_retries: int = 5, **revoke: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"agentRef": {"name": "bot"}, "reason": "replaced by bot-2",
                            "drain": {"gracePeriodSeconds": grace}, "revoke": dict(revoke)}
    if webhook:
        body["revoke"]["webhook"] = {"url": HOOK_URL, "hmacSecretRef": {"name": "hook", "key": "hmac"},
                                     "maxRetries": max_retries}
    return body


def agent_body(phase: str = "Available") -> dict[str, Any]:
    return {
        "apiVersion": "alm.dev/v1alpha1", "kind": "Agent",
        "metadata": {"name": "bot", "namespace": "team", "uid": "uid-bot"},
        "spec": {"version": "bot-v2", "replicas": 2},
        "status": {"phase": phase, "stableVersion": "bot-v2", "auditHead": "ab" * 32,
                   "kpis": {"bot-v2": {"successRate": 0.97}}, "cost": {"day": "2026-11-24", "tokens": 10, "usd": 0.5},
                   "history": [{"version": "bot-v1", "promotedAt": T0, "result": "Succeeded"}],
                   "kopf": {"progress": {}}},
    }


def obs(**overrides: Any) -> RetirementObservations:
    base: dict[str, Any] = {"name": "retire-bot", "namespace": "team", "uid": "uid-retire", "generation": 1,
                            "agent": agent_body(), "credentials": CREDENTIALS}
    base.update(overrides)
    return RetirementObservations(**base)


def status_in(phase: str, since: str = T0, *, revoked: list[dict[str, Any]] | None = None,
              attempts: dict[str, Any] | None = None, archive: dict[str, Any] | None = None,
              history: tuple[str, ...] = ()) -> dict[str, Any]:
    transitions = [{"phase": p, "at": T0} for p in ("Pending", *history)] + [{"phase": phase, "at": since}]
    status: dict[str, Any] = {"phase": phase, "transitions": transitions, "revoked": revoked or []}
    if attempts:
        status["attempts"] = attempts
    if archive:
        status["archive"] = archive
    return status


def recorded(result: str = Result.REVOKED, *, webhook: str | None = None) -> list[dict[str, Any]]:
    recs = [{"kind": c.kind, "name": c.name, "revokedAt": T0, "result": result} for c in CREDENTIALS]
    if webhook is not None:
        recs.append({"kind": "Webhook", "name": "hooks.example.com", "revokedAt": T0, "result": webhook})
    return recs


ARCHIVE = {"location": "configmap/bot-archive-0123456789", "sha256": "c" * 64, "sizeBytes": 10, "parts": 1}


def kinds(plan: RetirementPlan) -> list[str]:
    return [type(a).__name__ for a in plan.actions]


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


# --- The whole story, with a simulated world ---------------------------------------------------------


@dataclasses.dataclass
class World:
    """What the shell would see and do: actions change it, observations read it."""

    serving: bool = True
    replicas: int = 2
    ready: int = 2
    sticky_pods: bool = False  # pods that ignore SIGTERM
    credentials: set[Credential] = dataclasses.field(default_factory=lambda: set(CREDENTIALS))
    agent: dict[str, Any] | None = dataclasses.field(default_factory=agent_body)
    retry: bool = False
    answers: list[WebhookOutcome] = dataclasses.field(default_factory=list)  # then 200s
    archive_failures: list[str] = dataclasses.field(default_factory=list)  # then successes
    written: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)
    done: list[Any] = dataclasses.field(default_factory=list)

    def observe(self) -> RetirementObservations:
        if not self.sticky_pods and self.replicas == 0:
            self.ready = 0
        entries = [dict(auditchain.append([], at=T0, actor="alm-operator", action="created", subject="Agent/bot"))]
        return obs(serving=self.serving, replicas=self.replicas, ready_replicas=self.ready,
                   credentials=tuple(sorted(self.credentials, key=lambda c: (c.kind, c.name))),
                   agent=copy.deepcopy(self.agent), retry_requested=self.retry, audit=entries,
                   versions=[{"metadata": {"name": "bot-v2"}, "spec": {"instructions": "Be kind."}}])

    def run(self, action: Any) -> Outcome | None:
        self.done.append(action)
        if isinstance(action, StopTraffic):
            self.serving = False
        elif isinstance(action, ScaleToZero):
            self.replicas = 0
        elif isinstance(action, RevokeSecret | RevokeServiceAccount | RevokeRBAC):
            kind = getattr(action, "kind", "Secret" if isinstance(action, RevokeSecret) else "ServiceAccount")
            self.credentials.discard(Credential(kind, action.name))
        elif isinstance(action, CallWebhook):
            answer = self.answers.pop(0) if self.answers else WebhookOutcome(status_code=200)
            return Outcome.of_webhook(action, answer)
        elif isinstance(action, WriteArchive):
            if self.archive_failures:
                return Outcome(action, False, self.archive_failures.pop(0))
            for obj in action.objects:
                self.written[obj["metadata"]["name"]] = obj
            return Outcome(action, True, "Written")
        elif isinstance(action, MarkAgentRetired):
            assert self.agent is not None
            self.agent["status"]["phase"] = "Retired"
        elif isinstance(action, ConsumeRetry):
            self.retry = False
        return None


@dataclasses.dataclass
class Run:
    status: dict[str, Any] | None
    plans: list[RetirementPlan]
    times: list[str]
    world: World

    @property
    def actions(self) -> list[Any]:
        return [a for p in self.plans for a in p.actions]

    @property
    def waits(self) -> list[float | None]:
        return [p.requeue_after for p in self.plans]


def one_pass(body: dict[str, Any], status: dict[str, Any] | None, world: World, now: str) -> RetirementPlan:
    plan = retirement.plan(body, status, world.observe(), now)
    for action in plan.actions:
        outcome = world.run(action)
        if outcome is not None:
            plan = retirement.record_outcome(plan, outcome, now)
    return plan


def drive(body: dict[str, Any], world: World, *, status: dict[str, Any] | None = None, start: float = 0,
          crash: frozenset[int] = frozenset(), max_passes: int = 60) -> Run:
    """Pass after pass, each at now + the plan's requeue_after; a crashed pass acts but saves no status."""
    now, plans, times = start, [], []
    for index in range(max_passes):
        plan = one_pass(body, status, world, at(now))
        plans.append(plan)
        times.append(at(now))
        if index in crash:
            now += 1  # the operator restarts and looks again
            continue
        status = plan.status
        if plan.requeue_after is None:
            break
        now += plan.requeue_after
    return Run(status, plans, times, world)


def assert_retired_cleanly(run: Run) -> None:
    status = run.status
    assert status is not None and status["phase"] == "Retired", status and status.get("message")
    assert not run.world.credentials
    assert not run.world.serving and run.world.replicas == 0
    assert run.world.agent is not None and run.world.agent["status"]["phase"] == "Retired"
    k8s = {(r["kind"], r["name"]): r["result"] for r in status["revoked"] if r["kind"] != "Webhook"}
    assert set(k8s) == {(c.kind, c.name) for c in CREDENTIALS}
    assert set(k8s.values()) <= {Result.REVOKED, Result.ALREADY_GONE}
    phases = [t["phase"] for t in status["transitions"]]
    assert phases == ["Pending", "Draining", "Revoking", "Archiving", "Retired"]
    # A restart right after a write may leave an earlier complete archive too; status names the one.
    name = status["archive"]["location"].split("/")[-1]
    archived = archive.reassemble([o for n, o in run.world.written.items() if n.startswith(name)])
    assert hashlib.sha256(archived).hexdigest() == status["archive"]["sha256"]
    assert len(archived) == status["archive"]["sizeBytes"]


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


# --- Failures and retries --------------------------------------------------------------------------------


def test_a_webhook_failing_then_recovering() -> None:
    world = World(answers=[WebhookOutcome(status_code=503), WebhookOutcome(error="timed out after 10s")])
    run = drive(spec(0, webhook=True), world)
    assert_retired_cleanly(run)
    calls = [a for a in run.actions if isinstance(a, CallWebhook)]
    assert [c.attempt for c in calls] == [1, 2, 3]
    assert len({c.delivery for c in calls}) == 1
    call_times = [t for t, p in zip(run.times, run.plans, strict=True) if any(isinstance(a, CallWebhook)
                                                                              for a in p.actions)]
    gaps = [datetime.datetime.fromisoformat(b) - datetime.datetime.fromisoformat(a)
            for a, b in itertools.pairwise(call_times)]
    assert [g.total_seconds() for g in gaps] == [1.0, 2.0]
    assert run.status is not None and run.status["attempts"]["webhook"]["count"] == 3
    answers = [a.details["answer"] for p in run.plans for a in p.audit if a.action == "revocationWebhookCalled"]
    assert answers == ["HTTP 503", "timed out after 10s", "HTTP 200"]
    warnings = [e for p in run.plans for e in p.events if e.reason == "WebhookRetrying"]
    assert len(warnings) == 2 and all(e.type == "Warning" for e in warnings)


@pytest.mark.parametrize(("answers", "max_retries", "calls"), [
    ([503] * 10, 2, 3),
    ([401], 5, 1),
    ([503, 404], 5, 2),
    ([503], 0, 1),
])
def test_a_webhook_that_gives_up_fails_with_every_credential_revoked(
    answers: list[int], max_retries: int, calls: int,
) -> None:
    world = World(answers=[WebhookOutcome(status_code=code) for code in answers])
    run = drive(spec(0, webhook=True, max_retries=max_retries), world)
    status = run.status
    assert status is not None and status["phase"] == "Failed"
    assert len([a for a in run.actions if isinstance(a, CallWebhook)]) == calls
    assert not world.credentials
    assert {r["result"] for r in status["revoked"] if r["kind"] != "Webhook"} <= {Result.REVOKED}
    assert status["revoked"][-1]["result"] == Result.FAILED
    ready = next(c for c in status["conditions"] if c["type"] == "Ready")
    assert ready["reason"] == "WebhookFailed" and "alm.dev/retry" in status["message"]
    assert [t["phase"] for t in status["transitions"]][-1] == "Failed"
    assert run.waits[-1] is None
    assert "archive" not in status


def test_a_human_retry_after_the_webhook_failed() -> None:
    world = World(answers=[WebhookOutcome(status_code=401)])
    run = drive(spec(0, webhook=True), world)
    assert run.status is not None and run.status["phase"] == "Failed"
    world.retry = True  # kubectl annotate agentretirement retire-bot alm.dev/retry=1; endpoint fixed
    resumed = drive(spec(0, webhook=True), world, status=run.status, start=3600)
    status = resumed.status
    assert status is not None and status["phase"] == "Retired"
    phases = [t["phase"] for t in status["transitions"]]
    assert phases == ["Pending", "Draining", "Revoking", "Failed", "Revoking", "Archiving", "Retired"]
    assert not world.retry and sum(isinstance(a, ConsumeRetry) for a in resumed.actions) == 1
    overrides = [a for p in resumed.plans for a in p.audit if a.action == "manualOverride"]
    assert [o.details["command"] for o in overrides] == ["retry"]
    assert status["revoked"][-1]["result"] == Result.REVOKED


def test_archive_failures_retry_then_fail_with_credentials_already_revoked() -> None:
    world = World(archive_failures=["HTTP 500"] * retirement.ARCHIVE_ATTEMPTS)
    run = drive(spec(0), world)
    status = run.status
    assert status is not None and status["phase"] == "Failed"
    assert not world.credentials
    assert sum(isinstance(a, WriteArchive) for a in run.actions) == retirement.ARCHIVE_ATTEMPTS
    ready = next(c for c in status["conditions"] if c["type"] == "Ready")
    assert ready["reason"] == "ArchiveFailed"
    world.retry = True
    resumed = drive(spec(0), world, status=status, start=3600)
    assert resumed.status is not None and resumed.status["phase"] == "Retired"
    assert resumed.status["archive"]["sha256"]


def test_an_archive_failing_once_then_written() -> None:
    run = drive(spec(0), World(archive_failures=["Conflict"]))
    assert_retired_cleanly(run)
    assert run.status is not None and run.status["attempts"]["archive"]["count"] == 2


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
