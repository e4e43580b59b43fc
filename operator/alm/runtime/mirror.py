"""Shadow traffic without a mesh: the stable runtime sends a copy of its tasks to the shadow.

The operator turns it on for the ``replicas`` router through the stable Deployment's env:

==========================  =======  =====================================================
environment                 default  meaning
==========================  =======  =====================================================
ALM_MIRROR_URL              (off)    base URL of the shadow Service, e.g. http://bot-canary.team.svc:80
ALM_MIRROR_PERCENT          100      share of tasks copied, 0-100 (0: off)
ALM_MIRROR_QUEUE            100      copies waiting to be sent, at most (and 8 MiB of bodies)
ALM_MIRROR_CONCURRENCY      4        copies in flight to the shadow, at most
ALM_MIRROR_TIMEOUT_SECONDS  10       time one copy may take, connecting included
==========================  =======  =====================================================

Guarantees:

- The live path is never slowed or failed: :meth:`Mirror.offer` is synchronous and constant
  time (a hash and a non-blocking put); it never raises. The copies are sent by background
  tasks over their own connection pool, and the shadow's answers are read and discarded.
- Memory is bounded: when the queue is full a copy is dropped, not waited for.
- Every copy is counted once in ``alm_agent_mirror_requests_total{result}``: ``sent`` (the
  shadow answered; how its task went is in its own metrics), ``error`` (no answer in time, a
  failed connection, or 502/503/504: the shadow is down, not ready or draining) or ``dropped``
  (queue full, or still queued at shutdown).
- Sampling is deterministic: a task is copied when a hash of its request id (``X-Request-Id``,
  or a fresh one) falls below the percentage, so every replica makes the same choice for the
  same id, and the id travels with the copy.
- No loops: a copy carries ``X-Alm-Mirror: <version>``, and a request carrying it is never
  copied again; a runtime that is itself a shadow (``ALM_SHADOW=true``) never mirrors.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import logging
import uuid
from collections.abc import Mapping

import aiohttp
import prometheus_client
from prometheus_client import CollectorRegistry

from alm.metrics import contract
from alm.runtime import config

__all__ = [
    "MAX_QUEUED_BYTES",
    "MIRROR_HEADER",
    "MIRROR_REQUESTS",
    "REQUEST_ID_HEADER",
    "RESULTS",
    "Mirror",
    "MirrorSettings",
    "sampled",
]

log = logging.getLogger("alm.runtime.mirror")

MIRROR_HEADER = "X-Alm-Mirror"
REQUEST_ID_HEADER = "X-Request-Id"
MIRROR_REQUESTS = "alm_agent_mirror_requests"
"""The counter family (exposed as ``alm_agent_mirror_requests_total``)."""
RESULTS = ("sent", "dropped", "error")
MAX_QUEUED_BYTES = 8 * 1024 * 1024
_REFUSED = frozenset({502, 503, 504})


@dataclasses.dataclass(frozen=True)
class MirrorSettings:
    url: str
    percent: int = 100
    queue: int = 100
    concurrency: int = 4
    timeout_seconds: float = 10.0

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> MirrorSettings | None:
        """The settings, or None when mirroring is off; ``config.ConfigError`` when a value is wrong."""
        url = environ.get("ALM_MIRROR_URL", "").strip()
        if not url:
            return None
        if not url.startswith(("http://", "https://")):
            raise config.ConfigError(f"ALM_MIRROR_URL must be an http:// or https:// URL, got {url!r}")
        settings = cls(
            url=url.rstrip("/"),
            percent=int(_number(environ, "ALM_MIRROR_PERCENT", cls.percent, int, 0, 100)),
            queue=int(_number(environ, "ALM_MIRROR_QUEUE", cls.queue, int, 1, 1_000_000)),
            concurrency=int(_number(environ, "ALM_MIRROR_CONCURRENCY", cls.concurrency, int, 1, 1000)),
            timeout_seconds=_number(environ, "ALM_MIRROR_TIMEOUT_SECONDS", cls.timeout_seconds, float, 0.001, 3600),
        )
        return settings if settings.percent else None


def _number(environ: Mapping[str, str], key: str, default: float, kind: type, low: float, high: float) -> float:
    raw = environ.get(key, "").strip()
    if not raw:
        return default
    try:
        value = float(kind(raw))
    except ValueError:
        raise config.ConfigError(f"{key}={raw!r} is not a {kind.__name__}") from None
    if not low <= value <= high:
        raise config.ConfigError(f"{key}={raw!r} must be within {low:g}-{high:g}")
    return value


def sampled(request_id: str, percent: int) -> bool:
    """Whether the request with this id is mirrored at ``percent``: the same answer everywhere, every time."""
    digest = hashlib.sha256(request_id.encode()).digest()
    return int.from_bytes(digest[:8], "big") % 100 < percent


@dataclasses.dataclass(frozen=True)
class _Copy:
    path: str
    body: bytes
    headers: Mapping[str, str]


class Mirror:
    """Copies tasks to the shadow in the background; :meth:`offer` from the handler, :meth:`close` at the end."""

    def __init__(self, settings: MirrorSettings, agent: str, version: str, registry: CollectorRegistry) -> None:
        self.settings = settings
        self.version = version
        counter = prometheus_client.Counter(
            MIRROR_REQUESTS, "Copies of tasks sent to the shadow version, by result (sent, dropped, error).",
            [*contract.COMMON_LABELS, "result"], registry=registry,
        )  # fmt: skip
        common = (agent, version, contract.shadow_value(False))
        self._results = {result: counter.labels(*common, result) for result in RESULTS}
        self._queue: asyncio.Queue[_Copy] = asyncio.Queue(settings.queue)
        self._queued_bytes = 0
        self._workers: list[asyncio.Task[None]] = []
        self._session: aiohttp.ClientSession | None = None
        self._closed = False

    @classmethod
    def from_env(
        cls, environ: Mapping[str, str], cfg: config.RuntimeConfig, registry: CollectorRegistry
    ) -> Mirror | None:
        """The mirror the environment asks for, or None (off, or this runtime is a shadow itself)."""
        settings = MirrorSettings.from_env(environ)
        if settings is None:
            return None
        if cfg.shadow:
            log.warning("ALM_MIRROR_URL ignored: a shadow never mirrors")
            return None
        log.info("mirroring %d%% of tasks to %s", settings.percent, settings.url)
        return cls(settings, cfg.agent, cfg.version, registry)

    def count(self, result: str) -> None:
        self._results[result].inc()

    def offer(self, body: bytes, headers: Mapping[str, str], path: str = "/v1/tasks") -> bool:
        """Queue a copy of a live request if it is sampled; True if queued. Never blocks, never raises."""
        try:
            if MIRROR_HEADER in headers:
                return False
            request_id = headers.get(REQUEST_ID_HEADER) or uuid.uuid4().hex
            if not sampled(request_id, self.settings.percent):
                return False
            if self._closed or self._queue.full() or self._queued_bytes + len(body) > MAX_QUEUED_BYTES:
                self.count("dropped")
                return False
            self._start()
            sent_headers = {
                "Content-Type": "application/json",
                REQUEST_ID_HEADER: request_id,
                MIRROR_HEADER: self.version,
            }
            self._queue.put_nowait(_Copy(path, body, sent_headers))
            self._queued_bytes += len(body)
            return True
        except Exception:  # the live path must not fail because of a copy
            log.debug("mirror offer failed", exc_info=True)
            self.count("error")
            return False

    def _start(self) -> None:
        if self._workers:
            return
        connector = aiohttp.TCPConnector(limit=self.settings.concurrency)
        timeout = aiohttp.ClientTimeout(total=self.settings.timeout_seconds)
        self._session = aiohttp.ClientSession(connector=connector, timeout=timeout)
        self._workers = [asyncio.create_task(self._send_loop()) for _ in range(self.settings.concurrency)]

    async def _send_loop(self) -> None:
        while True:
            item = await self._queue.get()
            try:
                self.count(await self._send(item))
            except asyncio.CancelledError:
                self.count("dropped")
                raise
            finally:
                self._queued_bytes -= len(item.body)
                self._queue.task_done()

    async def _send(self, item: _Copy) -> str:
        assert self._session is not None
        try:
            async with self._session.post(self.settings.url + item.path, data=item.body, headers=item.headers) as resp:
                await resp.read()  # discarded; read so the connection is reused
                return "error" if resp.status in _REFUSED else "sent"
        except Exception as e:  # refused, reset, timed out, or anything else: a sender never dies
            log.debug("mirror copy failed: %s", type(e).__name__)
            return "error"

    async def flush(self) -> None:
        """Until every queued copy has been sent or failed (tests)."""
        await self._queue.join()

    async def close(self) -> None:
        """Stop sending; copies still queued are dropped (and counted)."""
        self._closed = True
        for worker in self._workers:
            worker.cancel()
        for worker in self._workers:
            with contextlib.suppress(asyncio.CancelledError):
                await worker
        while not self._queue.empty():
            self._queue.get_nowait()
            self.count("dropped")
        if self._session is not None:
            await self._session.close()
