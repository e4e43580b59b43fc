"""Runtime mirroring between real ``alm-agent`` processes: the shadow gets its share, the live path does not wait.

A stable runtime with ``ALM_MIRROR_URL`` / ``ALM_MIRROR_PERCENT`` copies tasks to a shadow runtime
(``ALM_SHADOW=true``), as the replicas router asks for a shadow rollout without a mesh. Request
ids are fixed, so which tasks are copied is known in advance (``alm.runtime.mirror.sampled``).
"""

from __future__ import annotations

import json
import socket
import statistics
import time
import urllib.request
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from alm.metrics import contract
from alm.runtime.mirror import MIRROR_REQUESTS, sampled
from tests.integration.runtime_fixtures import Pool, RuntimeProcess, simulated_config, value

CRM = {"name": "crm", "type": "http", "endpoint": "https://crm.example.com/api",
       "credentials": {"generate": {"length": 32}}}  # fmt: skip
SEARCH = {"name": "search", "type": "http", "endpoint": "https://search.example.com", "readOnly": True}
MIRRORED = f"{MIRROR_REQUESTS}_total"


@pytest.fixture
def pool() -> Iterator[Pool]:
    with Pool() as p:
        yield p


def post(runtime: RuntimeProcess, request_id: str) -> tuple[int, float]:
    """POST one task with ``X-Request-Id``; the status and the seconds it took."""
    req = urllib.request.Request(
        f"{runtime.url}/v1/tasks", data=json.dumps({"input": request_id}).encode(), method="POST",
        headers={"Content-Type": "application/json", "X-Request-Id": request_id},
    )  # fmt: skip
    started = time.perf_counter()
    with urllib.request.urlopen(req, timeout=30) as resp:
        resp.read()
        return resp.status, time.perf_counter() - started


def eventually(check: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def p95(samples: list[float]) -> float:
    return statistics.quantiles(samples, n=20)[-1]


def dead_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"  # closed again: connections are refused


def test_the_shadow_gets_the_sampled_share_and_runs_tools_in_dry_run(pool: Pool) -> None:
    shadow = pool.spawn(simulated_config("bot-v2", tools=[CRM, SEARCH], latencyMs=5, seed=2), {"ALM_SHADOW": "true"})
    stable = pool.spawn(simulated_config("bot-v1", tools=[CRM, SEARCH], latencyMs=5, seed=1),
                        {"ALM_MIRROR_URL": shadow.url, "ALM_MIRROR_PERCENT": "30"})  # fmt: skip
    ids = [f"task-{i}" for i in range(300)]
    assert all(post(stable, i)[0] == 200 for i in ids)
    expected = sum(sampled(i, 30) for i in ids)
    assert abs(expected / len(ids) - 0.3) < 4 * (0.3 * 0.7 / len(ids)) ** 0.5  # about 30 %

    eventually(lambda: value(shadow.scrape(), contract.TASKS.total) == expected)
    live, copied = stable.scrape(), shadow.scrape()
    assert value(live, MIRRORED, result="sent", agent="bot", version="bot-v1") == expected
    assert value(live, MIRRORED, result="dropped") == value(live, MIRRORED, result="error") == 0
    assert value(live, contract.TASKS.total) == len(ids)
    # The shadow ran every copy with its mutating tool in dry-run and its read-only tool for real.
    assert value(copied, contract.TOOL_CALLS.total, tool="crm", outcome="dry_run", shadow="true") == expected
    assert value(copied, contract.TOOL_CALLS.total, tool="search", shadow="true") == expected
    assert value(copied, contract.TOOL_CALLS.total, tool="crm", outcome="success") == 0
    assert value(live, contract.TOOL_CALLS.total, tool="crm", outcome="dry_run") == 0
    assert MIRROR_REQUESTS not in shadow.metrics_text()  # a shadow never mirrors
    assert stable.stop() == 0 and shadow.stop() == 0


def test_a_slow_or_dead_shadow_does_not_slow_the_live_path(pool: Pool) -> None:
    fixed: dict[str, Any] = {"latencyMs": 20, "latencyP95Ms": 20, "seed": 1}
    slow_shadow = pool.spawn(simulated_config("bot-v2", latencyMs=1000, latencyP95Ms=1000), {"ALM_SHADOW": "true"})
    slow_env = {"ALM_MIRROR_URL": slow_shadow.url, "ALM_MIRROR_QUEUE": "10"}
    runtimes = {
        "no mirror": pool.spawn(simulated_config(**fixed)),
        "dead shadow": pool.spawn(simulated_config(**fixed), {"ALM_MIRROR_URL": dead_url()}),
        "slow shadow": pool.spawn(simulated_config(**fixed), slow_env),
    }
    latencies: dict[str, list[float]] = {name: [] for name in runtimes}
    for i in range(150):  # interleaved, so the machine's hiccups hit every runtime alike
        for name, runtime in runtimes.items():
            status, seconds = post(runtime, f"task-{i}")
            assert status == 200
            latencies[name].append(seconds)

    baseline = p95(latencies["no mirror"])
    figures = {name: round(p95(samples) * 1000, 1) for name, samples in latencies.items()}
    print(f"live-path p95 (ms): {figures}")
    for name in ("dead shadow", "slow shadow"):
        assert p95(latencies[name]) <= baseline * 1.25 + 0.010, figures

    dead, slow = runtimes["dead shadow"].scrape(), runtimes["slow shadow"].scrape()
    eventually(lambda: value(runtimes["dead shadow"].scrape(), MIRRORED, result="error") == 150)
    assert value(dead, MIRRORED, result="sent") == 0
    assert value(slow, MIRRORED, result="dropped") > 0  # the queue filled and the live path went on
    # Copies still queued at shutdown are dropped: the drain is not held up by the shadow.
    started = time.monotonic()
    assert runtimes["slow shadow"].stop() == 0
    assert time.monotonic() - started < 5
