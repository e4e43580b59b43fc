"""The metric contract: what every agent exposes on ``/metrics``, written down once.

Two sides read this module and must never disagree: the reference runtime (``alm.runtime``)
registers exactly these metrics, and the KPI providers query exactly these names. It is pure
data (standard library only) so the pure core may import it too.

Names follow the OpenTelemetry GenAI semantic conventions (status: Development; maintained in
``open-telemetry/semantic-conventions-genai``) where they define a metric, in their Prometheus
form: dots become underscores, the unit ``s`` becomes the suffix ``_seconds``, an annotation
unit such as ``{token}`` adds no suffix, and attributes become labels the same way
(``gen_ai.token.type`` -> ``gen_ai_token_type``). ``gen_ai.invoke_agent.duration`` and
``gen_ai.execute_tool.duration`` are metrics in the current conventions (up to semantic-conventions
v1.41 they were spans only), so the task and tool durations use them. Everything the conventions
do not define (outcomes, cost, alignment) is ``alm_agent_*``.

Every series carries the common labels ``agent``, ``version`` and ``shadow``. Counters are
named here by their family name; the exposed sample adds ``_total`` (see ``Metric.total``).
Known label values are pre-created at zero by the runtime, so ``increase()`` over a window
never misses the first event of a series.
"""

from __future__ import annotations

import dataclasses
import enum
import string
from collections.abc import Mapping

__all__ = [
    "AGENT",
    "ALIGNMENT",
    "ALIGNMENT_BUCKETS",
    "ALL",
    "COMMON_LABELS",
    "COST",
    "ERROR_TYPE",
    "GEN_AI_OPERATION_NAME",
    "GEN_AI_PROVIDER_NAME",
    "GEN_AI_REQUEST_MODEL",
    "GEN_AI_TOKEN_TYPE",
    "GEN_AI_TOOL_NAME",
    "KPI",
    "KPIS",
    "MODEL_DURATION",
    "OPERATION_CHAT",
    "OPERATION_DURATION_BUCKETS",
    "OUTCOME",
    "SHADOW",
    "SHADOW_VALUES",
    "TASKS",
    "TASKS_IN_FLIGHT",
    "TASK_DURATION",
    "TASK_DURATION_BUCKETS",
    "TOKENS",
    "TOKEN_TYPE",
    "TOKEN_USAGE",
    "TOKEN_USAGE_BUCKETS",
    "TOOL",
    "TOOL_CALLS",
    "TOOL_DURATION",
    "VERSION",
    "KPIDefinition",
    "Metric",
    "MetricType",
    "TaskOutcome",
    "TokenType",
    "ToolOutcome",
    "by_name",
    "promql",
    "selector",
    "shadow_value",
]


class MetricType(enum.StrEnum):
    """Prometheus metric types used by the contract."""

    COUNTER = "counter"
    GAUGE = "gauge"
    HISTOGRAM = "histogram"


class TaskOutcome(enum.StrEnum):
    """How a task ended (label ``outcome`` of tasks and task durations).

    - success: the agent answered and considers the task done.
    - failure: the agent answered but the task was not accomplished (refused, wrong, gave up).
    - error: the agent crashed or a dependency failed; no answer.
    """

    SUCCESS = "success"
    FAILURE = "failure"
    ERROR = "error"


class ToolOutcome(enum.StrEnum):
    """How a tool call ended (label ``outcome`` of tool calls).

    - success: the tool ran and returned.
    - error: the tool ran and failed (or its credential was unavailable).
    - dry_run: not executed: a shadow version may only really call read-only tools.
    """

    SUCCESS = "success"
    ERROR = "error"
    DRY_RUN = "dry_run"


class TokenType(enum.StrEnum):
    """Token direction, the values of both ``type`` and ``gen_ai_token_type``."""

    INPUT = "input"
    OUTPUT = "output"


# --- Labels --------------------------------------------------------------------------------------

AGENT = "agent"
"""The Agent's name (the OTel attribute gen_ai.agent.name)."""
VERSION = "version"
"""The AgentVersion's name."""
SHADOW = "shadow"
"""``"true"`` on a shadow version's pods, ``"false"`` otherwise."""
COMMON_LABELS: tuple[str, ...] = (AGENT, VERSION, SHADOW)
SHADOW_VALUES: tuple[str, ...] = ("true", "false")

OUTCOME = "outcome"
TOOL = "tool"
TOKEN_TYPE = "type"
GEN_AI_TOKEN_TYPE = "gen_ai_token_type"
GEN_AI_OPERATION_NAME = "gen_ai_operation_name"
GEN_AI_PROVIDER_NAME = "gen_ai_provider_name"
GEN_AI_REQUEST_MODEL = "gen_ai_request_model"
GEN_AI_TOOL_NAME = "gen_ai_tool_name"
ERROR_TYPE = "error_type"
"""OTel error.type: empty on success (Prometheus treats an empty label as absent), else a
low-cardinality error class such as the exception's type name."""

OPERATION_CHAT = "chat"
"""The gen_ai.operation.name of a model call."""


