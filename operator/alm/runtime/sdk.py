"""Record an agent's work under the metric contract from the agent's own code, in two lines.

    agent = sdk.Agent.from_env()              # reads what the operator mounted
    with agent.task() as t:                   # one task: outcome, duration, tokens, cost, score
        reply = call_model(prompt)
        t.tokens(input=reply.usage.input, output=reply.usage.output)   # cost from the pricing
        t.tool("crm", ok=True)                # a tool call the code made itself
        t.score(0.9)                          # optional evaluation score, 0..1

    @agent.tool("crm")                        # or let the SDK call the tool: shadow-aware
    def update_ticket(ticket_id: str) -> dict: ...

A task that raises ends as ``error`` (the exception propagates); ``t.fail()`` ends it as
``failure``; otherwise it is a ``success``. Task-level counters (tasks, tokens, cost, score) are
written when the task ends, so a scrape never sees the cost of a task it does not count yet.

Shadow mode: a shadow version serves copies of real traffic, so it must not change the world.
A decorated tool runs only if the version declares it ``readOnly``; otherwise the function is not
called, the call is recorded as ``dry_run`` and a ``DryRun`` is returned in its place.

The current task is tracked in a context variable only so that decorated tools called deep in
the agent's code show up in that task's summary; the metrics themselves never depend on it.
"""

from __future__ import annotations

import contextvars
import dataclasses
import functools
import inspect
import os
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from types import TracebackType
from typing import Any, ParamSpec, Protocol, TypeVar, cast, overload

from prometheus_client import CollectorRegistry

from alm.metrics.contract import TaskOutcome, ToolOutcome
from alm.runtime import config, instruments

__all__ = ["Agent", "DryRun", "Task", "TaskResult", "ToolCall", "ToolError"]

P = ParamSpec("P")
R = TypeVar("R")

_current: contextvars.ContextVar[Task | None] = contextvars.ContextVar("alm_current_task", default=None)


class ToolError(Exception):
    """Raise from a tool to fail the call with a low-cardinality ``error_type`` label."""

    def __init__(self, message: str, error_type: str = "tool_error") -> None:
        super().__init__(message)
        self.error_type = error_type


@dataclasses.dataclass(frozen=True)
class ToolCall:
    tool: str
    outcome: ToolOutcome


@dataclasses.dataclass(frozen=True)
class DryRun:
    """What a decorated tool returns instead of running in shadow mode: the call it would have made."""

    tool: str
    # Arguments may hold user data; keep them out of reprs and logs.
    args: tuple[Any, ...] = dataclasses.field(default=(), repr=False)
    kwargs: Mapping[str, Any] = dataclasses.field(default_factory=dict, repr=False)


@dataclasses.dataclass(frozen=True)
class TaskResult:
    """The summary of a finished task, as recorded."""

    outcome: TaskOutcome
    seconds: float
    input_tokens: int
    output_tokens: int
    cost_usd: float
    tool_calls: tuple[ToolCall, ...]
    score: float | None
    error_type: str | None = None


class _ToolDecorator(Protocol):
    @overload
    def __call__(self, fn: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R | DryRun]]: ...
    @overload
    def __call__(self, fn: Callable[P, R]) -> Callable[P, R | DryRun]: ...


