"""Scenarios whose agents really run: KPIs measured, canaries analysed, traffic served.

Written once, run against two backends whose pods are real ``alm-agent`` processes:
``tests/integration/test_live.py`` (the emulated API server; its Deployment controller runs
each pod as a local process) and ``tests/e2e/test_live_e2e.py`` (a real API server and
controller-manager; the node simulator plays kubelet and runs each agent pod as a local
process at its own loopback address). A pod is reached where the API says it is: its
``status.podIP`` and its ``http`` container port, exactly as the operator's scrape provider
reaches it.

Each rollout scenario deploys ``bot-v1`` (a simulated model that always succeeds), sends
steady traffic to the pods (there is no kube-proxy: the scenario spreads requests over the
pods the Service selects, as its proxy would), then changes ``spec.version``. The operator
creates the AgentRollout, scales the canary, moves the Service's selector, measures the
canary's real processes and promotes, rolls back or waits for a human.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import random
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from alm.core import rolloutpass, timestamps
from alm.handlers.context import utcnow
from alm.metrics import operator as metrics
from alm.sandbox.traffic import post_task
from tests import scenarios
from tests.scenarios import Cluster

KPIS = {"minSuccessRate": 0.8}


def pod_address(pod: dict[str, Any]) -> str | None:
    """``host:port`` of a Running pod: its pod IP and ``http`` container port; None if it has none."""
    status = pod.get("status") or {}
    if status.get("phase") != "Running" or not status.get("podIP") or pod["metadata"].get("deletionTimestamp"):
        return None
    ports = pod["spec"]["containers"][0].get("ports") or []
    port = next((p["containerPort"] for p in ports if p.get("name") == "http"), None)
    return None if port is None else f"{status['podIP']}:{port}"


def pod_addresses(cluster: Cluster, selector: dict[str, str]) -> list[str]:
    """The addresses of the Running pods ``selector`` picks (see :func:`pod_address`)."""
    found = (pod_address(pod) for pod in cluster.kube.list("Pod", cluster.namespace, selector))
    return [address for address in found if address is not None]


@contextlib.contextmanager
def shortened(module: Any, name: str, value: float) -> Iterator[None]:
    """A module constant of the in-process operator, changed for one scenario."""
    before = getattr(module, name)
    setattr(module, name, value)
    try:
        yield
    finally:
        setattr(module, name, before)





class Traffic:
    """Steady requests (every ~20 ms) spread over the Agent's running pods, in a thread."""

    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster
        self.stop = threading.Event()
        self.answers = 0
        self.thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Traffic:
        self.thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop.set()
        self.thread.join(15)

    def _addresses(self) -> list[str]:
        return pod_addresses(self.cluster, self._selector())

    def _selector(self) -> dict[str, str]:
        return {"alm.dev/agent": "bot"}

    def _run(self) -> None:
        i, addresses = 0, list[str]()
        while not self.stop.is_set():
            if i % 10 == 0 or not addresses:
                addresses = self._addresses()
            for address in addresses:
                if post_task(address, f"question {i}"):  # a failed task (500) counts; a pod going away not
                    self.answers += 1
            i += 1
            self.stop.wait(0.02)


class ServiceTraffic(Traffic):
    """Requests to the pods Service ``service`` selects (none while it does not exist), as its proxy would."""

    def __init__(self, cluster: Cluster, service: str) -> None:
        super().__init__(cluster)
        self.service = service

    def _selector(self) -> dict[str, str]:
        found = scenarios.get(self.cluster, "Service", self.service)
        return dict(((found or {}).get("spec") or {}).get("selector") or {"alm.dev/none": "none"})


class GatewayTraffic(Traffic):
    """Requests through the HTTPRoute ``route``, as a Gateway would carry them (there is none here).

    Each request goes to one ``backendRef`` Service drawn by weight, then to a Running pod that
    Service selects; a ``RequestMirror`` filter sends a copy (``percent`` of requests) to the
    pods of its Service, whose answer is dropped. Counts what went where.
    """

    def __init__(self, cluster: Cluster, route: str) -> None:
        super().__init__(cluster)
        self.route = route
        self.served: dict[tuple[str, bool], int] = {}  # (backend, while the route mirrored) -> requests
        self.mirrored: dict[str, int] = {}

    def _run(self) -> None:
        i = 0
        draw = random.Random(7)
        while not self.stop.is_set():
            found = scenarios.get(self.cluster, "HTTPRoute", self.route)
            rules = ((found or {}).get("spec") or {}).get("rules") or []
            if not rules:
                self.stop.wait(0.1)  # no route yet
                continue
            rule = rules[0]  # read again every 10 requests, with the pods its Services select
            refs = [r for r in rule.get("backendRefs") or [] if int(r.get("weight", 1)) > 0]
            mirrors = [f["requestMirror"] for f in rule.get("filters") or [] if f.get("type") == "RequestMirror"]
            pods = {name: self._addresses_of(name) for name in
                    {r["name"] for r in refs} | {m["backendRef"]["name"] for m in mirrors}}
            for _ in range(10):
                if self.stop.is_set():
                    break
                if refs:
                    ref = draw.choices(refs, weights=[int(r.get("weight", 1)) for r in refs])[0]
                    if self._send(pods[ref["name"]], i):
                        key = (ref["name"], bool(mirrors))
                        self.served[key] = self.served.get(key, 0) + 1
                        self.answers += 1
                for mirror in mirrors:
                    target = mirror["backendRef"]["name"]
                    if draw.uniform(0, 100) < float(mirror.get("percent", 100)) and self._send(pods[target], i):
                        self.mirrored[target] = self.mirrored.get(target, 0) + 1
                i += 1
                self.stop.wait(0.02)

    def _addresses_of(self, service: str) -> list[str]:
        found = scenarios.get(self.cluster, "Service", service)
        selector = ((found or {}).get("spec") or {}).get("selector")
        return pod_addresses(self.cluster, dict(selector)) if selector else []

    @staticmethod
    def _send(addresses: list[str], i: int) -> bool:
        return bool(addresses) and post_task(addresses[i % len(addresses)], f"question {i}")


