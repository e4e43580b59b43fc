"""Analysis verdicts: KPI readings judged against limits, and an analysis run judged as a whole.

The metric providers (``alm.providers``) only *measure*: each answer (a ``KPIResult`` of
:class:`alm.core.kpis.Reading` values) becomes :class:`RunReading` values with
:func:`run_readings` — a value, or why there is none (no data, or an error). Every judgement
happens here, in one place (as Argo Rollouts' shared evaluator does), so a provider never
decides pass or fail::

    RunReading ──judge()──► Measurement (Successful | Failed | Inconclusive | Error | Baseline)
                                  │  one per judged name and round, appended to the run
                                  ▼
    AnalysisRun ──verdict()──► Running | Successful | Failed | Inconclusive

Rules, the same for canary steps, background analysis, blue-green pre-promotion and shadow:

- A *round* is every reading that answers one :class:`Measure` request; they share one
  ``measuredAt``. Rounds are due every ``interval`` after the run started, each over the window
  since the previous one.
- Each judged name (a KPI with a limit, a custom query, a relative shadow limit) keeps its own
  counts, as each Argo metric does. More than ``failureLimit`` Failed measurements of one name
  fail the run; more than ``inconclusiveLimit`` Inconclusive or Error ones make it Inconclusive
  (the rollout pauses with a message, it never hangs). Failure is checked first.
- No data is never success: once the duration is over, every name must have passed at least
  once. A name that only ever failed fails the run; one that never had data keeps the run
  measuring until the inconclusive limit stops it.
- A reading that only took the provider's baseline (the scrape provider's first scrape of a
  version, which history an operator restart also loses) is a Baseline measurement: it keeps the
  schedule (the next round is an interval later) but counts towards no limit. Otherwise every
  canary would spend one inconclusive measurement before its first judgement, and an operator
  restart mid-analysis another, pausing a healthy rollout with the default limit.
- Runs keep every Failed, Inconclusive and Error measurement (their number is bounded by the
  limits) and the newest :data:`KEEP_SUCCESSFUL` Successful and :data:`KEEP_BASELINE` Baseline
  ones per name, so a long background analysis cannot outgrow the status.

Everything is a function of its arguments; the same readings give the same measurements, byte
for byte.
"""

from __future__ import annotations

import dataclasses
import datetime
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from alm.api import AnalysisSpec, AnalysisVerdict, CustomQuery, KPIThresholds, MeasurementVerdict, parse_duration
from alm.api import ShadowRelativeThresholds as Relative
from alm.core import kpis as kpi_readings
from alm.metrics.contract import KPI

__all__ = [
    "DEFAULT_INTERVAL",
    "KEEP_SUCCESSFUL",
    "RELATIVE_KPIS",
    "Criteria",
    "Limit",
    "Measure",
    "RelativeLimit",
    "RunReading",
    "RunVerdict",
    "close",
    "criteria",
    "judge",
    "judge_relative",
    "limits",
    "new_run",
    "next_due",
    "passed",
    "record",
    "relative_limits",
    "run_readings",
    "verdict",
]

Obj = dict[str, Any]

DEFAULT_INTERVAL = parse_duration(AnalysisSpec().interval)
KEEP_SUCCESSFUL = 10  # newest Successful measurements kept per judged name and run
KEEP_BASELINE = 2  # newest Baseline measurements kept per judged name and run
RELATIVE_KPIS = {"successRateDrop": KPI.SUCCESS_RATE, "latencyIncreaseRatio": KPI.LATENCY,
                 "costIncreaseRatio": KPI.COST_PER_TASK}
_TOLERANCE = 1e-9  # 0.97 - 0.95 is 0.020000000000000018: equal to a 0.02 limit, not above it
_SUCCESSFUL, _FAILED = MeasurementVerdict.SUCCESSFUL.value, MeasurementVerdict.FAILED.value
_INCONCLUSIVE, _ERROR = MeasurementVerdict.INCONCLUSIVE.value, MeasurementVerdict.ERROR.value
_BASELINE = MeasurementVerdict.BASELINE.value


