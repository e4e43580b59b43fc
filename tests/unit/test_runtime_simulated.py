"""The simulated backend: settings, distributions, determinism, and what a simulated task records."""

from __future__ import annotations

import collections
import math
import pathlib
import statistics

import pytest

from alm.metrics.contract import TaskOutcome, ToolOutcome
from alm.runtime import config, sdk, simulated
from alm.runtime.simulated import SimParams

CRM = config.ToolConfig("crm", "http")
SEARCH = config.ToolConfig("search", "http", read_only=True)


# --- Settings ------------------------------------------------------------------------------------


@pytest.mark.parametrize(("key", "env"), [
    ("successRate", "ALM_SIM_SUCCESS_RATE"),
    ("latencyP95Ms", "ALM_SIM_LATENCY_P95_MS"),
    ("toolErrorRate", "ALM_SIM_TOOL_ERROR_RATE"),
    ("seed", "ALM_SIM_SEED"),
])  # fmt: skip
def test_env_names(key: str, env: str) -> None:
    assert simulated.env_name(key) == env


def test_defaults() -> None:
    params = simulated.resolve({}, {})
    assert params == SimParams()
    assert params.p95_ms == 400  # twice the 200 ms median


def test_environment_wins_over_config_which_wins_over_defaults() -> None:
    extra = {"successRate": "0.5", "latencyMs": "20", "inputTokens": "7"}
    env = {"ALM_SIM_SUCCESS_RATE": "0.25", "ALM_SIM_SEED": "3", "UNRELATED": "x"}
    params = simulated.resolve(extra, env)
    assert (params.success_rate, params.latency_ms, params.input_tokens, params.seed) == (0.25, 20.0, 7, 3)
    assert params.output_tokens == 200


@pytest.mark.parametrize(("extra", "env", "message"), [
    ({"successRate": "1.5"}, {}, "successRate='1.5' must be within"),
    ({"successRate": "lots"}, {}, "successRate='lots' is not a float"),
    ({}, {"ALM_SIM_INPUT_TOKENS": "2.5"}, "ALM_SIM_INPUT_TOKENS='2.5' is not a int"),
    ({"latencyMs": "-1"}, {}, "latencyMs='-1' must be within"),
    ({"successRate": "0.9", "errorRate": "0.2"}, {}, "must not exceed 1"),
    ({"latencyMs": "100", "latencyP95Ms": "50"}, {}, "must not be below latencyMs"),
])  # fmt: skip
def test_bad_settings_are_refused_by_name(extra: dict[str, str], env: dict[str, str], message: str) -> None:
    with pytest.raises(config.ConfigError, match=message.replace("(", r"\(")):
        simulated.resolve(extra, env)


# --- Distributions -------------------------------------------------------------------------------

N = 20_000


def plans(n: int = N, tools: int = 2, **params: float) -> list[simulated.TaskPlan]:
    sim = simulated.Simulator(SimParams(seed=11, **params), tools)
    return [sim.plan() for _ in range(n)]


def within(measured: float, expected: float, n: int) -> bool:
    return abs(measured - expected) <= 4 * math.sqrt(expected * (1 - expected) / n)


def test_outcome_rates() -> None:
    counts = collections.Counter(p.outcome for p in plans(success_rate=0.7, error_rate=0.1))
    assert within(counts[TaskOutcome.SUCCESS] / N, 0.7, N)
    assert within(counts[TaskOutcome.ERROR] / N, 0.1, N)
    assert within(counts[TaskOutcome.FAILURE] / N, 0.2, N)


def test_tool_error_rate() -> None:
    oks = [ok for p in plans(tool_error_rate=0.15) for ok in p.tool_ok]
    assert len(oks) == 2 * N
    assert within(oks.count(False) / len(oks), 0.15, len(oks))


def test_latency_is_lognormal_with_the_configured_median_and_p95() -> None:
    latencies = sorted(p.latency_s for p in plans(latency_ms=100, latency_p95_ms=300))
    assert statistics.median(latencies) == pytest.approx(0.100, rel=0.03)
    assert latencies[int(0.95 * N)] == pytest.approx(0.300, rel=0.05)
    assert min(latencies) > 0


def test_latency_is_fixed_when_p95_equals_the_median() -> None:
    assert [p.latency_s for p in plans(100, latency_ms=40, latency_p95_ms=40)] == [pytest.approx(0.04)] * 100
    assert {p.latency_s for p in plans(100, latency_ms=0)} == {0.0}