def _version(ns: str, name: str, success_rate: str = "1.0") -> dict[str, Any]:
    version = scenarios.agent_version(ns, name, tools=False)
    # A fast model (5 ms a call), so a 1 s analysis window sees tasks wherever the agent runs.
    version["spec"]["model"]["parameters"] = {"extra": {"successRate": success_rate, "latencyMs": "5"}}
    return version


async def _deploy(cluster: Cluster, steps: list[dict[str, Any]]) -> None:
    ns = cluster.namespace
    scenarios.create(cluster, _version(ns, "bot-v1"))
    scenarios.create(cluster, scenarios.agent(
        ns, replicas=2, kpis=KPIS, rollout={"canary": {"steps": steps, "analysis": {"interval": "1s"}}}))
    await scenarios.wait_phase(cluster, "bot", "Available")


def _rollout(cluster: Cluster) -> dict[str, Any] | None:
    found = cluster.kube.list("AgentRollout", cluster.namespace)
    return found[-1] if found else None


async def _wait_rollout(cluster: Cluster, what: str, check: Any, timeout: float = 40) -> dict[str, Any]:
    def probe() -> dict[str, Any] | None:
        found = _rollout(cluster)
        return found if found is not None and check(found.get("status") or {}) else None

    return await cluster.wait_for(probe, timeout=timeout, what=what)


def _selector(cluster: Cluster) -> dict[str, str]:
    service = scenarios.get(cluster, "Service", "bot") or {}
    return dict((service.get("spec") or {}).get("selector") or {})


async def scenario_a_good_canary_reaches_100_percent_and_becomes_stable(cluster: Cluster) -> None:
    await _deploy(cluster, [{"setWeight": 50}, {"analysis": {"duration": "2s"}}])
    scenarios.create(cluster, _version(cluster.namespace, "bot-v2", "1.0"))
    with Traffic(cluster) as traffic:
        scenarios.patch_spec(cluster, "Agent", "bot", {"version": "bot-v2"})
        created = await _wait_rollout(cluster, "the AgentRollout at 50%", lambda s: s.get("weight") == 50)
        assert created["metadata"]["ownerReferences"][0]["kind"] == "Agent"
        assert created["spec"] == {"agentRef": {"name": "bot"}, "targetVersion": "bot-v2", "fromVersion": "bot-v1",
                                   "strategy": created["spec"]["strategy"]}
        agent = await cluster.wait_for(
            lambda: (lambda a: a if (a.get("status") or {}).get("canaryVersion") == "bot-v2" else None)(
                scenarios.get(cluster, "Agent", "bot") or {}), what="the Agent to show its canary")
        assert agent["status"]["stableVersion"] == "bot-v1"  # until the promotion
        done = await _wait_rollout(cluster, "Succeeded", lambda s: s.get("phase") == "Succeeded")
    assert traffic.answers > 0
    status = done["status"]
    assert status["weight"] == 100 and status["finishedAt"]
    runs = {run.get("step"): run for run in status["analysisRuns"]}  # step 1 and the background analysis
    assert set(runs) == {1, None} and {run["verdict"] for run in runs.values()} == {"Successful"}
    run = runs[1]
    assert any(m["verdict"] == "Successful" and m["kpi"] == "successRate" for m in run["measurements"])
    agent = await cluster.wait_for(
        lambda: (lambda a: a if (a.get("status") or {}).get("stableVersion") == "bot-v2" else None)(
            scenarios.get(cluster, "Agent", "bot") or {}), what="bot-v2 to be stable")
    (entry,) = agent["status"]["history"]
    assert entry["version"] == "bot-v2" and entry["result"] == "Succeeded"
    assert entry["rollout"] == done["metadata"]["name"]
    await cluster.wait_for(lambda: [d["metadata"]["name"] for d in scenarios.children(cluster, "Deployment")]
                           == ["bot-bot-v2"] or None, what="the old version's Deployment to go")
    await scenarios.wait_phase(cluster, "bot", "Available")


