"""Builders shared by the retirement phase-machine tests: specs, observations, statuses, and a
simulated world the plans act on (``World``, ``drive``)."""

from __future__ import annotations

import copy
import dataclasses
import datetime
import hashlib
from typing import Any

from alm.core import archive, auditchain, retirement
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