@pytest.mark.parametrize("mean", [0.0, 0.3, 0.9, 1.0])
def test_alignment_scores_average_the_configured_score(mean: float) -> None:
    scores = [p.score for p in plans(alignment_score=mean)]
    assert all(0 <= s <= 1 for s in scores)
    assert statistics.fmean(scores) == pytest.approx(mean, abs=0.005)


def test_a_seed_fixes_the_plans() -> None:
    assert plans(50) == plans(50)
    other = simulated.Simulator(SimParams(seed=12), 2)
    assert [other.plan() for _ in range(50)] != plans(50)


# --- Tasks ---------------------------------------------------------------------------------------


class Sleeps:
    """Record sleeps instead of sleeping."""

    def __init__(self) -> None:
        self.seconds: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.seconds.append(seconds)


def backend(params: SimParams, tools: tuple[config.ToolConfig, ...] = (CRM, SEARCH), shadow: bool = False
            ) -> tuple[sdk.Agent, simulated.SimulatedBackend, Sleeps]:  # fmt: skip
    agent = sdk.Agent("bot", "v1", shadow=shadow, pricing=config.Pricing(1.0, 2.0), tools=tools)
    sleeps = Sleeps()
    return agent, simulated.SimulatedBackend(agent, tools, params, sleep=sleeps), sleeps


async def run(agent: sdk.Agent, be: simulated.SimulatedBackend) -> tuple[sdk.TaskResult, str | None]:
    task = agent.task()
    output = None
    try:
        async with task:
            output = await be.run("hi", task)
    except simulated.SimulatedError:
        pass
    assert task.result is not None
    return task.result, output


async def test_a_simulated_task_records_tokens_cost_tools_and_score() -> None:
    params = SimParams(success_rate=1, tool_error_rate=0, alignment_score=1, input_tokens=300, output_tokens=100,
                       latency_ms=50, latency_p95_ms=50, tool_latency_ms=10)  # fmt: skip
    agent, be, sleeps = backend(params)
    result, output = await run(agent, be)
    assert output == "[simulated] success: hi"
    assert result.outcome is TaskOutcome.SUCCESS
    assert (result.input_tokens, result.output_tokens) == (300, 100)
    assert result.cost_usd == pytest.approx(0.0005)  # 300 x $1/M + 100 x $2/M
    assert result.score == 1
    assert result.tool_calls == (sdk.ToolCall("crm", ToolOutcome.SUCCESS), sdk.ToolCall("search", ToolOutcome.SUCCESS))
    assert sleeps.seconds == [pytest.approx(0.05), 0.01, 0.01]  # the model call, then each tool


@pytest.mark.parametrize(("success", "error", "outcome"), [
    (0.0, 0.0, TaskOutcome.FAILURE), (0.0, 1.0, TaskOutcome.ERROR), (1.0, 0.0, TaskOutcome.SUCCESS),
])  # fmt: skip
async def test_outcomes(success: float, error: float, outcome: TaskOutcome) -> None:
    agent, be, _ = backend(SimParams(success_rate=success, error_rate=error, latency_ms=0))
    result, output = await run(agent, be)
    assert result.outcome is outcome
    assert (output is None) == (outcome is TaskOutcome.ERROR)
    assert (result.score is None) == (outcome is TaskOutcome.ERROR)
    assert result.input_tokens == 500  # the model was called whatever the outcome


async def test_failing_tools_do_not_fail_the_task() -> None:
    agent, be, _ = backend(SimParams(success_rate=1, tool_error_rate=1, latency_ms=0))
    result, _ = await run(agent, be)
    assert result.outcome is TaskOutcome.SUCCESS
    assert [c.outcome for c in result.tool_calls] == [ToolOutcome.ERROR, ToolOutcome.ERROR]


async def test_shadow_mode_dry_runs_the_tools_that_are_not_read_only() -> None:
    agent, be, sleeps = backend(SimParams(tool_error_rate=0, latency_ms=0, tool_latency_ms=5), shadow=True)
    result, _ = await run(agent, be)
    assert result.tool_calls == (sdk.ToolCall("crm", ToolOutcome.DRY_RUN), sdk.ToolCall("search", ToolOutcome.SUCCESS))
    assert sleeps.seconds == [0.0, 0.005]  # only search ran


