"""The KPI arithmetic (alm.core.kpis), checked against hand-computed tables.

Every expected number below was worked out by hand from the formulas in docs/metrics.md and from
Prometheus' histogram_quantile (promql/quantile.go); the comment next to a case shows the sum.
"""

from __future__ import annotations

import math

import pytest

from alm.core import kpis
from alm.core.kpis import PodChange, Reading, ReadingState
from alm.metrics import contract
from alm.metrics.contract import KPI

TASKS = contract.TASKS.total
TOOLS = contract.TOOL_CALLS.total
BUCKET = contract.TASK_DURATION.bucket
COST = contract.COST.total
SCORE_SUM, SCORE_COUNT = contract.ALIGNMENT.sum, contract.ALIGNMENT.count
TOKENS = contract.TOKENS.total


def k(name: str, **labels: str) -> kpis.SeriesKey:
    return kpis.series_key(name, labels)


def tasks(success: float = 0, failure: float = 0, error: float = 0) -> dict[kpis.SeriesKey, float]:
    return {k(TASKS, outcome="success"): success, k(TASKS, outcome="failure"): failure,
            k(TASKS, outcome="error"): error}  # fmt: skip


def durations(outcome: str = "success", **cumulative: float) -> dict[kpis.SeriesKey, float]:
    """Bucket series from keyword bounds: ``le0_1=5`` is le="0.1"; ``inf`` is le="+Inf"."""
    out = {}
    for name, count in cumulative.items():
        le = "+Inf" if name == "inf" else name.removeprefix("le").replace("_", ".")
        out[k(BUCKET, le=le, outcome=outcome)] = count
    return out


# --- series keys and increases -------------------------------------------------------------------


def test_series_keys_do_not_depend_on_label_order() -> None:
    assert k(TOOLS, tool="crm", outcome="error") == k(TOOLS, outcome="error", tool="crm")
    assert k(TOOLS, tool="crm", outcome="error") == (TOOLS, (("outcome", "error"), ("tool", "crm")))


A, B = k(TASKS, outcome="success"), k(TASKS, outcome="failure")


@pytest.mark.parametrize(("before", "after", "new", "change", "increase"), [
    # 150 - 100, 25 - 20
    ({A: 100, B: 20}, {A: 150, B: 25}, False, PodChange.CONTINUED, {A: 50, B: 5}),
    # nothing happened
    ({A: 7, B: 0}, {A: 7, B: 0}, False, PodChange.CONTINUED, {A: 0, B: 0}),
    # B went down: the pod restarted; everything counts from zero, also A (150, not 50)
    ({A: 100, B: 20}, {A: 150, B: 5}, False, PodChange.RESTARTED, {A: 150, B: 5}),
    # restarted and nothing since
    ({A: 100, B: 20}, {A: 0, B: 0}, False, PodChange.RESTARTED, {A: 0, B: 0}),
    # a series created after the baseline (a lazily created label value) counts from zero
    ({A: 10}, {A: 12, B: 3}, False, PodChange.CONTINUED, {A: 2, B: 3}),
    # a new pod started inside the window: all of it
    (None, {A: 4, B: 1}, True, PodChange.APPEARED, {A: 4, B: 1}),
    # listed at the baseline but not scraped then: its counters hold older history; nothing counted
    (None, {A: 4, B: 1}, False, PodChange.NO_BASELINE, {}),
])  # fmt: skip
def test_pod_increase(
    before: dict[kpis.SeriesKey, float] | None,
    after: dict[kpis.SeriesKey, float],
    new: bool,
    change: PodChange,
    increase: dict[kpis.SeriesKey, float],
) -> None:
    assert kpis.pod_increase(before, after, new=new) == (change, increase)


def test_window_increase_sums_pods_and_says_how_each_counted() -> None:
    before = {"p1": {A: 10, B: 2}, "p2": {A: 100, B: 50}, "p3": {A: 5, B: 5}}
    after = {
        "p1": {A: 15, B: 3},  # continued: +5, +1
        "p2": {A: 20, B: 1},  # restarted: +20, +1
        # p3 missing now (unreachable or gone): unknown, not counted
        "p4": {A: 3, B: 0},  # appeared in the window: +3, +0
        "p5": {A: 900, B: 90},  # listed at the baseline, not scraped then: not counted
    }
    window = kpis.window_increase(before, after, listed_before={"p1", "p2", "p3", "p5"})
    assert window.increase == {A: 5 + 20 + 3, B: 1 + 1 + 0}
    assert window.pods == {
        "p1": PodChange.CONTINUED, "p2": PodChange.RESTARTED, "p3": PodChange.MISSING,
        "p4": PodChange.APPEARED, "p5": PodChange.NO_BASELINE,
    }  # fmt: skip


