"""Continuous monitoring: measure each monitored Agent's live versions at its interval.

One background loop (started with the operator) finds the Agents that are due, measures
their stable (and canary) version with the Agent's metric provider, and folds the result
into status through the pure :mod:`alm.core.monitoring` planner, under the same per-Agent
coalescing key as provisioning (the two never write an Agent's status at once).

An Agent is monitored when it sets ``spec.monitoring``, ``spec.kpis`` or ``spec.budget``.

A budget action (the verdict turning to exceeded, or back to within budget) is appended to the
Agent's audit log before the status that carries it is written (write-ahead), unless the log
already holds it (:func:`alm.core.budget.recorded`): a pass repeated after a crash or a failed
status write records the transition once, and later passes (a resync, a restart) see no
transition in status. When the log cannot be written the budget still acts; the miss is logged.
Providers are created once per Agent and kept: the scrape provider measures windows
against the scrapes it remembers.
"""

from __future__ import annotations

import asyncio
import base64
import datetime
import logging
import time
from collections.abc import Mapping, Sequence
from typing import Any

import pydantic

from alm import providers
from alm.api import AgentSpec, AgentVersionSpec, MetricProviderSpec, ModelPricing, parse_duration
from alm.core import budget, monitoring, naming
from alm.handlers import auditing, posting
from alm.handlers.context import Context, utcnow
from alm.kube import errors, shell
from alm.metrics import operator as metrics
from alm.metrics.contract import KPI

__all__ = ["MONITOR_STATUS_KEYS", "monitor_loop", "monitored"]

log = logging.getLogger(__name__)

MONITOR_STATUS_KEYS = ("kpis", "cost", "monitoring", "conditions")
DEFAULT_INTERVAL = 30.0
MAX_CONCURRENT = 16


def monitored(spec: Mapping[str, Any]) -> bool:
    return any(spec.get(key) for key in ("monitoring", "kpis", "budget"))


def _first(index: Any, key: Any) -> Any:
    for value in index.get(key, ()):
        return value
    return None


class PodLister:
    """The scrape provider's view of a version's pods, from the API (pods are not cached)."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    async def __call__(self, agent: str, namespace: str, version: str) -> Sequence[providers.PodTarget]:
        labels = {naming.AGENT_LABEL: naming.label_value(agent), naming.VERSION_LABEL: naming.label_value(version)}
        pods = await asyncio.to_thread(self.ctx.kube.list, "Pod", namespace, labels)
        body = _first(self.ctx.indexes.get("version_index", {}), (namespace, version)) or {}
        runtime = (body.get("spec") or {}).get("runtime") or {}
        port, path = int(runtime.get("port", 8080)), str(runtime.get("metricsPath", "/metrics"))
        return [
            providers.PodTarget(pod["metadata"]["name"], pod["status"]["podIP"], _http_port(pod, port), path)
            for pod in pods
            if (pod.get("status") or {}).get("phase") == "Running" and (pod.get("status") or {}).get("podIP")
        ]


def _http_port(pod: Mapping[str, Any], default: int) -> int:
    """The port the pod declares as ``http`` (where the runtime serves /metrics), else the version's."""
    for container in (pod.get("spec") or {}).get("containers") or []:
        for port in container.get("ports") or []:
            if port.get("name") == "http" and port.get("containerPort"):
                return int(port["containerPort"])
    return default


async def monitor_loop(ctx: Context, tick: float = 1.0) -> None:
    """Every ``tick`` seconds, start the measurements that are due (at most 16 at once)."""
    due: dict[tuple[str, str], float] = {}
    running: dict[tuple[str, str], asyncio.Task[None]] = {}
    gate = asyncio.Semaphore(MAX_CONCURRENT)
    while True:
        await asyncio.sleep(tick)
        index = ctx.indexes.get("agent_index")
        if index is None:
            continue
        now = time.monotonic()
        for key in list(index):
            body = _first(index, key)
            spec = (body or {}).get("spec") or {}
            if not body or not monitored(spec) or key in running or due.get(key, 0.0) > now:
                continue
            due[key] = now + _interval(spec)
            task = asyncio.create_task(_guarded(ctx, gate, *key))
            running[key] = task
            task.add_done_callback(_forget(running, key))


def _forget(running: dict[tuple[str, str], asyncio.Task[None]], key: tuple[str, str]) -> Any:
    def done(_: asyncio.Task[None]) -> None:
        running.pop(key, None)

    return done


def _interval(spec: Mapping[str, Any]) -> float:
    try:
        return parse_duration(str(((spec.get("monitoring") or {}).get("interval")) or "30s"))
    except ValueError:
        return DEFAULT_INTERVAL


async def _guarded(ctx: Context, gate: asyncio.Semaphore, namespace: str, name: str) -> None:
    async with gate:
        try:
            await measure_agent(ctx, namespace, name)
        except Exception:  # one Agent's failure must not stop the others' monitoring
            log.exception("monitoring Agent %s/%s failed", namespace, name)


async def measure_agent(ctx: Context, namespace: str, name: str) -> None:
    body = _first(ctx.indexes["agent_index"], (namespace, name))
    if body is None or (body.get("status") or {}).get("phase") == "Retired":
        return
    try:
        spec = AgentSpec.model_validate(body.get("spec") or {})
    except pydantic.ValidationError:
        return  # the Agent reconcile reports it
    status = body.get("status") or {}
    versions = [v for v in (status.get("stableVersion"), status.get("canaryVersion")) if v]
    if not versions:
        return
    provider = await _provider(ctx, namespace, name, spec)
    interval = _interval(body.get("spec") or {})
    quantile = spec.kpis.latency_quantile if spec.kpis is not None else 0.95
    measured: dict[str, monitoring.VersionMeasurement] = {}
    for version in dict.fromkeys(versions):
        result = await provider.measure(name, namespace, version, interval, quantile=quantile)
        measured[version] = _to_measurement(result)
        _export(namespace, name, version, result)

    async def fold() -> None:
        await _fold(ctx, namespace, name, spec, measured)

    await ctx.coalescer.run(("Agent", namespace, name), fold)


