"""Runtime mirroring in-process: settings, sampling, the bounded queue, results, and the server's hook."""

from __future__ import annotations

import asyncio
import json
import logging
import math
import pathlib
import socket
import time
from collections.abc import AsyncIterator, Iterator, Mapping
from typing import Any

import prometheus_client
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client.parser import text_string_to_metric_families

from alm.routers.base import MIRROR_HEADER as ROUTER_MIRROR_HEADER
from alm.routers.base import RuntimeMirror
from alm.runtime import config, instruments, mirror, server
from tests.integration.runtime_fixtures import simulated_config
from tests.unit.test_runtime_server import serving

# --- Settings ------------------------------------------------------------------------------------


@pytest.mark.parametrize(("env", "expected"), [
    ({}, None),
    ({"ALM_MIRROR_URL": ""}, None),
    ({"ALM_MIRROR_URL": "http://shadow:80", "ALM_MIRROR_PERCENT": "0"}, None),
    ({"ALM_MIRROR_URL": "http://shadow:80/"}, mirror.MirrorSettings("http://shadow:80")),
    ({"ALM_MIRROR_URL": "https://s", "ALM_MIRROR_PERCENT": "25", "ALM_MIRROR_QUEUE": "7", "ALM_MIRROR_CONCURRENCY": "2",
      "ALM_MIRROR_TIMEOUT_SECONDS": "0.5"}, mirror.MirrorSettings("https://s", 25, 7, 2, 0.5)),
])  # fmt: skip
def test_settings(env: dict[str, str], expected: mirror.MirrorSettings | None) -> None:
    assert mirror.MirrorSettings.from_env(env) == expected


@pytest.mark.parametrize(("env", "message"), [
    ({"ALM_MIRROR_URL": "shadow:80"}, "must be an http:// or https:// URL"),
    ({"ALM_MIRROR_PERCENT": "101"}, "ALM_MIRROR_PERCENT='101' must be within 0-100"),
    ({"ALM_MIRROR_PERCENT": "half"}, "ALM_MIRROR_PERCENT='half' is not a int"),
    ({"ALM_MIRROR_QUEUE": "0"}, "ALM_MIRROR_QUEUE='0' must be within"),
    ({"ALM_MIRROR_CONCURRENCY": "-1"}, "ALM_MIRROR_CONCURRENCY='-1' must be within"),
    ({"ALM_MIRROR_TIMEOUT_SECONDS": "0"}, "ALM_MIRROR_TIMEOUT_SECONDS='0' must be within"),
])  # fmt: skip
def test_bad_settings_are_config_errors(env: dict[str, str], message: str) -> None:
    with pytest.raises(config.ConfigError, match=message):
        mirror.MirrorSettings.from_env({"ALM_MIRROR_URL": "http://shadow", **env})


def test_the_replicas_routers_env_is_what_the_runtime_reads() -> None:
    env = RuntimeMirror("v1", "http://bot-canary.team.svc:80", 30).env()
    assert mirror.MirrorSettings.from_env(env) == mirror.MirrorSettings("http://bot-canary.team.svc:80", 30)
    assert mirror.MIRROR_HEADER == ROUTER_MIRROR_HEADER


# --- Sampling ------------------------------------------------------------------------------------


@pytest.mark.parametrize("percent", [1, 10, 30, 50, 99])
def test_sampling_takes_the_percentage(percent: int) -> None:
    n = 20_000
    taken = sum(mirror.sampled(f"req-{i}", percent) for i in range(n))
    p = percent / 100
    assert abs(taken / n - p) <= 4 * math.sqrt(p * (1 - p) / n)


def test_sampling_is_deterministic_and_nested() -> None:
    ids = [f"req-{i}" for i in range(2000)]
    assert [mirror.sampled(i, 30) for i in ids] == [mirror.sampled(i, 30) for i in ids]
    # A request mirrored at 10 % is also mirrored at 30 %: raising the percentage only adds requests.
    assert all(mirror.sampled(i, 30) for i in ids if mirror.sampled(i, 10))
    assert not any(mirror.sampled(i, 0) for i in ids) and all(mirror.sampled(i, 100) for i in ids)