def shadow_value(shadow: bool) -> str:
    """The ``shadow`` label value for a flag."""
    return "true" if shadow else "false"


# --- Buckets -------------------------------------------------------------------------------------

# gen_ai.invoke_agent.duration's advised boundaries are 0.1 * 2^k up to 409.6 s. Ours are a
# superset (so re-bucketing to the convention's boundaries is exact) with extra resolution where
# latency thresholds usually sit, because histogram_quantile interpolates linearly in a bucket:
# with doubling buckets a p95 of 1.2 s could read anywhere between 0.8 and 1.6 s.
TASK_DURATION_BUCKETS: tuple[float, ...] = (
    0.01, 0.025, 0.05, 0.1, 0.2, 0.3, 0.4, 0.6, 0.8, 1.0, 1.6, 2.0, 3.2, 5.0, 6.4,
    10.0, 12.8, 20.0, 25.6, 30.0, 51.2, 60.0, 102.4, 204.8, 409.6,
)  # fmt: skip
# The conventions' advised boundaries, as they are.
OPERATION_DURATION_BUCKETS: tuple[float, ...] = (
    0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92,
)  # fmt: skip
TOKEN_USAGE_BUCKETS: tuple[float, ...] = (
    1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216, 67108864,
)  # fmt: skip
ALIGNMENT_BUCKETS: tuple[float, ...] = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)


# --- Metrics -------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Metric:
    """One metric family of the contract."""

    name: str
    """Family name as the text parser reports it (a counter's samples add ``_total``)."""
    type: MetricType
    unit: str
    """UCUM unit, as OTel writes it: s, {token}, {task}, USD, 1."""
    labels: tuple[str, ...]
    """Labels after the common ones."""
    help: str
    otel_name: str | None = None
    """The OTel GenAI instrument this is the Prometheus form of, if any."""
    buckets: tuple[float, ...] = ()
    label_values: Mapping[str, tuple[str, ...]] = dataclasses.field(default_factory=dict)
    """Allowed values of the labels that have a closed set."""

    @property
    def label_names(self) -> tuple[str, ...]:
        """All label names in exposition order (le and quantile excluded)."""
        return COMMON_LABELS + self.labels

    @property
    def total(self) -> str:
        """The sample name of a counter."""
        assert self.type is MetricType.COUNTER, f"{self.name} is a {self.type}"
        return f"{self.name}_total"

    @property
    def bucket(self) -> str:
        return self._histogram_sample("bucket")

    @property
    def sum(self) -> str:
        return self._histogram_sample("sum")

    @property
    def count(self) -> str:
        return self._histogram_sample("count")

    def _histogram_sample(self, suffix: str) -> str:
        assert self.type is MetricType.HISTOGRAM, f"{self.name} is a {self.type}"
        return f"{self.name}_{suffix}"


_TASK_OUTCOMES = tuple(TaskOutcome)
_TOOL_OUTCOMES = tuple(ToolOutcome)
_TOKEN_TYPES = tuple(TokenType)

TASKS = Metric(
    "alm_agent_tasks", MetricType.COUNTER, "{task}", (OUTCOME,),
    "Tasks finished, by outcome.",
    label_values={OUTCOME: _TASK_OUTCOMES},
)  # fmt: skip
TASK_DURATION = Metric(
    "gen_ai_invoke_agent_duration_seconds", MetricType.HISTOGRAM, "s", (OUTCOME,),
    "End-to-end duration of a task (one agent invocation), by outcome.",
    otel_name="gen_ai.invoke_agent.duration", buckets=TASK_DURATION_BUCKETS,
    label_values={OUTCOME: _TASK_OUTCOMES},
)  # fmt: skip
TASKS_IN_FLIGHT = Metric(
    "alm_agent_tasks_in_flight", MetricType.GAUGE, "{task}", (),
    "Tasks being served now.",
)  # fmt: skip
TOOL_CALLS = Metric(
    "alm_agent_tool_calls", MetricType.COUNTER, "{call}", (TOOL, OUTCOME),
    "Tool calls, by tool and outcome; dry_run calls were not executed.",
    label_values={OUTCOME: _TOOL_OUTCOMES},
)  # fmt: skip
TOOL_DURATION = Metric(
    "gen_ai_execute_tool_duration_seconds", MetricType.HISTOGRAM, "s", (GEN_AI_TOOL_NAME, ERROR_TYPE),
    "Duration of one executed tool call (dry runs are not observed).",
    otel_name="gen_ai.execute_tool.duration", buckets=OPERATION_DURATION_BUCKETS,
)  # fmt: skip
TOKENS = Metric(
    "alm_agent_tokens", MetricType.COUNTER, "{token}", (TOKEN_TYPE,),
    "Model tokens used, by type; the source of token budgets.",
    label_values={TOKEN_TYPE: _TOKEN_TYPES},
)  # fmt: skip
TOKEN_USAGE = Metric(
    "gen_ai_client_token_usage", MetricType.HISTOGRAM, "{token}",
    (GEN_AI_OPERATION_NAME, GEN_AI_PROVIDER_NAME, GEN_AI_REQUEST_MODEL, GEN_AI_TOKEN_TYPE),
    "Tokens per model call, by type.",
    otel_name="gen_ai.client.token.usage", buckets=TOKEN_USAGE_BUCKETS,
    label_values={GEN_AI_TOKEN_TYPE: _TOKEN_TYPES},
)  # fmt: skip
MODEL_DURATION = Metric(
    "gen_ai_client_operation_duration_seconds", MetricType.HISTOGRAM, "s",
    (GEN_AI_OPERATION_NAME, GEN_AI_PROVIDER_NAME, GEN_AI_REQUEST_MODEL),
    "Duration of one model call.",
    otel_name="gen_ai.client.operation.duration", buckets=OPERATION_DURATION_BUCKETS,
)  # fmt: skip
COST = Metric(
    "alm_agent_cost_usd", MetricType.COUNTER, "USD", (),
    "Model cost in US dollars: as reported by the agent, else tokens times the version's pricing.",
)  # fmt: skip
ALIGNMENT = Metric(
    "alm_agent_alignment_score", MetricType.HISTOGRAM, "1", (),
    "Evaluation (alignment) score of each scored task, 0..1.",
    buckets=ALIGNMENT_BUCKETS,
)  # fmt: skip

