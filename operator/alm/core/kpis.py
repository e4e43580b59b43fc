"""KPI arithmetic: from two snapshots of an agent version's pods to the five KPIs, without I/O.

The ``scrape`` provider (:mod:`alm.providers.scrape`) reads every pod's ``/metrics`` and hands
this module plain data: per pod, ``{SeriesKey: value}`` of the cumulative samples the KPIs need
(:data:`SAMPLES`). Here, in order:

1. :func:`window_increase` — the increase of every series over the window, per pod, then summed
   over pods (``sum()`` in PromQL). A pod whose cumulative values went *down* restarted: its
   counters began again at zero, so the new values are its increase since the restart (the
   increase before the restart, since the baseline, is lost, as in Prometheus). A pod that was
   not there at the baseline started inside the window and counts from zero.
2. :func:`compute` — the five KPIs of the summed increase, with the formulas of
   ``alm.metrics.contract.KPIS``; latency is :func:`histogram_quantile`, which follows
   Prometheus' own ``histogram_quantile`` (linear interpolation inside the bucket).

Every KPI is a :class:`Reading`: a value, or no value and the reason. A window with no tasks has
no success rate: it is *inconclusive*, never 0 and never 1, so that no data can never pass (or
fail) an analysis. Judging a reading against a threshold is the evaluator's job, not this one's.
"""

from __future__ import annotations

import dataclasses
import enum
import math
from collections.abc import Collection, Iterable, Mapping, Sequence

from alm.metrics import contract
from alm.metrics.contract import KPI, TaskOutcome, TokenType, ToolOutcome

__all__ = [
    "BASELINE_MAX_WINDOWS",
    "BASELINE_MIN_FRACTION",
    "BASELINE_TOLERANCE",
    "NO_COST",
    "NO_SCORES",
    "NO_TASKS",
    "NO_TOOL_CALLS",
    "SAMPLES",
    "Baseline",
    "PodChange",
    "Reading",
    "ReadingState",
    "Samples",
    "SeriesKey",
    "Totals",
    "WindowIncrease",
    "choose_baseline",
    "compute",
    "histogram_quantile",
    "pod_increase",
    "series_key",
    "sum_of",
    "totals",
    "window_increase",
]

Labels = tuple[tuple[str, str], ...]
SeriesKey = tuple[str, Labels]
"""A sample name and its labels, sorted by name: hashable, and equal across scrapes."""
Samples = Mapping[SeriesKey, float]
"""One pod's cumulative samples at one scrape (or an increase over a window)."""

SAMPLES: frozenset[str] = frozenset({
    contract.TASKS.total,
    contract.TASK_DURATION.bucket,
    contract.COST.total,
    contract.TOOL_CALLS.total,
    contract.ALIGNMENT.sum,
    contract.ALIGNMENT.count,
    contract.TOKENS.total,
})  # fmt: skip
"""The sample names the KPIs and totals are computed from; all cumulative (never a gauge)."""

NO_TASKS = "no tasks finished in the window"
NO_TOOL_CALLS = "no tool calls were executed in the window"
NO_SCORES = "no task was scored in the window"
NO_COST = f"the agent exposes no {contract.COST.total}: its cost is unknown (not zero)"


def series_key(name: str, labels: Mapping[str, str]) -> SeriesKey:
    """The key of one series: ``("alm_agent_tasks_total", (("outcome", "success"),))``."""
    return name, tuple(sorted(labels.items()))


# --- Readings ------------------------------------------------------------------------------------


class ReadingState(enum.StrEnum):
    """What a reading holds.

    - Measured: a value, computed from ``samples`` events (tasks, tool calls, scores).
    - Inconclusive: not enough data to say anything (no tasks in the window, no series, no
      baseline yet); the evaluator must neither pass nor fail it.
    - Error: the measurement itself failed (a query Prometheus rejected, no pod reachable).

    Inconclusive and Error are the names of the matching ``MeasurementVerdict`` values.
    """

    MEASURED = "Measured"
    INCONCLUSIVE = "Inconclusive"
    ERROR = "Error"