# --- A shadow in-process -------------------------------------------------------------------------


class Shadow:
    """An HTTP server standing in for the shadow: records what it gets, answers ``status``, may hang."""

    def __init__(self) -> None:
        self.received: list[tuple[Mapping[str, str], bytes]] = []
        self.gate = asyncio.Event()
        self.gate.set()
        self.status = 200

    async def handle(self, request: web.Request) -> web.Response:
        self.received.append((request.headers.copy(), await request.read()))
        await self.gate.wait()
        return web.json_response({"output": "shadow answer"}, status=self.status)


@pytest.fixture
async def shadow() -> AsyncIterator[tuple[Shadow, str]]:
    app = web.Application()
    fake = Shadow()
    app.router.add_post("/v1/tasks", fake.handle)
    test_server = TestServer(app)
    await test_server.start_server()
    yield fake, str(test_server.make_url("")).rstrip("/")
    fake.gate.set()
    await test_server.close()


def counts(registry: instruments.Registry) -> dict[str, float]:
    families = text_string_to_metric_families(_exposition(registry))
    return {s.labels["result"]: s.value for f in families if f.name == mirror.MIRROR_REQUESTS for s in f.samples}


def _exposition(registry: instruments.Registry) -> str:
    return prometheus_client.generate_latest(registry).decode()


@pytest.fixture
def registry() -> instruments.Registry:
    return instruments.Registry(auto_describe=True)


def make(url: str, registry: instruments.Registry, **settings: Any) -> mirror.Mirror:
    return mirror.Mirror(mirror.MirrorSettings(url, **settings), "bot", "v1", registry)


BODY = json.dumps({"input": "hello"}).encode()


async def test_copies_go_to_the_shadow_with_the_request_id(shadow: tuple[Shadow, str], registry: Any) -> None:
    fake, url = shadow
    copies = make(url, registry)
    assert copies.offer(BODY, {"X-Request-Id": "req-1"})
    assert copies.offer(BODY, {})  # an id is made up when the client sent none
    await copies.flush()
    await copies.close()
    assert [body for _, body in fake.received] == [BODY, BODY]
    headers = fake.received[0][0]
    assert headers["X-Request-Id"] == "req-1" and headers["X-Alm-Mirror"] == "v1"
    assert headers["Content-Type"] == "application/json"
    assert len(fake.received[1][0]["X-Request-Id"]) == 32
    assert counts(registry) == {"sent": 2, "dropped": 0, "error": 0}


async def test_only_sampled_requests_are_copied(shadow: tuple[Shadow, str], registry: Any) -> None:
    fake, url = shadow
    copies = make(url, registry, percent=30)
    ids = [f"req-{i}" for i in range(200)]
    queued = [copies.offer(BODY, {"X-Request-Id": i}) for i in ids]
    await copies.flush()
    await copies.close()
    assert queued == [mirror.sampled(i, 30) for i in ids]
    assert sorted(h["X-Request-Id"] for h, _ in fake.received) == sorted(i for i in ids if mirror.sampled(i, 30))


async def test_a_mirrored_request_is_never_mirrored_again(shadow: tuple[Shadow, str], registry: Any) -> None:
    fake, url = shadow
    copies = make(url, registry)
    assert not copies.offer(BODY, {"X-Alm-Mirror": "v0"})
    await copies.close()
    assert fake.received == [] and counts(registry) == {"sent": 0, "dropped": 0, "error": 0}


async def test_a_full_queue_drops_and_counts(shadow: tuple[Shadow, str], registry: Any) -> None:
    fake, url = shadow
    fake.gate.clear()  # the shadow hangs
    copies = make(url, registry, queue=2, concurrency=1)
    results = [copies.offer(BODY, {}) for _ in range(5)]
    assert results == [True, True, False, False, False]
    await asyncio.sleep(0.05)  # the sender takes one: room for one more
    assert copies.offer(BODY, {})
    fake.gate.set()
    await copies.flush()
    await copies.close()
    assert counts(registry) == {"sent": 3, "dropped": 3, "error": 0}