@dataclasses.dataclass(frozen=True)
class RunReading:
    """One KPI or custom query of one version, as a provider measured it.

    ``value`` None means no judgement is possible: ``error`` says the measurement itself failed
    (a query error: Error), otherwise there was no data (Inconclusive; ``reason`` says why,
    e.g. "no tasks in the window"). A NaN value (Prometheus' 0/0) counts as no data.
    """

    kpi: str
    value: float | None
    measured_at: str
    version: str = ""
    run: str = ""  # the Measure.run this answers
    error: str | None = None
    reason: str | None = None
    baseline: bool = False
    """No value because the provider only took its baseline now (see the module docstring)."""


@dataclasses.dataclass(frozen=True)
class Measure:
    """A request to measure ``version`` (and ``baseline``, for relative limits) now.

    The shell asks the Agent's MetricProvider for ``kpis`` and ``queries`` over the last
    ``window_seconds`` and answers with one :class:`RunReading` per version and name, all with
    ``run`` copied and the same ``measured_at``; a failed query is a RunReading with ``error``.
    """

    run: str
    version: str
    baseline: str | None
    window_seconds: float
    kpis: tuple[str, ...]
    queries: tuple[CustomQuery, ...]
    latency_quantile: float


def run_readings(request: Measure, version: str, measured_at: str, kpis: Mapping[str, kpi_readings.Reading],
                 queries: Mapping[str, kpi_readings.Reading] | None = None, *,
                 baseline: bool = False) -> tuple[RunReading, ...]:
    """A provider's answer for ``version`` (``KPIResult.kpis`` and ``.queries``) as the readings
    that answer ``request``: only the names it asked for, in its order. ``baseline``: the
    provider measured no window, it only took its baseline (``KPIResult.window_seconds == 0``);
    readings without a value are then Baseline, not Inconclusive.

    Pass the same ``measured_at`` (the time the shell ran the request) for the version and the
    baseline: one round is every reading with one time, and relative limits compare within it.
    """
    found = {**{str(name): reading for name, reading in kpis.items()}, **(queries or {})}
    answered = []
    for name in (*request.kpis, *(query.name for query in request.queries)):
        reading = found.get(name)
        if reading is None:
            continue  # judged as "not measured"
        state = kpi_readings.ReadingState(reading.state)
        answered.append(RunReading(
            name, reading.value if state is kpi_readings.ReadingState.MEASURED else None, measured_at, version,
            request.run, error=reading.reason if state is kpi_readings.ReadingState.ERROR else None,
            reason=reading.reason if state is kpi_readings.ReadingState.INCONCLUSIVE else None,
            baseline=baseline and state is kpi_readings.ReadingState.INCONCLUSIVE))
    return tuple(answered)


@dataclasses.dataclass(frozen=True)
class Limit:
    """Bounds on one KPI or custom query (inclusive)."""

    name: str
    min: float | None = None
    max: float | None = None


@dataclasses.dataclass(frozen=True)
class RelativeLimit:
    """A bound on how much worse than the stable version a shadow may measure."""

    name: str  # successRateDrop | latencyIncreaseRatio | costIncreaseRatio
    kpi: str  # the KPI compared
    max: float


@dataclasses.dataclass(frozen=True)
class Criteria:
    """Everything one analysis run judges, and its rhythm."""

    limits: tuple[Limit, ...] = ()
    relative: tuple[RelativeLimit, ...] = ()
    queries: tuple[CustomQuery, ...] = ()
    interval: float = DEFAULT_INTERVAL
    duration: float | None = None  # None: open-ended (background analysis)
    failure_limit: int = 0
    inconclusive_limit: int = 2
    latency_quantile: float = 0.95

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(limit.name for limit in self.limits) + tuple(limit.name for limit in self.relative)

    @property
    def kpis(self) -> tuple[str, ...]:
        """The five-KPI names a provider must measure, in the contract's order."""
        wanted = {limit.name for limit in self.limits} | {limit.kpi for limit in self.relative}
        return tuple(kpi.value for kpi in KPI if kpi.value in wanted)


@dataclasses.dataclass(frozen=True)
class RunVerdict:
    verdict: str  # an AnalysisVerdict value
    message: str
    culprit: Mapping[str, Any] | None = None  # the measurement that decided Failed or Inconclusive


# --- Limits ---------------------------------------------------------------------------------------


