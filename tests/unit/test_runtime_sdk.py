"""The SDK: what a task, a tool call and shadow mode record, with hand-computed values."""

from __future__ import annotations

from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from alm.metrics import contract
from alm.runtime import config, sdk

PRICING = config.Pricing(input_per_million_usd=3.0, output_per_million_usd=15.0)
TOOLS = (config.ToolConfig("crm", "http"), config.ToolConfig("search", "http", read_only=True))


class FakeClock:
    """Time that moves only when a test says so."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def make_agent(shadow: bool = False, clock: FakeClock | None = None) -> sdk.Agent:
    return sdk.Agent("bot", "bot-v1", shadow=shadow, provider="simulated", model="sim-1", pricing=PRICING,
                     tools=TOOLS, clock=clock or FakeClock())  # fmt: skip


def read(agent: sdk.Agent, sample: str, **labels: str) -> float:
    total = 0.0
    for family in text_string_to_metric_families(agent.metrics().decode()):
        for s in family.samples:
            if s.name == sample and all(s.labels.get(k) == v for k, v in labels.items()):
                total += s.value
    return total


# --- Tasks ---------------------------------------------------------------------------------------


def test_a_task_records_outcome_duration_tokens_and_cost() -> None:
    clock = FakeClock()
    agent = make_agent(clock=clock)
    with agent.task() as t:
        clock.now += 1.5
        t.tokens(input=1000, output=500)
        t.tokens(input=200, output=0)
        t.score(0.8)
    # 1200 in at $3/M + 500 out at $15/M = 0.0036 + 0.0075 = $0.0111
    assert t.result == sdk.TaskResult(contract.TaskOutcome.SUCCESS, 1.5, 1200, 500, pytest.approx(0.0111), (), 0.8)
    assert read(agent, contract.TASKS.total, outcome="success") == 1
    assert read(agent, contract.TASK_DURATION.sum, outcome="success") == 1.5
    assert read(agent, contract.TOKENS.total, type="input") == 1200
    assert read(agent, contract.TOKENS.total, type="output") == 500
    assert read(agent, contract.COST.total) == pytest.approx(0.0111)
    assert read(agent, contract.ALIGNMENT.sum) == 0.8
    assert read(agent, contract.ALIGNMENT.count) == 1
    # Two model calls: the per-call histogram has two observations of each token type.
    assert read(agent, contract.TOKEN_USAGE.count, gen_ai_token_type="input", gen_ai_request_model="sim-1") == 2
    assert read(agent, contract.TOKEN_USAGE.sum, gen_ai_token_type="input") == 1200


def test_a_reported_cost_wins_over_the_pricing() -> None:
    agent = make_agent()
    with agent.task() as t:
        t.tokens(input=1000, output=500, cost_usd=0.5)
        t.tokens(input=1000, output=0)  # priced: $0.003
    assert t.cost_usd == pytest.approx(0.503)
    assert read(agent, contract.COST.total) == pytest.approx(0.503)


@pytest.mark.parametrize(("pricing", "tokens", "cost"), [
    ((0.0, 0.0), (1_000_000, 1_000_000), 0.0),
    ((1.0, 2.0), (300, 100), 0.0005),
    ((2.5, 10.0), (1_000_000, 100_000), 3.5),
    ((0.15, 0.6), (12_345, 678), 0.00185175 + 0.0004068),
])  # fmt: skip
def test_cost_from_pricing(pricing: tuple[float, float], tokens: tuple[int, int], cost: float) -> None:
    assert config.Pricing(*pricing).cost(*tokens) == pytest.approx(cost)


def test_fail_makes_a_failure_and_an_exception_an_error() -> None:
    agent = make_agent()
    with agent.task() as failed:
        failed.fail()
    with pytest.raises(KeyError), agent.task() as crashed:
        raise KeyError("boom")
    assert failed.result is not None and failed.result.outcome is contract.TaskOutcome.FAILURE
    assert crashed.result is not None and crashed.result.outcome is contract.TaskOutcome.ERROR
    assert crashed.result.error_type == "KeyError"
    assert read(agent, contract.TASKS.total, outcome="failure") == 1
    assert read(agent, contract.TASKS.total, outcome="error") == 1
    assert read(agent, contract.TASKS.total, outcome="success") == 0


def test_task_counters_move_only_when_the_task_ends() -> None:
    agent = make_agent()
    with agent.task() as t:
        t.tokens(input=10, output=10)
        assert read(agent, contract.TASKS_IN_FLIGHT.name) == 1
        assert read(agent, contract.TOKENS.total) == 0
        assert read(agent, contract.COST.total) == 0
    assert read(agent, contract.TASKS_IN_FLIGHT.name) == 0
    assert read(agent, contract.TOKENS.total) == 20


async def test_async_tasks() -> None:
    agent = make_agent()
    async with agent.task() as t:
        t.tokens(input=1, output=1)
    assert t.result is not None and t.result.outcome is contract.TaskOutcome.SUCCESS


@pytest.mark.parametrize("score", [-0.1, 1.01])
def test_scores_outside_0_1_are_refused(score: float) -> None:
    with make_agent().task() as t, pytest.raises(ValueError, match="between 0 and 1"):
        t.score(score)


def test_negative_tokens_are_refused() -> None:
    with make_agent().task() as t, pytest.raises(ValueError):
        t.tokens(input=-1)


def test_a_task_is_entered_once() -> None:
    task = make_agent().task()
    with task:
        pass
    with pytest.raises(RuntimeError), task:
        pass


# --- Tools ---------------------------------------------------------------------------------------


def test_reported_tool_calls_count_and_join_the_task_summary() -> None:
    agent = make_agent()
    with agent.task() as t:
        t.tool("crm", ok=True, seconds=0.2)
        t.tool("crm", ok=False, seconds=0.1, error_type="timeout")
    assert t.result is not None
    assert t.result.tool_calls == (sdk.ToolCall("crm", contract.ToolOutcome.SUCCESS),
                                   sdk.ToolCall("crm", contract.ToolOutcome.ERROR))  # fmt: skip
    assert read(agent, contract.TOOL_CALLS.total, tool="crm", outcome="success") == 1
    assert read(agent, contract.TOOL_CALLS.total, tool="crm", outcome="error") == 1
    assert read(agent, contract.TOOL_DURATION.sum, gen_ai_tool_name="crm", error_type="timeout") == 0.1
    assert read(agent, contract.TOOL_DURATION.sum, gen_ai_tool_name="crm", error_type="") == 0.2


def test_a_decorated_tool_is_timed_and_counted() -> None:
    clock = FakeClock()
    agent = make_agent(clock=clock)

    @agent.tool("crm")
    def lookup(customer: str) -> str:
        clock.now += 0.25
        return f"record of {customer}"

    @agent.tool("search")
    def broken() -> None:
        clock.now += 0.5
        raise sdk.ToolError("index gone", "unavailable")

    with agent.task() as t:
        assert lookup("ada") == "record of ada"
        with pytest.raises(sdk.ToolError):
            broken()
    assert lookup.__name__ == "lookup"
    assert t.result is not None and [c.outcome for c in t.result.tool_calls] == ["success", "error"]
    assert read(agent, contract.TOOL_DURATION.sum, gen_ai_tool_name="crm") == 0.25
    assert read(agent, contract.TOOL_DURATION.sum, gen_ai_tool_name="search", error_type="unavailable") == 0.5


def test_an_unexpected_exception_is_typed_by_its_class() -> None:
    agent = make_agent()

    @agent.tool("crm")
    def flaky() -> None:
        raise TimeoutError

    with pytest.raises(TimeoutError):
        flaky()  # outside a task: counted, no summary to join
    assert read(agent, contract.TOOL_DURATION.count, error_type="TimeoutError") == 1
    assert read(agent, contract.TOOL_CALLS.total, tool="crm", outcome="error") == 1


async def test_async_tools() -> None:
    agent = make_agent()

    @agent.tool("crm")
    async def fetch(n: int) -> int:
        return n * 2

    async with agent.task() as t:
        assert await fetch(21) == 42
    assert t.result is not None and t.result.tool_calls == (sdk.ToolCall("crm", contract.ToolOutcome.SUCCESS),)


# --- Shadow mode ---------------------------------------------------------------------------------


def test_shadow_mode_does_not_call_a_tool_that_is_not_read_only() -> None:
    agent = make_agent(shadow=True)
    calls: list[Any] = []

    @agent.tool("crm")
    def update(ticket: str, *, status: str) -> str:
        calls.append(ticket)
        return "updated"

    with agent.task() as t:
        result = update("T-1", status="closed")
    assert calls == []
    assert result == sdk.DryRun("crm", ("T-1",), {"status": "closed"})
    assert "T-1" not in repr(result)
    assert t.result is not None and t.result.tool_calls == (sdk.ToolCall("crm", contract.ToolOutcome.DRY_RUN),)
    assert read(agent, contract.TOOL_CALLS.total, tool="crm", outcome="dry_run", shadow="true") == 1
    assert read(agent, contract.TOOL_DURATION.count) == 0


async def test_shadow_mode_dry_runs_async_tools_too() -> None:
    agent = make_agent(shadow=True)

    @agent.tool("crm")
    async def update() -> str:
        raise AssertionError("must not run")

    assert await update() == sdk.DryRun("crm")


@pytest.mark.parametrize(("shadow", "tool", "executes"), [
    (False, "crm", True),
    (False, "search", True),
    (False, "undeclared", True),
    (True, "crm", False),         # not readOnly
    (True, "search", True),       # readOnly
    (True, "undeclared", False),  # the version does not say it is safe
])  # fmt: skip
def test_may_execute(shadow: bool, tool: str, executes: bool) -> None:
    assert make_agent(shadow=shadow).may_execute(tool) is executes


def test_a_read_only_tool_runs_in_shadow_mode() -> None:
    agent = make_agent(shadow=True)

    @agent.tool("search")
    def search(q: str) -> list[str]:
        return [q]

    assert search("x") == ["x"]
    assert read(agent, contract.TOOL_CALLS.total, tool="search", outcome="success") == 1


def test_tool_calls_join_only_their_own_agents_task() -> None:
    first, second = make_agent(), make_agent()

    @second.tool("crm")
    def other() -> None:
        return None

    with first.task() as t:
        other()
    assert t.result is not None and t.result.tool_calls == ()
    assert read(second, contract.TOOL_CALLS.total, outcome="success") == 1


def test_from_env_reads_the_operator_config(tmp_path: Any) -> None:
    (tmp_path / "config.json").write_text(
        '{"agentVersion": "bot-v3", "model": {"provider": "simulated", "name": "m", '
        '"pricing": {"inputPerMillionTokensUSD": 1, "outputPerMillionTokensUSD": 2}}, '
        '"tools": [{"name": "search", "type": "http", "readOnly": true}]}'
    )
    agent = sdk.Agent.from_env({"ALM_CONFIG_FILE": str(tmp_path / "config.json"), "ALM_AGENT": "bot",
                                "ALM_SHADOW": "true"})  # fmt: skip
    assert agent.shadow and agent.may_execute("search") and not agent.may_execute("crm")
    assert agent.pricing == config.Pricing(1.0, 2.0)
    assert read(agent, contract.TASKS.total, version="bot-v3", shadow="true") == 0
    assert 'version="bot-v3"' in agent.metrics().decode()
