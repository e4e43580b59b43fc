"""A revocation webhook endpoint for the tests: a real HTTP server on 127.0.0.1, in its own thread.

It does what a user's endpoint should: verify the ``X-Alm-Signature`` HMAC of the raw body
with the shared key (a bad signature gets 401), and deduplicate on ``X-Alm-Delivery``. It
records every call (headers, body, whether the signature matched, what it answered) and can
be told to fail the next N calls, or to hold calls until released (to stop the operator
while a call is in flight)::

    with WebhookServer(key=b"...") as hook:
        hook.fail_next(2, status=503)      # then 200
        hook.url                           # http://127.0.0.1:<port>/revoke
        hook.calls                         # [Call(...), ...]
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import threading
import time
from typing import Any

import aiohttp.web

from alm.core import revocation

__all__ = ["Call", "WebhookServer"]


@dataclasses.dataclass(frozen=True)
class Call:
    at: float  # time.monotonic() when it arrived
    headers: dict[str, str]
    body: bytes
    signature_ok: bool
    answered: int

    @property
    def json(self) -> dict[str, Any]:
        doc: dict[str, Any] = json.loads(self.body)
        return doc

    @property
    def attempt(self) -> int:
        return int(self.headers.get(revocation.ATTEMPT_HEADER, "0"))

    @property
    def delivery(self) -> str:
        return self.headers.get(revocation.DELIVERY_HEADER, "")


class WebhookServer:
    def __init__(self, key: bytes, path: str = "/revoke") -> None:
        self.key = key
        self.path = path
        self.calls: list[Call] = []
        self.revoked: set[str] = set()  # deliveries acted upon (deduplicated)
        self._failures: list[int] = []
        self._hold: asyncio.Event | None = None
        self._held = threading.Event()  # set while a call waits on the hold
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._started = threading.Event()
        self._stop: asyncio.Event | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{self.path}"

    # --- behaviour, set from the test's thread ---------------------------------------------

    def fail_next(self, times: int, status: int = 503) -> None:
        self._failures = [status] * times

    def hold(self) -> None:
        """Calls wait (unanswered) until :meth:`release`."""
        assert self._loop is not None
        self._loop.call_soon_threadsafe(self._make_hold)

    def _make_hold(self) -> None:
        self._hold = asyncio.Event()

    def release(self) -> None:
        assert self._loop is not None
        self._loop.call_soon_threadsafe(self._release)

    def _release(self) -> None:
        if self._hold is not None:
            self._hold.set()
        self._hold = None

    def wait_held(self, timeout: float = 30) -> bool:
        return self._held.wait(timeout)

    # --- serving ---------------------------------------------------------------------------

    async def _handle(self, request: aiohttp.web.Request) -> aiohttp.web.Response:
        arrived = time.monotonic()
        body = await request.read()
        signature = request.headers.get(revocation.SIGNATURE_HEADER, "")
        ok = revocation.signature_matches(body, self.key, signature)
        headers = dict(request.headers)
        if self._hold is not None:
            self._held.set()
            await self._hold.wait()
        if not ok:
            status = 401
        elif self._failures:
            status = self._failures.pop(0)
        else:
            status = 200
            self.revoked.add(headers.get(revocation.DELIVERY_HEADER, ""))
        self.calls.append(Call(arrived, headers, body, ok, status))
        return aiohttp.web.json_response({"status": status}, status=status)

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        app = aiohttp.web.Application()
        app.router.add_post(self.path, self._handle)
        runner = aiohttp.web.AppRunner(app, access_log=None)
        await runner.setup()
        site = aiohttp.web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        server = site._server
        assert isinstance(server, asyncio.base_events.Server)
        self.port = server.sockets[0].getsockname()[1]
        self._started.set()
        try:
            await self._stop.wait()
        finally:
            self._release()
            await runner.cleanup()

    def __enter__(self) -> WebhookServer:
        self._thread = threading.Thread(target=lambda: asyncio.run(self._serve()), name="webhook", daemon=True)
        self._thread.start()
        assert self._started.wait(10), "the webhook test server did not start"
        return self

    def __exit__(self, *_: object) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        if self._thread is not None:
            self._thread.join(10)