def limits(thresholds: KPIThresholds | None, queries: Sequence[CustomQuery] = ()) -> tuple[Limit, ...]:
    """The limits set in ``thresholds`` (in KPI order), then the custom queries (in their order)."""
    found: list[Limit] = []
    if thresholds is not None:
        bounds = [
            (KPI.SUCCESS_RATE, thresholds.min_success_rate, None),
            (KPI.LATENCY, None, thresholds.max_latency_seconds),
            (KPI.COST_PER_TASK, None, thresholds.max_cost_per_task_usd),
            (KPI.TOOL_ERROR_RATE, None, thresholds.max_tool_error_rate),
            (KPI.ALIGNMENT, thresholds.min_alignment_score, None),
        ]
        found += [Limit(kpi.value, low, high) for kpi, low, high in bounds if low is not None or high is not None]
    return (*found, *(Limit(query.name, query.min, query.max) for query in queries))


def relative_limits(relative: Relative | None) -> tuple[RelativeLimit, ...]:
    if relative is None:
        return ()
    bounds = {"successRateDrop": relative.max_success_rate_drop,
              "latencyIncreaseRatio": relative.max_latency_increase_ratio,
              "costIncreaseRatio": relative.max_cost_increase_ratio}
    return tuple(RelativeLimit(name, RELATIVE_KPIS[name].value, high)
                 for name, high in bounds.items() if high is not None)


def criteria(
    analysis: AnalysisSpec | None,
    *,
    fallback: KPIThresholds | None = None,
    thresholds: KPIThresholds | None = None,
    queries: Sequence[CustomQuery] | None = None,
    duration: float | None = None,
    relative: Relative | None = None,
) -> Criteria:
    """What a run judges: ``thresholds`` (a step's), else the analysis', else ``fallback`` (the
    Agent's ``spec.kpis``); ``queries`` (a step's), else the analysis'."""
    spec = analysis or AnalysisSpec()
    chosen = thresholds or spec.thresholds or fallback
    return Criteria(
        limits=limits(chosen, spec.queries if queries is None else queries),
        relative=relative_limits(relative),
        queries=tuple(spec.queries if queries is None else queries),
        interval=parse_duration(spec.interval),
        duration=duration,
        failure_limit=spec.failure_limit,
        inconclusive_limit=spec.inconclusive_limit,
        latency_quantile=(chosen.latency_quantile if chosen is not None else KPIThresholds().latency_quantile),
    )


# --- One measurement ------------------------------------------------------------------------------


def _num(value: float) -> str:
    return f"{value:.6g}"


def _above(value: float, bound: float) -> bool:
    return value - bound > _TOLERANCE * max(1.0, abs(bound))


def _below(value: float, bound: float) -> bool:
    return bound - value > _TOLERANCE * max(1.0, abs(bound))


def _measurement(name: str, verdict: str, at: str, message: str, value: float | None = None,
                 threshold: float | None = None) -> Obj:
    found: Obj = {"kpi": name, "value": value, "threshold": threshold, "verdict": verdict, "measuredAt": at,
                  "message": message}
    return {key: item for key, item in found.items() if item is not None}


def _missing(name: str, reading: RunReading | None, at: str, who: str = "") -> Obj | None:
    """The Error, Inconclusive or Baseline measurement for a reading without a usable value, else None."""
    prefix = f"{name}{who}"
    if reading is None:
        return _measurement(name, _INCONCLUSIVE, at, f"{prefix}: not measured (the provider returned no value)")
    if reading.baseline:
        return _measurement(name, _BASELINE, at, f"{prefix}: baseline taken, the next measurement judges "
                                                 f"({reading.reason or 'no window yet'})")
    if reading.error is not None:
        return _measurement(name, _ERROR, at, f"{prefix}: measurement failed: {reading.error}")
    if reading.value is None or math.isnan(reading.value):
        return _measurement(name, _INCONCLUSIVE, at, f"{prefix}: no data ({reading.reason or 'nothing measured'})")
    return None