async def scenario_a_bad_canary_is_rolled_back_with_the_kpi_in_status(cluster: Cluster) -> None:
    await _deploy(cluster, [{"setWeight": 50}, {"analysis": {"duration": "5s"}}])
    scenarios.create(cluster, _version(cluster.namespace, "bot-v2", "0.2"))
    with Traffic(cluster):
        scenarios.patch_spec(cluster, "Agent", "bot", {"version": "bot-v2"})
        done = await _wait_rollout(cluster, "RolledBack and finished",
                                   lambda s: s.get("phase") == "RolledBack" and s.get("finishedAt"))
    abort = done["status"]["abort"]
    assert abort["reason"] == "AnalysisFailed" and abort["kpi"] == "successRate"
    assert abort["threshold"] == 0.8 and abort["value"] < 0.8
    assert "successRate" in done["status"]["message"]
    assert _selector(cluster) == {"alm.dev/agent": "bot", "alm.dev/version": "bot-v1"}
    agent = await cluster.wait_for(
        lambda: (lambda a: a if (scenarios.condition(a, "RolloutFailed") or {}).get("status") == "True" else None)(
            scenarios.get(cluster, "Agent", "bot")), what="RolloutFailed on the Agent")
    assert agent["status"]["stableVersion"] == "bot-v1"
    assert scenarios.condition(agent, "RolloutFailed")["reason"] == "AnalysisFailed"  # type: ignore[index]
    assert [(e["version"], e["result"]) for e in agent["status"]["history"]] == [("bot-v2", "RolledBack")]
    await cluster.wait_for(lambda: [d["metadata"]["name"] for d in scenarios.children(cluster, "Deployment")]
                           == ["bot-bot-v1"] or None, what="the failed version's Deployment to go")
    assert len(cluster.kube.list("AgentRollout", cluster.namespace)) == 1  # not retried


async def scenario_a_fix_rolls_out_after_a_rolled_back_canary(cluster: Cluster) -> None:
    """A failed canary never blocks the next: its finished rollout must not drop the new one's traffic."""
    await _deploy(cluster, [{"setWeight": 50}, {"analysis": {"duration": "3s"}}])
    ns = cluster.namespace
    scenarios.create(cluster, _version(ns, "bot-v2", "0.2"))
    scenarios.create(cluster, _version(ns, "bot-v3", "1.0"))

    def of(version: str, check: Any) -> Any:
        def probe() -> dict[str, Any] | None:
            found = [r for r in cluster.kube.list("AgentRollout", ns) if r["spec"].get("targetVersion") == version]
            return found[0] if found and check(found[0].get("status") or {}) else None
        return probe

    with Traffic(cluster):
        scenarios.patch_spec(cluster, "Agent", "bot", {"version": "bot-v2"})
        await cluster.wait_for(of("bot-v2", lambda s: s.get("phase") == "RolledBack" and s.get("finishedAt")),
                               timeout=40, what="bot-v2 rolled back")
        assert _selector(cluster) == {"alm.dev/agent": "bot", "alm.dev/version": "bot-v1"}
        scenarios.patch_spec(cluster, "Agent", "bot", {"version": "bot-v3"})
        await cluster.wait_for(of("bot-v3", lambda s: s.get("weight") == 50), timeout=40, what="bot-v3 at 50%")
        done = await cluster.wait_for(of("bot-v3", lambda s: s.get("phase") == "Succeeded"), timeout=40,
                                      what="bot-v3 Succeeded")
    assert done["status"]["weight"] == 100
    agent = await cluster.wait_for(
        lambda: (lambda a: a if (a.get("status") or {}).get("stableVersion") == "bot-v3" else None)(
            scenarios.get(cluster, "Agent", "bot") or {}), what="bot-v3 to be stable")
    assert [(e["version"], e["result"]) for e in agent["status"]["history"]] == [
        ("bot-v2", "RolledBack"), ("bot-v3", "Succeeded")]
    await cluster.wait_for(lambda: [d["metadata"]["name"] for d in scenarios.children(cluster, "Deployment")]
                           == ["bot-bot-v3"] or None, what="only bot-v3 left")
    await scenarios.wait_phase(cluster, "bot", "Available")


async def scenario_an_approval_step_waits_until_approved_and_records_who(cluster: Cluster) -> None:
    await _deploy(cluster, [{"setWeight": 50}, {"approval": {"message": "look at the dashboard"}}])
    scenarios.create(cluster, _version(cluster.namespace, "bot-v2"))
    with Traffic(cluster):  # the background analysis must pass once before the promotion
        scenarios.patch_spec(cluster, "Agent", "bot", {"version": "bot-v2"})
        waiting = await _wait_rollout(cluster, "AwaitingApproval", lambda s: s.get("phase") == "AwaitingApproval")
        assert waiting["status"]["currentStep"] == 1 and waiting["status"]["weight"] == 50
        await asyncio.sleep(1.5)  # the background analysis goes on measuring; the step waits
        assert (_rollout(cluster) or {})["status"]["phase"] == "AwaitingApproval"
        name = waiting["metadata"]["name"]
        cluster.kube.merge_patch("AgentRollout", cluster.namespace, name, {"metadata": {"annotations": {
            "alm.dev/approve": "1", "alm.dev/approved-by": "alice"}}})
        done = await _wait_rollout(cluster, "Succeeded", lambda s: s.get("phase") == "Succeeded")
    (approval,) = done["status"]["approvals"]
    assert approval["step"] == 1 and approval["approvedBy"] == "alice" and approval["approvedAt"]
    annotations = done["metadata"].get("annotations") or {}
    assert "alm.dev/approve" not in annotations and "alm.dev/approved-by" not in annotations  # consumed