ALL: tuple[Metric, ...] = (
    TASKS, TASK_DURATION, TASKS_IN_FLIGHT, TOOL_CALLS, TOOL_DURATION,
    TOKENS, TOKEN_USAGE, MODEL_DURATION, COST, ALIGNMENT,
)  # fmt: skip


def by_name(name: str) -> Metric:
    """The contract metric with this family name (KeyError if it is not in the contract)."""
    for metric in ALL:
        if metric.name == name:
            return metric
    raise KeyError(name)


# --- KPIs ----------------------------------------------------------------------------------------


class KPI(enum.StrEnum):
    """The five KPIs; values are the field names of ``Agent.status.kpis``."""

    SUCCESS_RATE = "successRate"
    LATENCY = "latencySeconds"
    COST_PER_TASK = "costPerTaskUSD"
    TOOL_ERROR_RATE = "toolErrorRate"
    ALIGNMENT = "alignmentScore"


@dataclasses.dataclass(frozen=True)
class KPIDefinition:
    """A KPI as a formula over the increase (Δ) of contract series in a window.

    ``promql`` is a ``string.Template`` with ``$sel`` (label matchers, see ``selector``),
    ``$window`` (a PromQL range such as ``5m``) and, for latency, ``$quantile``; ``sum()`` over
    pods and over the label values the matchers leave open is intended.
    """

    kpi: KPI
    formula: str
    promql: str
    unit: str


def _series(sample: str, matchers: str = "") -> str:
    return f"{sample}{{$sel{matchers}}}"


def _ratio(numerator: str, denominator: str) -> str:
    return f"sum(increase({numerator}[$window])) / sum(increase({denominator}[$window]))"


KPIS: tuple[KPIDefinition, ...] = (
    KPIDefinition(
        KPI.SUCCESS_RATE,
        "Δ tasks{outcome=success} / Δ tasks (all outcomes)",
        _ratio(_series(TASKS.total, ',outcome="success"'), _series(TASKS.total)),
        "1",
    ),
    KPIDefinition(
        KPI.LATENCY,
        "quantile q of task duration, interpolated linearly inside the bucket of the Δ bucket counts",
        f"histogram_quantile($quantile, sum by (le) (rate({_series(TASK_DURATION.bucket)}[$window])))",
        "s",
    ),
    KPIDefinition(
        KPI.COST_PER_TASK,
        "Δ cost / Δ tasks (all outcomes)",
        _ratio(_series(COST.total), _series(TASKS.total)),
        "USD",
    ),
    KPIDefinition(
        KPI.TOOL_ERROR_RATE,
        "Δ tool calls{outcome=error} / Δ tool calls{outcome=success|error} (dry runs did not execute)",
        _ratio(_series(TOOL_CALLS.total, ',outcome="error"'), _series(TOOL_CALLS.total, ',outcome=~"success|error"')),
        "1",
    ),
    KPIDefinition(
        KPI.ALIGNMENT,
        "Δ alignment score sum / Δ alignment score count (the mean score of the tasks scored)",
        _ratio(_series(ALIGNMENT.sum), _series(ALIGNMENT.count)),
        "1",
    ),
)


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def selector(agent: str, version: str, **extra: str) -> str:
    """PromQL label matchers for one version of one agent, e.g. ``agent="bot",version="bot-v1"``.

    ``extra`` adds matchers the scrape configuration attaches, such as ``namespace``: agent
    names are unique per namespace only, and the runtime does not know its namespace.
    """
    labels = {AGENT: agent, VERSION: version, **extra}
    return ",".join(f'{name}="{_escape(value)}"' for name, value in labels.items())


def promql(kpi: KPI, sel: str, window: str, quantile: float = 0.95) -> str:
    """The PromQL query of one KPI for the matchers ``sel`` over ``window``."""
    definition = next(d for d in KPIS if d.kpi is kpi)
    return string.Template(definition.promql).substitute(sel=sel, window=window, quantile=quantile)
