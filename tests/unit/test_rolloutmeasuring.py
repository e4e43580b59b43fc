"""The rollout's measurements through the Agent's real scrape provider (in-memory pods, our clock).

What the analysis is told about the provider's first scrape of a version, and about the first
scrape after an operator restart (a new provider: the history is memory only), decides whether a
healthy canary spends its inconclusive budget before it is ever judged.
"""

from __future__ import annotations

from typing import Any, cast

from alm.api import AgentSpec, MetricProviderSpec
from alm.core import analysis
from alm.handlers import rolloutmeasuring
from alm.handlers.context import Context
from alm.kube.api import Kube
from alm.providers.scrape import ScrapeProvider
from tests.unit.test_providers_scrape import AGENT, NS, VERSION, WINDOW, Clock, Fleet

REQUEST = analysis.Measure(run="step/1", version=VERSION, baseline=None, window_seconds=WINDOW,
                           kpis=("successRate",), queries=(), latency_quantile=0.95)
CRITERIA = analysis.Criteria(limits=(analysis.Limit("successRate", min=0.9),), interval=WINDOW, duration=None,
                             inconclusive_limit=0, failure_limit=0)


def context_with(provider: ScrapeProvider) -> tuple[Context, AgentSpec]:
    """A Context whose Agent already has ``provider`` (as after the operator's first measurement)."""
    spec = AgentSpec.model_validate({"version": VERSION})
    assert spec.monitoring is None
    ctx = Context(kube=cast(Kube, None))
    # The key monitoring._provider looks the Agent's provider up by (the default provider spec).
    ctx.providers[(NS, AGENT, MetricProviderSpec().model_dump_json())] = provider
    return ctx, spec


async def rounds(ctx: Context, spec: AgentSpec, clock: Clock, run: dict[str, Any], *times: str) -> dict[str, Any]:
    for when in times:
        clock.t += WINDOW
        readings = await rolloutmeasuring.measure(ctx, NS, AGENT, spec, [REQUEST], when)
        run = analysis.record(run, readings, CRITERIA, key="step/1", target=VERSION)
    return run


async def test_first_scrapes_are_baselines_even_with_inconclusive_limit_0() -> None:
    fleet, clock = Fleet(), Clock()
    pod = fleet.add("a")
    ctx, spec = context_with(ScrapeProvider(fleet.lister, fetch=fleet.fetch, clock=clock))
    run = analysis.new_run("2026-11-24T12:00:00Z")

    run = await rounds(ctx, spec, clock, run, "2026-11-24T12:00:30Z")
    assert [m["verdict"] for m in run["measurements"]] == ["Baseline"] and run["verdict"] == "Running"

    for _ in range(20):
        pod.serve()
    run = await rounds(ctx, spec, clock, run, "2026-11-24T12:01:00Z")
    assert [m["verdict"] for m in run["measurements"]] == ["Baseline", "Successful"]

    # An operator restart: a new provider, no history. Its first scrape is a baseline again.
    ctx, spec = context_with(ScrapeProvider(fleet.lister, fetch=fleet.fetch, clock=clock))
    run = await rounds(ctx, spec, clock, run, "2026-11-24T12:01:30Z")
    assert [m["verdict"] for m in run["measurements"]] == ["Baseline", "Successful", "Baseline"]
    assert run["verdict"] == "Running", "inconclusiveLimit 0 and still not paused"

    # A window that was measured but held no tasks is Inconclusive, as before.
    run = await rounds(ctx, spec, clock, run, "2026-11-24T12:02:00Z")
    assert run["measurements"][-1]["verdict"] == "Inconclusive" and run["verdict"] == "Inconclusive"