def judge(limit: Limit, reading: RunReading | None, at: str) -> Obj:
    """The measurement (status form) of ``reading`` against ``limit``, taken ``at``."""
    missing = _missing(limit.name, reading, at)
    if missing is not None:
        return missing
    assert reading is not None and reading.value is not None  # _missing covers both
    value = reading.value
    if limit.min is not None and _below(value, limit.min):
        return _measurement(limit.name, _FAILED, at, f"{limit.name} {_num(value)} < {_num(limit.min)} (min)",
                            value, limit.min)
    if limit.max is not None and _above(value, limit.max):
        return _measurement(limit.name, _FAILED, at, f"{limit.name} {_num(value)} > {_num(limit.max)} (max)",
                            value, limit.max)
    threshold, sign, kind = (limit.max, "<=", "max") if limit.max is not None else (limit.min, ">=", "min")
    bound = "" if threshold is None else f" {sign} {_num(threshold)} ({kind})"
    return _measurement(limit.name, _SUCCESSFUL, at, f"{limit.name} {_num(value)}{bound}", value, threshold)


def _relative_value(limit: RelativeLimit, canary: float, stable: float) -> float | None:
    """The drop (success rate, in points) or increase ratio; None for a ratio over a zero stable."""
    if limit.name == "successRateDrop":
        return round(stable - canary, 12)
    if stable <= 0:
        return 0.0 if canary <= 0 else None
    return round(canary / stable - 1, 12)


def judge_relative(limit: RelativeLimit, canary: RunReading | None, stable: RunReading | None, at: str) -> Obj:
    """The shadow (``canary``) compared with the stable version measured over the same window."""
    missing = _missing(limit.name, canary, at, " (shadow)") or _missing(limit.name, stable, at, " (stable)")
    if missing is not None:
        return missing
    assert canary is not None and canary.value is not None and stable is not None and stable.value is not None
    value = _relative_value(limit, canary.value, stable.value)
    both = f"shadow {_num(canary.value)}, stable {_num(stable.value)}"
    if value is None:
        return _measurement(limit.name, _FAILED, at, f"{limit.name} unbounded > {_num(limit.max)} (max): {both}",
                            None, limit.max)
    failed = _above(value, limit.max)
    sign = ">" if failed else "<="
    message = f"{limit.name} {_num(value)} {sign} {_num(limit.max)} (max): {both}"
    return _measurement(limit.name, _FAILED if failed else _SUCCESSFUL, at, message, value, limit.max)


# --- Runs -----------------------------------------------------------------------------------------


def _time(value: str) -> datetime.datetime:
    parsed = datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=datetime.UTC)


def _stamp(moment: datetime.datetime) -> str:
    return moment.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def new_run(started_at: str, step: int | None = None) -> Obj:
    run: Obj = {"startedAt": started_at, "verdict": AnalysisVerdict.RUNNING.value, "measurements": []}
    return run if step is None else {"step": step, **run}


def _newest(run: Mapping[str, Any]) -> datetime.datetime | None:
    times = [_time(str(m["measuredAt"])) for m in run.get("measurements") or ()]
    return max(times) if times else None


def next_due(run: Mapping[str, Any], crit: Criteria) -> str:
    """When the next round is due: an interval after the newest one (or after the start)."""
    last = _newest(run) or _time(str(run["startedAt"]))
    return _stamp(last + datetime.timedelta(seconds=crit.interval))


def _rounds(readings: Iterable[RunReading], key: str, after: datetime.datetime) -> list[tuple[str, list[RunReading]]]:
    groups: dict[str, list[RunReading]] = {}
    for reading in readings:
        if reading.run == key and _time(reading.measured_at) > after:
            groups.setdefault(reading.measured_at, []).append(reading)
    return sorted(groups.items(), key=lambda item: _time(item[0]))


def _judge_round(crit: Criteria, readings: Sequence[RunReading], at: str, target: str,
                 baseline: str | None) -> list[Obj]:
    mine = {r.kpi: r for r in readings if r.version == target}
    theirs = {r.kpi: r for r in readings if baseline is not None and r.version == baseline}
    judged = [judge(limit, mine.get(limit.name), at) for limit in crit.limits]
    return judged + [judge_relative(limit, mine.get(limit.kpi), theirs.get(limit.kpi), at) for limit in crit.relative]


def _prune(measurements: Sequence[Obj]) -> list[Obj]:
    """Every Failed, Inconclusive and Error measurement, and the newest KEEP_SUCCESSFUL Successful
    and KEEP_BASELINE Baseline ones per name."""
    keep = {_SUCCESSFUL: KEEP_SUCCESSFUL, _BASELINE: KEEP_BASELINE}
    kept: list[Obj] = []
    seen: dict[tuple[str, str], int] = {}
    for measurement in reversed(measurements):
        verdict = measurement["verdict"]
        if verdict in keep:
            key = (measurement["kpi"], verdict)
            seen[key] = seen.get(key, 0) + 1
            if seen[key] > keep[verdict]:
                continue
        kept.append(measurement)
    return kept[::-1]


