"""The scrape provider against real ``alm-agent`` processes on 127.0.0.1.

The runtimes run the simulated backend with known rates and a seed; tasks are posted over HTTP,
and the provider reads the processes' real ``/metrics`` through aiohttp. What it measures must be
exactly what the answers said (counts are counts) and, within four binomial standard
deviations, what was configured. Processes are killed and restarted between scrapes (a counter
reset), stopped (unreachable), or replaced by a socket that never answers (a timeout).
"""

from __future__ import annotations

import collections
import math
import socket
import time
from collections.abc import Iterator, Sequence
from typing import Any

import pytest

from alm.metrics.contract import KPI
from alm.providers import PodChange, PodState, PodTarget, ReadingState, ScrapeProvider
from tests.integration import runtime_fixtures
from tests.integration.prometheus_fixtures import post_tasks
from tests.integration.runtime_fixtures import Pool, RuntimeProcess

NS, AGENT, VERSION = "prod", "bot", "bot-v1"
TOOLS = [{"name": "crm", "type": "http", "endpoint": "https://crm.example.com"},
         {"name": "search", "type": "http", "endpoint": "https://search.example.com", "readOnly": True}]  # fmt: skip
# 300 input tokens at $1/M + 100 output at $2/M: $0.0005 a task, whatever its outcome.
SIM: dict[str, Any] = dict(successRate=0.8, toolErrorRate=0.1, alignmentScore=0.9, latencyMs=20, latencyP95Ms=40,
                           inputTokens=300, outputTokens=100)  # fmt: skip
COST_PER_TASK = 300 * 1.0e-6 + 100 * 2.0e-6


def config(seed: int) -> dict[str, Any]:
    return runtime_fixtures.simulated_config(VERSION, tools=TOOLS, pricing=(1.0, 2.0), seed=seed, **SIM)


def within(measured: float | None, expected: float, n: float) -> bool:
    """Within four binomial standard deviations (and at least 0.01) of the expected rate."""
    assert measured is not None
    return abs(measured - expected) <= max(0.01, 4 * math.sqrt(expected * (1 - expected) / n))


class Pods:
    """The PodLister of the test: pod names mapped to whatever now serves them."""

    def __init__(self) -> None:
        self.targets: dict[str, PodTarget] = {}

    def put(self, name: str, runtime: RuntimeProcess) -> None:
        self.targets[name] = PodTarget(name, runtime.host, runtime.port, "/metrics")

    async def __call__(self, agent: str, namespace: str, version: str) -> list[PodTarget]:
        assert (agent, namespace, version) == (AGENT, NS, VERSION)
        return list(self.targets.values())


@pytest.fixture
def pool() -> Iterator[Pool]:
    with Pool() as p:
        yield p


def outcomes(answers: Sequence[tuple[int, int, dict[str, Any]]]) -> tuple[collections.Counter[str], int, int]:
    """Task outcomes, executed tool calls and failed tool calls, as the answers told them."""
    tasks = collections.Counter(doc["outcome"] for _, _, doc in answers)
    calls = [call["outcome"] for _, _, doc in answers for call in doc["toolCalls"]]
    return tasks, sum(c in ("success", "error") for c in calls), calls.count("error")


async def test_kpis_of_real_runtimes_match_their_answers_and_the_configured_rates(pool: Pool) -> None:
    runtimes = [pool.spawn(config(seed)) for seed in (1, 2, 3)]
    pods = Pods()
    for i, runtime in enumerate(runtimes):
        pods.put(f"bot-v1-{i}", runtime)
    post_tasks(runtimes, 30)  # history before the window: must not count
    provider = ScrapeProvider(pods)
    try:
        start = time.monotonic()
        baseline = await provider.measure(AGENT, NS, VERSION, 1.0)
        assert baseline.kpis[KPI.SUCCESS_RATE].state is ReadingState.INCONCLUSIVE
        n = 600
        answers = post_tasks(runtimes, n)
        result = await provider.measure(AGENT, NS, VERSION, time.monotonic() - start)
    finally:
        await provider.close()

    tasks, executed, failed = outcomes(answers)
    assert not result.partial
    assert [(r.state, r.change) for r in result.pods] == [(PodState.SCRAPED, PodChange.CONTINUED)] * 3
    success = result.kpis[KPI.SUCCESS_RATE]
    assert (success.value, success.samples) == (tasks["success"] / n, n)  # exactly what the answers said
    assert within(success.value, 0.8, n)
    tool_errors = result.kpis[KPI.TOOL_ERROR_RATE]
    assert (tool_errors.value, tool_errors.samples) == (failed / executed, executed)
    assert executed == 2 * n and within(tool_errors.value, 0.1, executed)
    assert result.kpis[KPI.COST_PER_TASK].value == pytest.approx(COST_PER_TASK)
    assert result.kpis[KPI.ALIGNMENT].value == pytest.approx(0.9, abs=0.01)
    assert result.kpis[KPI.ALIGNMENT].samples == n - tasks["error"]
    # Lognormal model latency, median 20 ms, p95 40 ms; the runtime adds a little. The p95 lies in the
    # (0.025, 0.05] bucket, or the next one on a busy machine.
    assert 0.025 < (result.kpis[KPI.LATENCY].value or 0) <= 0.1
    assert result.totals.tasks == n and result.totals.input_tokens == 300 * n
    assert result.totals.cost_usd == pytest.approx(COST_PER_TASK * n)


