"""Building blocks shared by the four alm kinds.

Everything here is plain data: the base model every API type derives from, small value types
(durations, DNS names, quantities, references, conditions), CEL rule declarations, KPI
thresholds, analysis settings and the rollout strategy shared by ``Agent.spec.rollout`` and
``AgentRollout.spec.strategy``.

CEL rules are declared once, as :class:`CelRule` values. The model attaches them to its JSON
schema (``x-kubernetes-validations``, so ``kubectl apply`` enforces them) and calls
:meth:`CelRule.check` from a pydantic validator (so the operator enforces the same rule with the
same message when it parses an object). :mod:`alm.api.crdgen` turns the schema into a CRD.
"""

from __future__ import annotations

import dataclasses
import enum
import re
from typing import Annotated, Any, Final, Literal, Self

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    WithJsonSchema,
    model_validator,
)
from pydantic.alias_generators import to_camel

__all__ = [
    "API_VERSION",
    "CATEGORIES",
    "DURATION_PATTERN",
    "GROUP",
    "VERSION",
    "AlmModel",
    "AnalysisSpec",
    "ApprovalStep",
    "BlueGreenStrategy",
    "CanaryStep",
    "CanaryStrategy",
    "CelRule",
    "Condition",
    "ConditionStatus",
    "ConfigMapKeyRef",
    "CustomQuery",
    "DNS1123Label",
    "DNS1123Subdomain",
    "Duration",
    "GatewayAPIRouting",
    "KPIThresholds",
    "KopfState",
    "LocalObjectRef",
    "ParentRef",
    "PauseStep",
    "Quantity",
    "RollbackMode",
    "RolloutStrategy",
    "SecretKeyRef",
    "ShadowRelativeThresholds",
    "ShadowStrategy",
    "StepAnalysis",
    "TrafficRouting",
    "TrafficRoutingType",
    "count_set",
    "list_map",
    "parse_duration",
    "validations",
]

GROUP: Final = "alm.dev"
"""The API group of every alm kind."""
VERSION: Final = "v1alpha1"
"""The one served and stored version."""
API_VERSION: Final = "alm.dev/v1alpha1"
"""``apiVersion`` of every alm object."""
CATEGORIES = ("alm",)
"""``kubectl get alm`` lists every alm object."""


class AlmModel(BaseModel):
    """Base of every API type: camelCase on the wire, immutable, unknown fields rejected.

    Field docstrings become the CRD descriptions (``use_attribute_docstrings``), so the model is
    the single source of the documentation too.
    """

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        frozen=True,
        use_attribute_docstrings=True,
    )

    def to_k8s(self) -> dict[str, Any]:
        """The object as Kubernetes wants it: camelCase keys, JSON types, unset fields left out."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)

    @model_validator(mode="after")
    def _check_list_map_keys(self) -> Self:
        # The API server refuses duplicate keys in a list-map (see list_map); so does the model.
        for name, info in type(self).model_fields.items():
            keys = _list_map_keys(info.json_schema_extra)
            seen: set[tuple[object, ...]] = set()
            for item in (getattr(self, name) or ()) if keys else ():
                key = tuple(_wire_value(item, wire) for wire in keys)
                if key in seen:
                    raise ValueError(f"{info.alias or name}: duplicate entry {', '.join(map(str, key))}")
                seen.add(key)
        return self


def _list_map_keys(extra: object) -> list[str]:
    """The map keys of a field marked with :func:`list_map`, else []."""
    if not isinstance(extra, dict) or extra.get("x-kubernetes-list-type") != "map":
        return []
    return [str(key) for key in extra["x-kubernetes-list-map-keys"]]


def _wire_value(item: BaseModel, wire_name: str) -> object:
    """The value of the field called ``wire_name`` on the wire."""
    for name, info in type(item).model_fields.items():
        if (info.alias or name) == wire_name:
            return getattr(item, name)
    raise KeyError(wire_name)


# --- CEL rules -----------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class CelRule:
    """One ``x-kubernetes-validations`` entry, enforced by the API server and by pydantic alike."""

    rule: str
    message: str
    field_path: str | None = None
    reason: str | None = None

    def to_schema(self) -> dict[str, str]:
        """The entry as it appears in the CRD."""
        entry = {"rule": self.rule, "message": self.message}
        if self.field_path is not None:
            entry["fieldPath"] = self.field_path
        if self.reason is not None:
            entry["reason"] = self.reason
        return entry

    def check(self, ok: bool) -> None:
        """Raise the rule's message when the Python mirror of the rule says no."""
        if not ok:
            raise ValueError(self.message)


def validations(*rules: CelRule) -> dict[str, Any]:
    """Schema extra attaching CEL rules to a model or field."""
    return {"x-kubernetes-validations": [rule.to_schema() for rule in rules]}