class Agent:
    """One agent version's recorder: the instruments, the pricing and the shadow policy."""

    def __init__(
        self,
        name: str,
        version: str,
        *,
        shadow: bool = False,
        provider: str = "",
        model: str = "",
        pricing: config.Pricing | None = None,
        tools: Iterable[config.ToolConfig] = (),
        registry: CollectorRegistry | None = None,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.shadow = shadow
        self.pricing = pricing or config.Pricing()
        self.tools = {tool.name: tool for tool in tools}
        self.clock = clock
        identity = instruments.Identity(name, version, shadow, provider, model)
        self.instruments = instruments.Instruments(identity, self.tools, registry)

    @classmethod
    def from_config(cls, cfg: config.RuntimeConfig, registry: CollectorRegistry | None = None) -> Agent:
        return cls(
            cfg.agent, cfg.version, shadow=cfg.shadow, provider=cfg.model.provider, model=cfg.model.name,
            pricing=cfg.model.pricing, tools=cfg.tools, registry=registry,
        )  # fmt: skip

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> Agent:
        """The agent the operator configured: ``ALM_CONFIG_FILE``, ``ALM_AGENT``, ``ALM_SHADOW``, …"""
        return cls.from_config(config.load(environ))

    def task(self) -> Task:
        return Task(self)

    def may_execute(self, tool: str) -> bool:
        """Whether a call of ``tool`` may really run: always outside shadow mode, and in shadow
        mode only when the version declares the tool read-only (an undeclared tool is not)."""
        declared = self.tools.get(tool)
        return not self.shadow or (declared is not None and declared.read_only)

    def record_tool(self, tool: str, outcome: ToolOutcome, seconds: float | None = None, error_type: str = "") -> None:
        """Count one tool call, and add it to the current task's summary if this agent runs one."""
        self.instruments.tool_call(tool, outcome, seconds, error_type)
        task = _current.get()
        if task is not None and task.agent is self:
            task.tool_calls.append(ToolCall(tool, outcome))

    def tool(self, name: str) -> _ToolDecorator:
        """Decorate a tool function (sync or async): time it, count its outcome, honour shadow mode."""

        self.instruments.precreate_tool(name)

        def decorate(fn: Callable[..., Any]) -> Callable[..., Any]:
            if inspect.iscoroutinefunction(fn):

                @functools.wraps(fn)
                async def run_async(*args: Any, **kwargs: Any) -> Any:
                    if not self.may_execute(name):
                        return self._dry_run(name, args, kwargs)
                    started = self.clock()
                    try:
                        result = await fn(*args, **kwargs)
                    except Exception as e:
                        self._tool_failed(name, started, e)
                        raise
                    self.record_tool(name, ToolOutcome.SUCCESS, self.clock() - started)
                    return result

                return run_async

            @functools.wraps(fn)
            def run(*args: Any, **kwargs: Any) -> Any:
                if not self.may_execute(name):
                    return self._dry_run(name, args, kwargs)
                started = self.clock()
                try:
                    result = fn(*args, **kwargs)
                except Exception as e:
                    self._tool_failed(name, started, e)
                    raise
                self.record_tool(name, ToolOutcome.SUCCESS, self.clock() - started)
                return result

            return run

        return cast(_ToolDecorator, decorate)

    def _dry_run(self, name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> DryRun:
        self.record_tool(name, ToolOutcome.DRY_RUN)
        return DryRun(name, args, kwargs)

    def _tool_failed(self, name: str, started: float, error: Exception) -> None:
        error_type = error.error_type if isinstance(error, ToolError) else type(error).__name__
        self.record_tool(name, ToolOutcome.ERROR, self.clock() - started, error_type)

    def metrics(self) -> bytes:
        """The Prometheus exposition of this agent's metrics."""
        return self.instruments.exposition()


class Task:
    """One task being served; use as a (sync or async) context manager."""

    def __init__(self, agent: Agent) -> None:
        self.agent = agent
        self.tool_calls: list[ToolCall] = []
        self.input_tokens = 0
        self.output_tokens = 0
        self.cost_usd = 0.0
        self.result: TaskResult | None = None
        self._score: float | None = None
        self._failed = False
        self._started = 0.0
        self._token: contextvars.Token[Task | None] | None = None

    def tokens(
        self, input: int = 0, output: int = 0, *, seconds: float | None = None, cost_usd: float | None = None
    ) -> None:
        """Record one model call's usage; cost from the version's pricing unless ``cost_usd`` is given."""
        if input < 0 or output < 0:
            raise ValueError(f"token counts must not be negative: input={input}, output={output}")
        self.input_tokens += input
        self.output_tokens += output
        self.cost_usd += self.agent.pricing.cost(input, output) if cost_usd is None else cost_usd
        self.agent.instruments.model_call(input, output, seconds)

    def tool(self, name: str, ok: bool = True, *, seconds: float | None = None, error_type: str = "") -> None:
        """Record a tool call the agent's code made itself (check ``agent.may_execute`` first in shadow mode)."""
        if ok:
            self.agent.record_tool(name, ToolOutcome.SUCCESS, seconds)
        else:
            self.agent.record_tool(name, ToolOutcome.ERROR, seconds, error_type or "tool_error")

    def score(self, value: float) -> None:
        """The task's evaluation (alignment) score, 0..1; the last one given counts."""
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"an alignment score is between 0 and 1, got {value}")
        self._score = value

    def fail(self) -> None:
        """End the task as a failure: answered, but not accomplished."""
        self._failed = True

    def __enter__(self) -> Task:
        if self._token is not None or self.result is not None:
            raise RuntimeError("a Task is entered once")
        self._token = _current.set(self)
        self._started = self.agent.clock()
        self.agent.instruments.task_started()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        seconds = self.agent.clock() - self._started
        if exc_type is not None:
            outcome, error_type = TaskOutcome.ERROR, exc_type.__name__
        else:
            outcome, error_type = (TaskOutcome.FAILURE if self._failed else TaskOutcome.SUCCESS), None
        recorder = self.agent.instruments
        recorder.tokens(self.input_tokens, self.output_tokens, self.cost_usd)
        if self._score is not None:
            recorder.score(self._score)
        recorder.task_finished(outcome, seconds)
        self.result = TaskResult(
            outcome, seconds, self.input_tokens, self.output_tokens, self.cost_usd,
            tuple(self.tool_calls), self._score, error_type,
        )  # fmt: skip
        assert self._token is not None
        _current.reset(self._token)

    async def __aenter__(self) -> Task:
        return self.__enter__()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.__exit__(exc_type, exc, tb)
