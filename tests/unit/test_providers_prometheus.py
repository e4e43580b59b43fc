"""The prometheus provider without a network: what it asks, and what it makes of each answer.

A fake ``post`` answers as Prometheus' /api/v1/query does (bodies copied from Prometheus 2.42);
tests/integration/test_provider_prometheus.py runs the same provider against a real server.
"""

from __future__ import annotations

import asyncio
import datetime
import json
import logging
from collections.abc import Callable, Mapping
from typing import Any

import aiohttp
import pytest

from alm.api import CustomQuery, MetricProviderSpec
from alm.core import kpis
from alm.metrics import contract
from alm.metrics.contract import KPI
from alm.providers import base, prometheus
from alm.providers.base import Reading, ReadingState
from alm.providers.prometheus import PrometheusProvider

TOKEN = "prom-token-never-shown-7f3a9c"
MOMENT = datetime.datetime(2025, 5, 1, 12, 0, 0, tzinfo=datetime.UTC)
Handler = Callable[[str], tuple[int, Any]]


def vector(*values: str) -> tuple[int, Any]:
    result = [{"metric": {}, "value": [MOMENT.timestamp(), v]} for v in values]
    return 200, {"status": "success", "data": {"resultType": "vector", "result": result}}


def scalar(value: str) -> tuple[int, Any]:
    return 200, {"status": "success", "data": {"resultType": "scalar", "result": [MOMENT.timestamp(), value]}}


def failure(status: int, kind: str, error: str) -> tuple[int, Any]:
    return status, {"status": "error", "errorType": kind, "error": error}


