"""``kubectl alm``'s pure views: selection helpers, and every human view against a snapshot file.

Snapshots live in tests/data/kubectl/<name>.txt. After an intended change of a view, rewrite
them with ``ALM_UPDATE_SNAPSHOTS=1 pytest tests/unit/test_kubectl_views.py`` and review the diff.
"""

from __future__ import annotations

import os
import pathlib
from collections.abc import Callable
from typing import Any

import pytest

from alm.cli import kubectl_agent_views as agent_views
from alm.cli import kubectl_audit_view as audit_view
from alm.cli import kubectl_objects as objects
from alm.cli import kubectl_retirement_view as retirement_view
from alm.cli import kubectl_status_view as status_view
from alm.core import auditchain

SNAPSHOTS = pathlib.Path(__file__).resolve().parents[1] / "data" / "kubectl"
TODAY = "2026-01-13"


def agent(name: str = "bot", **status: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "phase": "Progressing", "stableVersion": "bot-v2", "canaryVersion": "bot-v3", "canaryWeight": 20,
        "conditions": [
            {"type": "Ready", "status": "True", "reason": "Available", "message": "2/2 replicas ready"},
            {"type": "BudgetExceeded", "status": "True", "reason": "OverBudget",
             "message": "$2.40 of $2.00 used today; scaled to zero until tomorrow"},
        ],
        "kpis": {"bot-v2": {"successRate": 0.9731, "latencySeconds": 1.25}},
        "cost": {"day": TODAY, "tokens": 120500, "usd": 2.4},
        "history": [
            {"version": "bot-v1", "promotedAt": "2026-01-10T09:00:00Z", "rollout": "bot-bot-v1", "result": "Succeeded"},
            {"version": "bot-v2", "promotedAt": "2026-01-12T09:00:00Z", "rollout": "bot-bot-v2", "result": "Succeeded"},
            {"version": "bot-v3", "promotedAt": "2026-01-12T12:00:00Z", "rollout": "bot-bot-v3",
             "result": "RolledBack"},
        ],
    }
    base.update(status)
    return {"metadata": {"name": name, "namespace": "team"},
            "spec": {"version": "bot-v3", "budget": {"tokensPerDay": 200000, "usdPerDay": 2.0,
                                                     "onExceeded": "suspend"}},
            "status": base}


STEPS = [{"setWeight": 20}, {"pause": {"duration": "10m"}}, {"analysis": {"duration": "5m"}},
         {"approval": {"message": "Check the dashboards", "approvers": ["alice", "bob"]}}, {"setWeight": 50},
         {"pause": {}}, {"setWeight": 100}]


def rollout(name: str = "bot-bot-v3", agent_name: str = "bot", created: str = "2026-01-13T09:00:00Z",
            strategy: dict[str, Any] | None = None, **status: Any) -> dict[str, Any]:
    return {"metadata": {"name": name, "creationTimestamp": created},
            "spec": {"agentRef": {"name": agent_name}, "targetVersion": "bot-v3", "fromVersion": "bot-v2",
                     "strategy": strategy or {"canary": {"steps": STEPS}}},
            "status": status}


RUN = {"step": 2, "startedAt": "2026-01-13T09:11:00Z", "verdict": "Successful", "measurements": [
    {"kpi": "successRate", "value": 0.9, "threshold": 0.95, "verdict": "Failed", "measuredAt": "t0"},
    {"kpi": "successRate", "value": 0.981, "threshold": 0.95, "verdict": "Successful", "measuredAt": "t1"},
    {"kpi": "latencySeconds", "value": 1.1, "threshold": 2.0, "verdict": "Successful", "measuredAt": "t1"},
    {"kpi": "costPerTaskUSD", "verdict": "Inconclusive", "measuredAt": "t1", "message": "no tasks in the window"},
]}


def entries(n: int = 4) -> list[dict[str, Any]]:
    log: list[dict[str, Any]] = []
    actions = ["created", "rolloutStarted", "approved", "promoted"]
    for i in range(n):
        log.append(dict(auditchain.append(log, at=f"2026-01-13T09:0{i}:00Z",
                                          actor="alice@example.com" if i == 2 else "alm-operator",
                                          action=actions[i % 4],
                                          subject="AgentRollout/bot-bot-v3" if i else "Agent/bot",
                                          details={"step": i, "note": "x" * (30 * i)})))
    return log


