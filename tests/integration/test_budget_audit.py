"""A budget action is audited: one hash-chained entry per transition, mirrored as an Event.

The real operator against the emulated API server, the agent's pod a real ``alm-agent``
process (seeded simulated model): traffic takes the Agent over a tiny daily token budget
(``onExceeded: suspend``), then a raised budget lifts the suspension. The audit log gains
exactly one ``budgetSuspended`` and one ``budgetRestored`` entry, verified against
``status.auditHead``; an operator restart and the passes after it append nothing more.
"""

from __future__ import annotations

import asyncio
import json
import threading
import urllib.error
import urllib.request
from typing import Any

from alm.core import auditchain
from alm.metrics import operator as metrics
from tests import scenarios
from tests.integration.operator_harness import EmulatedCluster

BUDGET_ACTIONS = ("budgetExceeded", "budgetSuspended", "budgetRestored")


def _traffic(cluster: EmulatedCluster, stop: threading.Event) -> None:
    """Tasks to the agent's running pods until stopped (a suspended agent has none: wait)."""
    while not stop.is_set():
        for pod in cluster.kube.list("Pod", cluster.namespace, {"alm.dev/agent": "bot"}):
            status = pod.get("status") or {}
            port = next((p["containerPort"] for p in pod["spec"]["containers"][0].get("ports") or []
                         if p.get("name") == "http"), None)
            if status.get("phase") != "Running" or not status.get("podIP") or port is None:
                continue
            request = urllib.request.Request(f"http://{status['podIP']}:{port}/v1/tasks", method="POST",
                                             data=json.dumps({"input": "Where is my order?"}).encode(),
                                             headers={"Content-Type": "application/json"})
            try:
                with urllib.request.urlopen(request, timeout=5) as response:
                    response.read()
            except (urllib.error.HTTPError, OSError):  # a failed task, or the pod going away
                pass
        stop.wait(0.05)


def _budget_entries(cluster: EmulatedCluster) -> list[dict[str, Any]]:
    return [e for e in scenarios.audit_log(cluster) if e["action"] in BUDGET_ACTIONS]


def _reasons(cluster: EmulatedCluster) -> set[str]:
    return {str(e.get("reason")) for e in cluster.kube.list("Event", cluster.namespace)}


def _verified(cluster: EmulatedCluster) -> auditchain.Verdict:
    head = ((scenarios.get(cluster, "Agent", "bot") or {}).get("status") or {}).get("auditHead")
    return auditchain.verify(scenarios.audit_log(cluster), head=head)


async def test_a_budget_suspension_and_its_lifting_are_each_audited_once(process_cluster: EmulatedCluster) -> None:
    cluster = process_cluster
    ns = cluster.namespace
    version = scenarios.agent_version(ns, tools=False)
    version["spec"]["model"]["parameters"] = {"extra": {"successRate": "1.0", "inputTokens": "1000",
                                                        "outputTokens": "200"}}
    scenarios.create(cluster, version)
    scenarios.create(cluster, scenarios.agent(ns, replicas=1, monitoring={"interval": "1s"},
                                              budget={"tokensPerDay": 20_000, "onExceeded": "suspend"}))
    await scenarios.wait_phase(cluster, "bot", "Available")
    stop = threading.Event()
    traffic = threading.Thread(target=_traffic, args=(cluster, stop), daemon=True)
    traffic.start()
    try:
        await scenarios.wait_phase(cluster, "bot", "Suspended", timeout=30)
    finally:
        stop.set()
        traffic.join(15)

    (suspended,) = await cluster.wait_for(lambda: _budget_entries(cluster) or None, what="the budget's audit entry")
    assert (suspended["action"], suspended["actor"], suspended["subject"]) == (
        "budgetSuspended", "alm-operator", "Agent/bot")
    details = suspended["details"]
    assert details["tokensPerDay"] == 20_000 and details["onExceeded"] == "suspend"
    assert details["tokens"] >= 20_000 and details["day"]
    assert _verified(cluster).ok, _verified(cluster).message
    # kopf posts Events in the background: they may trail the audit entry on a loaded machine.
    await cluster.wait_for(lambda: {"AuditBudgetSuspended", "BudgetExceeded"} <= _reasons(cluster) or None,
                           timeout=10, what="the AuditBudgetSuspended and BudgetExceeded Events")

    # A restart, and the monitoring passes after it (the Agent stays over budget), append nothing.
    entries = len(scenarios.audit_log(cluster))
    await cluster.restart_operator()
    labels = {"namespace": ns, "agent": "bot"}
    for _ in range(2):  # two monitoring passes of the restarted operator: each sets the cost gauges again
        metrics.AGENT_TOKENS_TODAY.labels(**labels).set(-1.0)
        await cluster.wait_for(
            lambda: True if (metrics.REGISTRY.get_sample_value("alm_operator_agent_tokens_today", labels) or 0) >= 0
            else None, timeout=15, what="a monitoring pass of the restarted operator")
    assert _budget_entries(cluster) == [suspended]
    assert len(scenarios.audit_log(cluster)) == entries

    # A pass that finds the transition again, as after a crash between the audit entry and the status
    # write (here: the condition taken out of status), records it no second time.
    agent = scenarios.get(cluster, "Agent", "bot") or {}
    others = [c for c in agent["status"]["conditions"] if c["type"] != "BudgetExceeded"]
    cluster.kube.merge_patch("Agent", ns, "bot", {"status": {"conditions": others}}, subresource="status")
    await cluster.wait_for(lambda: (scenarios.condition(scenarios.get(cluster, "Agent", "bot"), "BudgetExceeded")
                                    or {}).get("status") == "True" or None, what="BudgetExceeded again")
    await scenarios.wait_phase(cluster, "bot", "Suspended", timeout=30)
    assert _budget_entries(cluster) == [suspended]

    # A raised budget lifts the suspension: one budgetRestored entry.
    scenarios.patch_spec(cluster, "Agent", "bot", {"budget": {"tokensPerDay": 10_000_000, "onExceeded": "suspend"}})
    await scenarios.wait_phase(cluster, "bot", "Available", timeout=30)
    await cluster.wait_for(lambda: len(_budget_entries(cluster)) == 2 or None, what="the budgetRestored entry")
    await asyncio.sleep(3)  # the passes after it append nothing
    first, restored = _budget_entries(cluster)
    assert first == suspended and restored["action"] == "budgetRestored"
    assert restored["details"]["tokensPerDay"] == 10_000_000 and restored["seq"] > suspended["seq"]
    assert _verified(cluster).ok, _verified(cluster).message
    await cluster.wait_for(lambda: "AuditBudgetRestored" in _reasons(cluster) or None, timeout=10,
                           what="the AuditBudgetRestored Event")

