"""The pydantic models: what they accept, what they refuse (and why), defaults, wire names."""

from __future__ import annotations

import copy
from typing import Any

import pydantic
import pytest

import alm.api as api
from alm.api import (
    Agent,
    AgentPhase,
    AgentRetirement,
    AgentRetirementSpec,
    AgentRollout,
    AgentRolloutSpec,
    AgentSpec,
    AgentStatus,
    AgentVersion,
    AgentVersionSpec,
    AnalysisSpec,
    CanaryStep,
    Condition,
    ConditionStatus,
    KPIThresholds,
    RolloutStrategy,
    parse_duration,
)

VERSION_SPEC: dict[str, Any] = {
    "model": {"provider": "simulated", "name": "sim-small"},
    "instructions": "Help customers.",
    "runtime": {"image": "ghcr.io/alm-dev/alm-agent:0.1.0"},
}
AGENT_SPEC: dict[str, Any] = {"version": "support-bot-v1"}
CANARY: dict[str, Any] = {"canary": {"steps": [{"setWeight": 50}]}}
ROLLOUT_SPEC: dict[str, Any] = {
    "agentRef": {"name": "support-bot"},
    "targetVersion": "support-bot-v2",
    "strategy": CANARY,
}
RETIREMENT_SPEC: dict[str, Any] = {"agentRef": {"name": "support-bot"}, "reason": "Replaced."}

SPECS: dict[type[pydantic.BaseModel], dict[str, Any]] = {
    AgentVersionSpec: VERSION_SPEC,
    AgentSpec: AGENT_SPEC,
    AgentRolloutSpec: ROLLOUT_SPEC,
    AgentRetirementSpec: RETIREMENT_SPEC,
}


