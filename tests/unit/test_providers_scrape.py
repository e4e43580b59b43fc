"""The scrape provider without a network: pods are in-memory runtimes, the clock is ours.

Each fake pod is the runtime's own ``Instruments`` (so the exposition is byte for byte what
``alm-agent`` serves), read through the provider's ``fetch`` seam; time moves only when a test
moves it. The same behaviours against real processes are in tests/integration/test_provider_scrape.py.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
from collections.abc import Sequence

import aiohttp
import pytest

from alm.core import kpis
from alm.metrics import contract
from alm.metrics.contract import KPI, TaskOutcome, ToolOutcome
from alm.providers import base, scrape
from alm.providers.base import PodChange, PodState, PodTarget, Reading, ReadingState
from alm.providers.scrape import ScrapeProvider
from alm.runtime.instruments import Identity, Instruments

NS, AGENT, VERSION = "default", "bot", "bot-v1"
WINDOW = 30.0


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


@dataclasses.dataclass
class Pod:
    name: str
    metrics: Instruments
    reachable: bool = True
    answer: bytes | str | None = None  # overrides the exposition (a bad response)

    def serve(self, outcome: TaskOutcome = TaskOutcome.SUCCESS, seconds: float = 0.05, score: float = 0.9,
              tools: Sequence[ToolOutcome] = (), cost: float = 0.001) -> None:  # fmt: skip
        """One task as the runtime records it."""
        self.metrics.task_started()
        for outcome_ in tools:
            self.metrics.tool_call("crm", outcome_, 0.01)
        self.metrics.tokens(300, 100, cost)
        if outcome is not TaskOutcome.ERROR:
            self.metrics.score(score)
        self.metrics.task_finished(outcome, seconds)


class Fleet:
    """The pods of one version; ``lister`` and ``fetch`` are what the provider is given."""

    def __init__(self) -> None:
        self.pods: dict[str, Pod] = {}
        self.listings = 0

    def add(self, name: str, *, agent: str = AGENT, version: str = VERSION, shadow: bool = False) -> Pod:
        pod = Pod(name, Instruments(Identity(agent, version, shadow, "simulated", "sim-1"), tools=["crm"]))
        self.pods[name] = pod
        return pod

    def restart(self, name: str) -> Pod:
        old = self.pods[name].metrics.identity
        return self.add(name, agent=old.agent, version=old.version, shadow=old.shadow)

    async def lister(self, agent: str, namespace: str, version: str) -> list[tuple[str, str, int, str]]:
        self.listings += 1
        assert (agent, namespace, version) == (AGENT, NS, VERSION)
        return [(pod.name, f"10.0.0.{i}", 8080, "/metrics") for i, pod in enumerate(self.pods.values())]

    async def fetch(self, target: PodTarget) -> bytes | str:
        assert target.url.startswith("http://10.0.0.") and target.url.endswith(":8080/metrics")
        pod = self.pods[target.name]
        if not pod.reachable:
            raise aiohttp.ClientConnectionError(f"Cannot connect to host {target.ip}:8080")
        return pod.answer if pod.answer is not None else pod.metrics.exposition()


@pytest.fixture
def fleet() -> Fleet:
    return Fleet()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def provider(fleet: Fleet, clock: Clock) -> ScrapeProvider:
    now = datetime.datetime(2025, 5, 1, 12, 0, 0, 250000, tzinfo=datetime.UTC)
    return ScrapeProvider(fleet.lister, fetch=fleet.fetch, clock=clock, now=lambda: now)


async def measure(provider: ScrapeProvider, clock: Clock, advance: float = WINDOW, **kwargs: object) -> base.KPIResult:
    clock.t += advance
    return await provider.measure(AGENT, NS, VERSION, WINDOW, **kwargs)  # type: ignore[arg-type]


def states(result: base.KPIResult) -> dict[str, tuple[PodState, PodChange | None]]:
    return {report.name: (report.state, report.change) for report in result.pods}


# --- windows -------------------------------------------------------------------------------------


async def test_the_first_measurement_is_the_baseline_and_inconclusive(
    provider: ScrapeProvider, fleet: Fleet, clock: Clock
) -> None:
    fleet.add("a").serve()
    first = await measure(provider, clock, 0)
    assert first.window_seconds == 0
    assert {reading.state for reading in first.kpis.values()} == {ReadingState.INCONCLUSIVE}
    assert "first scrape" in first.kpis[KPI.SUCCESS_RATE].reason
    assert first.observed_at == "2025-05-01T12:00:00Z"
    assert first.observation().model_dump(exclude_none=True) == {"observed_at": "2025-05-01T12:00:00Z"}


async def test_kpis_of_the_increase_between_two_scrapes(provider: ScrapeProvider, fleet: Fleet, clock: Clock) -> None:
    a, b = fleet.add("a"), fleet.add("b")
    for _ in range(5):
        a.serve(TaskOutcome.FAILURE)  # before the baseline: not counted
    await measure(provider, clock, 0)
    # a: 6 success, 2 failure; b: 3 success, 1 error. 12 tasks, 9 succeeded.
    for _ in range(6):
        a.serve(TaskOutcome.SUCCESS, seconds=0.05, score=0.8, tools=[ToolOutcome.SUCCESS])
    for _ in range(2):
        a.serve(TaskOutcome.FAILURE, seconds=0.15, score=0.5, tools=[ToolOutcome.ERROR])
    for _ in range(3):
        b.serve(TaskOutcome.SUCCESS, seconds=0.05, score=1.0, tools=[ToolOutcome.SUCCESS, ToolOutcome.DRY_RUN])
    b.serve(TaskOutcome.ERROR, seconds=0.5, tools=[ToolOutcome.ERROR, ToolOutcome.ERROR])

    result = await measure(provider, clock, 30.5)
    assert result.window_seconds == 30.5
    assert result.kpis[KPI.SUCCESS_RATE] == Reading.measured(9 / 12, samples=12)
    assert result.kpis[KPI.COST_PER_TASK].value == pytest.approx(0.001)
    # executed tool calls: 6 + 2 + 3 + 2 = 13, of which 2 + 2 failed; the 3 dry runs are out
    assert result.kpis[KPI.TOOL_ERROR_RATE] == Reading.measured(4 / 13, samples=13)
    # scored: 6 * 0.8 + 2 * 0.5 + 3 * 1.0 over 11 (the error is not scored)
    assert result.kpis[KPI.ALIGNMENT].value == pytest.approx((4.8 + 1.0 + 3.0) / 11)
    # durations: 9 in (0.025, 0.05], 2 in (0.1, 0.2], 1 in (0.4, 0.6]; p95: rank 11.4 in (0.4, 0.6]:
    # 0.4 + 0.2 * (11.4 - 11) / 1 = 0.48
    assert result.kpis[KPI.LATENCY].value == pytest.approx(0.48)
    assert dataclasses.replace(result.totals, cost_usd=None) == kpis.Totals(12, 13, 11, 3600, 1200)
    assert result.totals.cost_usd == pytest.approx(0.012)
    assert states(result) == dict.fromkeys("ab", (PodState.SCRAPED, PodChange.CONTINUED))
    assert not result.partial
    assert result.observation().success_rate == 0.75


async def test_a_window_without_tasks_is_inconclusive(provider: ScrapeProvider, fleet: Fleet, clock: Clock) -> None:
    fleet.add("a").serve()
    await measure(provider, clock, 0)
    result = await measure(provider, clock)
    assert result.window_seconds == WINDOW
    assert result.kpis[KPI.SUCCESS_RATE] == Reading.inconclusive(kpis.NO_TASKS, samples=0)
    assert result.observation().success_rate is None


async def test_each_call_measures_the_window_since_the_one_before(
    provider: ScrapeProvider, fleet: Fleet, clock: Clock
) -> None:
    a = fleet.add("a")
    await measure(provider, clock, 0)
    rates = []
    for successes in (1, 3, 0):
        for i in range(4):
            a.serve(TaskOutcome.SUCCESS if i < successes else TaskOutcome.FAILURE)
        rates.append((await measure(provider, clock)).kpis[KPI.SUCCESS_RATE].value)
    assert rates == [0.25, 0.75, 0.0]


async def test_callers_with_different_windows_share_one_history(fleet: Fleet, clock: Clock) -> None:
    provider = ScrapeProvider(fleet.lister, fetch=fleet.fetch, clock=clock)
    a = fleet.add("a")
    await provider.measure(AGENT, NS, VERSION, 300)  # an analysis over 5 m takes its baseline
    for successes in range(10):  # monitoring every 30 s, 10 tasks an interval
        for i in range(10):
            a.serve(TaskOutcome.SUCCESS if i < successes else TaskOutcome.FAILURE)
        monitored = await measure(provider, clock)
        assert monitored.window_seconds == WINDOW
        assert monitored.kpis[KPI.SUCCESS_RATE] == Reading.measured(successes / 10, samples=10)
    # Five minutes on, eleven scrapes were taken and eight kept, thinned in the middle: the analysis
    # still finds its own baseline, 300 s old, and sees 0 + 1 + ... + 9 = 45 successes of 100 tasks.
    analysed = await provider.measure(AGENT, NS, VERSION, 300)
    assert analysed.window_seconds == 300
    assert analysed.kpis[KPI.SUCCESS_RATE] == Reading.measured(0.45, samples=100)


async def test_a_window_not_covered_yet_and_a_stale_baseline(
    provider: ScrapeProvider, fleet: Fleet, clock: Clock
) -> None:
    fleet.add("a")
    await measure(provider, clock, 0)
    early = await measure(provider, clock, 10)  # a third of the window
    assert "not covered yet" in early.kpis[KPI.SUCCESS_RATE].reason
    late = await measure(provider, clock, 1000)  # over three windows since the last scrape
    assert "stale" in late.kpis[KPI.SUCCESS_RATE].reason
    assert late.window_seconds == 0
    again = await measure(provider, clock)  # and it is the new baseline
    assert again.window_seconds == WINDOW


async def test_measure_window_waits_for_a_baseline_when_there_is_none(
    provider: ScrapeProvider, fleet: Fleet, clock: Clock
) -> None:
    a = fleet.add("a")
    slept: list[float] = []

    async def sleep(seconds: float) -> None:  # the traffic of the window happens while we "wait"
        slept.append(seconds)
        a.serve(TaskOutcome.SUCCESS)
        a.serve(TaskOutcome.FAILURE)
        clock.t += seconds

    result = await scrape.measure_window(provider, AGENT, NS, VERSION, WINDOW, sleep=sleep)
    assert slept == [WINDOW]
    assert result.kpis[KPI.SUCCESS_RATE] == Reading.measured(0.5, samples=2)
    clock.t += WINDOW  # with a history that covers the window it does not wait
    assert (await scrape.measure_window(provider, AGENT, NS, VERSION, WINDOW, sleep=sleep)).window_seconds == WINDOW
    assert slept == [WINDOW]


async def test_forget_drops_the_history_of_a_version(provider: ScrapeProvider, fleet: Fleet, clock: Clock) -> None:
    fleet.add("a")
    await measure(provider, clock, 0)
    provider.forget(NS, AGENT, VERSION)
    assert "first scrape" in (await measure(provider, clock)).kpis[KPI.LATENCY].reason


async def test_the_history_is_bounded(fleet: Fleet, clock: Clock) -> None:
    provider = ScrapeProvider(fleet.lister, fetch=fleet.fetch, clock=clock, history=4)
    fleet.add("a")
    for _ in range(10):
        await measure(provider, clock, 1)
    kept = [s.at for s in provider._history[(NS, AGENT, VERSION, None)]]
    assert len(kept) == 4 and kept[0] == 1001 and kept[-1] == 1010  # thinned in between


@pytest.mark.parametrize(("times", "size", "kept"), [
    ([0, 30, 60, 90, 100], 4, [0, 30, 60, 100]),      # 90's neighbours are the closest (40 s)
    ([0, 30, 60, 90, 100], 3, [0, 60, 100]),
    ([0, 10, 20, 30, 40, 50, 60, 70], 4, [0, 20, 40, 70]),
    ([0, 300], 2, [0, 300]),
])  # fmt: skip
def test_thinning_keeps_the_history_spread_out(times: list[float], size: int, kept: list[float]) -> None:
    scrapes = [scrape._Scrape(t, frozenset(), {}) for t in times]
    assert [s.at for s in scrape._thin(scrapes, size)] == kept


# --- pods that restart, come, go and fail --------------------------------------------------------


async def test_a_restarted_pod_counts_from_zero(provider: ScrapeProvider, fleet: Fleet, clock: Clock) -> None:
    a, b = fleet.add("a"), fleet.add("b")
    for _ in range(10):
        a.serve(TaskOutcome.SUCCESS)
        b.serve(TaskOutcome.SUCCESS)
    await measure(provider, clock, 0)
    a = fleet.restart("a")  # its counters are back at zero
    for outcome in (TaskOutcome.SUCCESS, TaskOutcome.FAILURE, TaskOutcome.FAILURE, TaskOutcome.FAILURE):
        a.serve(outcome)
    b.serve(TaskOutcome.SUCCESS)
    result = await measure(provider, clock)
    # a: 1 of 4 since the restart; b: 1 of 1. Differencing would have said a: -9 successes.
    assert result.kpis[KPI.SUCCESS_RATE] == Reading.measured(2 / 5, samples=5)
    assert states(result)["a"] == (PodState.SCRAPED, PodChange.RESTARTED)
    assert not result.partial


async def test_an_unreachable_pod_is_reported_and_the_others_measured(
    provider: ScrapeProvider, fleet: Fleet, clock: Clock
) -> None:
    a, b = fleet.add("a"), fleet.add("b")
    await measure(provider, clock, 0)
    a.serve(TaskOutcome.SUCCESS)
    b.serve(TaskOutcome.FAILURE)
    b.reachable = False
    result = await measure(provider, clock)
    assert result.partial
    assert result.kpis[KPI.SUCCESS_RATE] == Reading.measured(1.0, samples=1)
    report = next(r for r in result.pods if r.name == "b")
    assert (report.state, report.change) == (PodState.UNREACHABLE, PodChange.MISSING)
    assert "Cannot connect" in report.message and not report.counted

    # Back, but the last scrape had no baseline for it: still partial, counted from the next window.
    b.reachable = True
    b.serve(TaskOutcome.FAILURE)
    result = await measure(provider, clock)
    assert states(result)["b"] == (PodState.SCRAPED, PodChange.NO_BASELINE)
    assert result.partial and result.kpis[KPI.SUCCESS_RATE] == Reading.inconclusive(kpis.NO_TASKS, samples=0)
    b.serve(TaskOutcome.FAILURE)
    result = await measure(provider, clock)
    assert not result.partial and result.kpis[KPI.SUCCESS_RATE] == Reading.measured(0.0, samples=1)


async def test_no_pod_reachable_is_an_error(provider: ScrapeProvider, fleet: Fleet, clock: Clock) -> None:
    for name in "abcde":
        fleet.add(name).serve()
    await measure(provider, clock, 0)
    for pod in fleet.pods.values():
        pod.reachable = False
    result = await measure(provider, clock)
    reading = result.kpis[KPI.SUCCESS_RATE]
    assert reading.state is ReadingState.ERROR
    assert reading.reason.startswith("none of the 5 pods could be read: a: ClientConnectionError")
    assert reading.reason.endswith("(and 2 more)")
    assert result.partial
    # The failed scrape was not kept: once back, the window is measured from the good baseline.
    for pod in fleet.pods.values():
        pod.reachable = True
    fleet.pods["a"].serve()
    assert (await measure(provider, clock)).kpis[KPI.SUCCESS_RATE] == Reading.measured(1.0, samples=1)


async def test_no_pods_is_inconclusive_and_pods_that_appear_count_from_zero(
    provider: ScrapeProvider, fleet: Fleet, clock: Clock
) -> None:
    empty = await measure(provider, clock, 0)
    assert "no pods of version bot-v1 of agent bot in namespace default" in empty.kpis[KPI.SUCCESS_RATE].reason
    fleet.add("a").serve(TaskOutcome.FAILURE)  # a canary scaled up from zero inside the window
    result = await measure(provider, clock)
    assert result.kpis[KPI.SUCCESS_RATE] == Reading.measured(0.0, samples=1)
    assert states(result) == {"a": (PodState.SCRAPED, PodChange.APPEARED)}


async def test_a_pod_gone_is_not_a_fault(provider: ScrapeProvider, fleet: Fleet, clock: Clock) -> None:
    fleet.add("a")
    fleet.add("b")
    await measure(provider, clock, 0)
    del fleet.pods["b"]
    fleet.pods["a"].serve()
    result = await measure(provider, clock)
    assert states(result) == {"a": (PodState.SCRAPED, PodChange.CONTINUED), "b": (PodState.GONE, PodChange.MISSING)}
    assert not result.partial


@pytest.mark.parametrize(("answer", "state", "message"), [
    ("HTTP 503 from http://10.0.0.1:8080/metrics", PodState.BAD_RESPONSE, "HTTP 503"),
    (b'alm_agent_tasks_total{agent="bot" oops\n', PodState.BAD_RESPONSE, "not the Prometheus text format"),
    (b"<html>not an exposition</html>", PodState.NO_SAMPLES, "no alm_agent_tasks_total series"),
    (b"", PodState.NO_SAMPLES, "no alm_agent_tasks_total series"),
    (b"other_metric_total 3\n", PodState.NO_SAMPLES, "no alm_agent_tasks_total series"),
])  # fmt: skip
async def test_bad_answers_are_reported_per_pod(
    provider: ScrapeProvider, fleet: Fleet, clock: Clock, answer: bytes | str, state: PodState, message: str
) -> None:
    fleet.add("a")
    b = fleet.add("b")
    await measure(provider, clock, 0)
    fleet.pods["a"].serve()
    b.answer = answer
    result = await measure(provider, clock)
    report = next(r for r in result.pods if r.name == "b")
    assert report.state is state and message in report.message
    assert result.partial and result.kpis[KPI.SUCCESS_RATE] == Reading.measured(1.0, samples=1)


async def test_a_pod_of_another_agent_has_no_samples(provider: ScrapeProvider, fleet: Fleet, clock: Clock) -> None:
    fleet.add("a", agent="other-bot").serve()
    await measure(provider, clock, 0)
    result = await measure(provider, clock)
    assert states(result) == {"a": (PodState.NO_SAMPLES, PodChange.CONTINUED)}
    assert result.partial and result.kpis[KPI.SUCCESS_RATE].state is ReadingState.INCONCLUSIVE


async def test_a_slow_pod_times_out(fleet: Fleet, clock: Clock) -> None:
    async def slow(target: PodTarget) -> bytes:
        await asyncio.sleep(10)
        raise AssertionError("not reached")

    fleet.add("a")
    provider = ScrapeProvider(fleet.lister, fetch=slow, clock=clock, timeout=0.05)
    result = await provider.measure(AGENT, NS, VERSION, WINDOW)
    assert result.pods[0].state is PodState.UNREACHABLE
    assert result.pods[0].message == "no answer within 0.05s"


async def test_concurrency_is_bounded(fleet: Fleet, clock: Clock) -> None:
    running, peak = 0, 0

    async def fetch(target: PodTarget) -> bytes | str:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await asyncio.sleep(0.001)
        running -= 1
        return await fleet.fetch(target)

    for i in range(40):
        fleet.add(f"p{i}")
    provider = ScrapeProvider(fleet.lister, fetch=fetch, clock=clock, concurrency=5)
    result = await provider.measure(AGENT, NS, VERSION, WINDOW)
    assert len(result.pods) == 40 and peak == 5


async def test_shadow_pods_are_told_apart(provider: ScrapeProvider, fleet: Fleet, clock: Clock) -> None:
    fleet.add("a", shadow=True).serve()
    await measure(provider, clock, 0, shadow=True)
    fleet.pods["a"].serve(TaskOutcome.FAILURE)
    assert (await measure(provider, clock, shadow=True)).kpis[KPI.SUCCESS_RATE].value == 0.0
    serving = await measure(provider, clock, 0, shadow=False)
    assert states(serving)["a"][0] is PodState.NO_SAMPLES


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"window_seconds": 0}, "window must be positive"),
    ({"quantile": 1.0}, "quantile"),
    ({"queries": ["x"]}, "need the prometheus metric provider"),
])  # fmt: skip
async def test_configuration_errors_raise(provider: ScrapeProvider, kwargs: dict[str, object], message: str) -> None:
    args: dict[str, object] = {"window_seconds": WINDOW, **kwargs}
    with pytest.raises(base.ConfigError, match=message):
        await provider.measure(AGENT, NS, VERSION, **args)  # type: ignore[arg-type]


def test_bad_settings_raise() -> None:
    async def lister(agent: str, namespace: str, version: str) -> list[PodTarget]:
        return []

    with pytest.raises(base.ConfigError):
        ScrapeProvider(lister, timeout=0)


async def test_close_without_a_session_is_fine(provider: ScrapeProvider) -> None:
    await provider.close()
    await provider.close()


# --- parsing -------------------------------------------------------------------------------------


def test_parse_keeps_the_kpi_samples_of_one_agent_version() -> None:
    mine = Pod("a", Instruments(Identity(AGENT, VERSION), tools=["crm"]))
    mine.serve(TaskOutcome.SUCCESS, seconds=0.3, tools=[ToolOutcome.ERROR])
    other = Pod("b", Instruments(Identity(AGENT, "bot-v2"), tools=["crm"]))
    other.serve(TaskOutcome.FAILURE)
    text = mine.metrics.exposition().decode() + other.metrics.exposition().decode().replace("# HELP", "# HELP x")
    samples = scrape.parse(text, AGENT, VERSION)
    assert {name for name, _ in samples} == kpis.SAMPLES  # no gauge, no OTel-only histogram
    assert samples[kpis.series_key(contract.TASKS.total, {"outcome": "success"})] == 1
    assert samples[kpis.series_key(contract.TASKS.total, {"outcome": "failure"})] == 0  # bot-v2's is elsewhere
    assert samples[kpis.series_key(contract.TOOL_CALLS.total, {"tool": "crm", "outcome": "error"})] == 1
    assert samples[kpis.series_key(contract.TASK_DURATION.bucket, {"le": "0.2", "outcome": "success"})] == 0
    assert samples[kpis.series_key(contract.TASK_DURATION.bucket, {"le": "0.4", "outcome": "success"})] == 1
    assert all(label not in dict(labels) for _, labels in samples for label in contract.COMMON_LABELS)
    assert scrape.parse(text, AGENT, VERSION, shadow=True) == {}
    assert scrape.parse(text, AGENT, VERSION, shadow=False) == samples


def test_parse_refuses_garbage() -> None:
    with pytest.raises(ValueError):
        scrape.parse('alm_agent_tasks_total{agent="bot" 1\n', AGENT, VERSION)


@pytest.mark.parametrize(("target", "url"), [
    (PodTarget("a", "10.1.2.3", 8080), "http://10.1.2.3:8080/metrics"),
    (PodTarget("a", "10.1.2.3", 9090, "stats"), "http://10.1.2.3:9090/stats"),
    (PodTarget("a", "fd00::1", 8080, "/metrics"), "http://[fd00::1]:8080/metrics"),
])  # fmt: skip
def test_pod_target_urls(target: PodTarget, url: str) -> None:
    assert target.url == url