def _verdict(log: list[dict[str, Any]], head: str | None = None) -> dict[str, Any]:
    v = auditchain.verify(log, head=head)
    return {"ok": v.ok, "kind": str(v.kind) if v.kind else None, "seq": v.seq, "message": v.message}


def _tampered() -> tuple[list[dict[str, Any]], dict[str, Any]]:
    log = entries()
    log[1] = {**log[1], "actor": "mallory"}
    return log, _verdict(log)


VIEWS: dict[str, Callable[[], str]] = {
    "list": lambda: agent_views.render_list([agent(), agent("alpha", phase="Available", canaryVersion=None,
                                                            canaryWeight=0,
                                                            cost={"day": "2026-01-12", "tokens": 5, "usd": 9.0}),
                                             {"metadata": {"name": "fresh"}, "spec": {"version": "fresh-v1"}}], TODAY),
    "list_empty": lambda: agent_views.render_list([], TODAY),
    "status_awaiting_approval": lambda: status_view.render_status(agent(), rollout(
        phase="AwaitingApproval", currentStep=3, weight=20, message="Waiting for approval at step 3",
        approvals=[], analysisRuns=[RUN])),
    "status_progressing_approved": lambda: status_view.render_status(agent(), rollout(
        phase="Progressing", currentStep=5, weight=50,
        approvals=[{"step": 3, "approvedBy": "alice@example.com", "approvedAt": "2026-01-13T09:20:00Z"}],
        analysisRuns=[RUN])),
    "status_rolled_back": lambda: status_view.render_status(agent(phase="Degraded", canaryVersion=None, canaryWeight=0),
                                                      rollout(phase="RolledBack", currentStep=2, weight=0,
                                                              finishedAt="2026-01-13T09:15:00Z",
                                                              abort={"reason": "AnalysisFailed",
                                                                     "kpi": "successRate", "value": 0.8,
                                                                     "threshold": 0.95,
                                                                     "at": "2026-01-13T09:15:00Z"})),
    "status_blue_green": lambda: status_view.render_status(agent(), rollout(
        strategy={"blueGreen": {"autoPromotionSeconds": 60}}, phase="Paused", weight=0,
        message="Preview ready; promote with the promote annotation")),
    "status_no_rollout": lambda: status_view.render_status(agent(conditions=[]), None,
                                                     last=rollout(phase="Succeeded")),
    "history": lambda: agent_views.render_history(agent()),
    "history_empty": lambda: agent_views.render_history(agent(history=[])),
    "audit_verified": lambda: audit_view.render_audit("bot", entries(), _verdict(entries())),
    "audit_tampered": lambda: audit_view.render_audit("bot", *_tampered()),
    "audit_empty": lambda: audit_view.render_audit("bot", [], None),
    "budget_exceeded": lambda: agent_views.render_budget(agent(), TODAY),
    "budget_none": lambda: agent_views.render_budget({"metadata": {"name": "bot"}, "spec": {}, "status": {}}, TODAY),
    "retirement_retired": lambda: retirement_view.render_retirement({
        "metadata": {"name": "bot-retirement"},
        "spec": {"agentRef": {"name": "bot"}, "reason": "Replaced by bot-2 (OPS-1234)"},
        "status": {"phase": "Retired", "revoked": [
            {"kind": "Secret", "name": "bot-credentials-5f1c2a", "result": "Revoked",
             "revokedAt": "2026-01-13T10:00:01.120Z"},
            {"kind": "ServiceAccount", "name": "bot", "result": "Revoked", "revokedAt": "2026-01-13T10:00:01.180Z"},
            {"kind": "Role", "name": "bot", "result": "AlreadyGone", "revokedAt": "2026-01-13T10:00:01.200Z"},
            {"kind": "Webhook", "name": "https://revoker.example.com/alm", "result": "Revoked",
             "revokedAt": "2026-01-13T10:00:02.010Z"}],
            "archive": {"location": "configmap/bot-archive", "sha256": "0f" * 32, "sizeBytes": 48213, "parts": 1}}}),
    "retirement_failed": lambda: retirement_view.render_retirement({
        "metadata": {"name": "bot-retirement"}, "spec": {"agentRef": {"name": "bot"}, "reason": "End of life"},
        "status": {"phase": "Failed", "message": "the revocation webhook gave up after 5 retries (HTTP 503); "
                                                 "every Kubernetes credential is revoked; annotate alm.dev/retry"}}),
}