def list_map(*keys: str) -> dict[str, Any]:
    """Schema extra for a list that Kubernetes merges as a map keyed by ``keys``."""
    return {"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": list(keys)}


def count_set(*values: object) -> int:
    """How many of ``values`` are set (not None): the Python side of the exactly-one rules."""
    return sum(value is not None for value in values)


def _exactly_one_rule(what: str, *aliases: str) -> CelRule:
    checks = ", ".join(f"has(self.{alias})" for alias in aliases)
    names = ", ".join(aliases[:-1]) + f" or {aliases[-1]}"
    return CelRule(f"[{checks}].exists_one(x, x)", f"{what} must set exactly one of {names}")


# --- Scalars -------------------------------------------------------------------------------------

DURATION_PATTERN = r"^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$"
_DURATION_PART = re.compile(r"([0-9]+(?:\.[0-9]+)?)(ms|s|m|h)")
_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
_POSITIVE_DURATION = CelRule("self.matches('[1-9]')", "duration must be greater than zero")


def parse_duration(text: str) -> float:
    """Seconds in a Go-style duration such as ``"30s"``, ``"1h30m"`` or ``"250ms"``.

    >>> parse_duration("1m30s")
    90.0
    """
    if re.fullmatch(DURATION_PATTERN, text) is None:
        raise ValueError(f"invalid duration {text!r}: use a number and a unit ms, s, m or h, e.g. 30s")
    return sum(float(number) * _DURATION_UNITS[unit] for number, unit in _DURATION_PART.findall(text))


def _positive_duration(text: str) -> str:
    _POSITIVE_DURATION.check(parse_duration(text) > 0)
    return text


Duration = Annotated[
    str,
    Field(
        pattern=DURATION_PATTERN,
        max_length=32,
        json_schema_extra=validations(_POSITIVE_DURATION),
    ),
    AfterValidator(_positive_duration),
]
"""A positive Go-style duration; :func:`parse_duration` turns it into seconds."""