def test_window_increase_of_nothing() -> None:
    assert kpis.window_increase({}, {}, ()) == kpis.WindowIncrease({}, {})


# --- histogram_quantile --------------------------------------------------------------------------

INF = math.inf


@pytest.mark.parametrize(("q", "buckets", "expected"), [
    # the docstring's example: bounds 0.1, 0.2, +Inf; counts 50, 90, 100
    (0.5, [(0.1, 50), (0.2, 90), (INF, 100)], 0.1),            # rank 50 in (0, 0.1]: 0.1 * 50/50
    (0.7, [(0.1, 50), (0.2, 90), (INF, 100)], 0.15),           # rank 70: 0.1 + 0.1 * 20/40
    (0.25, [(0.1, 50), (0.2, 90), (INF, 100)], 0.05),          # rank 25: 0.1 * 25/50
    (0.9, [(0.1, 50), (0.2, 90), (INF, 100)], 0.2),            # rank 90 reaches exactly the 0.2 bucket
    (0.95, [(0.1, 50), (0.2, 90), (INF, 100)], 0.2),           # rank 95 in +Inf: the largest finite bound
    (1.0, [(0.1, 50), (0.2, 100), (INF, 100)], 0.2),           # rank 100: first bucket reaching it
    (0.5, [(INF, 100), (0.2, 90), (0.1, 50)], 0.1),            # order does not matter
    (0.5, [(1.0, 0), (2.0, 10), (INF, 10)], 1.5),              # empty first bucket: 1 + 1 * 5/10
    (0.5, [(0.1, 20), (0.1, 30), (0.2, 40), (0.2, 50), (INF, 100)], 0.1),  # same bounds add up (sum by le)
    (0.5, [(0.1, 60), (0.2, 40), (INF, 100)], 0.1 * 50 / 60),  # 40 < 60 is scrape skew: made 60
    (0.5, [(-1.0, 10), (0.0, 20), (INF, 20)], -1.0),           # rank 10 in a first bucket bounded by <= 0
    (0.25, [(0.0, 10), (1.0, 20), (INF, 20)], 0.0),            # rank 5 in a first bucket bounded by <= 0
    (0.0, [(1.0, 0), (2.0, 10), (INF, 10)], 0.0),              # q = 0 with an empty first bucket
])  # fmt: skip
def test_histogram_quantile_matches_prometheus(q: float, buckets: list[tuple[float, float]], expected: float) -> None:
    assert kpis.histogram_quantile(q, buckets) == pytest.approx(expected)


@pytest.mark.parametrize("buckets", [
    [],                                   # no buckets
    [(INF, 10)],                          # fewer than two buckets
    [(0.1, 5), (0.2, 10)],                # no +Inf bucket
    [(0.1, 0), (0.2, 0), (INF, 0)],       # no observations
])  # fmt: skip
def test_histogram_quantile_without_data_is_nan(buckets: list[tuple[float, float]]) -> None:
    assert math.isnan(kpis.histogram_quantile(0.5, buckets))


@pytest.mark.parametrize("q", [-0.1, 1.1, math.nan])
def test_histogram_quantile_refuses_a_quantile_outside_0_1(q: float) -> None:
    with pytest.raises(ValueError, match="quantile"):
        kpis.histogram_quantile(q, [(1.0, 1), (INF, 1)])


# --- the five KPIs -------------------------------------------------------------------------------