class FakePrometheus:
    """Records every request; answers with ``handler(query)`` (a body dict, or raw bytes)."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.requests: list[tuple[str, dict[str, str], dict[str, str]]] = []

    async def post(self, url: str, form: Mapping[str, str], headers: Mapping[str, str]) -> tuple[int, bytes]:
        self.requests.append((url, dict(form), dict(headers)))
        status, body = self.handler(form["query"])
        return status, body if isinstance(body, bytes) else json.dumps(body).encode()

    @property
    def queries(self) -> list[str]:
        return [form["query"] for _, form, _ in self.requests]


def healthy(query: str) -> tuple[int, Any]:
    """A version that did 200 tasks (160 ok), 400 tool calls (8 failed), 190 scores, $0.30."""
    answers = {
        "successRate": "0.8", "latencySeconds": "0.35", "costPerTaskUSD": "0.0015", "toolErrorRate": "0.02",
        "alignmentScore": "0.9",
    }  # fmt: skip
    for kpi in KPI:
        if query == contract.promql(kpi, SEL, "30s", 0.95):
            return vector(answers[kpi.value])
    if "alm_agent_tasks_total" in query:
        return vector("200")
    if "alm_agent_tool_calls_total" in query:
        return vector("400")
    if "alignment_score_count" in query:
        return vector("190")
    if 'type="input"' in query:
        return vector("60000")
    if 'type="output"' in query:
        return vector("20000")
    if "alm_agent_cost_usd_total" in query:
        return vector("0.3")
    return vector()


SEL = 'agent="bot",version="bot-v1",namespace="prod"'


def make(handler: Handler, **kwargs: Any) -> tuple[PrometheusProvider, FakePrometheus]:
    fake = FakePrometheus(handler)
    provider = PrometheusProvider("http://prometheus.monitoring:9090/", post=fake.post, now=lambda: MOMENT, **kwargs)
    return provider, fake


async def test_the_five_kpis_with_their_sample_counts_and_totals() -> None:
    provider, fake = make(healthy)
    result = await provider.measure("bot", "prod", "bot-v1", 30)
    assert result.kpis == {
        KPI.SUCCESS_RATE: Reading.measured(0.8, samples=200),
        KPI.LATENCY: Reading.measured(0.35, samples=200),
        KPI.COST_PER_TASK: Reading.measured(0.0015, samples=200),
        KPI.TOOL_ERROR_RATE: Reading.measured(0.02, samples=400),
        KPI.ALIGNMENT: Reading.measured(0.9, samples=190),
    }
    assert result.totals == kpis.Totals(200, 400, 190, 60000, 20000, 0.3)
    assert (result.provider, result.window_seconds, result.observed_at) == ("prometheus", 30, "2025-05-01T12:00:00Z")
    assert not result.partial and result.pods == ()
    # All at one instant, with Prometheus' own timeout, to the query endpoint.
    assert {url for url, _, _ in fake.requests} == {"http://prometheus.monitoring:9090/api/v1/query"}
    assert {(form["time"], form["timeout"]) for _, form, _ in fake.requests} == {(f"{MOMENT.timestamp():.3f}", "10s")}
    assert len(fake.requests) == 11


async def test_the_queries_are_the_contracts_with_the_version_selector() -> None:
    provider, fake = make(healthy)
    await provider.measure("bot", "prod", "bot-v1", 90, quantile=0.99, shadow=True)
    sel = 'agent="bot",version="bot-v1",namespace="prod",shadow="true"'
    for kpi in KPI:
        assert contract.promql(kpi, sel, "90s", 0.99) in fake.queries
    assert f"sum(increase(alm_agent_tasks_total{{{sel}}}[90s]))" in fake.queries
    assert f'sum(increase(alm_agent_tool_calls_total{{{sel},outcome=~"success|error"}}[90s]))' in fake.queries


async def test_without_a_namespace_label() -> None:
    provider, fake = make(healthy, namespace_label=None)
    await provider.measure("bot", "prod", "bot-v1", 30)
    assert all("namespace" not in query for query in fake.queries)
    assert contract.promql(KPI.SUCCESS_RATE, 'agent="bot",version="bot-v1"', "30s") in fake.queries


def no_tasks(query: str) -> tuple[int, Any]:
    """Series exist, nothing happened: ratios are 0/0 = NaN, increases 0."""
    if query.startswith("sum(increase(") and " / " not in query:
        return vector("0")
    return vector("NaN")


async def test_nan_and_no_series_are_inconclusive_never_a_value() -> None:
    provider, _ = make(no_tasks)
    idle = await provider.measure("bot", "prod", "bot-v1", 30)
    assert idle.kpis == {
        KPI.SUCCESS_RATE: Reading.inconclusive(kpis.NO_TASKS, samples=0),
        KPI.LATENCY: Reading.inconclusive(kpis.NO_TASKS, samples=0),
        KPI.COST_PER_TASK: Reading.inconclusive(kpis.NO_TASKS, samples=0),
        KPI.TOOL_ERROR_RATE: Reading.inconclusive(kpis.NO_TOOL_CALLS, samples=0),
        KPI.ALIGNMENT: Reading.inconclusive(kpis.NO_SCORES, samples=0),
    }
    assert idle.observation().model_dump(exclude_none=True) == {"observed_at": "2025-05-01T12:00:00Z"}

    provider, _ = make(lambda query: vector())  # nothing scraped with these labels
    empty = await provider.measure("bot", "prod", "bot-v1", 30)
    assert {r.reason for r in empty.kpis.values()} == {prometheus.NO_SERIES}
    assert {r.state for r in empty.kpis.values()} == {ReadingState.INCONCLUSIVE}
    assert empty.totals == kpis.Totals()


async def test_infinity_is_inconclusive() -> None:
    provider, _ = make(lambda query: vector("+Inf") if " / " in query else vector("3"))
    reading = (await provider.measure("bot", "prod", "bot-v1", 30)).kpis[KPI.SUCCESS_RATE]
    assert reading == Reading.inconclusive("the query returned inf", samples=3)


BAD_DATA = '1:10: parse error: unexpected "}" in label matching, expected string'


@pytest.mark.parametrize(("answer", "message"), [
    (failure(400, "bad_data", BAD_DATA), f"Prometheus rejected the query (HTTP 400, bad_data): {BAD_DATA} in query: "),
    (failure(422, "execution", "query processing would load too many samples into memory"),
     "Prometheus rejected the query (HTTP 422, execution): query processing would load too many samples"),
    (failure(503, "timeout", "query timed out in expression evaluation"),
     "Prometheus failed (HTTP 503, timeout): query timed out"),
    ((502, b"<html>Bad Gateway</html>"), "Prometheus answered HTTP 502 without JSON: '<html>Bad Gateway</html>'"),
    ((200, {"status": "success", "data": {"resultType": "matrix", "result": []}}),
     "Prometheus returned a 'matrix' result, not a number"),
    ((200, {"status": "success", "data": {"resultType": "vector", "result": [{"value": "x"}]}}),
     "Prometheus returned a 'vector' result, not a number"),
])  # fmt: skip
async def test_a_failed_query_is_an_error_reading(answer: tuple[int, Any], message: str) -> None:
    provider, _ = make(lambda query: answer)
    result = await provider.measure("bot", "prod", "bot-v1", 30)
    for reading in result.kpis.values():
        assert reading.state is ReadingState.ERROR and reading.value is None
        assert message in reading.reason


async def test_no_answer_in_time_is_an_error() -> None:
    async def slow(url: str, form: Mapping[str, str], headers: Mapping[str, str]) -> tuple[int, bytes]:
        await asyncio.sleep(10)
        raise AssertionError("not reached")

    provider = PrometheusProvider("http://prom:9090", post=slow, timeout=0.05)
    reading = (await provider.measure("bot", "prod", "bot-v1", 30)).kpis[KPI.LATENCY]
    assert reading == Reading.error("Prometheus at http://prom:9090 did not answer within 0.05s")


async def test_an_unreachable_server_is_an_error() -> None:
    async def refused(url: str, form: Mapping[str, str], headers: Mapping[str, str]) -> tuple[int, bytes]:
        raise aiohttp.ClientConnectionError("Cannot connect to host prom:9090")

    provider = PrometheusProvider("http://prom:9090", post=refused)
    reading = (await provider.measure("bot", "prod", "bot-v1", 30)).kpis[KPI.ALIGNMENT]
    assert reading.state is ReadingState.ERROR
    assert reading.reason == ("Prometheus at http://prom:9090 is unreachable: "
                              "ClientConnectionError: Cannot connect to host prom:9090")  # fmt: skip


# --- custom queries ------------------------------------------------------------------------------


def custom(query: str) -> tuple[int, Any]:
    if query.startswith("one_number"):
        return vector("0.42")
    if query.startswith("a_scalar"):
        return scalar("7")
    if query.startswith("two_series"):
        return vector("1", "2")
    if query.startswith("nothing"):
        return vector()
    if query.startswith("nan"):
        return vector("NaN")
    if query.startswith("broken"):
        return failure(400, "bad_data", "1:7: parse error: unexpected end of input")
    return healthy(query)


async def test_custom_queries_are_evaluated_not_judged() -> None:
    provider, fake = make(custom)
    queries = [
        CustomQuery(name="p99", max=0.5,
                    query='one_number{agent="{{agent}}",version="{{version}}",ns="{{namespace}}"}[{{window}}]'),
        CustomQuery(name="scalar", query="a_scalar", min=10),  # 7 < 10: still just measured
        CustomQuery(name="many", query="two_series", max=1),
        CustomQuery(name="none", query="nothing", max=1),
        CustomQuery(name="nan", query="nan", max=1),
        CustomQuery(name="bad", query="broken(", max=1),
    ]  # fmt: skip
    result = await provider.measure("bot", "prod", "bot-v1", 30, queries=queries)
    assert 'one_number{agent="bot",version="bot-v1",ns="prod"}[30s]' in fake.queries
    assert result.queries["p99"] == Reading.measured(0.42)
    assert result.queries["scalar"] == Reading.measured(7.0)
    assert "returned 2 series; a check needs one number" in result.queries["many"].reason
    assert result.queries["none"] == Reading.inconclusive(prometheus.NO_SERIES)
    assert result.queries["nan"].state is ReadingState.INCONCLUSIVE
    assert result.queries["bad"].state is ReadingState.ERROR
    assert "unexpected end of input in query: broken(" in result.queries["bad"].reason
    assert result.kpis[KPI.SUCCESS_RATE] == Reading.measured(0.8, samples=200)


# --- the credential ------------------------------------------------------------------------------


async def test_the_credential_goes_in_the_header_and_nowhere_else(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    spec = MetricProviderSpec.model_validate(
        {
            "type": "prometheus",
            "prometheus": {
                "address": "http://prom:9090",
                "authSecretRef": {"name": "prom-auth", "key": "token"},
                "timeout": "3s",
            },
        }
    )
    deps = base.Dependencies(auth=TOKEN + "\n")
    provider = prometheus.from_spec(spec, deps)
    fake = FakePrometheus(lambda query: failure(401, "unauthorized", "bad credentials"))
    provider._post = fake.post  # the provider the factory built, on a fake transport
    result = await provider.measure("bot", "prod", "bot-v1", 30)
    assert {headers["Authorization"] for _, _, headers in fake.requests} == {f"Bearer {TOKEN}"}
    assert {form["timeout"] for _, form, _ in fake.requests} == {"3s"}
    shown = [repr(provider), str(provider), repr(deps), repr(result), caplog.text, repr(vars(provider))]
    assert all(TOKEN not in text for text in shown)
    assert "refused the request (HTTP 401): check the credential" in result.kpis[KPI.SUCCESS_RATE].reason


@pytest.mark.parametrize(("secret", "header"), [
    ("abc123", "Bearer abc123"),
    ("  abc123\n", "Bearer abc123"),
    ("Bearer abc123", "Bearer abc123"),
    ("Basic dXNlcjpwdw==", "Basic dXNlcjpwdw=="),
    ("basic dXNlcjpwdw==", "basic dXNlcjpwdw=="),
    ("Basic", "Bearer Basic"),  # a one-word token that happens to spell a scheme
])  # fmt: skip
def test_authorization_header_from_the_secret(secret: str, header: str) -> None:
    assert prometheus.authorization(secret) == header


def test_an_empty_secret_is_a_configuration_error() -> None:
    with pytest.raises(base.ConfigError, match="empty"):
        prometheus.authorization(" \n")


@pytest.mark.parametrize(("address", "message"), [
    ("prom:9090", "must be an http"),
    ("ftp://prom", "must be an http"),
    ("http://admin:hunter2@prom:9090", "must not carry credentials"),
])  # fmt: skip
def test_bad_addresses_are_configuration_errors(address: str, message: str) -> None:
    with pytest.raises(base.ConfigError, match=message) as info:
        PrometheusProvider(address)
    assert "hunter2" not in str(info.value)


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"window_seconds": -1}, "window must be positive"),
    ({"quantile": 0}, "quantile"),
])  # fmt: skip
async def test_bad_arguments_are_configuration_errors(kwargs: dict[str, Any], message: str) -> None:
    provider, fake = make(healthy)
    with pytest.raises(base.ConfigError, match=message):
        await provider.measure("bot", "prod", "bot-v1", **{"window_seconds": 30, **kwargs})
    assert fake.requests == []


@pytest.mark.parametrize(("seconds", "text"), [(30, "30s"), (300.0, "300s"), (1.5, "1500ms"), (0.25, "250ms")])
def test_promql_range(seconds: float, text: str) -> None:
    assert prometheus.promql_range(seconds) == text


async def test_close_is_idempotent() -> None:
    provider = PrometheusProvider("http://prom:9090")
    await provider.close()
    await provider.close()
