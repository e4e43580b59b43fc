"""Retirement failures and retries: the revocation webhook, archive writes, a human's alm.dev/retry."""

from __future__ import annotations

import datetime
import itertools

import pytest

from alm.core import retirement
from alm.core.retirementtypes import (
    CallWebhook,
    ConsumeRetry,
    Result,
    WriteArchive,
)
from alm.core.revocation import WebhookOutcome
from tests.unit.retirement_builders import (
    World,
    assert_retired_cleanly,
    drive,
    spec,
)

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
