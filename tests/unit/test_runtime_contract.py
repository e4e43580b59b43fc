"""The metric contract: consistent with itself, with OTel naming, with the runtime and with the docs."""

from __future__ import annotations

import collections
import importlib
import math
import pathlib
import re

import pytest
from prometheus_client.parser import text_string_to_metric_families

from alm.metrics import contract
from alm.metrics.contract import KPI, MetricType
from alm.runtime import instruments

DOCS = pathlib.Path(__file__).resolve().parents[2] / "docs" / "metrics.md"

# OTel's advised boundaries for gen_ai.invoke_agent.duration.
INVOKE_AGENT_BUCKETS = (0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 6.4, 12.8, 25.6, 51.2, 102.4, 204.8, 409.6)


def prometheus_name(otel_name: str, unit: str) -> str:
    """The OTel-to-Prometheus rule: dots to underscores, `s` adds `_seconds`, `{…}` adds nothing."""
    suffix = {"s": "_seconds"}.get(unit, "")
    return otel_name.replace(".", "_") + suffix


def test_names_are_unique_and_follow_the_prometheus_rules() -> None:
    names = [m.name for m in contract.ALL]
    assert len(names) == len(set(names))
    for metric in contract.ALL:
        assert re.fullmatch(r"[a-z_][a-z0-9_]*", metric.name)
        assert not metric.name.endswith("_total"), "counters are named by family; samples add _total"
        assert len(set(metric.label_names)) == len(metric.label_names)
        assert metric.name.startswith(("alm_agent_", "gen_ai_"))


@pytest.mark.parametrize("metric", [m for m in contract.ALL if m.otel_name], ids=lambda m: m.name)
def test_otel_metrics_use_the_conventions_prometheus_form(metric: contract.Metric) -> None:
    assert metric.name == prometheus_name(metric.otel_name or "", metric.unit)
    assert metric.type is MetricType.HISTOGRAM  # every GenAI metric is a histogram
    assert all(label.startswith(("gen_ai_", "error_type", "outcome")) for label in metric.labels)


def test_otel_names_are_the_ones_the_conventions_define() -> None:
    assert {m.otel_name for m in contract.ALL if m.otel_name} == {
        "gen_ai.client.token.usage",
        "gen_ai.client.operation.duration",
        "gen_ai.invoke_agent.duration",
        "gen_ai.execute_tool.duration",
    }


def test_histogram_buckets_are_fixed_sorted_and_keep_the_otel_boundaries() -> None:
    for metric in contract.ALL:
        assert bool(metric.buckets) == (metric.type is MetricType.HISTOGRAM), metric.name
        assert list(metric.buckets) == sorted(set(metric.buckets)), metric.name
    assert set(INVOKE_AGENT_BUCKETS) <= set(contract.TASK_DURATION.buckets)
    assert contract.TOKEN_USAGE.buckets == tuple(4**k for k in range(14))
    assert contract.ALIGNMENT.buckets[-1] == 1.0


def test_sample_names() -> None:
    assert contract.TASKS.total == "alm_agent_tasks_total"
    assert contract.COST.total == "alm_agent_cost_usd_total"
    assert contract.TASK_DURATION.bucket == "gen_ai_invoke_agent_duration_seconds_bucket"
    assert contract.ALIGNMENT.sum == "alm_agent_alignment_score_sum"
    assert contract.ALIGNMENT.count == "alm_agent_alignment_score_count"
    with pytest.raises(AssertionError):
        _ = contract.TASKS.bucket
    with pytest.raises(AssertionError):
        _ = contract.ALIGNMENT.total
    assert contract.by_name("alm_agent_tokens") is contract.TOKENS
    with pytest.raises(KeyError):
        contract.by_name("alm_agent_tokens_total")


def test_the_runtime_exposes_exactly_the_contract() -> None:
    recorder = instruments.Instruments(instruments.Identity("bot", "bot-v1", True, "simulated", "sim-1"), ["crm"])
    recorder.task_started()
    recorder.task_finished(contract.TaskOutcome.SUCCESS, 0.3)
    recorder.tool_call("crm", contract.ToolOutcome.ERROR, 0.1, "timeout")
    recorder.tokens(10, 5, 0.001)
    recorder.model_call(10, 5, 0.2)
    recorder.score(0.5)
    families = {f.name: f for f in text_string_to_metric_families(recorder.exposition().decode())}
    assert set(families) == {m.name for m in contract.ALL}
    for metric in contract.ALL:
        family = families[metric.name]
        assert family.type == metric.type, metric.name
        assert family.documentation == metric.help
        for sample in family.samples:
            assert set(sample.labels) - {"le"} == set(metric.label_names), sample
            common = (sample.labels["agent"], sample.labels["version"], sample.labels["shadow"])
            assert common == ("bot", "bot-v1", "true")
            for label, allowed in metric.label_values.items():
                assert sample.labels[label] in allowed, sample
        if metric.type is MetricType.HISTOGRAM:
            series: dict[frozenset[tuple[str, str]], list[float]] = collections.defaultdict(list)
            for sample in family.samples:
                if sample.name == metric.bucket:
                    key = frozenset((k, v) for k, v in sample.labels.items() if k != "le")
                    series[key].append(float(sample.labels["le"]))
            assert series, metric.name
            for bounds in series.values():
                assert bounds == [*metric.buckets, math.inf], metric.name