def with_(base: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    """A deep copy of ``base`` with ``value`` at the dotted ``path`` (list indexes allowed)."""
    data = copy.deepcopy(base)
    *parents, last = path.split(".")
    node: Any = data
    for part in parents:
        node = node[int(part)] if isinstance(node, list) else node.setdefault(part, {})
    if isinstance(node, list):
        node[int(last)] = value
    else:
        node[last] = value
    return data


# --- Valid specs ---------------------------------------------------------------------------------

VALID: list[tuple[type[pydantic.BaseModel], dict[str, Any]]] = [
    (AgentVersionSpec, VERSION_SPEC),
    (AgentVersionSpec, with_(VERSION_SPEC, "tools", [{"name": "t", "type": "mcp", "mcpUrl": "http://mcp:8000/mcp"}])),
    (
        AgentVersionSpec,
        with_(
            VERSION_SPEC,
            "tools",
            [{"name": "t", "type": "http", "endpoint": "https://x.test", "credentials": {"generate": {}}}],
        ),
    ),
    (AgentVersionSpec, with_(VERSION_SPEC, "runtime.resources", {"requests": {"cpu": 1, "memory": "256Mi"}})),
    (AgentVersionSpec, with_(VERSION_SPEC, "memory", {"store": {"type": "redis", "uri": "redis://r:6379"}})),
    (AgentVersionSpec, with_(VERSION_SPEC, "model.parameters", {"temperature": 2, "topP": 0, "maxOutputTokens": 1})),
    (AgentSpec, AGENT_SPEC),
    (AgentSpec, with_(AGENT_SPEC, "replicas", 0)),
    (AgentSpec, with_(AGENT_SPEC, "egress", [])),
    (AgentSpec, with_(AGENT_SPEC, "egress", [{"namespace": "crm", "podSelector": {"app": "crm"}}])),
    (AgentSpec, with_(AGENT_SPEC, "egress", [{"cidr": "10.0.0.0/8", "except": ["10.1.0.0/16"]}])),
    (
        AgentSpec,
        with_(
            AGENT_SPEC, "monitoring", {"provider": {"type": "prometheus", "prometheus": {"address": "http://p:9090"}}}
        ),
    ),
    (AgentSpec, with_(AGENT_SPEC, "rollout", {"blueGreen": {}})),
    (
        AgentSpec,
        with_(AGENT_SPEC, "rollout", {"shadow": {"duration": "10m", "relative": {"maxSuccessRateDrop": 0.02}}}),
    ),
    (AgentSpec, with_(AGENT_SPEC, "exposure", {"httpRoute": {"parentRefs": [{"name": "gw"}]}})),
    (AgentSpec, with_(AGENT_SPEC, "budget", {"tokensPerDay": 1, "usdPerDay": 0.01, "onExceeded": "suspend"})),
    (AgentRolloutSpec, ROLLOUT_SPEC),
    (
        AgentRolloutSpec,
        with_(
            ROLLOUT_SPEC,
            "strategy",
            {
                "canary": {
                    "steps": [
                        {"setWeight": 0},
                        {"pause": {}},
                        {"analysis": {"duration": "1m", "queries": [{"name": "q", "query": "up", "min": 1}]}},
                        {"approval": {"approvers": ["alice"]}},
                        {"setWeight": 100},
                    ],
                },
                "trafficRouting": {"type": "gatewayAPI", "gatewayAPI": {"httpRouteName": "support-bot"}},
                "rollback": "immediate",
            },
        ),
    ),
    (AgentRetirementSpec, RETIREMENT_SPEC),
    (AgentRetirementSpec, with_(RETIREMENT_SPEC, "archive", {"to": "pvc", "claimName": "archive"})),
]


@pytest.mark.parametrize(("model", "data"), VALID)
def test_valid_spec_is_accepted_and_round_trips(model: type[pydantic.BaseModel], data: dict[str, Any]) -> None:
    parsed = model.model_validate(data)
    wire = parsed.model_dump(mode="json", by_alias=True, exclude_none=True)
    assert model.model_validate(wire) == parsed
    assert _contains(wire, data), "every field given comes back under its camelCase name"


def _contains(outer: Any, inner: Any) -> bool:
    if isinstance(inner, dict):
        return isinstance(outer, dict) and all(k in outer and _contains(outer[k], v) for k, v in inner.items())
    if isinstance(inner, list):
        return isinstance(outer, list) and len(outer) == len(inner) and all(map(_contains, outer, inner))
    return bool(outer == inner or (isinstance(inner, int) and str(inner) == outer))


# --- Invalid specs -------------------------------------------------------------------------------

INVALID: list[tuple[str, type[pydantic.BaseModel], dict[str, Any], str]] = [
    # AgentVersion
    ("empty provider", AgentVersionSpec, with_(VERSION_SPEC, "model.provider", ""), "at least 1 character"),
    ("empty instructions", AgentVersionSpec, with_(VERSION_SPEC, "instructions", ""), "at least 1 character"),
    ("temperature 2.1", AgentVersionSpec, with_(VERSION_SPEC, "model.parameters", {"temperature": 2.1}), "less than"),
    ("topP 1.5", AgentVersionSpec, with_(VERSION_SPEC, "model.parameters", {"topP": 1.5}), "less than"),
    ("maxOutputTokens 0", AgentVersionSpec, with_(VERSION_SPEC, "model.parameters", {"maxOutputTokens": 0}), "greater"),
    (
        "negative price",
        AgentVersionSpec,
        with_(VERSION_SPEC, "model.pricing", {"inputPerMillionTokensUSD": -1}),
        "greater",
    ),
    (
        "snake_case on the wire",
        AgentVersionSpec,
        with_(VERSION_SPEC, "model.pricing", {"input_per_million": 1}),
        "Extra",
    ),
    ("unknown field", AgentVersionSpec, with_(VERSION_SPEC, "prompt", "hi"), "Extra inputs"),
    ("no runtime image", AgentVersionSpec, with_(VERSION_SPEC, "runtime", {}), "image"),
    ("port 0", AgentVersionSpec, with_(VERSION_SPEC, "runtime.port", 0), "greater than or equal to 1"),
    ("port 65536", AgentVersionSpec, with_(VERSION_SPEC, "runtime.port", 65536), "less than or equal to 65535"),
    ("env name", AgentVersionSpec, with_(VERSION_SPEC, "runtime.env", [{"name": "1X", "value": ""}]), "pattern"),
    ("env valueFrom", AgentVersionSpec, with_(VERSION_SPEC, "runtime.env", [{"name": "X", "valueFrom": {}}]), "Extra"),
    (
        "bad quantity",
        AgentVersionSpec,
        with_(VERSION_SPEC, "runtime.resources", {"limits": {"cpu": "lots"}}),
        "pattern",
    ),
    (
        "tool name",
        AgentVersionSpec,
        with_(VERSION_SPEC, "tools", [{"name": "CRM", "type": "mcp", "mcpUrl": "http://m"}]),
        "pattern",
    ),
    ("tool type", AgentVersionSpec, with_(VERSION_SPEC, "tools", [{"name": "t", "type": "grpc"}]), "'http' or 'mcp'"),
    (
        "tool url",
        AgentVersionSpec,
        with_(VERSION_SPEC, "tools", [{"name": "t", "type": "http", "endpoint": "crm"}]),
        "pattern",
    ),
    ("mcp without url", AgentVersionSpec, with_(VERSION_SPEC, "tools", [{"name": "t", "type": "mcp"}]), "needs mcpUrl"),
    (
        "http without endpoint",
        AgentVersionSpec,
        with_(VERSION_SPEC, "tools", [{"name": "t", "type": "http"}]),
        "needs endpoint",
    ),
    (
        "no credential source",
        AgentVersionSpec,
        with_(VERSION_SPEC, "tools", [{"name": "t", "type": "mcp", "mcpUrl": "http://m", "credentials": {}}]),
        "exactly one of secretRef or generate",
    ),
    (
        "short generated credential",
        AgentVersionSpec,
        with_(
            VERSION_SPEC,
            "tools",
            [{"name": "t", "type": "mcp", "mcpUrl": "http://m", "credentials": {"generate": {"length": 8}}}],
        ),
        "greater than or equal to 16",
    ),
    (
        "external store without uri",
        AgentVersionSpec,
        with_(VERSION_SPEC, "memory", {"store": {"type": "external"}}),
        "needs uri",
    ),
    ("migration", AgentVersionSpec, with_(VERSION_SPEC, "memory", {"migration": "copy"}), "archiveThenFresh"),
    (
        "minimumScore 1.5",
        AgentVersionSpec,
        with_(
            VERSION_SPEC, "evaluation", {"goldenSet": {"configMapRef": {"name": "g", "key": "k"}}, "minimumScore": 1.5}
        ),
        "less than or equal to 1",
    ),
    (
        "duplicate tool",
        AgentVersionSpec,
        with_(VERSION_SPEC, "tools", [{"name": "t", "type": "mcp", "mcpUrl": "http://m"}] * 2),
        "tools: duplicate entry t",
    ),
    (
        "duplicate env",
        AgentVersionSpec,
        with_(VERSION_SPEC, "runtime.env", [{"name": "A"}, {"name": "A"}]),
        "env: duplicate entry A",
    ),
    # Agent
    ("missing version", AgentSpec, {"replicas": 1}, "version"),
    ("version not DNS", AgentSpec, with_(AGENT_SPEC, "version", "Bot_1"), "pattern"),
    ("version too long", AgentSpec, with_(AGENT_SPEC, "version", "a" * 254), "at most 253"),
    ("negative replicas", AgentSpec, with_(AGENT_SPEC, "replicas", -1), "greater than or equal to 0"),
    (
        "wildcard verb",
        AgentSpec,
        with_(AGENT_SPEC, "permissions", [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "*"]}]),
        "least privilege; list verbs explicitly",
    ),
    (
        "wildcard resource",
        AgentSpec,
        with_(AGENT_SPEC, "permissions", [{"apiGroups": [""], "resources": ["*"], "verbs": ["get"]}]),
        "least privilege; list resources explicitly",
    ),
    (
        "no verbs",
        AgentSpec,
        with_(AGENT_SPEC, "permissions", [{"apiGroups": [""], "resources": ["pods"], "verbs": []}]),
        "at least 1",
    ),
    (
        "egress without peer",
        AgentSpec,
        with_(AGENT_SPEC, "egress", [{"ports": [{"port": 443}]}]),
        "at least one of cidr",
    ),
    (
        "egress cidr and selector",
        AgentSpec,
        with_(AGENT_SPEC, "egress", [{"cidr": "10.0.0.0/8", "podSelector": {}}]),
        "cannot be combined",
    ),
    (
        "egress except alone",
        AgentSpec,
        with_(AGENT_SPEC, "egress", [{"namespace": "a", "except": ["10.0.0.0/8"]}]),
        "except needs cidr",
    ),
    ("egress bad cidr", AgentSpec, with_(AGENT_SPEC, "egress", [{"cidr": "everywhere"}]), "pattern"),
    ("egress port", AgentSpec, with_(AGENT_SPEC, "egress", [{"cidr": "0.0.0.0/0", "ports": [{"port": 0}]}]), "greater"),
    (
        "egress protocol",
        AgentSpec,
        with_(AGENT_SPEC, "egress", [{"cidr": "0.0.0.0/0", "ports": [{"port": 1, "protocol": "SCTP"}]}]),
        "'TCP' or 'UDP'",
    ),
    ("service type", AgentSpec, with_(AGENT_SPEC, "exposure", {"service": {"type": "ExternalName"}}), "ClusterIP"),
    (
        "route without parents",
        AgentSpec,
        with_(AGENT_SPEC, "exposure", {"httpRoute": {"parentRefs": []}}),
        "at least 1",
    ),
    (
        "prometheus without config",
        AgentSpec,
        with_(AGENT_SPEC, "monitoring", {"provider": {"type": "prometheus"}}),
        "needs prometheus",
    ),
    (
        "unknown provider",
        AgentSpec,
        with_(AGENT_SPEC, "monitoring", {"provider": {"type": "datadog"}}),
        "'scrape' or 'prometheus'",
    ),
    (
        "zero breaches",
        AgentSpec,
        with_(AGENT_SPEC, "monitoring", {"consecutiveBreaches": 0}),
        "greater than or equal to 1",
    ),
    ("zero budget", AgentSpec, with_(AGENT_SPEC, "budget", {"usdPerDay": 0}), "greater than 0"),
    ("budget action", AgentSpec, with_(AGENT_SPEC, "budget", {"onExceeded": "delete"}), "'alert' or 'suspend'"),
    ("success rate 1.1", AgentSpec, with_(AGENT_SPEC, "kpis", {"minSuccessRate": 1.1}), "less than or equal to 1"),
    ("latency 0", AgentSpec, with_(AGENT_SPEC, "kpis", {"maxLatencySeconds": 0}), "greater than 0"),
    ("quantile 1", AgentSpec, with_(AGENT_SPEC, "kpis", {"latencyQuantile": 1}), "less than 1"),
    ("snake_case KPI", AgentSpec, with_(AGENT_SPEC, "kpis", {"maxCostPerTaskUsd": 1}), "Extra inputs"),
    # AgentRollout
    (
        "no strategy",
        AgentRolloutSpec,
        with_(ROLLOUT_SPEC, "strategy", {}),
        "exactly one of canary, blueGreen or shadow",
    ),
    (
        "two strategies",
        AgentRolloutSpec,
        with_(ROLLOUT_SPEC, "strategy.shadow", {"duration": "1m"}),
        "exactly one of canary",
    ),
    ("no steps", AgentRolloutSpec, with_(ROLLOUT_SPEC, "strategy", {"canary": {"steps": []}}), "at least 1"),
    (
        "weight 101",
        AgentRolloutSpec,
        with_(ROLLOUT_SPEC, "strategy.canary.steps.0", {"setWeight": 101}),
        "less than or equal to 100",
    ),
    (
        "weight -1",
        AgentRolloutSpec,
        with_(ROLLOUT_SPEC, "strategy.canary.steps.0", {"setWeight": -1}),
        "greater than or equal to 0",
    ),
    ("empty step", AgentRolloutSpec, with_(ROLLOUT_SPEC, "strategy.canary.steps.0", {}), "exactly one of setWeight"),
    (
        "two actions",
        AgentRolloutSpec,
        with_(ROLLOUT_SPEC, "strategy.canary.steps.0", {"setWeight": 5, "approval": {}}),
        "exactly one of setWeight",
    ),
    (
        "pause 0s",
        AgentRolloutSpec,
        with_(ROLLOUT_SPEC, "strategy.canary.steps.0", {"pause": {"duration": "0s"}}),
        "greater than zero",
    ),
    (
        "pause -5s",
        AgentRolloutSpec,
        with_(ROLLOUT_SPEC, "strategy.canary.steps.0", {"pause": {"duration": "-5s"}}),
        "pattern",
    ),
    (
        "pause 5",
        AgentRolloutSpec,
        with_(ROLLOUT_SPEC, "strategy.canary.steps.0", {"pause": {"duration": "5"}}),
        "pattern",
    ),
    (
        "query without bound",
        AgentRolloutSpec,
        with_(ROLLOUT_SPEC, "strategy.canary.analysis", {"queries": [{"name": "q", "query": "up"}]}),
        "min or max",
    ),
    (
        "failureLimit -1",
        AgentRolloutSpec,
        with_(ROLLOUT_SPEC, "strategy.canary.analysis", {"failureLimit": -1}),
        "greater",
    ),
    (
        "mirror 101",
        AgentRolloutSpec,
        with_(ROLLOUT_SPEC, "strategy", {"shadow": {"duration": "1m", "mirrorPercent": 101}}),
        "less than",
    ),
    ("shadow without duration", AgentRolloutSpec, with_(ROLLOUT_SPEC, "strategy", {"shadow": {}}), "duration"),
    (
        "routing type",
        AgentRolloutSpec,
        with_(ROLLOUT_SPEC, "strategy.trafficRouting", {"type": "istio"}),
        "'replicas' or 'gatewayAPI'",
    ),
    ("rollback mode", AgentRolloutSpec, with_(ROLLOUT_SPEC, "strategy.rollback", "never"), "'stepped' or 'immediate'"),
    ("agentRef name", AgentRolloutSpec, with_(ROLLOUT_SPEC, "agentRef", {"name": "Bot"}), "pattern"),
    # AgentRetirement
    ("empty reason", AgentRetirementSpec, with_(RETIREMENT_SPEC, "reason", ""), "at least 1 character"),
    ("negative grace", AgentRetirementSpec, with_(RETIREMENT_SPEC, "drain", {"gracePeriodSeconds": -1}), "greater"),
    ("pvc without claim", AgentRetirementSpec, with_(RETIREMENT_SPEC, "archive", {"to": "pvc"}), "needs claimName"),
    (
        "archive target",
        AgentRetirementSpec,
        with_(RETIREMENT_SPEC, "archive", {"to": "s3"}),
        "'configMap', 'secret' or 'pvc'",
    ),
    (
        "webhook url",
        AgentRetirementSpec,
        with_(RETIREMENT_SPEC, "revoke", {"webhook": {"url": "x", "hmacSecretRef": {"name": "s", "key": "k"}}}),
        "pattern",
    ),
    (
        "webhook without hmac",
        AgentRetirementSpec,
        with_(RETIREMENT_SPEC, "revoke", {"webhook": {"url": "https://x"}}),
        "hmacSecretRef",
    ),
]


