"""The prometheus provider against a real Prometheus server scraping real ``alm-agent`` processes.

One server for the module (the Debian package's binary, see prometheus_fixtures), behind basic
auth as a production one would be, scrapes three runtimes every second: two pods of ``bot-v1``
(success 0.8, tool errors 0.1, alignment 0.9, $0.0005 a task) and one of ``bot-v2`` (success
0.5). Traffic is posted once; the tests then ask, through the provider, what Prometheus saw.
Prometheus' ``increase()`` extrapolates to the window's edges, so counts read a little high;
the KPIs are ratios of increases of series scraped together, which the extrapolation leaves as
they are. Waits are bounded polls; the longest is Prometheus' first scrape (its target discovery
updates every 5 s).
"""

from __future__ import annotations

import base64
import math
import socket
import time
from collections.abc import Iterator
from typing import Any

import pytest

from alm.api import CustomQuery
from alm.core import kpis
from alm.metrics.contract import KPI
from alm.providers import PrometheusProvider, ReadingState, prometheus
from tests.integration import prometheus_fixtures, runtime_fixtures
from tests.integration.prometheus_fixtures import PrometheusServer, post_tasks
from tests.integration.runtime_fixtures import Pool

pytestmark = pytest.mark.skipif(
    prometheus_fixtures.binary() is None,
    reason="the Prometheus server is not installed: apt-get install prometheus (CI installs it)",
)

NS, AGENT = "prod", "bot"
USER = "alm"
SIM: dict[str, Any] = dict(toolErrorRate=0.1, alignmentScore=0.9, latencyMs=20, latencyP95Ms=40,
                           inputTokens=300, outputTokens=100)  # fmt: skip
TOOLS = [{"name": "crm", "type": "http", "endpoint": "https://crm.example.com"},
         {"name": "search", "type": "http", "endpoint": "https://search.example.com"}]  # fmt: skip
COST_PER_TASK = 300 * 1.0e-6 + 100 * 2.0e-6
V1_TASKS, V2_TASKS = 400, 200


def within(measured: float | None, expected: float, n: float) -> bool:
    """Within four binomial standard deviations (and at least 0.01) of the expected rate."""
    assert measured is not None
    return abs(measured - expected) <= max(0.01, 4 * math.sqrt(expected * (1 - expected) / n))


class Traffic:
    """What was sent, and when (monotonic seconds)."""

    def __init__(self, prom: PrometheusServer, started: float, finished: float, answers: list[Any]) -> None:
        self.prom, self.started, self.finished, self.answers = prom, started, finished, answers

    def window(self) -> float:
        """From before the traffic (a scrape of the zeros) to now."""
        return math.ceil(time.monotonic() - self.started) + 3 * prometheus_fixtures.SCRAPE_INTERVAL


@pytest.fixture(scope="module")
def traffic() -> Iterator[Traffic]:
    with Pool() as pool:
        v1 = [pool.spawn(runtime_fixtures.simulated_config("bot-v1", tools=TOOLS, successRate=0.8, seed=s, **SIM))
              for s in (11, 12)]  # fmt: skip
        v2 = pool.spawn(runtime_fixtures.simulated_config("bot-v2", tools=TOOLS, successRate=0.5, seed=13, **SIM))
        targets = {"bot-v1-a": v1[0].url, "bot-v1-b": v1[1].url, "bot-v2-a": v2.url}
        with PrometheusServer(targets, labels={"namespace": NS},
                              basic_auth=(USER, prometheus_fixtures.BASIC_AUTH_HASH)) as prom:  # fmt: skip
            prom.login(USER, prometheus_fixtures.BASIC_AUTH_PASSWORD)
            prom.wait_scraping(len(targets))  # the zeros of every series are in before any task
            started = time.monotonic()
            answers = post_tasks(v1, V1_TASKS) + post_tasks([v2], V2_TASKS)
            for version, n in (("bot-v1", V1_TASKS), ("bot-v2", V2_TASKS)):
                prom.wait_until(f'sum(alm_agent_tasks_total{{version="{version}"}})', lambda v, n=n: v == n)
            yield Traffic(prom, started, time.monotonic(), answers)


def provider_for(traffic: Traffic, **kwargs: Any) -> PrometheusProvider:
    """A provider with the credential as the operator would pass it: the Secret's value."""
    secret = "Basic " + base64.b64encode(f"{USER}:{prometheus_fixtures.BASIC_AUTH_PASSWORD}".encode()).decode()
    return PrometheusProvider(traffic.prom.url, authorization=prometheus.authorization(secret), timeout=5, **kwargs)


