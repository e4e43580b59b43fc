"""The pure helpers of the retirement controller (alm.handlers.retirementacting, retirementobserving): what it folds
into a plan."""

from __future__ import annotations

from typing import Any

import pytest

from alm.core import retirement, retirementtypes
from alm.core.retirementtypes import Credential, RetirementObservations, RevokeSecret
from alm.handlers import retirementacting as acting
from alm.handlers import retirementobserving as observing
from alm.metrics import operator as metrics

T0 = "2026-11-24T12:00:00.000Z"
SPEC = {"agentRef": {"name": "bot"}, "reason": "replaced", "drain": {"gracePeriodSeconds": 0}}
AGENT = {"metadata": {"name": "bot", "namespace": "team", "uid": "uid-bot",
                      "creationTimestamp": "2026-11-24T11:00:00Z"}, "status": {"phase": "Available"}}


def revoking_plan() -> retirementtypes.RetirementPlan:
    """A pass that deletes the recorded (Pending) Secret."""
    status = {"phase": "Revoking", "transitions": [{"phase": "Revoking", "at": T0}],
              "revoked": [{"kind": "Secret", "name": "bot-credentials-1", "revokedAt": T0, "result": "Pending"}]}
    obs = RetirementObservations(name="retire-bot", namespace="team", agent=AGENT,
                                 credentials=(Credential("Secret", "bot-credentials-1"),))
    return retirement.plan(SPEC, status, obs, T0)


def test_a_delete_that_finds_nothing_is_recorded_as_already_gone_everywhere() -> None:
    p = revoking_plan()
    assert RevokeSecret("bot-credentials-1") in p.actions
    gone = acting._already_gone(p, "Secret", "bot-credentials-1")
    assert [r["result"] for r in gone.status["revoked"]] == ["AlreadyGone"]
    assert [i.details["result"] for i in gone.audit if i.action == "credentialRevoked"] == ["AlreadyGone"]
    assert "Secret bot-credentials-1: AlreadyGone" in [e.message for e in gone.events]
    assert p.status["revoked"][0]["result"] == "Revoked", "the plan itself is not changed"


def test_revocation_latency_is_timed_from_the_revoking_transition() -> None:
    p = revoking_plan()
    assert acting.revocation_started(p.status) == T0

    def sample(suffix: str) -> float:
        return metrics.REGISTRY.get_sample_value(f"alm_operator_revocation_seconds_{suffix}", {"kind": "Secret"}) or 0.0

    count, total = sample("count"), sample("sum")
    acting._observe_revocation(p, "Secret")
    assert sample("count") == count + 1
    elapsed = sample("sum") - total
    assert elapsed > 0, "T0 is in the past"
    assert acting.revocation_started({"transitions": [{"phase": "Draining", "at": T0}]}) is None


@pytest.mark.parametrize(("created", "transitions", "successor"), [
    ("2026-11-24T11:00:00Z", [{"phase": "Draining", "at": T0}], False),  # the retired Agent
    ("2026-11-24T12:00:01Z", [{"phase": "Draining", "at": T0}], True),  # created after the retirement began
    ("2026-11-24T12:00:01Z", [{"phase": "Pending", "at": T0}], False),  # not started: any Agent is the one
    ("2026-11-24T12:00:01Z", [], False),
])
def test_only_the_agent_the_retirement_started_with_is_retired(
    created: str, transitions: list[dict[str, Any]], successor: bool
) -> None:
    agent = {"metadata": {"name": "bot", "creationTimestamp": created}}
    assert observing._successor(agent, {"status": {"transitions": transitions}}) is successor


def test_times_have_milliseconds_so_waits_are_not_cut_short() -> None:
    now = observing.now_ms()
    assert len(now) == len("2026-11-24T12:00:00.000Z") and now.endswith("Z") and now[19] == "."