async def test_bodies_are_bounded_in_bytes_too(shadow: tuple[Shadow, str], registry: Any) -> None:
    _, url = shadow
    copies = make(url, registry)
    assert not copies.offer(b"x" * (mirror.MAX_QUEUED_BYTES + 1), {})
    await copies.close()
    assert counts(registry)["dropped"] == 1


@pytest.mark.parametrize(("status", "result"), [(200, "sent"), (500, "sent"), (400, "sent"), (503, "error"),
                                                (502, "error")])  # fmt: skip
async def test_what_the_shadow_answers_decides_the_result(
    shadow: tuple[Shadow, str], registry: Any, status: int, result: str
) -> None:
    fake, url = shadow
    fake.status = status
    copies = make(url, registry)
    copies.offer(BODY, {})
    await copies.flush()
    await copies.close()
    assert counts(registry)[result] == 1


def dead_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"  # nothing listens there any more


async def test_a_dead_shadow_is_an_error_and_offer_stays_instant(registry: Any) -> None:
    copies = make(dead_url(), registry)
    started = time.perf_counter()
    for _ in range(20):
        copies.offer(BODY, {})
    # offer() tries nothing itself: before the loop runs, no copy has failed (a blocking send in
    # offer would have counted 20 errors by now). The time bound is generous, for a loaded machine
    # (20 offers take microseconds; a connect timeout would take seconds).
    assert counts(registry) == {"sent": 0, "dropped": 0, "error": 0}
    assert time.perf_counter() - started < 1.0
    await copies.flush()
    await copies.close()
    assert counts(registry) == {"sent": 0, "dropped": 0, "error": 20}


async def test_a_sender_survives_any_failure(registry: Any) -> None:
    copies = make("http://bad host:80", registry, concurrency=1)  # not even a valid URL
    for _ in range(3):
        copies.offer(BODY, {})
    await asyncio.wait_for(copies.flush(), 2)
    await copies.close()
    assert counts(registry) == {"sent": 0, "dropped": 0, "error": 3}


async def test_a_hanging_shadow_times_out(shadow: tuple[Shadow, str], registry: Any) -> None:
    fake, url = shadow
    fake.gate.clear()
    copies = make(url, registry, timeout_seconds=0.1)
    copies.offer(BODY, {})
    await asyncio.wait_for(copies.flush(), 2)
    await copies.close()
    assert counts(registry)["error"] == 1


async def test_close_drops_what_waits_and_refuses_more(shadow: tuple[Shadow, str], registry: Any) -> None:
    fake, url = shadow
    fake.gate.clear()
    copies = make(url, registry, concurrency=1)
    for _ in range(3):
        copies.offer(BODY, {})
    await asyncio.sleep(0.05)  # one is in flight, two wait
    await copies.close()
    assert not copies.offer(BODY, {})
    assert counts(registry) == {"sent": 0, "dropped": 4, "error": 0}


class Exploding(Mapping[str, str]):
    def __getitem__(self, key: str) -> str:
        raise RuntimeError("boom")

    def __iter__(self) -> Iterator[str]:
        raise RuntimeError("boom")

    def __len__(self) -> int:
        return 0

    def __contains__(self, key: object) -> bool:
        raise RuntimeError("boom")


async def test_offer_never_raises(registry: Any, caplog: pytest.LogCaptureFixture) -> None:
    copies = make("http://shadow", registry)
    assert copies.offer(BODY, Exploding()) is False
    await copies.close()
    assert counts(registry)["error"] == 1


def runtime_config(shadow: bool = False) -> config.RuntimeConfig:
    return config.RuntimeConfig("bot", "v1", shadow, config.ModelConfig("simulated", "sim-1"))


def test_a_shadow_never_mirrors(registry: Any, caplog: pytest.LogCaptureFixture) -> None:
    env = {"ALM_MIRROR_URL": "http://elsewhere"}
    assert mirror.Mirror.from_env(env, runtime_config(shadow=True), registry) is None
    assert "a shadow never mirrors" in caplog.text
    assert mirror.Mirror.from_env({}, runtime_config(), registry) is None
    assert mirror.Mirror.from_env(env, runtime_config(), registry) is not None


