"""The sandbox's Service proxy: Service URLs in a pod process's env reach the pods the Service selects."""

from __future__ import annotations

from typing import Any

import aiohttp
from aiohttp import web

from alm.sandbox import procutil
from alm.sandbox.serviceproxy import ServiceProxy


class FakeStore:
    def __init__(self, services: dict[str, dict[str, str]], pods: list[dict[str, Any]]) -> None:
        self.services, self.pods = services, pods

    def find(self, ref: str, namespace: str, name: str) -> dict[str, Any] | None:
        selector = self.services.get(name)
        return None if selector is None else {"spec": {"selector": selector}}

    def list_objects(self, ref: str, namespace: str) -> list[dict[str, Any]]:
        return self.pods


def _pod(labels: dict[str, str], port: int, phase: str = "Running") -> dict[str, Any]:
    return {"metadata": {"labels": labels}, "status": {"phase": phase},
            "spec": {"containers": [{"ports": [{"containerPort": port}]}]}}


async def test_a_service_url_is_rewritten_and_forwarded_to_a_selected_running_pod() -> None:
    seen: list[tuple[str, bytes, str | None]] = []

    async def answer(request: web.Request) -> web.Response:
        seen.append((request.path, await request.read(), request.headers.get("X-Alm-Mirror")))
        return web.json_response({"ok": True}, status=201)

    app = web.Application()
    app.router.add_post("/v1/tasks", answer)
    runner = web.AppRunner(app)
    await runner.setup()
    port = procutil.free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    canary = {"app": "bot", "version": "v2"}
    store = FakeStore({"bot-canary": canary, "empty": {"app": "none"}},
                      [_pod(canary, port), _pod({"app": "bot", "version": "v1"}, 1), _pod(canary, 2, "Pending")])
    proxy = ServiceProxy(store)  # type: ignore[arg-type]
    try:
        env = await proxy.rewrite({"ALM_MIRROR_URL": "http://bot-canary.team.svc:80", "OTHER": "http://x.team.svc:80"})
        assert env["ALM_MIRROR_URL"] == f"http://127.0.0.1:{proxy.port}/team/bot-canary"
        assert env["OTHER"] == "http://x.team.svc:80"  # only the variables that may name a Service
        assert await proxy.rewrite({"ALM_MIRROR_URL": "http://example.com"}) == {"ALM_MIRROR_URL": "http://example.com"}
        async with aiohttp.ClientSession() as session:
            async with session.post(env["ALM_MIRROR_URL"] + "/v1/tasks", data=b'{"input": "hi"}',
                                    headers={"X-Alm-Mirror": "v1"}) as response:
                assert response.status == 201 and await response.json() == {"ok": True}
            async with session.post(f"http://127.0.0.1:{proxy.port}/team/empty/v1/tasks") as response:
                assert response.status == 503
        assert seen == [("/v1/tasks", b'{"input": "hi"}', "v1")]
    finally:
        await proxy.stop()
        await runner.cleanup()
