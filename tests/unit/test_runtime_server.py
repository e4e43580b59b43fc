"""The runtime's HTTP surface in-process: admission, responses, readiness and the drain."""

from __future__ import annotations

import asyncio
import json
import logging
import pathlib
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from alm.metrics import contract
from alm.runtime import config, sdk, server
from tests.integration.runtime_fixtures import simulated_config

SECRET = "sk-server-test-never-shown"


class GatedBackend:
    """A backend whose tasks wait for the test to open a gate, and may raise."""

    def __init__(self) -> None:
        self.gate = asyncio.Event()
        self.gate.set()
        self.started = asyncio.Event()
        self.raise_: Exception | None = None

    async def run(self, text: str, task: sdk.Task) -> str:
        self.started.set()
        await self.gate.wait()
        task.tokens(input=10, output=5)
        task.tool("crm", ok=True)
        if self.raise_ is not None:
            raise self.raise_
        return text.upper()


def serving(runtime: server.Runtime) -> GatedBackend:
    backend = GatedBackend()
    runtime.agent = sdk.Agent("bot", "v1", pricing=config.Pricing(1.0, 2.0), registry=runtime.registry)
    runtime.backend = backend
    return backend


@pytest.fixture
async def runtime() -> server.Runtime:
    return server.Runtime({})


@pytest.fixture
async def client(runtime: server.Runtime) -> AsyncIterator[TestClient[Any, Any]]:
    async with TestClient(TestServer(server.make_app(runtime))) as c:
        yield c


async def test_not_ready_before_the_config_is_loaded(client: TestClient[Any, Any]) -> None:
    resp = await client.get("/readyz")
    assert (resp.status, await resp.text()) == (503, "config not loaded yet")
    resp = await client.post("/v1/tasks", json={"input": "x"})
    assert (resp.status, await resp.json()) == (503, {"error": "config not loaded yet"})
    assert (await client.get("/healthz")).status == 200
    assert (await client.get("/metrics")).status == 200


async def test_a_task_answers_with_its_summary(runtime: server.Runtime, client: TestClient[Any, Any]) -> None:
    serving(runtime)
    resp = await client.post("/v1/tasks", json={"input": "hello"})
    assert resp.status == 200
    assert await resp.json() == {
        "output": "HELLO", "outcome": "success", "toolCalls": [{"tool": "crm", "outcome": "success"}],
        "tokens": {"input": 10, "output": 5}, "costUSD": pytest.approx(0.00002),  # 10 x $1/M + 5 x $2/M
    }  # fmt: skip
    metrics = await client.get("/metrics")
    assert metrics.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    text = await metrics.text()
    assert 'alm_agent_tasks_total{agent="bot",outcome="success",shadow="false",version="v1"} 1.0' in text
    assert "_created" not in text


async def test_an_error_answers_500_with_the_type_only(
    runtime: server.Runtime, client: TestClient[Any, Any], caplog: pytest.LogCaptureFixture
) -> None:
    serving(runtime).raise_ = RuntimeError(f"upstream said: bad key {SECRET}")
    with caplog.at_level(logging.DEBUG, logger="alm.runtime"):
        resp = await client.post("/v1/tasks", json={"input": "hello"})
    body = await resp.text()
    assert resp.status == 500
    assert json.loads(body)["outcome"] == "error" and json.loads(body)["error"] == "RuntimeError"
    assert SECRET not in body
    assert "task ended in error: RuntimeError" in caplog.text
    assert SECRET not in "".join(r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("body", [b"not json", b"[]", b'{"input": 3}', b'{"prompt": "x"}'])
async def test_bad_requests_are_400_and_count_nothing(
    runtime: server.Runtime, client: TestClient[Any, Any], body: bytes
) -> None:
    serving(runtime)
    resp = await client.post("/v1/tasks", data=body, headers={"Content-Type": "application/json"})
    assert resp.status == 400
    assert runtime.in_flight == 0
    assert f'{contract.TASKS.total}{{agent="bot",outcome="success",shadow="false",version="v1"}} 0.0' in (
        await (await client.get("/metrics")).text()
    )


async def test_draining_refuses_new_work_and_finishes_what_it_took(
    runtime: server.Runtime, client: TestClient[Any, Any]
) -> None:
    backend = serving(runtime)
    backend.gate.clear()
    in_flight = asyncio.create_task(client.post("/v1/tasks", json={"input": "slow"}))
    await backend.started.wait()
    assert runtime.in_flight == 1

    runtime.start_draining()
    drained = asyncio.create_task(runtime.drain(5))
    resp = await client.get("/readyz")
    assert (resp.status, await resp.text()) == (503, "draining")
    resp = await client.post("/v1/tasks", json={"input": "late"})
    assert (resp.status, await resp.json()) == (503, {"error": "draining"})
    assert not drained.done()

    backend.gate.set()
    assert (await in_flight).status == 200
    await asyncio.wait_for(drained, 1)
    assert runtime.in_flight == 0


async def test_a_drain_gives_up_after_its_bound(
    runtime: server.Runtime, client: TestClient[Any, Any], caplog: pytest.LogCaptureFixture
) -> None:
    backend = serving(runtime)
    backend.gate.clear()
    stuck = asyncio.create_task(client.post("/v1/tasks", json={"input": "stuck"}))
    await backend.started.wait()
    runtime.start_draining()
    await runtime.drain(0.05)
    assert "1 task(s) abandoned" in caplog.text
    backend.gate.set()
    await stuck


# --- serve() -------------------------------------------------------------------------------------


def environ(tmp_path: pathlib.Path, doc: dict[str, Any]) -> dict[str, str]:
    (tmp_path / "config.json").write_text(json.dumps(doc))
    (tmp_path / "instructions.md").write_text("Be brief.")
    return {"ALM_AGENT": "bot", "ALM_CONFIG_FILE": str(tmp_path / "config.json")}


async def test_serve_loads_serves_and_stops(tmp_path: pathlib.Path, caplog: pytest.LogCaptureFixture) -> None:
    env = environ(tmp_path, simulated_config(latencyMs=0))
    runtime, stop = server.Runtime(env), asyncio.Event()
    settings = config.ServerSettings("127.0.0.1", 0, 1.0)
    with caplog.at_level(logging.INFO, logger="alm.runtime"):
        serving_task = asyncio.create_task(server.serve(settings, runtime, stop))
        for _ in range(200):
            if runtime.ready:
                break
            await asyncio.sleep(0.01)
        assert runtime.ready and runtime.agent is not None
        stop.set()
        await asyncio.wait_for(serving_task, 5)
    assert "listening on http://127.0.0.1:" in caplog.text
    assert "serving agent=bot version=bot-v1 shadow=False provider=simulated" in caplog.text
    assert runtime.not_ready == "draining"


async def test_serve_refuses_an_unknown_provider(tmp_path: pathlib.Path) -> None:
    doc = simulated_config()
    doc["model"]["provider"] = "openai"
    runtime = server.Runtime(environ(tmp_path, doc))
    with pytest.raises(config.ConfigError, match="'openai' is not built into the reference runtime"):
        await asyncio.wait_for(server.serve(config.ServerSettings("127.0.0.1", 0), runtime, asyncio.Event()), 5)