async def scenario_an_operator_restart_resumes_at_the_same_step(cluster: Cluster) -> None:
    await _deploy(cluster, [{"setWeight": 50}, {"pause": {}}, {"setWeight": 100}])
    scenarios.create(cluster, _version(cluster.namespace, "bot-v2"))
    with Traffic(cluster):
        scenarios.patch_spec(cluster, "Agent", "bot", {"version": "bot-v2"})
        paused = await _wait_rollout(cluster, "Paused at step 1", lambda s: s.get("phase") == "Paused"
                                     and s.get("currentStep") == 1)
        before = paused["status"]

        def replicas() -> dict[str, int]:
            return {d["metadata"]["name"]: d["spec"]["replicas"] for d in scenarios.children(cluster, "Deployment")}

        # The rollout's status leads; the Agent's pass that scales the stable version down follows it.
        pods = await cluster.wait_for(lambda: r if (r := replicas()) == {"bot-bot-v1": 1, "bot-bot-v2": 1} else None,
                                      what="the stable version scaled down to its 50 % share")
        selector = _selector(cluster)
        passes = _rollout_passes()
        await cluster.restart_operator()
        # The operator runs in this process (emulator and e2e alike): its own reconcile counter says
        # when the restarted one has looked at the rollout, which a paused rollout's status does not.
        await cluster.wait_for(lambda: True if _rollout_passes() > passes else None,
                               what="the restarted operator's first rollout pass")
        after = (_rollout(cluster) or {})["status"]
        assert (after["phase"], after["currentStep"], after["weight"], after["stepStartedAt"]) == (
            "Paused", 1, 50, before["stepStartedAt"])
        assert replicas() == pods, "the restarted operator keeps each version's replicas"
        assert _selector(cluster) == selector == {"alm.dev/agent": "bot"}  # both versions, as before the restart
        cluster.kube.merge_patch("AgentRollout", cluster.namespace, paused["metadata"]["name"],
                                 {"metadata": {"annotations": {"alm.dev/resume": ""}}})
        await _wait_rollout(cluster, "Succeeded", lambda s: s.get("phase") == "Succeeded")


def _rollout_passes() -> float:
    """AgentRollout passes of the in-process operator so far (any result)."""
    return sum(metrics.REGISTRY.get_sample_value("alm_operator_reconciles_total",
                                                 {"kind": "AgentRollout", "result": result}) or 0.0
               for result in ("ok", "noop", "error"))


async def scenario_blue_green_previews_analyses_promotes_and_scales_the_old_version_down_later(
        cluster: Cluster) -> None:
    ns = cluster.namespace
    scenarios.create(cluster, _version(ns, "bot-v1"))
    # Long enough a wait for promotion that a loaded machine's polls still see it.
    blue_green = {"autoPromotionSeconds": 8, "scaleDownDelaySeconds": 6, "prePromotionAnalysis": {"interval": "1s"}}
    scenarios.create(cluster, scenarios.agent(ns, replicas=2, kpis=KPIS, rollout={"blueGreen": blue_green}))
    await scenarios.wait_phase(cluster, "bot", "Available")
    scenarios.create(cluster, _version(ns, "bot-v2"))
    with ServiceTraffic(cluster, "bot") as live, ServiceTraffic(cluster, "bot-preview") as smoke:
        scenarios.patch_spec(cluster, "Agent", "bot", {"version": "bot-v2"})
        waiting = await _wait_rollout(cluster, "awaiting promotion", lambda s: s.get("phase") == "Paused")
        # The preview: the new version at full size behind bot-preview, no live traffic.
        assert waiting["status"]["weight"] == 0 and waiting["status"]["currentStep"] == 2
        preview = scenarios.get(cluster, "Service", "bot-preview") or {}
        assert preview["spec"]["selector"] == {"alm.dev/agent": "bot", "alm.dev/version": "bot-v2"}
        assert _selector(cluster) == {"alm.dev/agent": "bot", "alm.dev/version": "bot-v1"}
        assert {d["metadata"]["name"]: d["spec"]["replicas"] for d in scenarios.children(cluster, "Deployment")
                } == {"bot-bot-v1": 2, "bot-bot-v2": 2}
        paused = scenarios.condition(waiting, "Paused") or {}
        assert paused.get("reason") == "AwaitingPromotion" and "promoting automatically" in paused["message"]
        (run,) = waiting["status"]["analysisRuns"]  # measured on what reached the preview
        assert run["verdict"] == "Successful" and any(m["kpi"] == "successRate" for m in run["measurements"])
        done = await _wait_rollout(cluster, "Succeeded", lambda s: s.get("phase") == "Succeeded")
        switched = _selector(cluster)
        kept = sorted(d["metadata"]["name"] for d in scenarios.children(cluster, "Deployment"))
    assert live.answers > 0 and smoke.answers > 0
    assert switched == {"alm.dev/agent": "bot", "alm.dev/version": "bot-v2"}
    assert kept == ["bot-bot-v1", "bot-bot-v2"]  # the old version stays for scaleDownDelaySeconds
    assert scenarios.get(cluster, "Service", "bot-preview") is None
    finished = done["status"]["finishedAt"]
    await cluster.wait_for(lambda: [d["metadata"]["name"] for d in scenarios.children(cluster, "Deployment")]
                           == ["bot-bot-v2"] or None, timeout=20, what="the old version to go after the delay")
    gone = timestamps.parse_time(utcnow())
    assert (gone - timestamps.parse_time(finished)).total_seconds() >= 6 - 1  # finishedAt has whole seconds
    agent = await scenarios.wait_phase(cluster, "bot", "Available")
    assert agent["status"]["stableVersion"] == "bot-v2"