def worked_example() -> dict[kpis.SeriesKey, float]:
    """docs/metrics.md: 200 tasks (180/15/5), $0.30, 400 tool calls (10 errors), plus dry runs."""
    return {
        **tasks(180, 15, 5),
        k(COST): 0.30,
        k(TOOLS, tool="crm", outcome="success"): 190, k(TOOLS, tool="crm", outcome="error"): 10,
        k(TOOLS, tool="search", outcome="success"): 200, k(TOOLS, tool="search", outcome="error"): 0,
        k(TOOLS, tool="crm", outcome="dry_run"): 55,  # did not execute: in neither count
        k(SCORE_SUM): 171.0, k(SCORE_COUNT): 195,     # 180 + 15 scored (errors are not): mean 171/195
        **durations("success", le0_1=100, le0_2=150, le0_4=180, inf=180),
        **durations("failure", le0_1=0, le0_2=5, le0_4=15, inf=15),
        **durations("error", le0_1=5, le0_2=5, le0_4=5, inf=5),
        k(TOKENS, type="input"): 100_000, k(TOKENS, type="output"): 40_000,
    }  # fmt: skip


def test_the_worked_example_of_the_docs() -> None:
    readings = kpis.compute(worked_example(), quantile=0.95)
    assert readings[KPI.SUCCESS_RATE] == Reading.measured(0.9, samples=200)  # 180 / 200
    assert readings[KPI.COST_PER_TASK].value == pytest.approx(0.0015)  # 0.30 / 200
    assert readings[KPI.COST_PER_TASK].samples == 200
    assert readings[KPI.TOOL_ERROR_RATE] == Reading.measured(0.025, samples=400)  # 10 / (390 + 10)
    assert readings[KPI.ALIGNMENT].value == pytest.approx(171 / 195)
    assert readings[KPI.ALIGNMENT].samples == 195
    # sum by le: 0.1 -> 105, 0.2 -> 160, 0.4 -> 200, +Inf -> 200. p95: rank 190 in (0.2, 0.4]:
    # 0.2 + 0.2 * (190 - 160) / (200 - 160) = 0.35
    assert readings[KPI.LATENCY].value == pytest.approx(0.35)
    assert readings[KPI.LATENCY].samples == 200


@pytest.mark.parametrize(("quantile", "latency"), [
    (0.5, 0.1 * 100 / 105),            # rank 100 in (0, 0.1]
    (0.6, 0.1 + 0.1 * (120 - 105) / 55),  # rank 120 in (0.1, 0.2]
    (0.99, 0.2 + 0.2 * 38 / 40),       # rank 198 in (0.2, 0.4]: 0.39
])  # fmt: skip
def test_latency_at_other_quantiles(quantile: float, latency: float) -> None:
    assert kpis.compute(worked_example(), quantile)[KPI.LATENCY].value == pytest.approx(latency)


def test_no_data_is_inconclusive_never_a_rate() -> None:
    idle = {**tasks(0, 0, 0), k(COST): 0.0, k(TOOLS, tool="crm", outcome="success"): 0,
            k(SCORE_SUM): 0, k(SCORE_COUNT): 0, **durations("success", le0_1=0, inf=0)}  # fmt: skip
    readings = kpis.compute(idle)
    assert readings == {
        KPI.SUCCESS_RATE: Reading.inconclusive(kpis.NO_TASKS, samples=0),
        KPI.LATENCY: Reading.inconclusive(kpis.NO_TASKS, samples=0),
        KPI.COST_PER_TASK: Reading.inconclusive(kpis.NO_TASKS, samples=0),
        KPI.TOOL_ERROR_RATE: Reading.inconclusive(kpis.NO_TOOL_CALLS, samples=0),
        KPI.ALIGNMENT: Reading.inconclusive(kpis.NO_SCORES, samples=0),
    }
    assert all(reading.state is ReadingState.INCONCLUSIVE and reading.value is None for reading in readings.values())
    assert kpis.compute({}) == readings  # no series at all reads the same


def test_a_version_without_tools_has_tasks_but_no_tool_error_rate() -> None:
    readings = kpis.compute({**tasks(3, 1, 0), **durations("success", le0_1=3, inf=3),
                             **durations("failure", le0_1=1, inf=1)})  # fmt: skip
    assert readings[KPI.SUCCESS_RATE] == Reading.measured(0.75, samples=4)
    assert readings[KPI.TOOL_ERROR_RATE].state is ReadingState.INCONCLUSIVE
    # No cost series at all: the cost is unknown, not zero (a zero would pass any cost limit).
    assert readings[KPI.COST_PER_TASK] == Reading.inconclusive(kpis.NO_COST, samples=4)
    assert kpis.totals({**tasks(3, 1, 0)}).cost_usd is None
    assert kpis.compute({**tasks(3, 1, 0), k(COST): 0.0})[KPI.COST_PER_TASK] == Reading.measured(0.0, samples=4)


