"""Real ``alm-agent`` processes: what they answer is what they count, at the configured rates.

Each test starts runtimes on 127.0.0.1 (free ports, see runtime_fixtures), posts tasks over HTTP,
and reads ``/metrics`` with prometheus-client's parser. Rates are checked against the configured
ones within four binomial standard deviations; with a seed the draws are fixed, so a pass is
reproducible rather than lucky.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import math
import threading
import time
from collections.abc import Iterator
from typing import Any

import aiohttp
import pytest

from alm.metrics import contract
from tests.integration import runtime_fixtures
from tests.integration.runtime_fixtures import Pool, value

SECRET = "sk-runtime-test-never-shown-0123456789"
CRM = {"name": "crm", "type": "http", "endpoint": "https://crm.example.com/api",
       "credentials": {"generate": {"length": 32}}}  # fmt: skip
SEARCH = {"name": "search", "type": "http", "endpoint": "https://search.example.com", "readOnly": True}


@pytest.fixture
def pool() -> Iterator[Pool]:
    with Pool() as p:
        yield p


def within(measured: float, expected: float, n: int) -> bool:
    """Within four binomial standard deviations (and at least 0.01) of the expected rate."""
    return abs(measured - expected) <= max(0.01, 4 * math.sqrt(expected * (1 - expected) / n))


async def post_many(url: str, n: int, concurrency: int = 25) -> list[tuple[int, dict[str, Any]]]:
    semaphore = asyncio.Semaphore(concurrency)

    async def one(session: aiohttp.ClientSession, i: int) -> tuple[int, dict[str, Any]]:
        async with semaphore, session.post(f"{url}/v1/tasks", json={"input": f"task {i}"}) as resp:
            return resp.status, await resp.json()

    async with aiohttp.ClientSession() as session:
        return await asyncio.gather(*(one(session, i) for i in range(n)))


def bucket_fraction(families: dict[str, Any], le: str) -> float:
    below = value(families, contract.TASK_DURATION.bucket, le=le)
    return below / value(families, contract.TASK_DURATION.count)


async def test_metrics_count_what_tasks_returned_at_the_configured_rates(pool: Pool) -> None:
    n = 400
    config = runtime_fixtures.simulated_config(
        tools=[CRM, SEARCH], pricing=(1.0, 2.0), successRate=0.8, errorRate=0.05, toolErrorRate=0.1,
        alignmentScore=0.7, latencyMs=50, latencyP95Ms=100, inputTokens=300, outputTokens=100, seed=7,
    )  # fmt: skip
    rt = pool.spawn(config, credentials={"tool-crm": SECRET})

    results = await post_many(rt.url, n)
    families = rt.scrape()

    outcomes = collections.Counter(doc["outcome"] for _, doc in results)
    assert all(status == (500 if doc["outcome"] == "error" else 200) for status, doc in results)
    for outcome in contract.TaskOutcome:
        assert value(families, contract.TASKS.total, outcome=outcome) == outcomes[outcome]
    assert within(outcomes["success"] / n, 0.8, n)
    assert within(outcomes["error"] / n, 0.05, n)

    calls = collections.Counter((c["tool"], c["outcome"]) for _, doc in results for c in doc["toolCalls"])
    for (tool, outcome), count in calls.items():
        assert value(families, contract.TOOL_CALLS.total, tool=tool, outcome=outcome) == count
    errors = value(families, contract.TOOL_CALLS.total, outcome="error")
    executed = errors + value(families, contract.TOOL_CALLS.total, outcome="success")
    assert executed == 2 * n
    assert within(errors / executed, 0.1, 2 * n)

    # 300 in at $1/M + 100 out at $2/M = $0.0005 per task, whatever the outcome.
    assert value(families, contract.TOKENS.total, type="input") == 300 * n
    assert value(families, contract.TOKENS.total, type="output") == 100 * n
    assert sum(doc["costUSD"] for _, doc in results) == pytest.approx(0.0005 * n)
    assert value(families, contract.COST.total) == pytest.approx(0.0005 * n)

    scored = value(families, contract.ALIGNMENT.count)
    assert scored == n - outcomes["error"]
    assert value(families, contract.ALIGNMENT.sum) / scored == pytest.approx(0.7, abs=0.01)

    # Lognormal model latency, median 50 ms and p95 100 ms: half the tasks within 0.05 s, 95%
    # within 0.1 s. Overhead only adds time, so the lower bounds leave room for a busy machine
    # (10 ms more per task still reads 0.30 and 0.90).
    assert value(families, contract.TASK_DURATION.count) == n
    assert 0.25 <= bucket_fraction(families, "0.05") <= 0.55
    assert 0.85 <= bucket_fraction(families, "0.1") <= 0.98
    assert value(families, contract.TASKS_IN_FLIGHT.name) == 0


async def test_every_series_carries_the_common_labels(pool: Pool) -> None:
    rt = pool.spawn(runtime_fixtures.simulated_config("bot-v2", tools=[SEARCH], latencyMs=1),
                    env={"ALM_AGENT": "support-bot"})  # fmt: skip
    rt.post_task()
    families = rt.scrape()
    assert set(families) == {metric.name for metric in contract.ALL}
    for family in families.values():
        assert family.type == contract.by_name(family.name).type
        for sample in family.samples:
            assert sample.labels["agent"] == "support-bot"
            assert sample.labels["version"] == "bot-v2"
            assert sample.labels["shadow"] == "false"


def test_shadow_mode_runs_only_read_only_tools(pool: Pool) -> None:
    config = runtime_fixtures.simulated_config(tools=[CRM, SEARCH], toolErrorRate=0, latencyMs=1)
    rt = pool.spawn(config, env={"ALM_SHADOW": "true"}, credentials={"tool-crm": SECRET})
    for _ in range(10):
        status, doc = rt.post_task()
        assert status == 200
        assert doc["toolCalls"] == [{"tool": "crm", "outcome": "dry_run"}, {"tool": "search", "outcome": "success"}]
    families = rt.scrape()
    assert value(families, contract.TOOL_CALLS.total, tool="crm", outcome="dry_run", shadow="true") == 10
    assert value(families, contract.TOOL_CALLS.total, tool="search", outcome="success", shadow="true") == 10
    # A dry run did not execute, so it has no duration.
    assert value(families, contract.TOOL_DURATION.count, gen_ai_tool_name="crm") == 0


def test_a_missing_credential_fails_the_tool_and_a_present_one_never_shows(pool: Pool) -> None:
    config = runtime_fixtures.simulated_config(tools=[CRM], toolErrorRate=0, latencyMs=1)
    revoked = pool.spawn(config)  # no credential file: as after revocation
    status, doc = revoked.post_task()
    assert status == 200
    assert doc["toolCalls"] == [{"tool": "crm", "outcome": "error"}]
    families = revoked.scrape()
    assert value(families, contract.TOOL_DURATION.count, error_type="credential_unavailable") == 1

    present = pool.spawn(config, credentials={"tool-crm": SECRET}, env={"ALM_LOG_LEVEL": "DEBUG"})
    status, doc = present.post_task(SECRET)
    assert status == 200
    assert doc["toolCalls"] == [{"tool": "crm", "outcome": "success"}]
    assert SECRET not in present.metrics_text()
    assert SECRET not in present.log()


def test_sigterm_drains_in_flight_tasks_and_refuses_new_ones(pool: Pool) -> None:
    # The slow task must still be in flight when "late" is refused: 3 s leaves a loaded machine room
    # to notice it, signal and see readiness drop (1.5 s was tight).
    config = runtime_fixtures.simulated_config(latencyMs=3000, latencyP95Ms=3000)
    rt = pool.spawn(config)
    slow: dict[str, Any] = {}
    worker = threading.Thread(target=lambda: slow.update(zip(("status", "doc"), rt.post_task("slow"), strict=True)))
    worker.start()
    deadline = time.monotonic() + 5
    while value(rt.scrape(), contract.TASKS_IN_FLIGHT.name) < 1:
        assert time.monotonic() < deadline, "the slow task never started"
        time.sleep(0.01)

    signalled = time.monotonic()
    rt.terminate()
    deadline = time.monotonic() + 2
    while rt.request("GET", "/readyz")[0] != 503:
        assert time.monotonic() < deadline, "still ready after SIGTERM"
        time.sleep(0.01)
    status, doc = rt.post_task("late")
    assert (status, doc) == (503, {"error": "draining"})

    assert rt.wait(timeout=10) == 0
    worker.join(timeout=5)
    assert slow["status"] == 200 and slow["doc"]["outcome"] in ("success", "failure")
    assert time.monotonic() - signalled < 8  # the task's 3 s, not the whole ALM_DRAIN_SECONDS (10)


def test_the_drain_is_bounded(pool: Pool) -> None:
    rt = pool.spawn(runtime_fixtures.simulated_config(latencyMs=30000, latencyP95Ms=30000),
                    env={"ALM_DRAIN_SECONDS": "0.3"})  # fmt: skip
    def stuck() -> None:
        with contextlib.suppress(OSError):  # the server gives up on it: the connection closes
            rt.request("POST", "/v1/tasks", {"input": "stuck"})

    threading.Thread(target=stuck, daemon=True).start()
    deadline = time.monotonic() + 5
    while value(rt.scrape(), contract.TASKS_IN_FLIGHT.name) < 1:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    signalled = time.monotonic()
    rt.terminate()
    assert rt.wait(timeout=10) == 0
    assert time.monotonic() - signalled < 5  # drain 0.3 s + at most 2 s to close
    assert "abandoned" in rt.log()


def test_a_wrong_config_exits_1_with_the_reason(pool: Pool) -> None:
    config = runtime_fixtures.simulated_config()
    config["model"]["provider"] = "openai"
    rt = pool.spawn(config, ready=False)
    assert rt.wait(timeout=10) == 1
    assert "model provider 'openai' is not built into the reference runtime" in rt.log()


def test_a_config_that_arrives_late_is_picked_up(pool: Pool, tmp_path: Any) -> None:
    late = tmp_path / "mount" / "config.json"
    rt = pool.spawn(runtime_fixtures.simulated_config(), env={"ALM_CONFIG_FILE": str(late)}, ready=False)
    status, body = rt.request("GET", "/readyz")
    assert status == 503 and b"does not exist yet" in body
    assert rt.post_task()[0] == 503
    late.parent.mkdir()
    (late.parent / "instructions.md").write_text("Be brief.")
    late.write_text((rt.workdir / "config" / "config.json").read_text())
    rt.wait_ready(timeout=10)
    assert rt.post_task()[0] == 200


def test_probes_and_bad_requests(pool: Pool) -> None:
    rt = pool.spawn(runtime_fixtures.simulated_config(latencyMs=1))
    assert rt.request("GET", "/healthz") == (200, b"ok")
    assert rt.request("GET", "/readyz") == (200, b"ok")
    status, body = rt.request("POST", "/v1/tasks", {"text": "wrong field"})
    assert status == 400 and b'string \\"input\\"' in body
    assert value(rt.scrape(), contract.TASKS.total) == 0


def test_stop_leaves_no_process_behind() -> None:
    rt = runtime_fixtures.spawn_runtime(runtime_fixtures.simulated_config(latencyMs=1))
    pid = rt.pid
    assert rt.stop() == 0
    assert rt.stop() == 0  # idempotent
    assert not _alive(pid)
    assert not rt.workdir.exists()


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/status") as f:
            return "zombie" not in f.read()
    except FileNotFoundError:
        return False