def _route_weights(cluster: Cluster) -> dict[str, int] | None:
    """``{backend Service: weight}`` of the HTTPRoute ``bot``'s rule, None without it."""
    route = scenarios.get(cluster, "HTTPRoute", "bot")
    if route is None:
        return None
    (rule,) = route["spec"]["rules"]
    return {ref["name"]: int(ref.get("weight", 1)) for ref in rule["backendRefs"]}


async def scenario_gateway_api_weights_follow_the_steps_on_the_http_route(cluster: Cluster) -> None:
    # The 30 s grace, shortened (the operator runs in-process); 6 s, as the check that the old version is
    # still there comes after the Succeeded phase, the route and the Agent's Available phase are read back.
    with shortened(rolloutpass, "GATEWAY_SCALE_DOWN_DELAY", 6):
        await _gateway_api_weights(cluster)


async def _gateway_api_weights(cluster: Cluster) -> None:
    ns = cluster.namespace
    scenarios.create(cluster, _version(ns, "bot-v1"))
    # 3 s pauses: every weight stays long enough for the polls below to see it on a loaded machine
    # (CI once missed the status at 60 % between two polls with 1 s pauses).
    steps = [{"setWeight": 30}, {"pause": {"duration": "3s"}}, {"setWeight": 60}, {"pause": {"duration": "3s"}}]
    scenarios.create(cluster, scenarios.agent(
        ns, replicas=2, kpis=KPIS, exposure={"httpRoute": {"parentRefs": [{"name": "gateway"}]}},
        rollout={"canary": {"steps": steps}, "trafficRouting": {"type": "gatewayAPI"}}))
    await scenarios.wait_phase(cluster, "bot", "Available")
    scenarios.create(cluster, _version(ns, "bot-v2"))
    seen: list[tuple[int | None, dict[str, int] | None]] = []
    with Traffic(cluster):
        scenarios.patch_spec(cluster, "Agent", "bot", {"version": "bot-v2"})

        def watch() -> dict[str, Any] | None:
            found = _rollout(cluster)
            status = (found or {}).get("status") or {}
            sample = (status.get("weight"), _route_weights(cluster))
            if not seen or seen[-1] != sample:
                seen.append(sample)
            return found if status.get("phase") == "Succeeded" else None

        done = await cluster.wait_for(watch, timeout=40, what="Succeeded")
    routes = [weights for _, weights in seen if weights is not None]
    expected = [{"bot-stable": 100 - w, "bot-canary": w} for w in (30, 60, 100)]
    assert [w for w in expected if w in routes] == expected, seen  # every step reached the HTTPRoute, in order
    assert routes[-1] == expected[-1]
    # The rollout only asked for the next weight once the HTTPRoute read back the previous one.
    asked = [weight for weight, _ in seen]
    assert seen.index((30, expected[0])) < asked.index(60) and seen.index((60, expected[1])) < asked.index(100), seen
    route = scenarios.get(cluster, "HTTPRoute", "bot") or {}
    assert route["spec"]["parentRefs"] == [{"name": "gateway"}]
    assert route["metadata"]["ownerReferences"][0]["kind"] == "Agent"
    for role, version in (("stable", "bot-v1"), ("canary", "bot-v2")):
        service = scenarios.get(cluster, "Service", f"bot-{role}") or {}
        assert service["spec"]["selector"] == {"alm.dev/agent": "bot", "alm.dev/version": version}
    assert done["status"]["weight"] == 100
    agent = await scenarios.wait_phase(cluster, "bot", "Available")
    assert agent["status"]["stableVersion"] == "bot-v2"
    # The old version keeps its pods for the grace after a gatewayAPI promotion (a quick way back).
    assert sorted(d["metadata"]["name"] for d in scenarios.children(cluster, "Deployment")) == [
        "bot-bot-v1", "bot-bot-v2"]
    # Then it goes, and the route sends everything to bot-stable, which now selects bot-v2.
    await cluster.wait_for(lambda: [d["metadata"]["name"] for d in scenarios.children(cluster, "Deployment")]
                           == ["bot-bot-v2"] or None, timeout=20, what="the old version to go after the grace")
    await cluster.wait_for(lambda: _route_weights(cluster) == {"bot-stable": 100} or None, timeout=10,
                           what="the HTTPRoute to send everything to bot-stable")
    stable = scenarios.get(cluster, "Service", "bot-stable") or {}
    assert stable["spec"]["selector"] == {"alm.dev/agent": "bot", "alm.dev/version": "bot-v2"}
    await cluster.wait_for(lambda: scenarios.get(cluster, "Service", "bot-canary") is None or None, timeout=10,
                           what="bot-canary to go")