async def test_a_process_killed_and_restarted_between_scrapes_counts_from_zero(pool: Pool) -> None:
    first, other = pool.spawn(config(4)), pool.spawn(config(5))
    pods = Pods()
    pods.put("bot-v1-a", first)
    pods.put("bot-v1-b", other)
    post_tasks([first], 80)
    provider = ScrapeProvider(pods)
    try:
        start = time.monotonic()
        await provider.measure(AGENT, NS, VERSION, 1.0)
        post_tasks([first], 20)  # lost with the process: a restart forgets what it did since the scrape
        first.proc.kill()
        first.stop()
        restarted = pool.spawn(config(6))  # the same pod, a new process: counters at zero
        pods.put("bot-v1-a", restarted)
        answers = post_tasks([restarted], 40) + post_tasks([other], 10)
        result = await provider.measure(AGENT, NS, VERSION, time.monotonic() - start)
    finally:
        await provider.close()

    changes = {r.name: r.change for r in result.pods}
    assert changes == {"bot-v1-a": PodChange.RESTARTED, "bot-v1-b": PodChange.CONTINUED}
    tasks, executed, failed = outcomes(answers)
    # 40 + 10, not (40 - 100) + 10: the restarted process's counters are its increase.
    assert result.kpis[KPI.SUCCESS_RATE].samples == 50
    assert result.kpis[KPI.SUCCESS_RATE].value == tasks["success"] / 50
    assert result.kpis[KPI.TOOL_ERROR_RATE].value == failed / executed
    assert not result.partial


async def test_an_unreachable_pod_gives_a_partial_result_from_the_others(pool: Pool) -> None:
    up, down = pool.spawn(config(7)), pool.spawn(config(8))
    hanging = socket.socket()  # accepts connections, never answers: a hung pod
    hanging.bind(("127.0.0.1", 0))
    hanging.listen(16)
    pods = Pods()
    pods.put("bot-v1-up", up)
    pods.put("bot-v1-down", down)
    pods.targets["bot-v1-hung"] = PodTarget("bot-v1-hung", "127.0.0.1", hanging.getsockname()[1])
    provider = ScrapeProvider(pods, timeout=1.0)
    try:
        start = time.monotonic()
        await provider.measure(AGENT, NS, VERSION, 1.0)
        answers = post_tasks([up], 60)
        post_tasks([down], 60)
        down.stop()  # still listed (the API has not caught up), nothing listens on its port any more
        result = await provider.measure(AGENT, NS, VERSION, time.monotonic() - start)
    finally:
        await provider.close()
        hanging.close()

    reports = {r.name: r for r in result.pods}
    assert (reports["bot-v1-up"].state, reports["bot-v1-up"].change) == (PodState.SCRAPED, PodChange.CONTINUED)
    assert reports["bot-v1-down"].state is PodState.UNREACHABLE
    assert "ClientConnectorError" in reports["bot-v1-down"].message
    assert reports["bot-v1-hung"].state is PodState.UNREACHABLE
    assert reports["bot-v1-hung"].message == "no answer within 1s"
    assert result.partial
    tasks, _, _ = outcomes(answers)
    assert result.kpis[KPI.SUCCESS_RATE].value == tasks["success"] / 60
    assert result.kpis[KPI.SUCCESS_RATE].samples == 60


async def test_no_pod_reachable_is_an_error_and_no_pods_inconclusive(pool: Pool) -> None:
    runtime = pool.spawn(config(9))
    pods = Pods()
    provider = ScrapeProvider(pods, timeout=1.0)
    try:
        empty = await provider.measure(AGENT, NS, VERSION, 1.0)
        assert empty.kpis[KPI.LATENCY].state is ReadingState.INCONCLUSIVE
        assert "no pods of version bot-v1" in empty.kpis[KPI.LATENCY].reason
        pods.put("bot-v1-0", runtime)
        runtime.stop()
        result = await provider.measure(AGENT, NS, VERSION, 1.0)
    finally:
        await provider.close()
    assert result.kpis[KPI.LATENCY].state is ReadingState.ERROR
    assert result.kpis[KPI.LATENCY].reason.startswith("none of the 1 pods could be read: bot-v1-0: ")
