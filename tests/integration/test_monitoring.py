"""Continuous monitoring end to end: real agent processes as pods, the real operator measuring them.

The emulated API server runs each pod as a local ``alm-agent`` process (simulated model with a
known success rate and token counts); the operator scrapes them, writes KPIs into status, raises
Degraded after consecutive breaches, counts today's tokens and suspends the agent over budget.
"""

from __future__ import annotations

import json
import threading
import urllib.request
from typing import Any

import pytest

from alm.sandbox.apiserver import ApiServerThread
from tests import scenarios
from tests.integration.operator_harness import EmulatedCluster


@pytest.fixture
def cluster(process_cluster: EmulatedCluster) -> EmulatedCluster:
    """Here the agents' pods are real processes: the operator measures them."""
    return process_cluster



def _traffic(port: int, stop: threading.Event, answers: list[dict[str, Any]]) -> None:
    """Steady traffic (every ~50 ms) until told to stop or the pod goes away."""
    i = 0
    while not stop.is_set():
        request = urllib.request.Request(f"http://127.0.0.1:{port}/v1/tasks", method="POST",
                                         data=json.dumps({"input": f"question {i}"}).encode(),
                                         headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                answers.append(json.loads(response.read()))
        except urllib.error.HTTPError as exc:  # a failed task answers 500: still a task
            answers.append({"outcome": "error", "status": exc.code})
        except OSError:  # suspended: the pod is gone
            return
        i += 1
        stop.wait(0.05)


async def test_kpis_degraded_budget_and_suspension(cluster: EmulatedCluster,
                                                   process_server: tuple[ApiServerThread, Any]) -> None:
    ns = cluster.namespace
    version = scenarios.agent_version(ns, tools=False)
    version["spec"]["model"]["parameters"] = {"extra": {"successRate": "0.5", "inputTokens": "1000",
                                                        "outputTokens": "200"}}
    version["spec"]["model"]["pricing"] = {"inputPerMillionTokensUSD": 1.0, "outputPerMillionTokensUSD": 2.0}
    scenarios.create(cluster, version)
    scenarios.create(cluster, scenarios.agent(
        ns, replicas=1, kpis={"minSuccessRate": 0.9},
        monitoring={"interval": "2s", "consecutiveBreaches": 2},
        budget={"tokensPerDay": 150_000, "onExceeded": "suspend"},
    ))
    await scenarios.wait_phase(cluster, "bot", "Available")
    (pod,) = cluster.kube.list("Pod", ns, {"alm.dev/agent": "bot"})
    port = pod["spec"]["containers"][0]["ports"][0]["containerPort"]
    stop, answers = threading.Event(), []
    traffic = threading.Thread(target=_traffic, args=(port, stop, answers), daemon=True)
    traffic.start()
    try:
        await _expect_monitoring(cluster)
    finally:
        stop.set()
        traffic.join(15)
    assert answers, "no task was served"


async def _expect_monitoring(cluster: EmulatedCluster) -> None:
    ns = cluster.namespace

    def kpis() -> dict[str, Any] | None:
        status = (scenarios.get(cluster, "Agent", "bot") or {}).get("status") or {}
        measured = (status.get("kpis") or {}).get("bot-v1") or {}
        return measured if "successRate" in measured else None

    measured = await cluster.wait_for(kpis, timeout=20, what="KPIs in status")
    assert 0.2 <= measured["successRate"] <= 0.8  # configured 0.5, ~40 tasks per 2 s window

    bot = await cluster.wait_for(
        lambda: (lambda a: a if (scenarios.condition(a, "Degraded") or {}).get("status") == "True" else None)(
            scenarios.get(cluster, "Agent", "bot")), timeout=20, what="Degraded after 2 breaching intervals")
    assert "success rate" in scenarios.condition(bot, "Degraded")["message"]  # type: ignore[index]
    bot = await cluster.wait_for(
        lambda: (lambda a: a if (scenarios.condition(a, "BudgetExceeded") or {}).get("status") == "True" else None)(
            scenarios.get(cluster, "Agent", "bot")), timeout=30, what="BudgetExceeded")
    cost = bot["status"]["cost"]
    tasks = cost["tokens"] // 1200
    assert cost["tokens"] == tasks * 1200 and cost["tokens"] >= 150_000  # 1000 in + 200 out per task
    assert cost["usd"] == pytest.approx(tasks * (1000 * 1.0 + 200 * 2.0) / 1e6)

    await scenarios.wait_phase(cluster, "bot", "Suspended", timeout=20)
    (deployment,) = scenarios.children(cluster, "Deployment")
    assert deployment["spec"]["replicas"] == 0
    await cluster.wait_for(lambda: not cluster.kube.list("Pod", ns, {"alm.dev/agent": "bot"}) or None,
                           what="the agent's pods to stop")
    assert len(scenarios.children(cluster, "Service")) == 1  # everything else is kept
    reasons = {e.get("reason") for e in cluster.kube.list("Event", ns)}
    assert {"KPIThresholdBreached", "BudgetExceeded"} <= reasons
