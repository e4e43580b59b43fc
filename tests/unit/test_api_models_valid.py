"""The pydantic models: the specs they accept (and round-trip), and the defaults they fill in."""

from __future__ import annotations

from typing import Any

import pydantic
import pytest

from alm.api import (
    AgentRetirementSpec,
    AgentRolloutSpec,
    AgentSpec,
    AgentVersionSpec,
    AnalysisSpec,
    KPIThresholds,
    RolloutStrategy,
)
from tests.unit.api_model_specs import AGENT_SPEC, CANARY, RETIREMENT_SPEC, ROLLOUT_SPEC, VERSION_SPEC, with_

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
