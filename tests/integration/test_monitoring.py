"""Continuous monitoring end to end: real agent processes as pods, the real operator measuring them.

The emulated API server runs each pod as a local ``alm-agent`` process (simulated model with a
known success rate and token counts); the operator scrapes them, writes KPIs into status, raises
Degraded after consecutive breaches, counts today's tokens and suspends the agent over budget.
"""

from __future__ import annotations

import asyncio
import json
import urllib.request
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from alm.api import build_crds
from alm.sandbox.apiserver import ApiServerThread
from alm.sandbox.processes import ProcessDeploymentController
from tests import scenarios
from tests.integration.operator_harness import EmulatedCluster

TASKS = 40


@pytest.fixture
def process_server() -> Iterator[tuple[ApiServerThread, ProcessDeploymentController]]:
    with ApiServerThread() as srv:
        for crd in build_crds():
            srv.call(lambda crd=crd: srv.emulator.install_crd(crd))
        controller = ProcessDeploymentController(srv.emulator.store, env={"ALM_SIM_SEED": "7",
                                                                          "ALM_SIM_LATENCY_MS": "5"})
        srv.call(controller.start)
        try:
            yield srv, controller
        finally:
            srv.call(controller.stop)
        assert all(p.poll() is not None for p in controller.processes.values())


@pytest.fixture
async def cluster(process_server: tuple[ApiServerThread, ProcessDeploymentController]
                  ) -> AsyncIterator[EmulatedCluster]:
    cluster = EmulatedCluster(process_server[0], scenarios.unique("alm-mon"))
    await cluster.start_operator()
    try:
        yield cluster
    finally:
        await cluster.stop_operator()


def _post_tasks(port: int, count: int) -> list[dict[str, Any]]:
    answers = []
    for i in range(count):
        request = urllib.request.Request(f"http://127.0.0.1:{port}/v1/tasks", method="POST",
                                         data=json.dumps({"input": f"question {i}"}).encode(),
                                         headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                answers.append(json.loads(response.read()))
        except urllib.error.HTTPError as exc:  # a failed task answers 500: still a task
            answers.append({"outcome": "error", "status": exc.code})
    return answers


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
        budget={"tokensPerDay": 30_000, "onExceeded": "suspend"},
    ))
    await scenarios.wait_phase(cluster, "bot", "Available")
    (pod,) = cluster.kube.list("Pod", ns, {"alm.dev/agent": "bot"})
    port = pod["spec"]["containers"][0]["ports"][0]["containerPort"]
    await asyncio.sleep(2.5)  # the first measurement only takes a baseline
    # Two batches in two measuring intervals: an interval without tasks neither breaches nor recovers.
    answers = await asyncio.to_thread(_post_tasks, port, TASKS // 2)
    await asyncio.sleep(2.5)
    answers += await asyncio.to_thread(_post_tasks, port, TASKS // 2)
    assert len(answers) == TASKS

    def kpis() -> dict[str, Any] | None:
        status = (scenarios.get(cluster, "Agent", "bot") or {}).get("status") or {}
        measured = (status.get("kpis") or {}).get("bot-v1") or {}
        return measured if "successRate" in measured else None

    measured = await cluster.wait_for(kpis, timeout=20, what="KPIs in status")
    assert 0.25 <= measured["successRate"] <= 0.75  # configured 0.5, 40 tasks

    bot = await cluster.wait_for(
        lambda: (lambda a: a if (scenarios.condition(a, "Degraded") or {}).get("status") == "True" else None)(
            scenarios.get(cluster, "Agent", "bot")), timeout=20, what="Degraded after 2 breaching intervals")
    assert "success rate" in scenarios.condition(bot, "Degraded")["message"]  # type: ignore[index]
    assert bot["status"]["cost"]["tokens"] == TASKS * 1200
    assert bot["status"]["cost"]["usd"] == pytest.approx(TASKS * (1000 * 1.0 + 200 * 2.0) / 1e6)
    assert (scenarios.condition(bot, "BudgetExceeded") or {}).get("status") == "True"

    await scenarios.wait_phase(cluster, "bot", "Suspended", timeout=20)
    (deployment,) = scenarios.children(cluster, "Deployment")
    assert deployment["spec"]["replicas"] == 0
    await cluster.wait_for(lambda: not cluster.kube.list("Pod", ns, {"alm.dev/agent": "bot"}) or None,
                           what="the agent's pods to stop")
    assert len(scenarios.children(cluster, "Service")) == 1  # everything else is kept
    reasons = {e.get("reason") for e in cluster.kube.list("Event", ns)}
    assert {"KPIThresholdBreached", "BudgetExceeded"} <= reasons
