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
(none)              ALM_SIM_OVERRIDES          none     a JSON file of the keys above, re-read while
                                                        running (see "Runtime overrides")
==================  =========================  =======  ==============================================

A task makes one model call, then calls every tool of the version once, in order (no network:
a call succeeds or fails by a draw, after reading the tool's credential file if it has one, so a
revoked credential shows as tool errors). Task duration = model latency + tool latencies.
Draws are independent, so each configured rate is what a provider should measure.

Runtime overrides. With ``ALM_SIM_OVERRIDES`` set to a file path (never on otherwise), the
backend looks at that file before a task, at most every 100 ms (``OVERRIDES_CHECK_SECONDS``), and
re-reads it when it changed (inode, modification time or size: replace it atomically). The file
is a JSON object with keys of the table above (numbers or strings), e.g. ``{"successRate": 0.1}``;
they win over everything else, so a running agent can turn bad (or good again) at a known
instant, as a real model regression would — what ``benchmarks/rollback.py`` needs to time a
rollback. No file, or an empty object, means the settings above; a file that does not parse or
holds a bad value is logged and ignored (the settings stay as they were). The random generator
carries on across a change (so ``seed`` there changes nothing).

Determinism: each task draws its whole plan (outcome, latency, score, every tool's result) at
once, before its first await. With a seed, the N plans of N tasks are therefore the same however
requests interleave; only which request gets which plan depends on arrival order.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import math
import pathlib
import random
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from alm.metrics.contract import TaskOutcome
from alm.runtime import config, credentials, sdk

__all__ = [
    "OVERRIDES_CHECK_SECONDS",
    "OVERRIDES_ENV",
    "Overrides",
    "SimParams",
    "SimulatedBackend",
    "SimulatedError",
    "Simulator",
    "TaskPlan",
    "create",
    "env_name",
    "override",
    "resolve",
]

log = logging.getLogger(__name__)

OVERRIDES_ENV = "ALM_SIM_OVERRIDES"
OVERRIDES_CHECK_SECONDS = 0.1
"""The override file is looked at (one stat) at most this often."""

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


def _parse(key: str, source: str, raw: object) -> Any:
    _, parse, low, high = _KEYS[key]
    try:
        value = parse(str(raw))
    except ValueError:
        raise config.ConfigError(f"simulated: {source}={raw!r} is not a {parse.__name__}") from None
    if not low <= value <= high:
        raise config.ConfigError(f"simulated: {source}={raw!r} must be within [{low}, {high}]")
    return value


def resolve(extra: Mapping[str, str], environ: Mapping[str, str]) -> SimParams:
    """The simulation settings: environment over ``model.parameters.extra`` over the defaults."""
    values: dict[str, Any] = {}
    for key, (field, *_) in _KEYS.items():
        source, raw = (env_name(key), environ[env_name(key)]) if env_name(key) in environ else (key, extra.get(key))
        if raw is None or raw == "":
            continue
        values[field] = _parse(key, source, raw)
    return _checked(SimParams(**values))


def override(params: SimParams, overrides: Mapping[str, object]) -> SimParams:
    """``params`` with the keys of ``overrides`` (the table's extra keys) replaced; ConfigError if bad."""
    unknown = sorted(set(overrides) - set(_KEYS))
    if unknown:
        raise config.ConfigError(f"simulated: unknown override {', '.join(unknown)} (known: {', '.join(_KEYS)})")
    values = {_KEYS[key][0]: _parse(key, key, raw) for key, raw in overrides.items() if raw is not None and raw != ""}
    return _checked(dataclasses.replace(params, **values))


def _checked(params: SimParams) -> SimParams:
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

    def __init__(self, params: SimParams, tool_count: int, rng: random.Random | None = None) -> None:
        self.params = params
        self.tool_count = tool_count
        self.rng = rng if rng is not None else random.Random(params.seed)
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


class Overrides:
    """The ``ALM_SIM_OVERRIDES`` file: looked at most every ``every`` seconds, re-read when it changed."""

    def __init__(self, path: pathlib.Path, every: float = OVERRIDES_CHECK_SECONDS,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.path, self.every, self.clock = path, every, clock
        self.values: dict[str, object] = {}
        self._checked: float | None = None
        self._seen: tuple[int, int, int] | None = None  # (inode, mtime_ns, size) of the content in values

    def poll(self) -> dict[str, object] | None:
        """The file's values when they changed since the last call (``{}`` once it is gone), else None."""
        now = self.clock()
        if self._checked is not None and now - self._checked < self.every:
            return None
        self._checked = now
        try:
            info = self.path.stat()
        except OSError:
            if self._seen is None:
                return None
            self._seen, self.values = None, {}
            return {}
        seen = (info.st_ino, info.st_mtime_ns, info.st_size)
        if seen == self._seen:
            return None
        self._seen = seen
        try:
            loaded = json.loads(self.path.read_text() or "{}")
        except (OSError, ValueError) as exc:
            log.warning("simulated: %s: ignored, not JSON: %s", self.path, exc)
            return None
        if not isinstance(loaded, dict):
            log.warning("simulated: %s: ignored, not a JSON object", self.path)
            return None
        self.values = loaded
        return dict(loaded)


class SimulatedBackend:
    """Serves tasks by following plans: sleep, record tokens, call tools, set the outcome."""

    def __init__(
        self,
        agent: sdk.Agent,
        tools: Sequence[config.ToolConfig],
        params: SimParams,
        model: str = "simulated",
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        overrides: Overrides | None = None,
    ) -> None:
        self.base = params
        """The settings without overrides; ``params`` is what the next task uses."""
        self.params = params
        self.model = model
        self.tools = tuple(tools)
        self.simulator = Simulator(params, len(self.tools))
        self.sleep = sleep
        self.overrides = overrides
        self._calls = {tool.name: agent.tool(tool.name)(self._call_tool) for tool in self.tools}

    def refresh(self) -> None:
        """Apply the override file if it changed (a bad one is logged and leaves the settings as they are)."""
        if self.overrides is None:
            return
        values = self.overrides.poll()
        if values is None:
            return
        try:
            params = override(self.base, values)
        except config.ConfigError as exc:
            log.warning("simulated: %s: ignored: %s", self.overrides.path, exc)
            return
        if params != self.params:
            log.info("simulated: settings now %s (overrides %s)", params, values or "none")
            self.params = params
            self.simulator = Simulator(params, len(self.tools), rng=self.simulator.rng)

    async def run(self, text: str, task: sdk.Task) -> str:
        self.refresh()
        params, plan = self.params, self.simulator.plan()
        await self.sleep(plan.latency_s)
        task.tokens(input=params.input_tokens, output=params.output_tokens, seconds=plan.latency_s)
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
    path = environ.get(OVERRIDES_ENV)
    overrides = Overrides(pathlib.Path(path)) if path else None
    return SimulatedBackend(agent, cfg.tools, resolve(cfg.model.extra, environ), model=cfg.model.name,
                            overrides=overrides)
