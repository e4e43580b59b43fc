"""The reference agent runtime: a small aiohttp server (console script ``alm-agent``).

    POST /v1/tasks   {"input": "..."} -> {"output", "outcome", "toolCalls", "tokens", "costUSD"}
                     200 for success and failure, 500 for error, 503 while not ready or draining
    GET  /healthz    200 while the process runs
    GET  /readyz     200 once the config is loaded; 503 before that and while draining
    GET  /metrics    the metric contract (alm.metrics.contract), Prometheus text format

Start-up: listen first, then load the config (a mount that is not there yet is retried every
second, with /readyz saying why); a config that is wrong exits with status 1 and the reason,
because an immutable ConfigMap will not get better by waiting.

SIGTERM (and SIGINT) drain: /readyz and new tasks answer 503 at once, in-flight tasks finish
(for at most ``ALM_DRAIN_SECONDS``), then the server closes and the process exits 0. Kubernetes
stops routing to a pod that is not ready, so nothing is lost in between.

Environment: ALM_CONFIG_FILE, ALM_AGENT, ALM_AGENT_VERSION, ALM_CREDENTIALS_DIR, ALM_SHADOW (see
``alm.runtime.config``); ALM_HOST (0.0.0.0), ALM_PORT (8080; 0 picks a free port, logged as
``listening on http://HOST:PORT``), ALM_DRAIN_SECONDS (25), ALM_LOG_LEVEL (INFO); ALM_SIM_* for
the simulated backend (``alm.runtime.simulated``); ALM_MIRROR_* to copy tasks to a shadow version
(``alm.runtime.mirror``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
from collections.abc import Iterator, Mapping
from typing import Any

import prometheus_client
from aiohttp import web
from prometheus_client import exposition

from alm.metrics.contract import TaskOutcome
from alm.runtime import backends, config, instruments, mirror, sdk

__all__ = ["Runtime", "main", "make_app", "serve"]

log = logging.getLogger("alm.runtime")

_CONFIG_RETRY_SECONDS = 1.0
# After the drain, for responses still being written; aiohttp waits up to twice this for a
# handler the drain gave up on (once gracefully, once after cancelling it).
_CLOSE_SECONDS = 1.0


class Runtime:
    """The server's state: what it serves with, whether it takes work, and what is in flight."""

    def __init__(self, environ: Mapping[str, str]) -> None:
        self.environ = environ
        self.registry = instruments.Registry(auto_describe=True)
        self.agent: sdk.Agent | None = None
        self.backend: backends.Backend | None = None
        self.mirror: mirror.Mirror | None = None
        self.not_ready = "config not loaded yet"
        self.draining = False
        self.in_flight = 0
        self._idle = asyncio.Event()
        self._idle.set()

    @property
    def ready(self) -> bool:
        return self.backend is not None and not self.draining

    def load(self) -> None:
        """Load the config and build agent and backend (ConfigNotReady: retry; ConfigError: give up)."""
        cfg = config.load(self.environ)
        agent = sdk.Agent.from_config(cfg, registry=self.registry)
        self.mirror = mirror.Mirror.from_env(self.environ, cfg, self.registry)
        self.backend = backends.create(agent, cfg, self.environ)
        self.agent = agent
        log.info(
            "serving agent=%s version=%s shadow=%s provider=%s model=%s tools=%s",
            cfg.agent, cfg.version, cfg.shadow, cfg.model.provider, cfg.model.name,
            ",".join(t.name for t in cfg.tools) or "-",
        )  # fmt: skip

    def start_draining(self) -> None:
        self.draining = True
        self.not_ready = "draining"
        log.info("draining: %d task(s) in flight", self.in_flight)

    async def drain(self, seconds: float) -> None:
        try:
            await asyncio.wait_for(self._idle.wait(), seconds)
        except TimeoutError:
            log.warning("drain took longer than %.1fs: %d task(s) abandoned", seconds, self.in_flight)
        else:
            log.info("drained")

    @contextlib.contextmanager
    def admitted(self) -> Iterator[None]:
        """Count a task in flight for as long as it is served; the drain waits for zero."""
        self.in_flight += 1
        self._idle.clear()
        try:
            yield
        finally:
            self.in_flight -= 1
            if self.in_flight == 0:
                self._idle.set()

    async def run_task(self, text: str) -> tuple[int, dict[str, Any]]:
        """Serve one task; the HTTP status and the response document."""
        assert self.agent is not None and self.backend is not None
        task = self.agent.task()
        output: str | None = None
        try:
            async with task:
                output = await self.backend.run(text, task)
        except Exception as e:
            # The type only: an exception's message may quote a credential or user data.
            log.warning("task ended in error: %s", type(e).__name__)
            log.debug("task error", exc_info=True)
        result = task.result
        assert result is not None
        doc: dict[str, Any] = {
            "output": output,
            "outcome": str(result.outcome),
            "toolCalls": [{"tool": c.tool, "outcome": str(c.outcome)} for c in result.tool_calls],
            "tokens": {"input": result.input_tokens, "output": result.output_tokens},
            "costUSD": result.cost_usd,
        }
        if result.outcome is TaskOutcome.ERROR:
            doc["error"] = result.error_type
            return 500, doc
        return 200, doc