@pytest.mark.parametrize(("model", "data", "needle"), [pytest.param(m, d, n, id=name) for name, m, d, n in INVALID])
def test_invalid_spec_is_refused_with_a_reason(
    model: type[pydantic.BaseModel], data: dict[str, Any], needle: str
) -> None:
    with pytest.raises(pydantic.ValidationError) as caught:
        model.model_validate(data)
    assert needle in str(caught.value)


# --- Defaults ------------------------------------------------------------------------------------


def test_agent_defaults() -> None:
    spec = AgentSpec.model_validate(AGENT_SPEC)
    assert spec.replicas == 1
    assert spec.service_account.automount_token is False
    assert spec.permissions == []
    assert spec.egress is None, "absent egress means: no NetworkPolicy"
    assert (spec.exposure.service.type, spec.exposure.service.port) == ("ClusterIP", 80)
    assert spec.exposure.http_route is None
    assert spec.rollout is None and spec.kpis is None and spec.monitoring is None and spec.budget is None


def test_agentversion_defaults() -> None:
    spec = AgentVersionSpec.model_validate(VERSION_SPEC)
    runtime = spec.runtime
    assert (runtime.port, runtime.health_path, runtime.ready_path, runtime.metrics_path) == (
        8080,
        "/healthz",
        "/readyz",
        "/metrics",
    )
    assert spec.model.pricing.input_per_million_tokens_usd == 0
    assert spec.model.pricing.output_per_million_tokens_usd == 0
    assert spec.tools == []
    assert spec.memory is None