@dataclasses.dataclass(frozen=True)
class Reading:
    """One KPI (or custom query) measured once: a value, or why there is none."""

    state: ReadingState
    value: float | None = None
    reason: str = ""
    """Why there is no value (empty when measured); written for the person reading the status."""
    samples: float | None = None
    """The events behind the value (the denominator: tasks, executed tool calls, scored tasks);
    None when the provider cannot tell (a custom query)."""

    @classmethod
    def measured(cls, value: float, samples: float | None = None) -> Reading:
        return cls(ReadingState.MEASURED, value, "", samples)

    @classmethod
    def inconclusive(cls, reason: str, samples: float | None = None) -> Reading:
        return cls(ReadingState.INCONCLUSIVE, None, reason, samples)

    @classmethod
    def error(cls, reason: str) -> Reading:
        return cls(ReadingState.ERROR, None, reason, None)

    @property
    def ok(self) -> bool:
        return self.state is ReadingState.MEASURED


# --- Increases over a window ---------------------------------------------------------------------


class PodChange(enum.StrEnum):
    """What happened to one pod between the baseline and now, and so how it was counted.

    - Continued: scraped at both ends; increase = now - baseline, series by series.
    - Restarted: a cumulative value went down, so the process restarted (a counter reset); its
      values now are its increase since the restart.
    - Appeared: not listed at the baseline, so it started inside the window; counted from zero.
    - NoBaseline: listed at the baseline but not scraped then (unreachable); nothing is
      counted now, and it has a baseline for the next window.
    - Missing: scraped at the baseline, not now (unreachable, or gone); its increase is unknown.
    """

    CONTINUED = "Continued"
    RESTARTED = "Restarted"
    APPEARED = "Appeared"
    NO_BASELINE = "NoBaseline"
    MISSING = "Missing"


def pod_increase(before: Samples | None, after: Samples, *, new: bool) -> tuple[PodChange, dict[SeriesKey, float]]:
    """The increase of one pod's series between ``before`` and ``after``.

    ``new``: the pod was not listed at the baseline (so ``before`` is None too).

    A restart is decided for the whole pod, not series by series: after a restart every counter
    began at zero, including those that have since climbed above their old value. With
    before = {ok: 100, failed: 20} and after = {ok: 150, failed: 5}, ``failed`` went down, so the
    increase is {ok: 150, failed: 5}, not {ok: 50, failed: 5}. (A restart after which *every*
    series climbed above its old value cannot be seen; Prometheus has the same blind spot.)
    """
    if before is None:
        return (PodChange.APPEARED, dict(after)) if new else (PodChange.NO_BASELINE, {})
    if any(value < before.get(key, 0.0) for key, value in after.items()):
        return PodChange.RESTARTED, dict(after)
    # A series missing at the baseline was created since: it counts from zero.
    return PodChange.CONTINUED, {key: value - before.get(key, 0.0) for key, value in after.items()}


@dataclasses.dataclass(frozen=True)
class WindowIncrease:
    """The increase of every series over a window, summed over pods, and how each pod counted."""

    increase: dict[SeriesKey, float]
    pods: dict[str, PodChange]


def window_increase(
    before: Mapping[str, Samples], after: Mapping[str, Samples], listed_before: Collection[str]
) -> WindowIncrease:
    """Sum of :func:`pod_increase` over pods.

    ``before``/``after``: samples by pod name, of the pods scraped at the baseline and now.
    ``listed_before``: every pod that existed at the baseline, scraped or not (a pod that was
    there but unreachable must not be mistaken for a new one: its counters hold history from
    before the window).
    """
    total: dict[SeriesKey, float] = {}
    pods: dict[str, PodChange] = {}
    for pod, samples in after.items():
        change, increase = pod_increase(before.get(pod), samples, new=pod not in listed_before and pod not in before)
        pods[pod] = change
        for key, value in increase.items():
            total[key] = total.get(key, 0.0) + value
    for pod in before.keys() - after.keys():
        pods[pod] = PodChange.MISSING
    return WindowIncrease(total, pods)


# --- Choosing a baseline -------------------------------------------------------------------------

BASELINE_TOLERANCE = 0.9
"""A scrape at least 0.9 windows old covers the window: callers on a timer drift by a little."""
BASELINE_MIN_FRACTION = 0.5
"""Below half a window the window is not covered yet (too few events to say anything)."""
BASELINE_MAX_WINDOWS = 3.0
"""Over three windows old the baseline is stale: the KPI would describe the past, not now."""


@dataclasses.dataclass(frozen=True)
class Baseline:
    """Which earlier scrape to measure from (``index``), or why none fits (``reason``)."""

    index: int | None
    reason: str = ""