# --- The server's hook ---------------------------------------------------------------------------


@pytest.fixture
async def mirrored(shadow: tuple[Shadow, str]) -> AsyncIterator[tuple[server.Runtime, TestClient[Any, Any], Shadow]]:
    fake, url = shadow
    runtime = server.Runtime({})
    serving(runtime)
    runtime.mirror = mirror.Mirror(mirror.MirrorSettings(url), "bot", "v1", runtime.registry)
    async with TestClient(TestServer(server.make_app(runtime))) as client:
        yield runtime, client, fake


async def test_the_server_mirrors_valid_tasks_and_answers_as_before(
    mirrored: tuple[server.Runtime, TestClient[Any, Any], Shadow],
) -> None:
    runtime, client, fake = mirrored
    fake.gate.clear()  # the shadow is stuck: the live answer must not wait for it
    resp = await asyncio.wait_for(client.post("/v1/tasks", json={"input": "hello"}, headers={"X-Request-Id": "r1"}), 2)
    assert resp.status == 200 and (await resp.json())["output"] == "HELLO"
    bad = await client.post("/v1/tasks", data=b"[]", headers={"Content-Type": "application/json"})
    assert bad.status == 400
    fake.gate.set()
    assert runtime.mirror is not None
    await runtime.mirror.flush()
    assert [(h["X-Request-Id"], json.loads(body)) for h, body in fake.received] == [("r1", {"input": "hello"})]
    text = await (await client.get("/metrics")).text()
    assert 'alm_agent_mirror_requests_total{agent="bot",result="sent",shadow="false",version="v1"} 1.0' in text


async def test_the_server_closes_the_mirror_on_cleanup(shadow: tuple[Shadow, str]) -> None:
    _, url = shadow
    runtime = server.Runtime({})
    serving(runtime)
    runtime.mirror = mirror.Mirror(mirror.MirrorSettings(url), "bot", "v1", runtime.registry)
    async with TestClient(TestServer(server.make_app(runtime))) as client:
        await client.post("/v1/tasks", json={"input": "x"})
    assert not runtime.mirror.offer(BODY, {})  # closed


def environ(tmp_path: pathlib.Path, **extra: str) -> dict[str, str]:
    (tmp_path / "config.json").write_text(json.dumps(simulated_config(latencyMs=0)))
    (tmp_path / "instructions.md").write_text("Be brief.")
    return {"ALM_AGENT": "bot", "ALM_CONFIG_FILE": str(tmp_path / "config.json"), **extra}


def test_load_turns_mirroring_on_from_the_environment(tmp_path: pathlib.Path, caplog: pytest.LogCaptureFixture) -> None:
    runtime = server.Runtime(environ(tmp_path, ALM_MIRROR_URL="http://bot-canary.team.svc:80", ALM_MIRROR_PERCENT="5"))
    with caplog.at_level(logging.INFO, logger="alm.runtime"):
        runtime.load()
    assert runtime.mirror is not None and runtime.mirror.settings.percent == 5
    assert "mirroring 5% of tasks to http://bot-canary.team.svc:80" in caplog.text
    assert 'alm_agent_mirror_requests_total{agent="bot",result="dropped",shadow="false",version="bot-v1"} 0.0' in (
        _exposition(runtime.registry)
    )


def test_without_mirroring_the_exposition_is_the_contract_only(tmp_path: pathlib.Path) -> None:
    runtime = server.Runtime(environ(tmp_path))
    runtime.load()
    assert runtime.mirror is None
    assert mirror.MIRROR_REQUESTS not in _exposition(runtime.registry)


def test_a_bad_mirror_setting_stops_the_runtime(tmp_path: pathlib.Path) -> None:
    runtime = server.Runtime(environ(tmp_path, ALM_MIRROR_URL="http://x", ALM_MIRROR_PERCENT="200"))
    with pytest.raises(config.ConfigError, match="ALM_MIRROR_PERCENT"):
        runtime.load()
    assert not runtime.ready