def _metric(cluster: Cluster, version: str, name: str, label: str = "") -> float:
    """The sum of metric ``name`` (samples with ``label``) over the running pods of ``version`` (their /metrics)."""
    total = 0.0
    for address in pod_addresses(cluster, {"alm.dev/agent": "bot", "alm.dev/version": version}):
        try:
            with urllib.request.urlopen(f"http://{address}/metrics", timeout=5) as response:
                text = response.read().decode()
        except OSError:
            continue
        total += sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                     if line.startswith(name + "{") and label in line)
    return total


async def _shadow(cluster: Cluster, success_rate: str, phase: str) -> tuple[dict[str, Any], list[Any]]:
    """Roll bot-v2 out as a shadow of bot-v1 under live traffic; the selectors of Service bot seen on the way."""
    ns = cluster.namespace
    scenarios.create(cluster, _version(ns, "bot-v1"))
    shadow = {"duration": "3s", "mirrorPercent": 100, "analysis": {"interval": "1s"},
              "relative": {"maxSuccessRateDrop": 0.1}}
    scenarios.create(cluster, scenarios.agent(ns, replicas=2, kpis=KPIS, rollout={"shadow": shadow}))
    await scenarios.wait_phase(cluster, "bot", "Available")
    scenarios.create(cluster, _version(ns, "bot-v2", success_rate))
    selectors: list[Any] = []
    with ServiceTraffic(cluster, "bot"):
        scenarios.patch_spec(cluster, "Agent", "bot", {"version": "bot-v2"})
        mirroring = await _wait_rollout(cluster, "mirroring", lambda s: s.get("currentStep") == 1
                                        and s.get("analysisRuns"))
        assert mirroring["status"]["weight"] == 0
        deployments = {d["metadata"]["name"]: d for d in scenarios.children(cluster, "Deployment")}
        env = {name: {e["name"]: e.get("value") for e in d["spec"]["template"]["spec"]["containers"][0]["env"]}
               for name, d in deployments.items()}
        assert env["bot-bot-v2"]["ALM_SHADOW"] == "true"  # tools in dry-run, answers dropped
        assert env["bot-bot-v1"]["ALM_MIRROR_URL"] == f"http://bot-canary.{ns}.svc:80"
        await cluster.wait_for(lambda: _metric(cluster, "bot-v1", "alm_agent_mirror_requests_total", 'result="sent"')
                               > 0 or None, what="the stable runtime to mirror copies to the shadow")

        def probe() -> dict[str, Any] | None:
            selectors.append(_selector(cluster))
            found = _rollout(cluster)
            status = (found or {}).get("status") or {}
            return found if status.get("phase") == phase and (phase == "Succeeded" or status.get("finishedAt")) \
                else None

        done = await cluster.wait_for(probe, timeout=40, what=phase)
    return done, selectors


async def scenario_a_good_shadow_is_compared_with_stable_and_promoted(cluster: Cluster) -> None:
    done, selectors = await _shadow(cluster, "1.0", "Succeeded")
    live_on_v1 = {"alm.dev/agent": "bot", "alm.dev/version": "bot-v1"}
    assert selectors[0] == live_on_v1  # while mirroring, live traffic reaches bot-v1 only
    (run,) = done["status"]["analysisRuns"]
    assert run["verdict"] == "Successful"
    kpis = {m["kpi"] for m in run["measurements"]}
    assert {"successRate", "successRateDrop"} <= kpis, run  # absolute, and relative to bot-v1 on the same windows
    assert any(m["kpi"] == "successRateDrop" and m["verdict"] == "Successful" for m in run["measurements"])
    assert _selector(cluster) == {"alm.dev/agent": "bot", "alm.dev/version": "bot-v2"}
    agent = await scenarios.wait_phase(cluster, "bot", "Available")
    assert agent["status"]["stableVersion"] == "bot-v2"