async def test_a_tool_credential_is_read_at_each_call(tmp_path: pathlib.Path) -> None:
    crm = config.ToolConfig("crm", "http", credential_file=tmp_path / "tool-crm")
    agent, be, _ = backend(SimParams(tool_error_rate=0, latency_ms=0), tools=(crm,))
    missing, _ = await run(agent, be)
    (tmp_path / "tool-crm").write_text("sk-123\n")
    present, _ = await run(agent, be)
    (tmp_path / "tool-crm").unlink()  # revoked
    revoked, _ = await run(agent, be)
    assert [r.tool_calls[0].outcome for r in (missing, present, revoked)] == ["error", "success", "error"]
    assert b'error_type="credential_unavailable"' in agent.metrics()


async def test_create_reads_the_model_settings() -> None:
    cfg = config.RuntimeConfig("bot", "v1", False, config.ModelConfig("simulated", "sim-7", {"inputTokens": "9"}),
                               tools=(SEARCH,))  # fmt: skip
    be = simulated.create(sdk.Agent.from_config(cfg), cfg, {"ALM_SIM_OUTPUT_TOKENS": "4"})
    assert (be.params.input_tokens, be.params.output_tokens, be.model, be.tools) == (9, 4, "sim-7", (SEARCH,))


# --- Runtime overrides (ALM_SIM_OVERRIDES) ------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def write_json(path: pathlib.Path, text: str) -> None:
    """Replace atomically, as a writer should (a reader never sees half a file)."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text)
    tmp.replace(path)


async def test_overrides_are_off_unless_configured(tmp_path: pathlib.Path) -> None:
    cfg = config.RuntimeConfig("bot", "v1", False, config.ModelConfig("simulated", "sim", {}), tools=())
    assert simulated.create(sdk.Agent.from_config(cfg), cfg, {}).overrides is None
    be = simulated.create(sdk.Agent.from_config(cfg), cfg, {"ALM_SIM_OVERRIDES": str(tmp_path / "o.json")})
    assert be.overrides is not None and be.overrides.path == tmp_path / "o.json"


async def test_an_override_file_changes_a_running_agent_and_is_checked_at_most_every_100_ms(
        tmp_path: pathlib.Path) -> None:
    path, clock = tmp_path / "overrides.json", Clock()
    agent = sdk.Agent("bot", "v1", pricing=config.Pricing(1.0, 2.0), tools=())
    be = simulated.SimulatedBackend(agent, (), SimParams(success_rate=1, latency_ms=0, seed=3), sleep=Sleeps(),
                                    overrides=simulated.Overrides(path, clock=clock))
    assert (await run(agent, be))[0].outcome is TaskOutcome.SUCCESS  # no file: the settings
    write_json(path, '{"successRate": 0, "outputTokens": "7"}')
    clock.now += 0.05
    assert (await run(agent, be))[0].outcome is TaskOutcome.SUCCESS  # not looked at yet
    clock.now += 0.06
    result, _ = await run(agent, be)
    assert (result.outcome, result.output_tokens) == (TaskOutcome.FAILURE, 7)
    assert (be.params.success_rate, be.base.success_rate) == (0, 1)
    clock.now += 1
    write_json(path, '{"successRate": "2"}')  # out of range: ignored, the settings stay
    assert (await run(agent, be))[0].outcome is TaskOutcome.FAILURE
    clock.now += 1
    write_json(path, "not json")
    assert (await run(agent, be))[0].outcome is TaskOutcome.FAILURE
    clock.now += 1
    write_json(path, '{"successRate": 1.0}')
    assert (await run(agent, be))[0].outcome is TaskOutcome.SUCCESS
    write_json(path, '{"successRate": 0.0}')
    clock.now += 1
    assert (await run(agent, be))[0].outcome is TaskOutcome.FAILURE
    path.unlink()  # gone: back to the settings
    clock.now += 1
    assert (await run(agent, be))[0].outcome is TaskOutcome.SUCCESS and be.params == be.base


def test_override_validates_like_the_settings() -> None:
    base = SimParams()
    assert simulated.override(base, {"successRate": 0.1, "latencyMs": 5}) == SimParams(success_rate=0.1, latency_ms=5)
    assert simulated.override(base, {}) == base
    with pytest.raises(config.ConfigError, match="unknown override speed"):
        simulated.override(base, {"speed": 1})
    with pytest.raises(config.ConfigError, match=r"successRate \+ errorRate"):
        simulated.override(base, {"errorRate": 0.5})
