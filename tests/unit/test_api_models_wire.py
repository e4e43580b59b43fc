"""The pydantic models on the wire: camelCase names, immutability, whole objects, durations."""

from __future__ import annotations

from typing import Any

import pydantic
import pytest

import alm.api as api
from alm.api import (
    Agent,
    AgentPhase,
    AgentRetirement,
    AgentRollout,
    AgentSpec,
    AgentStatus,
    AgentVersion,
    CanaryStep,
    Condition,
    ConditionStatus,
    KPIThresholds,
    RolloutStrategy,
    parse_duration,
)
from tests.unit.api_model_specs import AGENT_SPEC, RETIREMENT_SPEC, ROLLOUT_SPEC, VERSION_SPEC

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
