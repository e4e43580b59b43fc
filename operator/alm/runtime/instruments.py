"""The metric contract as prometheus-client instruments, with the common labels bound once.

This is the only place that turns ``alm.metrics.contract`` into live metrics, so the runtime
cannot expose a name, type, label or bucket the contract does not have. Each ``Instruments``
owns its registry: nothing else (process or GC collectors) lands in the exposition, and tests
can hold several agents in one process.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Iterable
from typing import Any

import prometheus_client
from prometheus_client import CollectorRegistry
from prometheus_client.metrics_core import Metric

from alm.metrics import contract
from alm.metrics.contract import MetricType, TaskOutcome, TokenType, ToolOutcome

__all__ = ["Identity", "Instruments", "Registry"]

_KINDS: dict[MetricType, Any] = {
    MetricType.COUNTER: prometheus_client.Counter,
    MetricType.GAUGE: prometheus_client.Gauge,
    MetricType.HISTOGRAM: prometheus_client.Histogram,
}


@dataclasses.dataclass(frozen=True)
class Identity:
    """Who is measured: the values of the common labels, and the model for the gen_ai labels."""

    agent: str
    version: str
    shadow: bool = False
    provider: str = ""
    model: str = ""

    @property
    def common(self) -> tuple[str, str, str]:
        return (self.agent, self.version, contract.shadow_value(self.shadow))


class Registry(CollectorRegistry):
    """A registry that leaves out ``_created`` samples.

    Nothing computes a KPI from them and they would double the payload of every scrape. Filtering
    here, rather than with prometheus-client's process-wide switch, keeps an SDK user's other
    metrics as they were.
    """

    def collect(self) -> Iterable[Metric]:
        for metric in super().collect():
            samples = [s for s in metric.samples if not s.name.endswith("_created")]
            if len(samples) != len(metric.samples):
                metric = copy.copy(metric)
                metric.samples = samples
            yield metric


def _register(metric: contract.Metric, registry: CollectorRegistry) -> Any:
    kwargs: dict[str, Any] = {"registry": registry}
    if metric.type is MetricType.HISTOGRAM:
        kwargs["buckets"] = metric.buckets
    return _KINDS[metric.type](metric.name, metric.help, metric.label_names, **kwargs)


class Instruments:
    """Record contract events for one agent version; every call maps to one contract metric."""

    def __init__(self, identity: Identity, tools: Iterable[str] = (), registry: CollectorRegistry | None = None):
        self.identity = identity
        self.registry = registry if registry is not None else Registry(auto_describe=True)
        self._m = {metric.name: _register(metric, self.registry) for metric in contract.ALL}
        self._precreate(tools)

    def _labels(self, metric: contract.Metric, *values: str) -> Any:
        return self._m[metric.name].labels(*self.identity.common, *values)

    def _precreate(self, tools: Iterable[str]) -> None:
        # A series born mid-window loses its first increment to increase(); zeros avoid that.
        for outcome in TaskOutcome:
            self._labels(contract.TASKS, outcome)
            self._labels(contract.TASK_DURATION, outcome)
        for tool in tools:
            self.precreate_tool(tool)
        for token_type in TokenType:
            self._labels(contract.TOKENS, token_type)
        self._labels(contract.TASKS_IN_FLIGHT)
        self._labels(contract.COST)
        self._labels(contract.ALIGNMENT)

    def precreate_tool(self, tool: str) -> None:
        for tool_outcome in ToolOutcome:
            self._labels(contract.TOOL_CALLS, tool, tool_outcome)

    # --- tasks

    def task_started(self) -> None:
        self._labels(contract.TASKS_IN_FLIGHT).inc()

    def task_finished(self, outcome: TaskOutcome, seconds: float) -> None:
        self._labels(contract.TASKS_IN_FLIGHT).dec()
        self._labels(contract.TASKS, outcome).inc()
        self._labels(contract.TASK_DURATION, outcome).observe(seconds)

    def score(self, value: float) -> None:
        self._labels(contract.ALIGNMENT).observe(value)

    # --- model

    def tokens(self, input_tokens: int, output_tokens: int, cost_usd: float) -> None:
        """Totals of a task (counters): what budgets and cost per task are computed from."""
        self._labels(contract.TOKENS, TokenType.INPUT).inc(input_tokens)
        self._labels(contract.TOKENS, TokenType.OUTPUT).inc(output_tokens)
        self._labels(contract.COST).inc(cost_usd)

    def model_call(self, input_tokens: int, output_tokens: int, seconds: float | None) -> None:
        """One model call (OTel histograms): the token distribution per call and its duration."""
        gen_ai = (contract.OPERATION_CHAT, self.identity.provider, self.identity.model)
        self._labels(contract.TOKEN_USAGE, *gen_ai, TokenType.INPUT).observe(input_tokens)
        self._labels(contract.TOKEN_USAGE, *gen_ai, TokenType.OUTPUT).observe(output_tokens)
        if seconds is not None:
            self._labels(contract.MODEL_DURATION, *gen_ai).observe(seconds)

    # --- tools

    def tool_call(self, tool: str, outcome: ToolOutcome, seconds: float | None = None, error_type: str = "") -> None:
        self._labels(contract.TOOL_CALLS, tool, outcome).inc()
        if seconds is not None and outcome is not ToolOutcome.DRY_RUN:
            self._labels(contract.TOOL_DURATION, tool, error_type).observe(seconds)

    def exposition(self) -> bytes:
        """The Prometheus text format of everything recorded."""
        return prometheus_client.generate_latest(self.registry)