@pytest.mark.parametrize("name", sorted(VIEWS))
def test_view_matches_snapshot(name: str) -> None:
    text = VIEWS[name]()
    path = SNAPSHOTS / f"{name}.txt"
    if os.environ.get("ALM_UPDATE_SNAPSHOTS"):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    assert path.exists(), f"no snapshot {path}: run with ALM_UPDATE_SNAPSHOTS=1"
    assert text == path.read_text(encoding="utf-8")


def test_every_snapshot_has_a_view() -> None:
    assert sorted(p.stem for p in SNAPSHOTS.glob("*.txt")) == sorted(VIEWS)


def test_views_are_literal_text() -> None:
    """Brackets are shown as they are (no rich markup), and nothing depends on a terminal."""
    odd = agent(conditions=[{"type": "Invalid", "status": "True", "reason": "Bad", "message": "[bold]x[/bold]"}])
    assert "[bold]x[/bold]" in status_view.render_status(odd, None)
    assert "\x1b" not in status_view.render_status(agent(), rollout(phase="Progressing"))


@pytest.mark.parametrize(("weight", "bar"), [
    (0, "[░░░░░░░░░░░░░░░░░░░░]   0% canary"),
    (25, "[█████░░░░░░░░░░░░░░░]  25% canary"),
    (100, "[████████████████████] 100% canary"),
    (140, "[████████████████████] 100% canary"),
])
def test_weight_bar(weight: int, bar: str) -> None:
    assert status_view.weight_bar(weight) == bar


def test_active_rollout_is_the_newest_unfinished_one_of_the_agent() -> None:
    old = rollout("r1", created="2026-01-01T00:00:00Z", phase="Progressing")
    new = rollout("r2", created="2026-01-02T00:00:00Z", phase="Pending")
    done = rollout("r3", created="2026-01-03T00:00:00Z", phase="Succeeded")
    other = rollout("r4", agent_name="other", created="2026-01-04T00:00:00Z", phase="Progressing")
    assert objects.active_rollout([old, new, done, other], "bot") is new
    assert objects.active_rollout([done, other], "bot") is None
    assert objects.latest_rollout([old, done, other], "bot") is done
    no_status = rollout("r5")
    no_status.pop("status")
    assert objects.active_rollout([no_status], "bot") is no_status  # not started yet: Pending


def test_previous_version_skips_the_current_and_failed_versions() -> None:
    assert objects.previous_version(agent()) == "bot-v2"
    at_v2 = agent()
    at_v2["spec"]["version"] = "bot-v2"
    assert objects.previous_version(at_v2) == "bot-v1"
    assert objects.previous_version(agent(history=[])) is None


def test_cost_today_ignores_another_day() -> None:
    assert objects.cost_today(agent(), TODAY) == {"day": TODAY, "tokens": 120500, "usd": 2.4}
    assert objects.cost_today(agent(), "2026-01-14") == {"day": "2026-01-14", "tokens": 0, "usd": 0.0}
    assert objects.cost_today({"metadata": {}}, TODAY)["usd"] == 0.0


def test_step_text() -> None:
    assert [status_view.step_text(s) for s in STEPS] == [
        "setWeight 20%", "pause 10m", "analysis 5m",
        "approval: Check the dashboards (approvers: alice, bob)", "setWeight 50%", "pause (until resumed)",
        "setWeight 100%"]


def test_status_data_keeps_the_newest_measurement_per_kpi() -> None:
    data = status_view.status_data(agent(), rollout(phase="Progressing", currentStep=2, analysisRuns=[RUN]))
    measurements = data["rollout"]["analysis"]["measurements"]
    assert [(m["kpi"], m.get("value")) for m in measurements] == [
        ("successRate", 0.981), ("latencySeconds", 1.1), ("costPerTaskUSD", None)]
    assert data["agent"]["stable"] == "bot-v2" and data["rollout"]["awaitingApproval"] is False


def test_budget_data() -> None:
    data = agent_views.budget_data(agent(), TODAY)
    assert data["usd"] == {"used": 2.4, "limit": 2.0} and data["onExceeded"] == "suspend"
    assert data["budgetExceeded"]["status"] == "True"
    assert agent_views.budget_data({"metadata": {"name": "x"}, "spec": {}}, TODAY)["onExceeded"] is None
