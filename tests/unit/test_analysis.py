"""Analysis verdicts: one measurement against a limit, shadow comparisons, and a run as a whole."""

from __future__ import annotations

import dataclasses
import datetime
import json
import math
from typing import Any

import pytest

from alm.api import AnalysisSpec, CustomQuery, KPIThresholds, ShadowRelativeThresholds
from alm.core import analysis, kpis
from alm.core.analysis import Criteria, Limit, RelativeLimit, RunReading

T0 = datetime.datetime(2026, 11, 24, 12, 0, 0, tzinfo=datetime.UTC)
AT = "2026-11-24T12:00:30Z"


def at(seconds: float) -> str:
    return (T0 + datetime.timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%SZ")


def reading(kpi: str = "successRate", value: float | None = 0.97, *, version: str = "v2", when: float = 30,
            run: str = "r", **extra: Any) -> RunReading:
    return RunReading(kpi, value, at(when), version, run, **extra)


# --- Limits ---------------------------------------------------------------------------------------


def test_limits_follow_the_kpi_order_then_the_queries() -> None:
    thresholds = KPIThresholds(min_alignment_score=0.8, max_tool_error_rate=0.1, min_success_rate=0.9,
                               max_latency_seconds=2, max_cost_per_task_usd=0.05)
    query = CustomQuery(name="refunds", query="sum(x)", max=3)
    assert analysis.limits(thresholds, [query]) == (
        Limit("successRate", 0.9, None), Limit("latencySeconds", None, 2), Limit("costPerTaskUSD", None, 0.05),
        Limit("toolErrorRate", None, 0.1), Limit("alignmentScore", 0.8, None), Limit("refunds", None, 3))
    assert analysis.limits(None) == ()
    assert analysis.limits(KPIThresholds()) == ()


def test_relative_limits() -> None:
    relative = ShadowRelativeThresholds(max_success_rate_drop=0.02, max_cost_increase_ratio=0.1)
    assert analysis.relative_limits(relative) == (RelativeLimit("successRateDrop", "successRate", 0.02),
                                                  RelativeLimit("costIncreaseRatio", "costPerTaskUSD", 0.1))
    assert analysis.relative_limits(None) == ()


@pytest.mark.parametrize(("kwargs", "names", "interval"), [
    ({"analysis": None, "fallback": KPIThresholds(min_success_rate=0.9)}, ("successRate",), 30.0),
    ({"analysis": AnalysisSpec(interval="5s", thresholds=KPIThresholds(max_latency_seconds=1)),
      "fallback": KPIThresholds(min_success_rate=0.9)}, ("latencySeconds",), 5.0),
    ({"analysis": AnalysisSpec(thresholds=KPIThresholds(max_latency_seconds=1)),
      "thresholds": KPIThresholds(max_tool_error_rate=0.1)}, ("toolErrorRate",), 30.0),
    ({"analysis": AnalysisSpec(queries=[CustomQuery(name="q", query="x", min=1)])}, ("q",), 30.0),
    ({"analysis": AnalysisSpec(queries=[CustomQuery(name="q", query="x", min=1)]), "queries": []}, (), 30.0),
    ({"analysis": None, "relative": ShadowRelativeThresholds(max_latency_increase_ratio=0.2)},
     ("latencyIncreaseRatio",), 30.0),
])
def test_criteria_pick_the_step_then_the_analysis_then_the_agent(kwargs: dict[str, Any], names: tuple[str, ...],
                                                                  interval: float) -> None:
    crit = analysis.criteria(**kwargs)
    assert crit.names == names
    assert crit.interval == interval


def test_criteria_ask_the_provider_for_the_kpis_relative_limits_compare() -> None:
    crit = analysis.criteria(None, fallback=KPIThresholds(min_alignment_score=0.5),
                             relative=ShadowRelativeThresholds(max_success_rate_drop=0.02))
    assert crit.kpis == ("successRate", "alignmentScore")
    assert analysis.criteria(None, fallback=KPIThresholds(max_latency_seconds=2, latency_quantile=0.99)
                             ).latency_quantile == 0.99


# --- One measurement ------------------------------------------------------------------------------

SUCCESS = Limit("successRate", min=0.95)
LATENCY = Limit("latencySeconds", max=2.0)
BAND = Limit("queue", min=1, max=10)


@pytest.mark.parametrize(("limit", "value", "verdict", "threshold", "message"), [
    (SUCCESS, 0.97, "Successful", 0.95, "successRate 0.97 >= 0.95 (min)"),
    (SUCCESS, 0.95, "Successful", 0.95, "successRate 0.95 >= 0.95 (min)"),  # a limit is inclusive
    (SUCCESS, 0.9499999999999, "Successful", 0.95, "successRate 0.95 >= 0.95 (min)"),  # float noise
    (SUCCESS, 0.8, "Failed", 0.95, "successRate 0.8 < 0.95 (min)"),
    (LATENCY, 1.5, "Successful", 2.0, "latencySeconds 1.5 <= 2 (max)"),
    (LATENCY, 2.0, "Successful", 2.0, "latencySeconds 2 <= 2 (max)"),
    (LATENCY, 2.5, "Failed", 2.0, "latencySeconds 2.5 > 2 (max)"),
    (LATENCY, math.inf, "Failed", 2.0, "latencySeconds inf > 2 (max)"),
    (BAND, 0, "Failed", 1, "queue 0 < 1 (min)"),
    (BAND, 11, "Failed", 10, "queue 11 > 10 (max)"),
    (BAND, 5, "Successful", 10, "queue 5 <= 10 (max)"),
])
def test_judge(limit: Limit, value: float, verdict: str, threshold: float, message: str) -> None:
    assert analysis.judge(limit, reading(limit.name, value), AT) == {
        "kpi": limit.name, "value": value, "threshold": threshold, "verdict": verdict, "measuredAt": AT,
        "message": message}


@pytest.mark.parametrize(("given", "verdict", "message"), [
    (None, "Inconclusive", "successRate: not measured (the provider returned no value)"),
    (reading(value=None, reason="no tasks in the window"), "Inconclusive",
     "successRate: no data (no tasks in the window)"),
    (reading(value=None), "Inconclusive", "successRate: no data (nothing measured)"),
    (reading(value=math.nan), "Inconclusive", "successRate: no data (nothing measured)"),
    (reading(value=None, error="HTTP 503"), "Error", "successRate: measurement failed: HTTP 503"),
    (reading(value=0.99, error="partial"), "Error", "successRate: measurement failed: partial"),
])
def test_no_value_is_never_a_pass(given: RunReading | None, verdict: str, message: str) -> None:
    assert analysis.judge(SUCCESS, given, AT) == {"kpi": "successRate", "verdict": verdict, "measuredAt": AT,
                                                  "message": message}


DROP = RelativeLimit("successRateDrop", "successRate", 0.02)
SLOWER = RelativeLimit("latencyIncreaseRatio", "latencySeconds", 0.2)
DEARER = RelativeLimit("costIncreaseRatio", "costPerTaskUSD", 0.1)


@pytest.mark.parametrize(("limit", "shadow", "stable", "verdict", "value"), [
    (DROP, 0.95, 0.97, "Successful", 0.02),  # exactly two points worse: allowed
    (DROP, 0.94, 0.97, "Failed", 0.03),
    (DROP, 0.99, 0.97, "Successful", -0.02),  # better than stable
    (SLOWER, 1.2, 1.0, "Successful", 0.2),
    (SLOWER, 1.3, 1.0, "Failed", 0.3),
    (SLOWER, 0.8, 1.0, "Successful", -0.2),
    (DEARER, 0.011, 0.01, "Successful", 0.1),
    (DEARER, 0.012, 0.01, "Failed", 0.2),
    (DEARER, 0.0, 0.0, "Successful", 0.0),  # both free
])
def test_judge_relative(limit: RelativeLimit, shadow: float, stable: float, verdict: str, value: float) -> None:
    result = analysis.judge_relative(limit, reading(limit.kpi, shadow), reading(limit.kpi, stable, version="v1"), AT)
    assert (result["verdict"], result["value"], result["threshold"]) == (verdict, pytest.approx(value), limit.max)
    assert f"shadow {shadow:.6g}, stable {stable:.6g}" in result["message"]


def test_a_cost_increase_from_a_free_stable_is_unbounded() -> None:
    result = analysis.judge_relative(DEARER, reading("costPerTaskUSD", 0.001), reading("costPerTaskUSD", 0.0), AT)
    assert result["verdict"] == "Failed" and "value" not in result and "unbounded" in result["message"]


@pytest.mark.parametrize(("shadow", "stable", "verdict", "who"), [
    (reading(value=None), reading(value=0.9), "Inconclusive", "(shadow)"),
    (reading(value=0.9), None, "Inconclusive", "(stable)"),
    (reading(value=0.9), reading(value=None, error="timeout"), "Error", "(stable)"),
])
def test_a_relative_limit_needs_both_versions(shadow: RunReading, stable: RunReading | None, verdict: str,
                                              who: str) -> None:
    result = analysis.judge_relative(DROP, shadow, stable, AT)
    assert result["verdict"] == verdict and who in result["message"]


# --- Runs -----------------------------------------------------------------------------------------


def crit(*limits: Limit, duration: float | None = 60, failure_limit: int = 1, inconclusive_limit: int = 2,
         relative: tuple[RelativeLimit, ...] = ()) -> Criteria:
    return Criteria(limits=limits or (SUCCESS,), relative=relative, interval=30, duration=duration,
                    failure_limit=failure_limit, inconclusive_limit=inconclusive_limit)


def rounds(*values: float | None, start: float = 30, every: float = 30, kpi: str = "successRate") -> list[RunReading]:
    return [reading(kpi, value, when=start + i * every) for i, value in enumerate(values)]


def run_of(criteria: Criteria, readings: list[RunReading], **kwargs: Any) -> dict[str, Any]:
    return analysis.record(analysis.new_run(at(0)), readings, criteria, key="r", target="v2", **kwargs)


@dataclasses.dataclass
class RunCase:
    values: tuple[float | None, ...]
    verdict: str
    failure_limit: int = 1
    inconclusive_limit: int = 2
    duration: float | None = 60


RUNS = {
    "nothing measured yet": RunCase((), "Running"),
    "one good round of two": RunCase((0.99,), "Running"),
    "two good rounds": RunCase((0.99, 0.99), "Successful"),
    "a failure tolerated, then a pass": RunCase((0.5, 0.99), "Successful"),
    "two failures, failureLimit 1": RunCase((0.5, 0.5), "Failed"),
    "the first failure, failureLimit 0": RunCase((0.5,), "Failed", failure_limit=0),
    "failures within the limit but never a pass": RunCase((0.5, 0.5), "Failed", failure_limit=5),
    "no data within the limit: keep measuring": RunCase((None, None), "Running"),
    "no data beyond the limit": RunCase((None, None, None), "Inconclusive"),
    "no data beyond inconclusiveLimit 0": RunCase((None,), "Inconclusive", inconclusive_limit=0),
    "no data, then data": RunCase((None, None, 0.99), "Successful"),
    "failure is judged before inconclusiveness": RunCase((None, None, None, 0.5, 0.5), "Failed"),
    "background: never finishes by itself": RunCase((0.99,) * 8, "Running", duration=None),
    "background: fails": RunCase((0.99, 0.5, 0.99, 0.5), "Failed", duration=None),
    "background: inconclusive": RunCase((None, 0.99, None, None), "Inconclusive", duration=None),
}


@pytest.mark.parametrize("case", RUNS.values(), ids=RUNS.keys())
def test_run_verdict(case: RunCase) -> None:
    criteria = crit(duration=case.duration, failure_limit=case.failure_limit,
                    inconclusive_limit=case.inconclusive_limit)
    assert run_of(criteria, rounds(*case.values))["verdict"] == case.verdict


def test_each_name_keeps_its_own_counts() -> None:
    both = crit(SUCCESS, LATENCY, failure_limit=1)
    readings = [*rounds(0.5, 0.99, 0.5), *rounds(3.0, 1.0, 1.0, kpi="latencySeconds")]
    run = run_of(both, readings)
    assert run["verdict"] == "Failed"  # successRate failed twice; latency's one failure is within its limit
    result = analysis.verdict(run, both)
    assert result.culprit is not None and result.culprit["kpi"] == "successRate"
    assert "2 failed measurements, failureLimit 1" in result.message


def test_a_run_with_nothing_to_judge_is_inconclusive_not_successful() -> None:
    result = analysis.verdict(analysis.new_run(at(0)), Criteria(duration=30))
    assert result.verdict == "Inconclusive" and "nothing to judge" in result.message


def test_readings_are_recorded_once_and_only_for_their_run() -> None:
    criteria = crit()
    first = run_of(criteria, rounds(0.99))
    again = analysis.record(first, rounds(0.99), criteria, key="r", target="v2")
    assert again == first
    other = analysis.record(first, [dataclasses.replace(r, run="x") for r in rounds(0.5, 0.5, start=60)],
                            criteria, key="r", target="v2")
    assert other == first
    stale = analysis.record(analysis.new_run(at(100)), rounds(0.99), criteria, key="r", target="v2")
    assert stale["measurements"] == [], "a reading from before the run started is not its data"


def test_readings_of_another_version_are_not_judged_as_the_target() -> None:
    run = run_of(crit(), [reading(value=0.1, version="v1"), reading(value=0.99, version="v2")])
    assert [m["value"] for m in run["measurements"]] == [0.99]


def test_a_round_judges_every_name_even_the_missing_ones() -> None:
    run = run_of(crit(SUCCESS, LATENCY), [reading("successRate", 0.99)])
    assert [(m["kpi"], m["verdict"]) for m in run["measurements"]] == [
        ("successRate", "Successful"), ("latencySeconds", "Inconclusive")]


def test_relative_rounds_compare_with_the_baseline_of_the_same_round() -> None:
    criteria = crit(relative=(DROP,))
    readings = [reading("successRate", 0.96), reading("successRate", 0.97, version="v1"),
                reading("successRate", 0.90, when=60), reading("successRate", 0.97, version="v1", when=60)]
    run = run_of(criteria, readings, baseline="v1")
    assert [(m["kpi"], m["verdict"]) for m in run["measurements"]] == [
        ("successRate", "Successful"), ("successRateDrop", "Successful"),
        ("successRate", "Failed"), ("successRateDrop", "Failed")]


def test_a_concluded_run_takes_no_more_readings() -> None:
    criteria = crit(failure_limit=0)
    failed = run_of(criteria, rounds(0.5))
    assert analysis.record(failed, rounds(0.99, start=60), criteria, key="r", target="v2") == failed


def test_long_runs_keep_failures_and_the_newest_successes_only() -> None:
    criteria = crit(duration=None, failure_limit=3, inconclusive_limit=3)
    values: list[float | None] = [0.99] * 50 + [0.5, None] + [0.99] * 50
    run = run_of(criteria, rounds(*values))
    verdicts = [m["verdict"] for m in run["measurements"]]
    assert verdicts.count("Successful") == analysis.KEEP_SUCCESSFUL
    assert verdicts.count("Failed") == 1 and verdicts.count("Inconclusive") == 1
    assert run["measurements"][-1]["measuredAt"] == at(30 + 101 * 30), "the newest round is kept"
    assert analysis.next_due(run, criteria) == at(30 + 102 * 30)


def test_next_due_counts_from_the_start_then_from_the_newest_round() -> None:
    criteria = crit()
    run = analysis.new_run(at(0))
    assert analysis.next_due(run, criteria) == at(30)
    late = analysis.record(run, rounds(0.99, start=45), criteria, key="r", target="v2")
    assert analysis.next_due(late, criteria) == at(75)


@pytest.mark.parametrize(("values", "closed"), [((0.99,), "Successful"), ((None,), "Inconclusive"),
                                                ((), "Inconclusive"), ((0.5,), "Inconclusive")])
def test_closing_a_running_run(values: tuple[float | None, ...], closed: str) -> None:
    criteria = crit(duration=None)
    run = run_of(criteria, rounds(*values))
    assert analysis.close(run, criteria)["verdict"] == closed
    failed = run_of(crit(failure_limit=0), rounds(0.5))
    assert analysis.close(failed, criteria) == failed


def test_the_same_readings_give_byte_identical_runs() -> None:
    criteria = crit(SUCCESS, LATENCY, relative=(DROP,))
    readings = [*rounds(0.97, None, 0.5), *rounds(1.0, 3.0, 1.0, kpi="latencySeconds"),
                *[dataclasses.replace(r, version="v1") for r in rounds(0.98, 0.98, 0.98)]]
    one = json.dumps(run_of(criteria, readings, baseline="v1"), sort_keys=True)
    two = json.dumps(run_of(criteria, list(reversed(readings)), baseline="v1"), sort_keys=True)
    assert one == two


def test_provider_readings_become_run_readings_for_the_names_asked() -> None:
    request = analysis.Measure(run="step/2", version="v2", baseline=None, window_seconds=30,
                               kpis=("successRate", "latencySeconds", "toolErrorRate"),
                               queries=(CustomQuery(name="refunds", query="x", max=1),), latency_quantile=0.95)
    answer = {"successRate": kpis.Reading.measured(0.97, samples=40),
              "latencySeconds": kpis.Reading.inconclusive("no tasks in the window"),
              "toolErrorRate": kpis.Reading.error("HTTP 503"),
              "alignmentScore": kpis.Reading.measured(0.9)}  # not asked for
    readings = analysis.run_readings(request, "v2", AT, answer, {"refunds": kpis.Reading.measured(0)})
    assert readings == (
        RunReading("successRate", 0.97, AT, "v2", "step/2"),
        RunReading("latencySeconds", None, AT, "v2", "step/2", reason="no tasks in the window"),
        RunReading("toolErrorRate", None, AT, "v2", "step/2", error="HTTP 503"),
        RunReading("refunds", 0, AT, "v2", "step/2"),
    )
    verdicts = [analysis.judge(Limit(r.kpi, max=0.5), r, AT)["verdict"] for r in readings]
    assert verdicts == ["Failed", "Inconclusive", "Error", "Successful"]


# --- Baseline readings: the scrape provider's first scrape of a version --------------------------


def baselines(*values: float | None, start: float = 30) -> list[RunReading]:
    """Rounds where None is a Baseline reading (the provider only took its baseline) and a number a value."""
    return [reading(value=value, when=start + i * 30,
                    **({"baseline": True, "reason": "first scrape of this version"} if value is None else {}))
            for i, value in enumerate(values)]


@pytest.mark.parametrize(("values", "inconclusive_limit", "verdict"), [
    ((None,), 0, "Running"),  # with inconclusiveLimit 0 a Baseline still pauses nothing
    ((None, 0.99, None, 0.99), 0, "Successful"),  # an operator restart mid-run takes a second baseline
    ((None, None, None, None, None), 2, "Running"),  # counts towards no limit, waits for data
    ((None, 0.5), 2, "Failed"),  # and hides no failure (failureLimit 0 below)
])
def test_a_baseline_reading_keeps_the_schedule_and_counts_towards_no_limit(
        values: tuple[float | None, ...], inconclusive_limit: int, verdict: str) -> None:
    criteria = crit(failure_limit=0, inconclusive_limit=inconclusive_limit, duration=60)
    run = run_of(criteria, baselines(*values))
    assert run["verdict"] == verdict
    first = run["measurements"][0]
    assert first["verdict"] == "Baseline" and "baseline taken" in first["message"]
    assert analysis.next_due(run, criteria) == at(30 + len(values) * 30), "the next round is an interval later"


def test_an_ordinary_no_data_reading_still_counts_as_inconclusive() -> None:
    criteria = crit(inconclusive_limit=0)
    assert run_of(criteria, rounds(None))["verdict"] == "Inconclusive"


def test_long_runs_keep_only_the_newest_baselines() -> None:
    run = run_of(crit(duration=None), baselines(*([None] * 20)))
    assert [m["verdict"] for m in run["measurements"]] == ["Baseline"] * analysis.KEEP_BASELINE
    assert run["measurements"][-1]["measuredAt"] == at(30 + 19 * 30)


def test_a_provider_answer_without_a_window_gives_baseline_readings() -> None:
    request = analysis.Measure(run="r", version="v2", baseline=None, window_seconds=30,
                               kpis=("successRate", "latencySeconds"), queries=(), latency_quantile=0.95)
    first = kpis.Reading.inconclusive("first scrape of this version: it is the baseline")
    answer = {"successRate": first, "latencySeconds": kpis.Reading.error("HTTP 503")}
    readings = analysis.run_readings(request, "v2", AT, answer, baseline=True)
    assert [r.baseline for r in readings] == [True, False], "an error stays an error"
    assert [analysis.judge(Limit(r.kpi, max=1), r, AT)["verdict"] for r in readings] == ["Baseline", "Error"]
    assert not any(r.baseline for r in analysis.run_readings(request, "v2", AT, answer)), "a window was measured"