def test_known_series_exist_at_zero_before_any_event() -> None:
    recorder = instruments.Instruments(instruments.Identity("bot", "bot-v1"), ["crm", "search"])
    samples = [s for f in text_string_to_metric_families(recorder.exposition().decode()) for s in f.samples]
    tasks = {s.labels["outcome"] for s in samples if s.name == contract.TASKS.total}
    tools = {(s.labels["tool"], s.labels["outcome"]) for s in samples if s.name == contract.TOOL_CALLS.total}
    tokens = {s.labels["type"] for s in samples if s.name == contract.TOKENS.total}
    assert tasks == {"success", "failure", "error"}
    assert tools == {(t, o) for t in ("crm", "search") for o in ("success", "error", "dry_run")}
    assert tokens == {"input", "output"}
    assert {s.name for s in samples if s.value == 0} >= {contract.COST.total, contract.ALIGNMENT.count}
    assert all(s.value == 0 for s in samples)


# --- KPIs ----------------------------------------------------------------------------------------


def test_every_kpi_is_defined_once_with_status_field_names() -> None:
    assert [d.kpi for d in contract.KPIS] == list(KPI)
    fields = ["successRate", "latencySeconds", "costPerTaskUSD", "toolErrorRate", "alignmentScore"]
    assert [str(k) for k in KPI] == fields


@pytest.mark.parametrize(("kpi", "query"), [
    (KPI.SUCCESS_RATE,
     'sum(increase(alm_agent_tasks_total{agent="bot",version="v1",outcome="success"}[5m]))'
     ' / sum(increase(alm_agent_tasks_total{agent="bot",version="v1"}[5m]))'),
    (KPI.LATENCY,
     'histogram_quantile(0.95, sum by (le) '
     '(rate(gen_ai_invoke_agent_duration_seconds_bucket{agent="bot",version="v1"}[5m])))'),
    (KPI.COST_PER_TASK,
     'sum(increase(alm_agent_cost_usd_total{agent="bot",version="v1"}[5m]))'
     ' / sum(increase(alm_agent_tasks_total{agent="bot",version="v1"}[5m]))'),
    (KPI.TOOL_ERROR_RATE,
     'sum(increase(alm_agent_tool_calls_total{agent="bot",version="v1",outcome="error"}[5m]))'
     ' / sum(increase(alm_agent_tool_calls_total{agent="bot",version="v1",outcome=~"success|error"}[5m]))'),
    (KPI.ALIGNMENT,
     'sum(increase(alm_agent_alignment_score_sum{agent="bot",version="v1"}[5m]))'
     ' / sum(increase(alm_agent_alignment_score_count{agent="bot",version="v1"}[5m]))'),
])  # fmt: skip
def test_kpi_promql(kpi: KPI, query: str) -> None:
    assert contract.promql(kpi, contract.selector("bot", "v1"), "5m") == query


def test_promql_quantile_and_extra_matchers() -> None:
    sel = contract.selector("bot", "v1", namespace="team")
    assert contract.promql(KPI.LATENCY, sel, "1m", quantile=0.5).startswith("histogram_quantile(0.5, ")
    assert sel == 'agent="bot",version="v1",namespace="team"'


def test_selector_escapes_label_values() -> None:
    assert contract.selector('a"b', "v\\1\n") == 'agent="a\\"b",version="v\\\\1\\n"'


def test_kpi_queries_name_only_contract_series() -> None:
    samples = {s for m in contract.ALL for s in (m.name, f"{m.name}_total", f"{m.name}_bucket", f"{m.name}_sum",
                                                  f"{m.name}_count")}  # fmt: skip
    for definition in contract.KPIS:
        used = set(re.findall(r"(alm_agent_\w+|gen_ai_\w+)\{", definition.promql))
        assert used and used <= samples, definition.kpi


# --- Docs ----------------------------------------------------------------------------------------


def test_docs_table_lists_every_metric_with_its_type_and_unit() -> None:
    text = DOCS.read_text().split("## Operator metrics")[0]  # the agents' contract, not the operator's own
    rows = {m[1]: (m[2], m[3]) for m in re.finditer(r"^\| `(\w+)` \| (\w+) \| `([^`]+)` \|", text, re.MULTILINE)}
    expected = {
        (m.total if m.type is MetricType.COUNTER else m.name): (str(m.type), m.unit) for m in contract.ALL
    }
    assert rows == expected


def test_docs_show_the_kpi_queries_and_buckets() -> None:
    text = DOCS.read_text().replace("\\|", "|")
    for definition in contract.KPIS:
        assert f"`{definition.promql}`" in text, definition.kpi
    for metric in contract.ALL:
        if metric.buckets:
            listed = ", ".join(str(int(b)) if b == int(b) else str(b) for b in metric.buckets)
            assert listed in text, metric.name
    assert "## Operator metrics" in text


@pytest.mark.parametrize("module", ["alm.metrics.contract", "alm.runtime.config", "alm.runtime.credentials",
                                    "alm.runtime.instruments", "alm.runtime.sdk", "alm.runtime.simulated",
                                    "alm.runtime.backends", "alm.runtime.server"])  # fmt: skip
def test_export_lists_name_what_exists(module: str) -> None:
    mod = importlib.import_module(module)
    assert all(hasattr(mod, name) for name in mod.__all__)
    assert len(mod.__all__) == len(set(mod.__all__))