async def _provider(ctx: Context, namespace: str, name: str, spec: AgentSpec) -> providers.MetricProvider:
    provider_spec = spec.monitoring.provider if spec.monitoring is not None else MetricProviderSpec()
    key = (namespace, name, provider_spec.model_dump_json())
    provider = ctx.providers.get(key)
    if provider is None:
        auth = await asyncio.to_thread(_auth, ctx, namespace, provider_spec)
        deps = providers.Dependencies(pod_lister=PodLister(ctx), auth=auth)
        provider = providers.REGISTRY.create(provider_spec, deps)
        ctx.providers[key] = provider
    return provider


def _auth(ctx: Context, namespace: str, spec: MetricProviderSpec) -> str | None:
    ref = spec.prometheus.auth_secret_ref if spec.prometheus is not None else None
    if ref is None:
        return None
    secret = ctx.kube.get("Secret", namespace, ref.name) or {}
    raw = (secret.get("data") or {}).get(ref.key)
    return base64.b64decode(raw).decode() if raw else None


def _to_measurement(result: providers.KPIResult) -> monitoring.VersionMeasurement:
    def value(kpi: KPI) -> float | None:
        reading = result.kpis.get(kpi)
        return reading.value if reading is not None and reading.ok else None

    kpis = monitoring.KPIValues(
        success_rate=value(KPI.SUCCESS_RATE), latency_seconds=value(KPI.LATENCY),
        cost_per_task_usd=value(KPI.COST_PER_TASK), tool_error_rate=value(KPI.TOOL_ERROR_RATE),
        alignment_score=value(KPI.ALIGNMENT),
    )
    totals = result.totals
    usage = budget.Usage(totals.input_tokens or 0.0, totals.output_tokens or 0.0, totals.cost_usd)
    return monitoring.VersionMeasurement(kpis, usage)


def _export(namespace: str, agent: str, version: str, result: providers.KPIResult) -> None:
    for kpi, reading in result.kpis.items():
        gauge = metrics.AGENT_KPI.labels(namespace=namespace, agent=agent, version=version, kpi=kpi.value)
        gauge.set(reading.value if reading.ok and reading.value is not None else float("nan"))


async def _fold(ctx: Context, namespace: str, name: str, spec: AgentSpec,
                measured: Mapping[str, monitoring.VersionMeasurement]) -> None:
    body = _first(ctx.indexes["agent_index"], (namespace, name))
    if body is None:
        return
    body = {**ctx.freshness.view(body)}
    status = body.get("status") or {}
    pricing = _pricing(ctx, namespace, status.get("stableVersion"))
    day = datetime.datetime.now(datetime.UTC).date().isoformat()
    now = utcnow()
    plan = monitoring.plan_monitoring(spec, pricing, status, measured, now=now, day=day)
    if plan.budget_verdict is not None and plan.budget_verdict.transition:
        await _audit_budget(ctx, namespace, name, spec, plan.status.get("cost") or {}, plan.budget_verdict, now)
    outcome = await asyncio.to_thread(shell.execute, ctx.kube, body, status=plan.status,
                                      owned_status=MONITOR_STATUS_KEYS)
    if outcome.patched:
        ctx.freshness.wrote(outcome.patched)
        metrics.WRITES.labels(kind="Agent", verb="status").inc()
    cost = plan.status.get("cost") or {}
    metrics.AGENT_COST_TODAY.labels(namespace=namespace, agent=name).set(float(cost.get("usd", 0.0)))
    metrics.AGENT_TOKENS_TODAY.labels(namespace=namespace, agent=name).set(float(cost.get("tokens", 0)))
    over: Mapping[str, Any] = next((c for c in plan.status["conditions"] if c["type"] == budget.BUDGET_CONDITION), {})
    metrics.AGENT_BUDGET_EXCEEDED.labels(namespace=namespace, agent=name).set(1.0 if over.get("status") == "True"
                                                                             else 0.0)
    posting.post(body, plan.events)


async def _audit_budget(ctx: Context, namespace: str, name: str, spec: AgentSpec, today: Mapping[str, Any],
                        verdict: budget.BudgetVerdict, now: str) -> None:
    """Append the budget action's entry, once: not when the log already records this state."""
    intent = budget.audit_intent(name, spec.budget, today, verdict)
    try:
        entries = await asyncio.to_thread(auditing.load, ctx.kube, namespace, name)
        if not budget.recorded(intent, entries):
            await auditing.record(ctx, namespace, name, [intent], now)
    except errors.ApiError as exc:  # the budget still acts: the status (and the suspension) go ahead
        log.warning("Agent %s/%s: the budget action %s was not audited: %s", namespace, name, intent.action, exc)


def _pricing(ctx: Context, namespace: str, version: str | None) -> ModelPricing:
    body = _first(ctx.indexes.get("version_index", {}), (namespace, version)) if version else None
    try:
        return AgentVersionSpec.model_validate((body or {}).get("spec") or {}).model.pricing
    except pydantic.ValidationError:
        return ModelPricing()