def choose_baseline(ages: Sequence[float], window: float) -> Baseline:
    """Pick the earlier scrape to measure a window of ``window`` seconds from.

    ``ages``: how many seconds ago each kept scrape was taken, any order. The newest scrape at
    least ``BASELINE_TOLERANCE`` windows old wins, so that several callers with different windows
    (monitoring every 30 s, an analysis over 5 m) each get theirs from one shared history. With
    none that old, the oldest is used if it covers half the window. E.g. window 30, ages
    [95, 62, 29.5, 4]: 62 is the newest >= 27, so 62 s is measured (and reported as the window).
    """
    if not ages:
        return Baseline(None, "first scrape of this version: it is the baseline; KPIs come from the next measurement")
    old_enough = [i for i, age in enumerate(ages) if age >= BASELINE_TOLERANCE * window]
    if not old_enough:
        oldest = max(range(len(ages)), key=lambda i: ages[i])
        if ages[oldest] >= BASELINE_MIN_FRACTION * window:
            return Baseline(oldest)
        return Baseline(None, f"the window is not covered yet: the oldest scrape is {ages[oldest]:.1f}s old, "
                              f"the window {window:g}s")  # fmt: skip
    newest = min(old_enough, key=lambda i: ages[i])
    if ages[newest] > BASELINE_MAX_WINDOWS * window:
        return Baseline(None, f"the last scrape was {ages[newest]:.0f}s ago, more than {BASELINE_MAX_WINDOWS:g} "
                              f"windows of {window:g}s: it is stale; this scrape is the new baseline")  # fmt: skip
    return Baseline(newest)


# --- KPIs ----------------------------------------------------------------------------------------


def sum_of(increase: Samples, name: str, **labels: str | Collection[str]) -> float:
    """Sum of the series named ``name`` whose labels match: a string is equality, a collection
    is any of its values (``outcome=("success", "error")``)."""
    total = 0.0
    for (sample, series_labels), value in increase.items():
        if sample != name:
            continue
        found = dict(series_labels)
        if all(_matches(found.get(label, ""), want) for label, want in labels.items()):
            total += value
    return total


def _matches(value: str, want: str | Collection[str]) -> bool:
    return value == want if isinstance(want, str) else value in want


def histogram_quantile(q: float, buckets: Iterable[tuple[float, float]]) -> float:
    """The q-quantile of a histogram given as (upper bound, cumulative count) pairs; NaN if none.

    The same answer as Prometheus' ``histogram_quantile`` (promql/quantile.go): buckets sorted by
    bound, counts made monotonic, NaN without a +Inf bucket or without observations; the rank
    q * total is found in the first bucket whose count reaches it and interpolated linearly
    between that bucket's lower and upper bound (the lower bound of the first bucket is 0); a
    rank in the +Inf bucket answers the largest finite bound. Worked example: bounds 0.1, 0.2, +Inf
    with counts 50, 90, 100 and q = 0.5: rank 50 lies in the first bucket: 0 + 0.1 * 50/50 = 0.1;
    q = 0.7: rank 70, in (0.1, 0.2]: 0.1 + 0.1 * (70 - 50) / (90 - 50) = 0.15.
    """
    if not 0 <= q <= 1 or math.isnan(q):
        raise ValueError(f"quantile {q} is not within [0, 1]")
    merged: dict[float, float] = {}
    for bound, count in buckets:
        merged[bound] = merged.get(bound, 0.0) + count
    ordered = sorted(merged.items())
    if len(ordered) < 2 or not math.isinf(ordered[-1][0]):
        return math.nan
    counts = [count for _, count in ordered]
    for i in range(1, len(counts)):  # scrape skew may leave a bucket below the one before it
        counts[i] = max(counts[i], counts[i - 1])
    total = counts[-1]
    if total <= 0:
        return math.nan
    rank = q * total
    # sort.Search over all but the +Inf bucket: the first bucket reaching the rank, else +Inf.
    b = next((i for i in range(len(counts) - 1) if counts[i] >= rank), len(counts) - 1)
    if b == len(counts) - 1:
        return ordered[-2][0]
    if b == 0 and ordered[0][0] <= 0:
        return ordered[0][0]
    start, end, count = 0.0, ordered[b][0], counts[b]
    if b > 0:
        start = ordered[b - 1][0]
        count -= counts[b - 1]
        rank -= counts[b - 1]
    if count <= 0:  # only for q = 0 with an empty first bucket: the lowest bound is the minimum
        return start
    return start + (end - start) * (rank / count)