async def test_kpis_match_the_configured_rates(traffic: Traffic) -> None:
    provider = provider_for(traffic)
    try:
        result = await provider.measure(AGENT, NS, "bot-v1", traffic.window())
        canary = await provider.measure(AGENT, NS, "bot-v2", traffic.window())
    finally:
        await provider.close()

    assert all(reading.state is ReadingState.MEASURED for reading in result.kpis.values()), result.kpis
    tasks = result.kpis[KPI.SUCCESS_RATE].samples
    assert tasks is not None and V1_TASKS <= tasks <= 2 * V1_TASKS  # extrapolated, never short
    assert within(result.kpis[KPI.SUCCESS_RATE].value, 0.8, V1_TASKS)
    assert within(result.kpis[KPI.TOOL_ERROR_RATE].value, 0.1, 2 * V1_TASKS)
    assert result.kpis[KPI.COST_PER_TASK].value == pytest.approx(COST_PER_TASK, rel=1e-6)
    assert result.kpis[KPI.ALIGNMENT].value == pytest.approx(0.9, abs=0.01)
    assert 0.025 < (result.kpis[KPI.LATENCY].value or 0) <= 0.1  # p95 of a lognormal with p95 40 ms
    # Both are rates extrapolated by Prometheus over the same window: equal up to float rounding.
    assert result.totals.output_tokens is not None
    assert result.totals.input_tokens == pytest.approx(3 * result.totals.output_tokens, rel=1e-9)
    assert within(canary.kpis[KPI.SUCCESS_RATE].value, 0.5, V2_TASKS)  # the selector tells versions apart

    # The answers themselves, for comparison: the exact success rate of what bot-v1 served.
    served = [doc["outcome"] for _, _, doc in traffic.answers[:V1_TASKS]]
    assert result.kpis[KPI.SUCCESS_RATE].value == pytest.approx(served.count("success") / V1_TASKS, abs=0.02)


async def test_no_series_is_inconclusive(traffic: Traffic) -> None:
    provider = provider_for(traffic)
    try:
        unknown = await provider.measure(AGENT, NS, "bot-v9", traffic.window())
        elsewhere = await provider.measure(AGENT, "staging", "bot-v1", traffic.window())
    finally:
        await provider.close()
    for result in (unknown, elsewhere):
        assert {r.state for r in result.kpis.values()} == {ReadingState.INCONCLUSIVE}
        assert {r.reason for r in result.kpis.values()} == {prometheus.NO_SERIES}


async def test_a_window_without_tasks_is_inconclusive(traffic: Traffic) -> None:
    # The final counts were scraped before traffic.finished: a window that starts after it sees no
    # change. 4 s, so that it holds the two scrapes increase() needs even when a loaded machine delays
    # one (with a single sample there is no series, not "no tasks"). At most 4.5 s of waiting, less
    # when the tests before took that long.
    window = 4
    time.sleep(max(0.0, traffic.finished + window + 0.5 - time.monotonic()))
    provider = provider_for(traffic)
    try:
        result = await provider.measure(AGENT, NS, "bot-v1", window)
    finally:
        await provider.close()
    assert result.kpis[KPI.SUCCESS_RATE] == kpis.Reading.inconclusive(kpis.NO_TASKS, samples=0)
    assert result.kpis[KPI.LATENCY].reason == kpis.NO_TASKS
    assert result.kpis[KPI.TOOL_ERROR_RATE].reason == kpis.NO_TOOL_CALLS
    assert result.observation().success_rate is None


async def test_custom_queries_and_a_bad_query(traffic: Traffic) -> None:
    provider = provider_for(traffic)
    sel = 'agent="{{agent}}",version="{{version}}",namespace="{{namespace}}"'
    queries = [
        CustomQuery(name="tasks", query=f"sum(increase(alm_agent_tasks_total{{{sel}}}[{{{{window}}}}]))", min=1),
        CustomQuery(name="per-pod", query=f"sum by (pod) (alm_agent_tasks_total{{{sel}}})", min=1),
        CustomQuery(name="typo", query="sum(rate(alm_agent_tasks_total[1m]", max=1),
        CustomQuery(name="nothing", query='sum(alm_agent_tasks_total{version="bot-v9"})', max=1),
    ]
    try:
        result = await provider.measure(AGENT, NS, "bot-v1", traffic.window(), queries=queries)
    finally:
        await provider.close()
    tasks = result.queries["tasks"]
    assert tasks.state is ReadingState.MEASURED and V1_TASKS <= (tasks.value or 0) <= 2 * V1_TASKS
    assert "returned 2 series" in result.queries["per-pod"].reason
    typo = result.queries["typo"]
    assert typo.state is ReadingState.ERROR
    assert typo.reason.startswith("Prometheus rejected the query (HTTP 400, bad_data): ")
    assert "parse error" in typo.reason and typo.reason.endswith("in query: sum(rate(alm_agent_tasks_total[1m]")
    assert result.queries["nothing"].reason == prometheus.NO_SERIES


async def test_without_the_credential_every_reading_is_an_error(traffic: Traffic) -> None:
    provider = PrometheusProvider(traffic.prom.url, timeout=5)
    try:
        result = await provider.measure(AGENT, NS, "bot-v1", traffic.window())
    finally:
        await provider.close()
    assert {r.state for r in result.kpis.values()} == {ReadingState.ERROR}
    assert "HTTP 401" in result.kpis[KPI.SUCCESS_RATE].reason


async def test_an_unreachable_or_hung_server_is_an_error() -> None:
    with socket.socket() as hung, socket.socket() as closed:
        hung.bind(("127.0.0.1", 0))
        hung.listen(16)  # accepts, never answers
        closed.bind(("127.0.0.1", 0))  # bound, not listening: connection refused
        for sock, expected in ((hung, "did not answer within 0.5s"), (closed, "is unreachable: ClientConnectorError")):
            provider = PrometheusProvider(f"http://127.0.0.1:{sock.getsockname()[1]}", timeout=0.5)
            try:
                result = await provider.measure(AGENT, NS, "bot-v1", 30)
            finally:
                await provider.close()
            assert {r.state for r in result.kpis.values()} == {ReadingState.ERROR}
            assert expected in result.kpis[KPI.LATENCY].reason