def test_nested_defaults() -> None:
    strategy = RolloutStrategy.model_validate(CANARY)
    assert strategy.traffic_routing.type == "replicas"
    assert strategy.rollback == "stepped"
    analysis = AnalysisSpec()
    assert (analysis.interval, analysis.failure_limit, analysis.inconclusive_limit) == ("30s", 0, 2)
    assert KPIThresholds().latency_quantile == 0.95
    retirement = AgentRetirementSpec.model_validate(RETIREMENT_SPEC)
    assert retirement.drain.grace_period_seconds == 30
    assert retirement.archive.to == "configMap"
    assert (retirement.revoke.secrets, retirement.revoke.service_account, retirement.revoke.rbac) == (True,) * 3
    assert retirement.revoke.webhook is None
    version = AgentVersionSpec.model_validate(
        with_(
            VERSION_SPEC, "tools", [{"name": "t", "type": "mcp", "mcpUrl": "http://m", "credentials": {"generate": {}}}]
        )
    )
    credentials = version.tools[0].credentials
    assert credentials is not None and credentials.generate is not None and credentials.generate.length == 32
    assert version.tools[0].read_only is False


# --- Wire names, immutability, whole objects -----------------------------------------------------


@pytest.mark.parametrize(
    ("model", "python_name", "wire_name"),
    [
        (KPIThresholds, "max_cost_per_task_usd", "maxCostPerTaskUSD"),
        (KPIThresholds, "min_success_rate", "minSuccessRate"),
        (RolloutStrategy, "blue_green", "blueGreen"),
        (RolloutStrategy, "traffic_routing", "trafficRouting"),
        (AgentSpec, "service_account", "serviceAccount"),
        (AgentStatus, "canary_weight", "canaryWeight"),
        (AgentStatus, "observed_generation", "observedGeneration"),
        (Condition, "last_transition_time", "lastTransitionTime"),
    ],
)
def test_wire_names_are_camel_case(model: type[pydantic.BaseModel], python_name: str, wire_name: str) -> None:
    assert model.model_fields[python_name].serialization_alias == wire_name or (
        model.model_fields[python_name].alias == wire_name
    )