def _has(increase: Samples, name: str) -> bool:
    return any(sample == name for sample, _ in increase)


def _ratio(numerator: float, denominator: float, no_data: str) -> Reading:
    if denominator <= 0:
        return Reading.inconclusive(no_data, samples=0.0)
    return Reading.measured(numerator / denominator, samples=denominator)


def _latency(increase: Samples, quantile: float) -> Reading:
    buckets = [(float(dict(labels)["le"]), value)
               for (name, labels), value in increase.items()
               if name == contract.TASK_DURATION.bucket and "le" in dict(labels)]  # fmt: skip
    if buckets and not any(math.isinf(bound) for bound, _ in buckets):
        return Reading.error(f"{contract.TASK_DURATION.name} has no +Inf bucket: not a Prometheus histogram")
    observations = sum(value for bound, value in buckets if math.isinf(bound))
    if observations <= 0:
        return Reading.inconclusive(NO_TASKS, samples=0.0)
    value = histogram_quantile(quantile, buckets)
    if math.isnan(value):
        return Reading.error(f"{contract.TASK_DURATION.name} has no finite bucket to interpolate in")
    return Reading.measured(value, samples=observations)


def compute(increase: Samples, quantile: float = 0.95) -> dict[KPI, Reading]:
    """The five KPIs of an increase summed over pods (the formulas of ``contract.KPIS``).

    ``quantile``: which latency quantile (``KPIThresholds.latencyQuantile``), strictly in (0, 1).
    Worked example (docs/metrics.md): Δ tasks 180 success, 15 failure, 5 error, Δ cost 0.30,
    Δ tool calls 10 error, 390 success: success rate 0.9, cost per task 0.0015, tool error
    rate 0.025.
    """
    if not 0 < quantile < 1:
        raise ValueError(f"latency quantile {quantile} must be within (0, 1), e.g. 0.95")
    tasks = sum_of(increase, contract.TASKS.total)
    succeeded = sum_of(increase, contract.TASKS.total, outcome=TaskOutcome.SUCCESS)
    executed = (ToolOutcome.SUCCESS, ToolOutcome.ERROR)  # dry runs did not execute
    tool_calls = sum_of(increase, contract.TOOL_CALLS.total, outcome=executed)
    tool_errors = sum_of(increase, contract.TOOL_CALLS.total, outcome=ToolOutcome.ERROR)
    scored = sum_of(increase, contract.ALIGNMENT.count)
    if tasks > 0 and not _has(increase, contract.COST.total):
        cost = Reading.inconclusive(NO_COST, samples=tasks)
    else:
        cost = _ratio(sum_of(increase, contract.COST.total), tasks, NO_TASKS)
    return {
        KPI.SUCCESS_RATE: _ratio(succeeded, tasks, NO_TASKS),
        KPI.LATENCY: _latency(increase, quantile),
        KPI.COST_PER_TASK: cost,
        KPI.TOOL_ERROR_RATE: _ratio(tool_errors, tool_calls, NO_TOOL_CALLS),
        KPI.ALIGNMENT: _ratio(sum_of(increase, contract.ALIGNMENT.sum), scored, NO_SCORES),
    }


@dataclasses.dataclass(frozen=True)
class Totals:
    """What the window added up to, for budgets and for reading a KPI's weight; None = unknown."""

    tasks: float | None = None
    tool_calls: float | None = None
    """Executed tool calls (success + error)."""
    scored: float | None = None
    input_tokens: float | None = None
    output_tokens: float | None = None
    cost_usd: float | None = None
    """None when the agent exposes no cost counter: price its tokens instead (budgets do)."""


def totals(increase: Samples) -> Totals:
    """The totals of an increase summed over pods."""
    return Totals(
        tasks=sum_of(increase, contract.TASKS.total),
        tool_calls=sum_of(increase, contract.TOOL_CALLS.total, outcome=(ToolOutcome.SUCCESS, ToolOutcome.ERROR)),
        scored=sum_of(increase, contract.ALIGNMENT.count),
        input_tokens=sum_of(increase, contract.TOKENS.total, type=TokenType.INPUT),
        output_tokens=sum_of(increase, contract.TOKENS.total, type=TokenType.OUTPUT),
        cost_usd=sum_of(increase, contract.COST.total) if _has(increase, contract.COST.total) else None,
    )
