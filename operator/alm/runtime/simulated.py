"""The ``simulated`` model provider: an agent whose KPIs are whatever the config says.

Tests, benchmarks and the sandbox need agents with known behaviour: a canary that is 20% worse,
a version that costs twice as much. Each setting comes from ``model.parameters.extra`` (strings,
as the API stores them) or, winning over it, from an environment variable:

==================  =========================  =======  ==============================================
extra key           environment                default  meaning
==================  =========================  =======  ==============================================
successRate         ALM_SIM_SUCCESS_RATE       0.95     P(task outcome success)
errorRate           ALM_SIM_ERROR_RATE         0        P(task outcome error); the rest is failure
latencyMs           ALM_SIM_LATENCY_MS         200      median model-call latency (lognormal)
latencyP95Ms        ALM_SIM_LATENCY_P95_MS     2*median p95 of the model-call latency (= median: fixed)
toolErrorRate       ALM_SIM_TOOL_ERROR_RATE    0.02     P(an executed tool call fails)
toolLatencyMs       ALM_SIM_TOOL_LATENCY_MS    0        fixed latency of each tool call
alignmentScore      ALM_SIM_ALIGNMENT_SCORE    0.9      mean task score (Beta, concentration 50)
inputTokens         ALM_SIM_INPUT_TOKENS       500      input tokens per task (one model call)
outputTokens        ALM_SIM_OUTPUT_TOKENS      200      output tokens per task
seed                ALM_SIM_SEED               none     seed of the random draws
==================  =========================  =======  ==============================================

A task makes one model call, then calls every tool of the version once, in order (no network:
a call succeeds or fails by a draw, after reading the tool's credential file if it has one, so a
revoked credential shows as tool errors). Task duration = model latency + tool latencies.
Draws are independent, so each configured rate is what a provider should measure.

Determinism: each task draws its whole plan (outcome, latency, score, every tool's result) at
once, before its first await. With a seed, the N plans of N tasks are therefore the same however
requests interleave; only which request gets which plan depends on arrival order.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import math
import random
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from alm.metrics.contract import TaskOutcome
from alm.runtime import config, credentials, sdk

__all__ = ["SimParams", "SimulatedBackend", "SimulatedError", "Simulator", "TaskPlan", "create", "env_name", "resolve"]

_Z95 = 1.6448536269514722  # standard normal quantile at 0.95
_SCORE_CONCENTRATION = 50.0  # Beta(a + b = 50): sd about 0.04 around a mean of 0.9


class SimulatedError(Exception):
    """The simulated model failed the task (outcome ``error``)."""


@dataclasses.dataclass(frozen=True)
class SimParams:
    success_rate: float = 0.95
    error_rate: float = 0.0
    latency_ms: float = 200.0
    latency_p95_ms: float | None = None
    """None: twice the median."""
    tool_error_rate: float = 0.02
    tool_latency_ms: float = 0.0
    alignment_score: float = 0.9
    input_tokens: int = 500
    output_tokens: int = 200
    seed: int | None = None

    @property
    def p95_ms(self) -> float:
        return 2 * self.latency_ms if self.latency_p95_ms is None else self.latency_p95_ms


# extra key -> (field, parser, lower bound, upper bound)
_KEYS: dict[str, tuple[str, Callable[[str], Any], float, float]] = {
    "successRate": ("success_rate", float, 0, 1),
    "errorRate": ("error_rate", float, 0, 1),
    "latencyMs": ("latency_ms", float, 0, math.inf),
    "latencyP95Ms": ("latency_p95_ms", float, 0, math.inf),
    "toolErrorRate": ("tool_error_rate", float, 0, 1),
    "toolLatencyMs": ("tool_latency_ms", float, 0, math.inf),
    "alignmentScore": ("alignment_score", float, 0, 1),
    "inputTokens": ("input_tokens", int, 0, math.inf),
    "outputTokens": ("output_tokens", int, 0, math.inf),
    "seed": ("seed", int, -math.inf, math.inf),
}


def env_name(key: str) -> str:
    """``latencyP95Ms`` -> ``ALM_SIM_LATENCY_P95_MS``."""
    snake = "".join(f"_{c}" if c.isupper() else c for c in key).upper()
    return f"ALM_SIM_{snake}"


def resolve(extra: Mapping[str, str], environ: Mapping[str, str]) -> SimParams:
    """The simulation settings: environment over ``model.parameters.extra`` over the defaults."""
    values: dict[str, Any] = {}
    for key, (field, parse, low, high) in _KEYS.items():
        source, raw = (env_name(key), environ[env_name(key)]) if env_name(key) in environ else (key, extra.get(key))
        if raw is None or raw == "":
            continue
        try:
            value = parse(raw)
        except ValueError:
            raise config.ConfigError(f"simulated: {source}={raw!r} is not a {parse.__name__}") from None
        if not low <= value <= high:
            raise config.ConfigError(f"simulated: {source}={raw!r} must be within [{low}, {high}]")
        values[field] = value
    params = SimParams(**values)
    if params.success_rate + params.error_rate > 1:
        raise config.ConfigError("simulated: successRate + errorRate must not exceed 1")
    if params.p95_ms < params.latency_ms:
        raise config.ConfigError("simulated: latencyP95Ms must not be below latencyMs (the median)")
    return params


@dataclasses.dataclass(frozen=True)
class TaskPlan:
    """Everything random about one task, drawn up front."""

    outcome: TaskOutcome
    latency_s: float
    score: float
    tool_ok: tuple[bool, ...]


class Simulator:
    """Draws task plans; pure apart from its own seeded random generator."""

    def __init__(self, params: SimParams, tool_count: int) -> None:
        self.params = params
        self.tool_count = tool_count
        self.rng = random.Random(params.seed)
        # Lognormal from median m and p95: mu = ln m, sigma = ln(p95 / m) / z95. E.g. m=100 ms,
        # p95=200 ms: sigma = 0.693 / 1.645 = 0.421.
        median = params.latency_ms / 1000
        self._mu = math.log(median) if median > 0 else -math.inf
        self._sigma = math.log(params.p95_ms / params.latency_ms) / _Z95 if median > 0 else 0.0

    def plan(self) -> TaskPlan:
        p, rng = self.params, self.rng
        u = rng.random()
        outcome = (
            TaskOutcome.SUCCESS if u < p.success_rate
            else TaskOutcome.ERROR if u < p.success_rate + p.error_rate
            else TaskOutcome.FAILURE
        )  # fmt: skip
        latency = math.exp(self._mu + self._sigma * rng.gauss(0.0, 1.0)) if self._mu > -math.inf else 0.0
        tool_ok = tuple(rng.random() >= p.tool_error_rate for _ in range(self.tool_count))
        return TaskPlan(outcome, latency, self._score(), tool_ok)

    def _score(self) -> float:
        mean = self.params.alignment_score
        if mean in (0.0, 1.0):
            return mean
        return self.rng.betavariate(mean * _SCORE_CONCENTRATION, (1 - mean) * _SCORE_CONCENTRATION)


class SimulatedBackend:
    """Serves tasks by following plans: sleep, record tokens, call tools, set the outcome."""

    def __init__(
        self,
        agent: sdk.Agent,
        tools: Sequence[config.ToolConfig],
        params: SimParams,
        model: str = "simulated",
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.params = params
        self.model = model
        self.tools = tuple(tools)
        self.simulator = Simulator(params, len(self.tools))
        self.sleep = sleep
        self._calls = {tool.name: agent.tool(tool.name)(self._call_tool) for tool in self.tools}

    async def run(self, text: str, task: sdk.Task) -> str:
        plan = self.simulator.plan()
        await self.sleep(plan.latency_s)
        task.tokens(input=self.params.input_tokens, output=self.params.output_tokens, seconds=plan.latency_s)
        for tool, ok in zip(self.tools, plan.tool_ok, strict=True):
            # A failed tool is counted by the decorator; the simulated agent carries on without it.
            with contextlib.suppress(sdk.ToolError):
                await self._calls[tool.name](tool, ok)
        if plan.outcome is TaskOutcome.ERROR:
            raise SimulatedError("the simulated model failed")
        task.score(plan.score)
        if plan.outcome is TaskOutcome.FAILURE:
            task.fail()
        return f"[{self.model}] {plan.outcome}: {text[:200]}"

    async def _call_tool(self, tool: config.ToolConfig, ok: bool) -> str:
        if tool.credential_file is not None:
            try:
                credentials.read(tool.credential_file)
            except credentials.CredentialUnavailable as e:
                raise sdk.ToolError(str(e), "credential_unavailable") from None
        if self.params.tool_latency_ms:
            await self.sleep(self.params.tool_latency_ms / 1000)
        if not ok:
            raise sdk.ToolError(f"simulated failure of {tool.name}", "simulated")
        return "ok"


def create(agent: sdk.Agent, cfg: config.RuntimeConfig, environ: Mapping[str, str]) -> SimulatedBackend:
    """The backend for provider ``simulated`` (raises ConfigError on bad settings)."""
    return SimulatedBackend(agent, cfg.tools, resolve(cfg.model.extra, environ), model=cfg.model.name)
