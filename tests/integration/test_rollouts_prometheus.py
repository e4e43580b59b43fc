"""A canary analysed through a real Prometheus: the ``prometheus`` provider decides the rollout.

The emulated API server runs every pod as a real ``alm-agent`` process; the Debian package's
Prometheus discovers them from a file kept in step with the API's pods (what Kubernetes service
discovery does in a cluster, with the ``namespace`` and ``pod`` labels it would add) and scrapes
them every second; the operator's analysis sends PromQL to it. A canary whose simulated success
rate is 0.2 is rolled back, the measured value in status coming from Prometheus.
"""

from __future__ import annotations

import threading
from typing import Any

import pytest

from tests import scenarios
from tests.integration import prometheus_fixtures
from tests.integration.operator_harness import EmulatedCluster
from tests.live_scenarios import KPIS, Traffic, _rollout, _version, pod_address

pytestmark = pytest.mark.skipif(prometheus_fixtures.binary() is None,
                                reason="prometheus is not installed (apt-get install prometheus)")


class Discovery:
    """Keeps Prometheus' targets equal to the namespace's Running agent pods, in a thread."""

    def __init__(self, cluster: EmulatedCluster, prometheus: prometheus_fixtures.PrometheusServer) -> None:
        self.cluster, self.prometheus = cluster, prometheus
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Discovery:
        self.thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop.set()
        self.thread.join(10)

    def _run(self) -> None:
        seen: dict[str, Any] = {}
        while not self.stop.is_set():
            targets = {}
            for pod in self.cluster.kube.list("Pod", self.cluster.namespace, {"alm.dev/agent": "bot"}):
                address = pod_address(pod)
                if address is not None:
                    targets[pod["metadata"]["name"]] = (address, {"namespace": self.cluster.namespace})
            if targets != seen:
                self.prometheus.set_targets(targets)
                seen = targets
            self.stop.wait(0.2)


async def test_a_bad_canary_measured_by_prometheus_is_rolled_back(process_cluster: EmulatedCluster) -> None:
    cluster, ns = process_cluster, process_cluster.namespace
    with prometheus_fixtures.PrometheusServer({}) as prometheus, Discovery(cluster, prometheus):
        provider = {"type": "prometheus", "prometheus": {"address": prometheus.url, "timeout": "5s"}}
        steps = [{"setWeight": 50}, {"analysis": {"duration": "60s"}}]
        scenarios.create(cluster, _version(ns, "bot-v1"))
        scenarios.create(cluster, scenarios.agent(
            ns, replicas=2, kpis=KPIS, monitoring={"provider": provider, "interval": "4s"},
            rollout={"canary": {"steps": steps, "analysis": {"interval": "4s"}}}))
        await scenarios.wait_phase(cluster, "bot", "Available")
        scenarios.create(cluster, _version(ns, "bot-v2", "0.2"))
        with Traffic(cluster):
            scenarios.patch_spec(cluster, "Agent", "bot", {"version": "bot-v2"})
            done = await cluster.wait_for(
                lambda: (lambda r: r if ((r or {}).get("status") or {}).get("phase") == "RolledBack" else None)(
                    _rollout(cluster)), timeout=60, what="RolledBack")
        # Prometheus really scraped the canary under the labels the provider queries.
        up = prometheus.query(f'up{{namespace="{ns}"}} == 1')
        assert {s["metric"]["pod"] for s in up} >= {p["metadata"]["name"] for p in
                                                   cluster.kube.list("Pod", ns, {"alm.dev/version": "bot-v1"})}
    abort = done["status"]["abort"]
    assert abort["reason"] == "AnalysisFailed" and abort["kpi"] == "successRate", abort
    assert abort["threshold"] == 0.8 and 0.0 <= abort["value"] < 0.6, abort  # configured 0.2
    # The step's run and the background run both measure the canary; the abort names a failed measurement.
    failed = [m["value"] for run in done["status"]["analysisRuns"] for m in run["measurements"]
              if m["kpi"] == "successRate" and m["verdict"] == "Failed"]
    assert abort["value"] in failed and all(v < 0.6 for v in failed), failed
    assert scenarios.get(cluster, "Service", "bot")["spec"]["selector"] == {  # type: ignore[index]
        "alm.dev/agent": "bot", "alm.dev/version": "bot-v1"}
