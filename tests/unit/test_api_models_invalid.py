"""The pydantic models: the specs they refuse, and why."""

from __future__ import annotations

from typing import Any

import pydantic
import pytest

from alm.api import (
    AgentRetirementSpec,
    AgentRolloutSpec,
    AgentSpec,
    AgentVersionSpec,
)
from tests.unit.api_model_specs import AGENT_SPEC, RETIREMENT_SPEC, ROLLOUT_SPEC, VERSION_SPEC, with_

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