DNS1123Label = Annotated[
    str,
    Field(pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", max_length=63),
]
"""A DNS-1123 label: lower-case alphanumerics and '-', at most 63 characters."""

DNS1123Subdomain = Annotated[
    str,
    Field(
        pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$",
        max_length=253,
    ),
]
"""A DNS-1123 subdomain, the shape of most Kubernetes object names."""

QUANTITY_PATTERN = (
    r"^(\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))(([KMGTPE]i)|[numkMGTPE]|([eE](\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$"
)


def _quantity_to_str(value: object) -> object:
    # YAML turns `cpu: 1` into an int; Kubernetes accepts it, so do we.
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    return value


Quantity = Annotated[
    str,
    BeforeValidator(_quantity_to_str),
    Field(pattern=QUANTITY_PATTERN),
    WithJsonSchema(
        {
            "anyOf": [{"type": "integer"}, {"type": "string"}],
            "pattern": QUANTITY_PATTERN,
            "x-kubernetes-int-or-string": True,
        }
    ),
]
"""A Kubernetes resource quantity such as ``500m``, ``1``, ``256Mi``; stored as a string."""

KopfState = Annotated[
    dict[str, Any],
    WithJsonSchema({"type": "object", "x-kubernetes-preserve-unknown-fields": True}),
]
"""Free-form state kopf keeps in ``status.kopf`` (progress and diff-base, see DESIGN.md)."""


# --- References and conditions -------------------------------------------------------------------


class LocalObjectRef(AlmModel):
    """A reference to an object in the same namespace."""

    name: DNS1123Subdomain
    """Name of the referenced object."""


class SecretKeyRef(AlmModel):
    """One key of a Secret in the same namespace; its value is mounted as a file, never put in env."""

    name: DNS1123Subdomain
    """Name of the Secret."""
    key: str = Field(min_length=1, max_length=253, pattern=r"^[-._a-zA-Z0-9]+$")
    """Key inside the Secret's data."""


class ConfigMapKeyRef(AlmModel):
    """One key of a ConfigMap in the same namespace."""

    name: DNS1123Subdomain
    """Name of the ConfigMap."""
    key: str = Field(min_length=1, max_length=253, pattern=r"^[-._a-zA-Z0-9]+$")
    """Key inside the ConfigMap's data."""


class ConditionStatus(enum.StrEnum):
    """Status of a condition, as in every Kubernetes API.

    - True: the condition holds.
    - False: the condition does not hold.
    - Unknown: the operator cannot tell (yet).
    """

    TRUE = "True"
    FALSE = "False"
    UNKNOWN = "Unknown"


class Condition(AlmModel):
    """A standard Kubernetes condition: one aspect of the object's state, with why and since when."""

    type: str = Field(min_length=1, max_length=316)
    """What aspect this condition describes, e.g. Ready, Invalid, RolloutFailed."""
    status: ConditionStatus
    """Whether the condition holds: True, False or Unknown."""
    reason: str = Field(min_length=1, max_length=1024)
    """A CamelCase machine-readable reason for the last transition."""
    message: str = ""
    """A human-readable explanation, saying what to do when something is wrong."""
    last_transition_time: str
    """When the status last changed (RFC 3339); unchanged while the status stays the same."""
    observed_generation: int | None = Field(None, ge=0)
    """The metadata.generation this condition was computed from."""


# --- KPIs and analysis ---------------------------------------------------------------------------


class KPIThresholds(AlmModel):
    """Limits on the five agent KPIs; a version breaching any set limit fails analysis."""

    min_success_rate: float | None = Field(None, ge=0, le=1)
    """Lowest acceptable fraction of tasks that succeed (0..1)."""
    max_latency_seconds: float | None = Field(None, gt=0)
    """Highest acceptable task latency, in seconds, at latencyQuantile."""
    latency_quantile: float = Field(0.95, gt=0, lt=1)
    """Which quantile of task latency maxLatencySeconds applies to (0.95 = p95)."""
    max_cost_per_task_usd: float | None = Field(None, ge=0, alias="maxCostPerTaskUSD")
    """Highest acceptable mean model cost of one task, in US dollars."""
    max_tool_error_rate: float | None = Field(None, ge=0, le=1)
    """Highest acceptable fraction of tool calls that fail (0..1)."""
    min_alignment_score: float | None = Field(None, ge=0, le=1)
    """Lowest acceptable evaluation (alignment) score (0..1)."""


_QUERY_BOUND = CelRule("has(self.min) || has(self.max)", "a custom query needs min or max, otherwise it can never fail")


class CustomQuery(AlmModel):
    """A PromQL query whose (scalar) result must stay within [min, max]."""

    model_config = ConfigDict(json_schema_extra=validations(_QUERY_BOUND))

    name: DNS1123Label
    """Name of the measurement, as shown in analysis results."""
    query: str = Field(min_length=1)
    """PromQL returning one number; {{version}}, {{agent}} and {{namespace}} are substituted."""
    min: float | None = None
    """Lowest acceptable value (inclusive)."""
    max: float | None = None
    """Highest acceptable value (inclusive)."""

    @model_validator(mode="after")
    def _check_rules(self) -> Self:
        _QUERY_BOUND.check(count_set(self.min, self.max) > 0)
        return self


class AnalysisSpec(AlmModel):
    """How a version is judged: measure every interval, stop after too many failures."""

    interval: Duration = "30s"
    """Time between measurements, a duration such as 30s or 1m."""
    failure_limit: int = Field(0, ge=0)
    """Failed measurements tolerated; one more fails the analysis (and rolls back). The default 0
    rolls back on the first failed measurement, as in Argo Rollouts."""
    inconclusive_limit: int = Field(2, ge=0)
    """Inconclusive measurements (no data, query errors) tolerated before the rollout pauses."""
    thresholds: KPIThresholds | None = None
    """KPI limits; when absent, the Agent's spec.kpis apply."""
    queries: list[CustomQuery] = Field(default_factory=list, max_length=32, json_schema_extra=list_map("name"))
    """Extra PromQL checks (needs the prometheus metric provider)."""


# --- Rollout strategy ----------------------------------------------------------------------------


class PauseStep(AlmModel):
    """Wait before the next step."""

    duration: Duration | None = None
    """How long to wait; absent means until resumed by hand (the resume annotation)."""


class StepAnalysis(AlmModel):
    """Measure the canary for a while before the next step."""

    duration: Duration | None = None
    """How long to measure; absent means one measurement interval."""
    thresholds: KPIThresholds | None = None
    """KPI limits for this step; absent means the strategy's, then the Agent's."""
    queries: list[CustomQuery] | None = Field(None, max_length=32, json_schema_extra=list_map("name"))
    """Extra PromQL checks for this step."""


class ApprovalStep(AlmModel):
    """Stop until a human approves (the approve annotation); the approval is audited."""

    message: str | None = None
    """What the approver should check."""
    approvers: list[str] | None = None
    """Users allowed to approve; absent means anyone who may annotate the AgentRollout."""


_ONE_ACTION = _exactly_one_rule("a canary step", "setWeight", "pause", "analysis", "approval")


class CanaryStep(AlmModel):
    """One step of a canary: exactly one of setWeight, pause, analysis or approval."""

    model_config = ConfigDict(json_schema_extra=validations(_ONE_ACTION))

    set_weight: int | None = Field(None, ge=0, le=100)
    """Send this percentage of new sessions to the canary."""
    pause: PauseStep | None = None
    """Wait, for a duration or until resumed."""
    analysis: StepAnalysis | None = None
    """Measure the canary's KPIs before going on."""
    approval: ApprovalStep | None = None
    """Wait for a human approval."""

    @model_validator(mode="after")
    def _check_rules(self) -> Self:
        _ONE_ACTION.check(count_set(self.set_weight, self.pause, self.analysis, self.approval) == 1)
        return self


class CanaryStrategy(AlmModel):
    """Shift traffic to the new version step by step, measuring as it goes."""

    steps: list[CanaryStep] = Field(min_length=1, max_length=64)
    """The steps, in order; reaching the end promotes the new version."""
    analysis: AnalysisSpec | None = None
    """Background analysis running during the whole canary."""


class BlueGreenStrategy(AlmModel):
    """Run the new version beside the old one, then switch all traffic at once."""

    preview_service: bool = True
    """Create a preview Service that reaches only the new version."""
    pre_promotion_analysis: AnalysisSpec | None = None
    """Analysis of the preview before the switch."""
    auto_promotion_seconds: int | None = Field(None, ge=0)
    """Switch automatically this long after the new version is ready; absent waits for promote."""
    scale_down_delay_seconds: int = Field(30, ge=0)
    """Keep the old version this long after the switch, for a quick way back."""


class ShadowRelativeThresholds(AlmModel):
    """Limits on the shadow version compared with the stable one on the same traffic."""

    max_success_rate_drop: float | None = Field(None, ge=0, le=1)
    """Largest acceptable drop of success rate (absolute, 0..1)."""
    max_latency_increase_ratio: float | None = Field(None, ge=0)
    """Largest acceptable latency increase as a ratio (0.2 = 20% slower)."""
    max_cost_increase_ratio: float | None = Field(None, ge=0)
    """Largest acceptable cost-per-task increase as a ratio."""


class ShadowStrategy(AlmModel):
    """Mirror live traffic to the new version without serving its answers.

    Tool calls of a shadow version run in dry-run (recorded and measured, not executed) unless
    the tool is declared readOnly, so a shadow causes no side effects.
    """

    duration: Duration
    """How long to mirror before judging."""
    mirror_percent: int = Field(100, ge=0, le=100)
    """Percentage of requests mirrored to the shadow."""
    analysis: AnalysisSpec | None = None
    """Absolute KPI analysis of the shadow."""
    relative: ShadowRelativeThresholds | None = None
    """Limits relative to the stable version."""


class ParentRef(AlmModel):
    """A Gateway API parent (usually a Gateway) an HTTPRoute attaches to."""

    name: DNS1123Subdomain
    """Name of the Gateway."""
    namespace: DNS1123Label | None = None
    """Namespace of the Gateway; absent means the Agent's namespace."""
    section_name: DNS1123Subdomain | None = None
    """A listener of the Gateway."""


class GatewayAPIRouting(AlmModel):
    """Settings of the Gateway API router."""

    http_route_name: DNS1123Subdomain | None = None
    """Use this existing HTTPRoute (only our backendRefs and filters are patched); absent means the
    operator creates and owns one."""
    parent_refs: list[ParentRef] = Field(default_factory=list)
    """Parents of the HTTPRoute the operator creates."""


TrafficRoutingType = Literal["replicas", "gatewayAPI"]


class TrafficRouting(AlmModel):
    """How traffic is split between versions."""

    type: TrafficRoutingType = "replicas"
    """replicas: the weight is the canary's share of ready pods behind one Service (no mesh, no
    mirroring). gatewayAPI: weighted backendRefs (and RequestMirror) on an HTTPRoute."""
    gateway_api: GatewayAPIRouting | None = Field(None, alias="gatewayAPI")
    """Settings for type gatewayAPI."""


RollbackMode = Literal["stepped", "immediate"]

_ONE_STRATEGY = _exactly_one_rule("a rollout strategy", "canary", "blueGreen", "shadow")


class RolloutStrategy(AlmModel):
    """How a new version replaces the old: exactly one of canary, blueGreen or shadow."""

    model_config = ConfigDict(json_schema_extra=validations(_ONE_STRATEGY))

    canary: CanaryStrategy | None = None
    """Shift traffic step by step."""
    blue_green: BlueGreenStrategy | None = None
    """Switch all traffic at once after a preview."""
    shadow: ShadowStrategy | None = None
    """Mirror traffic to the new version, then promote it if it measures well."""
    traffic_routing: TrafficRouting = TrafficRouting()
    """How traffic is split."""
    rollback: RollbackMode = "stepped"
    """stepped: walk the weight back down; immediate: send everything to stable at once."""

    @model_validator(mode="after")
    def _check_rules(self) -> Self:
        _ONE_STRATEGY.check(count_set(self.canary, self.blue_green, self.shadow) == 1)
        return self
