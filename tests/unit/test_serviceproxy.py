"""The sandbox's Service proxy: Service URLs in a pod process's env reach the pods the Service selects."""

from __future__ import annotations

from typing import Any

import aiohttp
from aiohttp import web

from alm.sandbox import procutil
from alm.sandbox.serviceproxy import StoreServiceProxy, rewrite_service_urls, service_backends


class FakeStore:
    def __init__(self, services: dict[str, dict[str, str]], pods: list[dict[str, Any]]) -> None:
        self.services, self.pods = services, pods

    def find(self, ref: str, namespace: str, name: str) -> dict[str, Any] | None:
        selector = self.services.get(name)
        return None if selector is None else {"spec": {"selector": selector}}

    def list_objects(self, ref: str, namespace: str) -> list[dict[str, Any]]:
        return self.pods


def _pod(labels: dict[str, str], port: int, phase: str = "Running", ip: str = "127.0.0.1") -> dict[str, Any]:
    ready = "True" if phase == "Running" else "False"
    return {"metadata": {"labels": labels},
            "status": {"phase": phase, "podIP": ip, "conditions": [{"type": "Ready", "status": ready}]},
            "spec": {"containers": [{"ports": [{"name": "http", "containerPort": port}]}]}}


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
    proxy = StoreServiceProxy(store)  # type: ignore[arg-type]
    try:
        env = await proxy.rewrite({"ALM_MIRROR_URL": "http://bot-canary.team.svc:80", "OTHER": "http://x.team.svc:80"})
        assert env["ALM_MIRROR_URL"] == f"http://127.0.0.1:{proxy.port}/team/bot-canary/80"
        assert env["OTHER"] == "http://x.team.svc:80"  # only the variables that may name a Service
        assert await proxy.rewrite({"ALM_MIRROR_URL": "http://example.com"}) == {"ALM_MIRROR_URL": "http://example.com"}
        async with aiohttp.ClientSession() as session:
            async with session.post(env["ALM_MIRROR_URL"] + "/v1/tasks", data=b'{"input": "hi"}',
                                    headers={"X-Alm-Mirror": "v1"}) as response:
                assert response.status == 201 and await response.json() == {"ok": True}
            async with session.post(f"http://127.0.0.1:{proxy.port}/team/empty/80/v1/tasks") as response:
                assert response.status == 503
        assert seen == [("/v1/tasks", b'{"input": "hi"}', "v1")]
    finally:
        await proxy.stop()
        await runner.cleanup()


def test_service_urls_are_rewritten_with_their_port_and_path() -> None:
    env = {"ALM_MIRROR_URL": "http://bot-canary.team.svc.cluster.local:8080/base", "PATH": "/bin"}
    assert rewrite_service_urls(env, "http://127.0.0.1:9/") == {
        "ALM_MIRROR_URL": "http://127.0.0.1:9/team/bot-canary/8080/base", "PATH": "/bin"}
    assert rewrite_service_urls({"ALM_MIRROR_URL": "http://bot.team.svc"}, "http://p")["ALM_MIRROR_URL"] == \
        "http://p/team/bot/80"


def test_backends_resolve_the_target_port_like_kube_proxy() -> None:
    labels = {"app": "bot"}
    ready = _pod(labels, 8080, ip="127.0.0.2")
    terminating = {**_pod(labels, 8080, ip="127.0.0.3"),
                   "metadata": {"labels": labels, "deletionTimestamp": "2024-01-01T00:00:00Z"}}
    not_ready = _pod(labels, 8080, ip="127.0.0.4")
    not_ready["status"]["conditions"] = [{"type": "Ready", "status": "False"}]
    other = _pod({"app": "other"}, 8080, ip="127.0.0.5")
    pods = [ready, terminating, not_ready, other]

    def service(target: Any) -> dict[str, Any]:
        ports = [{"port": 81, "targetPort": 9999}, {"port": 80, **({"targetPort": target} if target else {})}]
        return {"spec": {"selector": labels, "ports": ports}}

    assert service_backends(service("http"), pods, 80) == [("127.0.0.2", 8080)]
    assert service_backends(service(7000), pods, 80) == [("127.0.0.2", 7000)]
    assert service_backends(service(None), pods, 80) == [("127.0.0.2", 8080)]  # the first container port
    assert service_backends(service("http"), pods, 81) == [("127.0.0.2", 9999)]
    assert service_backends(service("nope"), pods, 80) == []
    assert service_backends({"spec": {"ports": [{"port": 80}]}}, pods, 80) == []  # no selector
    assert service_backends(None, pods, 80) == []