@pytest.mark.parametrize(
    ("model", "data", "wire_key"),
    [
        ("EgressRule", {"cidr": "10.0.0.0/8", "except_": ["10.1.0.0/16"]}, "except"),
        ("TrafficRouting", {"type": "gatewayAPI", "gateway_api": {"http_route_name": "r"}}, "gatewayAPI"),
        ("ModelPricing", {"input_per_million_tokens_usd": 1}, "inputPerMillionTokensUSD"),
        ("KPIObservation", {"cost_per_task_usd": 0.1}, "costPerTaskUSD"),
    ],
)
def test_python_names_and_irregular_wire_names(model: str, data: dict[str, Any], wire_key: str) -> None:
    value = getattr(api, model).model_validate(data)
    assert wire_key in value.to_k8s()


def test_models_are_frozen() -> None:
    spec = AgentSpec.model_validate(AGENT_SPEC)
    with pytest.raises(pydantic.ValidationError, match="frozen"):
        spec.replicas = 3  # type: ignore[misc]


def test_to_k8s_leaves_unset_fields_out() -> None:
    step = CanaryStep(set_weight=10)
    assert step.to_k8s() == {"setWeight": 10}


@pytest.mark.parametrize(
    ("model", "spec"),
    [
        (AgentVersion, VERSION_SPEC),
        (Agent, AGENT_SPEC),
        (AgentRollout, ROLLOUT_SPEC),
        (AgentRetirement, RETIREMENT_SPEC),
    ],
)
def test_whole_object_defaults_api_version_and_kind(model: type[pydantic.BaseModel], spec: dict[str, Any]) -> None:
    obj = model.model_validate({"metadata": {"name": "x"}, "spec": spec})
    wire = obj.model_dump(mode="json", by_alias=True, exclude_none=True)
    assert wire["apiVersion"] == "alm.dev/v1alpha1"
    assert wire["kind"] == model.__name__
    assert model.model_validate(wire) == obj
    with pytest.raises(pydantic.ValidationError):
        model.model_validate({**wire, "kind": "Other"})