RUNTIME = web.AppKey("runtime", Runtime)


# --- HTTP ----------------------------------------------------------------------------------------


async def post_task(request: web.Request) -> web.Response:
    runtime = request.app[RUNTIME]
    # Admission is decided before the first await, so a task is either refused or drained for.
    if not runtime.ready:
        return web.json_response({"error": runtime.not_ready}, status=503)
    with runtime.admitted():
        try:
            body = await request.json()
        except ValueError:
            body = None
        if not isinstance(body, dict) or not isinstance(body.get("input"), str):
            return web.json_response({"error": 'the body must be a JSON object with a string "input"'}, status=400)
        if runtime.mirror is not None:  # a copy for the shadow, queued without waiting (alm.runtime.mirror)
            runtime.mirror.offer(await request.read(), request.headers, request.path)
        status, doc = await runtime.run_task(body["input"])
        return web.json_response(doc, status=status)


async def get_healthz(request: web.Request) -> web.Response:
    return web.Response(text="ok")


async def get_readyz(request: web.Request) -> web.Response:
    runtime = request.app[RUNTIME]
    if runtime.ready:
        return web.Response(text="ok")
    return web.Response(text=runtime.not_ready, status=503)


async def get_metrics(request: web.Request) -> web.Response:
    # The classic text format 0.0.4: what every Prometheus 2.x and 3.x and the scrape provider read.
    body = prometheus_client.generate_latest(request.app[RUNTIME].registry)
    return web.Response(body=body, headers={"Content-Type": exposition.CONTENT_TYPE_PLAIN_0_0_4})


async def _close_mirror(app: web.Application) -> None:
    copies = app[RUNTIME].mirror
    if copies is not None:
        await copies.close()


def make_app(runtime: Runtime) -> web.Application:
    app = web.Application()
    app[RUNTIME] = runtime
    app.on_cleanup.append(_close_mirror)
    app.router.add_post("/v1/tasks", post_task)
    app.router.add_get("/healthz", get_healthz)
    app.router.add_get("/readyz", get_readyz)
    app.router.add_get("/metrics", get_metrics)
    return app


# --- Process -------------------------------------------------------------------------------------


async def _load_until_ready(runtime: Runtime, stop: asyncio.Event) -> None:
    while not stop.is_set():
        try:
            runtime.load()
            return
        except config.ConfigNotReady as e:
            if runtime.not_ready != str(e):
                log.info("waiting for the config: %s", e)
            runtime.not_ready = str(e)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), _CONFIG_RETRY_SECONDS)


async def serve(settings: config.ServerSettings, runtime: Runtime, stop: asyncio.Event) -> None:
    """Listen, load, serve until ``stop`` is set, drain, close. Raises ConfigError on a bad config."""
    runner = web.AppRunner(make_app(runtime), access_log=None, shutdown_timeout=_CLOSE_SECONDS)
    await runner.setup()
    try:
        await web.TCPSite(runner, settings.host, settings.port).start()
        host, port = runner.addresses[0][:2]
        log.info("listening on http://%s:%d", host, port)
        await _load_until_ready(runtime, stop)
        await stop.wait()
        runtime.start_draining()
        await runtime.drain(settings.drain_seconds)
    finally:
        await runner.cleanup()


async def _amain(environ: Mapping[str, str]) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    try:
        await serve(config.ServerSettings.from_env(environ), Runtime(environ), stop)
    except config.ConfigError as e:
        log.error("cannot serve: %s", e)
        return 1
    log.info("stopped")
    return 0


def main() -> int:
    """Entry point of ``alm-agent``."""
    logging.basicConfig(
        level=os.environ.get("ALM_LOG_LEVEL", "INFO").upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    return asyncio.run(_amain(os.environ))


if __name__ == "__main__":
    sys.exit(main())