def record(run: Mapping[str, Any], readings: Iterable[RunReading], crit: Criteria, *, key: str, target: str,
           baseline: str | None = None) -> Obj:
    """``run`` with the rounds in ``readings`` newer than its newest judged, and its new verdict.

    Only readings answering ``key`` count; a reading already recorded (or older) is ignored, so
    passing the same readings twice changes nothing. A concluded run is returned unchanged.
    """
    updated: Obj = {**run, "measurements": list(run.get("measurements") or [])}
    if updated.get("verdict") != AnalysisVerdict.RUNNING:
        return updated
    after = _newest(run) or _time(str(run["startedAt"]))
    for at, group in _rounds(readings, key, after):
        updated["measurements"] += _judge_round(crit, group, at, target, baseline)
    updated["measurements"] = _prune(updated["measurements"])
    updated["verdict"] = verdict(updated, crit).verdict
    return updated


def _by_name(measurements: Iterable[Mapping[str, Any]], name: str, *verdicts: str) -> list[Mapping[str, Any]]:
    return [m for m in measurements if m.get("kpi") == name and m.get("verdict") in verdicts]


def verdict(run: Mapping[str, Any], crit: Criteria) -> RunVerdict:
    """The run's verdict from its measurements (see the module docstring for the rules)."""
    measurements = list(run.get("measurements") or ())
    if not crit.names:
        return RunVerdict(AnalysisVerdict.INCONCLUSIVE.value, "nothing to judge: set thresholds or queries on the "
                          "analysis, or spec.kpis on the Agent")
    for name in crit.names:
        failed = _by_name(measurements, name, _FAILED)
        if len(failed) > crit.failure_limit:
            return RunVerdict(AnalysisVerdict.FAILED.value, f"{failed[-1]['message']} ({len(failed)} failed "
                              f"measurements, failureLimit {crit.failure_limit})", failed[-1])
    for name in crit.names:
        unsure = _by_name(measurements, name, _INCONCLUSIVE, _ERROR)
        if len(unsure) > crit.inconclusive_limit:
            return RunVerdict(AnalysisVerdict.INCONCLUSIVE.value, f"{unsure[-1]['message']} ({len(unsure)} "
                              f"inconclusive measurements, inconclusiveLimit {crit.inconclusive_limit})", unsure[-1])
    newest = _newest(run)
    if crit.duration is None or newest is None or newest < _time(str(run["startedAt"])) + datetime.timedelta(
            seconds=crit.duration):
        return RunVerdict(AnalysisVerdict.RUNNING.value, "measuring")
    for name in crit.names:
        if _by_name(measurements, name, _SUCCESSFUL):
            continue
        failed = _by_name(measurements, name, _FAILED)
        if failed:
            return RunVerdict(AnalysisVerdict.FAILED.value, f"{failed[-1]['message']} ({name} never passed)",
                              failed[-1])
        return RunVerdict(AnalysisVerdict.RUNNING.value, f"measuring: {name} has no data yet")
    return RunVerdict(AnalysisVerdict.SUCCESSFUL.value, f"{len(crit.names)} of {len(crit.names)} within limits")


def passed(run: Mapping[str, Any], crit: Criteria) -> bool:
    """Every judged name passed at least once (what ending an open-ended run requires)."""
    measurements = list(run.get("measurements") or ())
    return bool(crit.names) and all(_by_name(measurements, name, _SUCCESSFUL) for name in crit.names)


def close(run: Mapping[str, Any], crit: Criteria) -> Obj:
    """A still-Running run ended from outside (the rollout finished or skipped it): Successful when
    every name passed at least once, Inconclusive otherwise. A concluded run is unchanged."""
    if run.get("verdict") != AnalysisVerdict.RUNNING:
        return dict(run)
    ended = AnalysisVerdict.SUCCESSFUL if passed(run, crit) else AnalysisVerdict.INCONCLUSIVE
    return {**run, "verdict": ended.value}