def test_status_with_kopf_state_and_conditions() -> None:
    status = AgentStatus.model_validate(
        {
            "phase": "Available",
            "stableVersion": "v1",
            "canaryWeight": 0,
            "conditions": [
                {"type": "Ready", "status": "True", "reason": "Available", "lastTransitionTime": "2026-01-01T00:00:00Z"}
            ],
            "kpis": {"v1": {"successRate": 0.99, "costPerTaskUSD": 0.001, "observedAt": "2026-01-01T00:00:00Z"}},
            "history": [{"version": "v1", "promotedAt": "2026-01-01T00:00:00Z", "result": "Succeeded"}],
            "kopf": {"progress": {"handler": {"retries": 1}}, "anything": ["goes"]},
        }
    )
    assert status.phase is AgentPhase.AVAILABLE
    assert status.conditions[0].status is ConditionStatus.TRUE
    assert status.kopf == {"progress": {"handler": {"retries": 1}}, "anything": ["goes"]}
    assert AgentStatus().phase is AgentPhase.PENDING


def test_duplicate_conditions_are_refused() -> None:
    condition = {"type": "Ready", "status": "True", "reason": "R", "lastTransitionTime": "2026-01-01T00:00:00Z"}
    with pytest.raises(pydantic.ValidationError, match="conditions: duplicate entry Ready"):
        AgentStatus.model_validate({"conditions": [condition, {**condition, "status": "False"}]})


def test_phase_enums_are_strings() -> None:
    assert AgentPhase.DEGRADED == "Degraded"
    assert f"{AgentPhase.RETIRED}" == "Retired"


# --- Durations -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("30s", 30.0), ("250ms", 0.25), ("1m30s", 90.0), ("2h", 7200.0), ("1.5m", 90.0), ("1h1m1s", 3661.0), ("0s", 0.0)],
)
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "5", "-5s", "5 s", "1d", "s", "1.s", "+1s", "1h 30m", "1e3s"])
def test_parse_duration_refuses_garbage(text: str) -> None:
    with pytest.raises(ValueError, match="invalid duration"):
        parse_duration(text)


@pytest.mark.parametrize(
    ("text", "ok"), [("1ms", True), ("0.1s", True), ("0s", False), ("0m0s", False), ("0.0h", False)]
)
def test_duration_type_requires_a_positive_value(text: str, ok: bool) -> None:
    data = {"steps": [{"pause": {"duration": text}}]}
    if ok:
        RolloutStrategy.model_validate({"canary": data})
    else:
        with pytest.raises(pydantic.ValidationError, match="greater than zero"):
            RolloutStrategy.model_validate({"canary": data})
