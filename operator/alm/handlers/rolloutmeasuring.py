"""What an AgentRollout pass measures: the readings its analysis asks for, from the Agent's metric provider.

The planner says which measurements are due (``rollout.measurements_due``); :func:`measure` asks
the Agent's own provider (the one monitoring uses) for each version and its baseline, and turns
the answers into :class:`~alm.core.analysis.RunReading` values. A provider that fails gives Error
readings (inconclusive), never a failed pass. These are the rollout's only calls outside the
cluster, kept apart from reading the cluster (:mod:`alm.handlers.rolloutobserving`).
"""

from __future__ import annotations

from collections.abc import Sequence

from alm.api import AgentSpec
from alm.core import analysis
from alm.core.kpis import Reading
from alm.handlers import monitoring
from alm.handlers.context import Context

__all__ = ["measure"]


async def measure(ctx: Context, namespace: str, agent_name: str, agent: AgentSpec,
                   due: Sequence[analysis.Measure], now: str) -> tuple[analysis.RunReading, ...]:
    """Every reading the requests ask for, from the Agent's own provider (shared with monitoring).

    The version and its baseline are measured with the same ``measured_at`` (one round)."""
    readings: list[analysis.RunReading] = []
    for request in due:
        for version in (request.version, request.baseline):
            if version:
                readings += await _measure_one(ctx, namespace, agent_name, agent, request, version, now)
    return tuple(readings)


async def _measure_one(ctx: Context, namespace: str, agent_name: str, agent: AgentSpec, request: analysis.Measure,
                       version: str, now: str) -> tuple[analysis.RunReading, ...]:
    try:
        provider = await monitoring._provider(ctx, namespace, agent_name, agent)
        result = await provider.measure(agent_name, namespace, version, request.window_seconds,
                                        quantile=request.latency_quantile, queries=request.queries)
    except Exception as exc:  # the provider failed: an Error reading (counts as inconclusive), never a crash
        failed = Reading.error(f"{type(exc).__name__}: {exc}")
        return analysis.run_readings(request, version, now, dict.fromkeys(request.kpis, failed),
                                     {q.name: failed for q in request.queries})
    return analysis.run_readings(request, version, now, {str(k): v for k, v in result.kpis.items()},
                                 dict(result.queries), baseline=result.window_seconds <= 0)