def test_only_dry_runs_leave_the_tool_error_rate_inconclusive() -> None:
    shadow = {**tasks(2), k(TOOLS, tool="crm", outcome="dry_run"): 2, k(TOOLS, tool="crm", outcome="error"): 0}
    assert kpis.compute(shadow)[KPI.TOOL_ERROR_RATE] == Reading.inconclusive(kpis.NO_TOOL_CALLS, samples=0)


def test_a_broken_histogram_is_an_error_not_missing_data() -> None:
    broken = {**tasks(2), k(BUCKET, le="0.1", outcome="success"): 2, k(BUCKET, le="+Inf", outcome="success"): 2}
    assert kpis.compute(broken)[KPI.LATENCY] == Reading.measured(0.1 * 1.9 / 2, samples=2)  # rank 1.9 of 2
    del broken[k(BUCKET, le="+Inf", outcome="success")]
    assert "no +Inf bucket" in kpis.compute(broken)[KPI.LATENCY].reason
    only_inf = {k(BUCKET, le="+Inf", outcome="success"): 2}
    assert kpis.compute(only_inf)[KPI.LATENCY].state is ReadingState.ERROR


@pytest.mark.parametrize("quantile", [0.0, 1.0, -1.0, 2.0])
def test_compute_refuses_a_latency_quantile_outside_0_1(quantile: float) -> None:
    with pytest.raises(ValueError, match="within"):
        kpis.compute({}, quantile)


def test_totals_of_the_worked_example() -> None:
    assert kpis.totals(worked_example()) == kpis.Totals(
        tasks=200, tool_calls=400, scored=195, input_tokens=100_000, output_tokens=40_000, cost_usd=0.30
    )


def test_sum_of_matches_labels_by_value_or_set() -> None:
    data = worked_example()
    assert kpis.sum_of(data, TOOLS) == 455
    assert kpis.sum_of(data, TOOLS, outcome="error") == 10
    assert kpis.sum_of(data, TOOLS, outcome=("success", "error"), tool="search") == 200
    assert kpis.sum_of(data, TOOLS, nolabel="x") == 0  # an absent label reads as empty, as in PromQL
    assert kpis.sum_of(data, TOOLS, nolabel="") == 455


# --- choosing the baseline -----------------------------------------------------------------------


@pytest.mark.parametrize(("ages", "window", "index", "reason"), [
    ([], 30, None, "first scrape"),
    ([30.2], 30, 0, ""),                # one window ago
    ([27.5], 30, 0, ""),                # a caller on a timer drifts a little: >= 0.9 windows is fine
    ([95, 62, 29.5, 4], 30, 2, ""),     # the newest >= 27 s: 29.5
    ([95, 62, 26, 4], 30, 1, ""),       # 26 < 27: the newest old enough is 62 s
    ([20, 4], 30, 0, ""),               # none old enough, the oldest covers >= half the window
    ([10, 4], 30, None, "not covered yet"),
    ([100], 30, None, "stale"),         # over three windows: describes the past
    ([100, 40], 30, 1, ""),
    ([4, 95, 62, 29.5], 30, 3, ""),     # any order
    ([300, 30], 300, 0, ""),            # a 5 m analysis next to 30 s monitoring
])  # fmt: skip
def test_choose_baseline(ages: list[float], window: float, index: int | None, reason: str) -> None:
    choice = kpis.choose_baseline(ages, window)
    assert choice.index == index
    assert reason in choice.reason
    assert (choice.reason == "") == (index is not None)


def test_the_kpi_samples_are_the_cumulative_series_of_the_contract() -> None:
    for name in kpis.SAMPLES:
        family = next(m for m in contract.ALL if name.startswith(m.name))
        assert family.type in (contract.MetricType.COUNTER, contract.MetricType.HISTOGRAM), name
    assert contract.TASKS_IN_FLIGHT.name not in kpis.SAMPLES  # a gauge cannot be differenced