async def scenario_a_bad_shadow_is_rolled_back_without_ever_serving(cluster: Cluster) -> None:
    done, selectors = await _shadow(cluster, "0.2", "RolledBack")
    assert all(s == {"alm.dev/agent": "bot", "alm.dev/version": "bot-v1"} for s in selectors), selectors
    abort = done["status"]["abort"]
    assert abort["reason"] == "AnalysisFailed" and abort["kpi"].startswith("successRate"), abort
    deployments = {d["metadata"]["name"]: d for d in scenarios.children(cluster, "Deployment")}
    env = {e["name"]: e.get("value") for e in
           deployments["bot-bot-v1"]["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert "ALM_MIRROR_URL" not in env  # mirroring off
    agent = await scenarios.wait_phase(cluster, "bot", "Degraded")
    assert agent["status"]["stableVersion"] == "bot-v1"


# --- monitoring -------------------------------------------------------------------------

def _traffic(address: str, stop: threading.Event, answers: list[dict[str, Any]]) -> None:
    """Steady traffic (every ~50 ms) until told to stop or the pod goes away."""
    i = 0
    while not stop.is_set():
        request = urllib.request.Request(f"http://{address}/v1/tasks", method="POST",
                                         data=json.dumps({"input": f"question {i}"}).encode(),
                                         headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                answers.append(json.loads(response.read()))
        except urllib.error.HTTPError as exc:  # a failed task answers 500: still a task
            answers.append({"outcome": "error", "status": exc.code})
        except OSError:  # suspended: the pod is gone
            return
        i += 1
        stop.wait(0.05)


async def scenario_kpis_degraded_budget_and_suspension(cluster: Cluster) -> None:
    ns = cluster.namespace
    version = scenarios.agent_version(ns, tools=False)
    version["spec"]["model"]["parameters"] = {"extra": {"successRate": "0.5", "latencyMs": "5", "inputTokens": "1000",
                                                        "outputTokens": "200"}}
    version["spec"]["model"]["pricing"] = {"inputPerMillionTokensUSD": 1.0, "outputPerMillionTokensUSD": 2.0}
    scenarios.create(cluster, version)
    scenarios.create(cluster, scenarios.agent(
        ns, replicas=1, kpis={"minSuccessRate": 0.9},
        monitoring={"interval": "2s", "consecutiveBreaches": 2},
        budget={"tokensPerDay": 150_000, "onExceeded": "suspend"},
    ))
    await scenarios.wait_phase(cluster, "bot", "Available")
    (address,) = await cluster.wait_for(lambda: pod_addresses(cluster, {"alm.dev/agent": "bot"}) or None,
                                        what="the agent's pod address")
    stop = threading.Event()
    answers: list[dict[str, Any]] = []
    traffic = threading.Thread(target=_traffic, args=(address, stop, answers), daemon=True)
    traffic.start()
    try:
        await _expect_monitoring(cluster)
    finally:
        stop.set()
        traffic.join(15)
    assert answers, "no task was served"


async def _expect_monitoring(cluster: Cluster) -> None:
    ns = cluster.namespace

    def kpis() -> tuple[dict[str, Any], int] | None:
        status = (scenarios.get(cluster, "Agent", "bot") or {}).get("status") or {}
        measured = (status.get("kpis") or {}).get("bot-v1") or {}
        # The cost is folded in by the same pass: until the first KPIs, no window held a task, so
        # its tokens are the first window's tasks (1000 in + 200 out each).
        return (measured, int((status.get("cost") or {}).get("tokens", 0)) // 1200) \
            if "successRate" in measured else None

    measured, tasks = await cluster.wait_for(kpis, timeout=20, what="KPIs in status")
    # Configured 0.5, ~40 tasks per 2 s window: within 0.3, or within four binomial standard deviations
    # when a loaded machine served fewer tasks in the window (22 seen: 0.3 is then only 2.8 of them).
    assert tasks > 0, "KPIs without a task counted"
    assert abs(measured["successRate"] - 0.5) <= max(0.3, 4 * math.sqrt(0.25 / tasks)), (measured, tasks)

    bot = await cluster.wait_for(
        lambda: (lambda a: a if (scenarios.condition(a, "Degraded") or {}).get("status") == "True" else None)(
            scenarios.get(cluster, "Agent", "bot")), timeout=20, what="Degraded after 2 breaching intervals")
    assert "success rate" in scenarios.condition(bot, "Degraded")["message"]  # type: ignore[index]
    bot = await cluster.wait_for(
        lambda: (lambda a: a if (scenarios.condition(a, "BudgetExceeded") or {}).get("status") == "True" else None)(
            scenarios.get(cluster, "Agent", "bot")), timeout=30, what="BudgetExceeded")
    cost = bot["status"]["cost"]
    tasks = cost["tokens"] // 1200
    assert cost["tokens"] == tasks * 1200 and cost["tokens"] >= 150_000  # 1000 in + 200 out per task
    assert cost["usd"] == pytest.approx(tasks * (1000 * 1.0 + 200 * 2.0) / 1e6)

    await scenarios.wait_phase(cluster, "bot", "Suspended", timeout=20)
    (deployment,) = scenarios.children(cluster, "Deployment")
    assert deployment["spec"]["replicas"] == 0
    await cluster.wait_for(lambda: not cluster.kube.list("Pod", ns, {"alm.dev/agent": "bot"}) or None,
                           what="the agent's pods to stop")
    assert len(scenarios.children(cluster, "Service")) == 1  # everything else is kept
    # kopf posts Events in the background: poll rather than read once.
    await cluster.wait_for(lambda: {"KPIThresholdBreached", "BudgetExceeded"} <= {
        e.get("reason") for e in cluster.kube.list("Event", ns)} or None, timeout=10,
        what="the KPIThresholdBreached and BudgetExceeded Events")


async def scenario_a_shadow_through_the_gateway_api_request_mirror_is_promoted(cluster: Cluster) -> None:
    with shortened(rolloutpass, "GATEWAY_SCALE_DOWN_DELAY", 3):  # the 30 s grace (the operator runs in-process)
        await _gateway_api_shadow(cluster)


async def _gateway_api_shadow(cluster: Cluster) -> None:
    """A shadow on the gatewayAPI router: the HTTPRoute mirrors half the requests to bot-canary."""
    ns = cluster.namespace
    scenarios.create(cluster, _version(ns, "bot-v1"))
    shadow = {"duration": "4s", "mirrorPercent": 50, "analysis": {"interval": "1s"},
              "relative": {"maxSuccessRateDrop": 0.1}}
    scenarios.create(cluster, scenarios.agent(
        ns, replicas=2, kpis=KPIS, exposure={"httpRoute": {"parentRefs": [{"name": "gateway"}]}},
        rollout={"shadow": shadow, "trafficRouting": {"type": "gatewayAPI"}}))
    await scenarios.wait_phase(cluster, "bot", "Available")
    scenarios.create(cluster, _version(ns, "bot-v2"))
    with GatewayTraffic(cluster, "bot") as gateway:
        scenarios.patch_spec(cluster, "Agent", "bot", {"version": "bot-v2"})
        mirroring = await cluster.wait_for(
            lambda: (lambda r: r if r is not None and "filters" in r["spec"]["rules"][0] else None)(
                scenarios.get(cluster, "HTTPRoute", "bot")), what="the RequestMirror filter on the HTTPRoute")
        (rule,) = mirroring["spec"]["rules"]
        assert rule["filters"] == [{"type": "RequestMirror", "requestMirror": {
            "backendRef": {"kind": "Service", "name": "bot-canary", "port": 80}, "percent": 50}}], rule
        assert {r["name"]: r.get("weight", 1) for r in rule["backendRefs"]} == {"bot-stable": 100, "bot-canary": 0}
        canary = scenarios.get(cluster, "Service", "bot-canary") or {}
        assert canary["spec"]["selector"] == {"alm.dev/agent": "bot", "alm.dev/version": "bot-v2"}
        done = await _wait_rollout(cluster, "Succeeded", lambda s: s.get("phase") == "Succeeded")
        served, mirrored = dict(gateway.served), dict(gateway.mirrored)
    # While the route mirrored, live traffic went to bot-stable only; bot-canary got the copies.
    assert served.get(("bot-canary", True), 0) == 0 and served.get(("bot-stable", True), 0) > 0, served
    assert mirrored.get("bot-canary", 0) > 0, mirrored
    (run,) = done["status"]["analysisRuns"]
    assert run["verdict"] == "Successful"
    assert {"successRate", "successRateDrop"} <= {m["kpi"] for m in run["measurements"]}, run
    agent = await scenarios.wait_phase(cluster, "bot", "Available")
    assert agent["status"]["stableVersion"] == "bot-v2"
    await cluster.wait_for(lambda: _route_weights(cluster) == {"bot-stable": 100} or None, timeout=20,
                           what="the HTTPRoute to send everything to bot-stable, without the mirror")
    (rule,) = (scenarios.get(cluster, "HTTPRoute", "bot") or {})["spec"]["rules"]
    assert not rule.get("filters"), rule


ROLLOUT_SCENARIOS = [
    scenario_a_good_canary_reaches_100_percent_and_becomes_stable,
    scenario_a_bad_canary_is_rolled_back_with_the_kpi_in_status,
    scenario_a_fix_rolls_out_after_a_rolled_back_canary,
    scenario_an_approval_step_waits_until_approved_and_records_who,
    scenario_an_operator_restart_resumes_at_the_same_step,
    scenario_blue_green_previews_analyses_promotes_and_scales_the_old_version_down_later,
    scenario_gateway_api_weights_follow_the_steps_on_the_http_route,
    scenario_a_good_shadow_is_compared_with_stable_and_promoted,
    scenario_a_bad_shadow_is_rolled_back_without_ever_serving,
    scenario_a_shadow_through_the_gateway_api_request_mirror_is_promoted,
]
MONITORING_SCENARIOS = [scenario_kpis_degraded_budget_and_suspension]
LIVE_SCENARIOS = ROLLOUT_SCENARIOS + MONITORING_SCENARIOS
