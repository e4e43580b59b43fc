"""``Agent``: the long-lived identity of an agent.

An Agent names the AgentVersion it should run and everything that outlives a version: replicas,
who owns it and why it exists, its permissions (RBAC), its network egress, how it is exposed,
the default rollout strategy, KPI thresholds, monitoring and budget. The operator creates its
ServiceAccount, Role and RoleBinding, scoped Secret, Deployments, Services, NetworkPolicy, PDB
and HTTPRoute, and reports the KPIs, cost and version history in status.
"""

from __future__ import annotations

import enum
from typing import Annotated, Any, Literal, Self

from pydantic import ConfigDict, Field, model_validator

from alm.api.analysis import KPIThresholds
from alm.api.base import (
    API_VERSION,
    AlmModel,
    CelRule,
    list_map,
    validations,
)
from alm.api.rolloutstrategy import ParentRef, RolloutStrategy
from alm.api.values import (
    Condition,
    DNS1123Label,
    DNS1123Subdomain,
    Duration,
    KopfState,
    SecretKeyRef,
)

__all__ = [
    "Agent",
    "AgentCost",
    "AgentPhase",
    "AgentSpec",
    "AgentStatus",
    "BudgetAction",
    "BudgetSpec",
    "EgressPort",
    "EgressRule",
    "ExposureSpec",
    "HTTPRouteExposure",
    "KPIObservation",
    "MetricProviderSpec",
    "MetricProviderType",
    "MonitoringSpec",
    "MonitoringState",
    "PolicyRule",
    "PrometheusProvider",
    "ServiceAccountSpec",
    "ServiceExposure",
    "ServiceType",
    "VersionHistoryEntry",
]

_RbacName = Annotated[str, Field(min_length=1, max_length=253)]
_CIDR_PATTERN = r"^[0-9a-fA-F:.]+/[0-9]{1,3}$"


# --- Identity and permissions --------------------------------------------------------------------


class ServiceAccountSpec(AlmModel):
    """The Agent's own ServiceAccount."""

    automount_token: bool = False
    """Mount a Kubernetes API token into the pods; only agents that call the API need one."""


_NO_WILDCARD_VERBS = CelRule(
    "!self.verbs.exists(v, v == '*')",
    "agents get least privilege; list verbs explicitly instead of '*'",
    field_path=".verbs",
    reason="FieldValueForbidden",
)
_NO_WILDCARD_RESOURCES = CelRule(
    "!self.resources.exists(r, r == '*')",
    "agents get least privilege; list resources explicitly instead of '*'",
    field_path=".resources",
    reason="FieldValueForbidden",
)


class PolicyRule(AlmModel):
    """One RBAC rule of the Agent's Role, scoped to its namespace. Wildcards are refused."""

    model_config = ConfigDict(json_schema_extra=validations(_NO_WILDCARD_VERBS, _NO_WILDCARD_RESOURCES))

    api_groups: list[Annotated[str, Field(max_length=253)]] = Field(max_length=16)
    """API groups of the resources; "" is the core group."""
    resources: list[_RbacName] = Field(min_length=1, max_length=64)
    """Resources, e.g. configmaps or pods/log."""
    verbs: list[Annotated[str, Field(min_length=1, max_length=63)]] = Field(min_length=1, max_length=16)
    """Verbs, e.g. get, list, watch; '*' is refused."""
    resource_names: list[_RbacName] | None = Field(None, max_length=64)
    """Restrict the rule to these object names."""

    @model_validator(mode="after")
    def _check_rules(self) -> Self:
        _NO_WILDCARD_VERBS.check("*" not in self.verbs)
        _NO_WILDCARD_RESOURCES.check("*" not in self.resources)
        return self


# --- Network -------------------------------------------------------------------------------------


class EgressPort(AlmModel):
    """A destination port."""

    port: int = Field(ge=1, le=65535)
    """Port number."""
    protocol: Literal["TCP", "UDP"] = "TCP"
    """TCP or UDP."""


_EGRESS_HAS_PEER = CelRule(
    "has(self.cidr) || has(self.__namespace__) || has(self.podSelector)",
    "an egress rule needs at least one of cidr, namespace or podSelector",
)
_EGRESS_CIDR_ALONE = CelRule(
    "!has(self.cidr) || (!has(self.__namespace__) && !has(self.podSelector))",
    "cidr cannot be combined with namespace or podSelector; use two egress rules",
)
_EGRESS_EXCEPT_NEEDS_CIDR = CelRule(
    "!has(self.except) || has(self.cidr)",
    "except needs cidr",
    field_path=".except",
    reason="FieldValueForbidden",
)


class EgressRule(AlmModel):
    """One allowed destination: an IP block, or pods selected by namespace and/or labels."""

    model_config = ConfigDict(
        json_schema_extra=validations(_EGRESS_HAS_PEER, _EGRESS_CIDR_ALONE, _EGRESS_EXCEPT_NEEDS_CIDR)
    )

    cidr: str | None = Field(None, pattern=_CIDR_PATTERN, max_length=64)
    """Allowed IP block, e.g. 203.0.113.0/24."""
    except_: list[Annotated[str, Field(pattern=_CIDR_PATTERN, max_length=64)]] | None = Field(
        None, alias="except", max_length=32
    )
    """Blocks excluded from cidr."""
    namespace: DNS1123Label | None = None
    """Allow pods in this namespace (all of them unless podSelector narrows it)."""
    pod_selector: dict[str, str] | None = None
    """Allow pods with these labels (in namespace, or in the Agent's namespace)."""
    ports: list[EgressPort] | None = Field(None, max_length=32)
    """Allowed ports; absent means all ports."""

    @model_validator(mode="after")
    def _check_rules(self) -> Self:
        has_selector = self.namespace is not None or self.pod_selector is not None
        _EGRESS_HAS_PEER.check(self.cidr is not None or has_selector)
        _EGRESS_CIDR_ALONE.check(self.cidr is None or not has_selector)
        _EGRESS_EXCEPT_NEEDS_CIDR.check(self.except_ is None or self.cidr is not None)
        return self


# --- Exposure ------------------------------------------------------------------------------------

ServiceType = Literal["ClusterIP", "NodePort", "LoadBalancer"]


class ServiceExposure(AlmModel):
    """The Service in front of the Agent's pods."""

    type: ServiceType = "ClusterIP"
    """Kubernetes Service type."""
    port: int = Field(80, ge=1, le=65535)
    """Service port (forwarded to the runtime's port)."""


class HTTPRouteExposure(AlmModel):
    """A Gateway API HTTPRoute the operator creates for the Agent."""

    parent_refs: list[ParentRef] = Field(min_length=1, max_length=16)
    """Gateways the route attaches to."""
    hostnames: list[Annotated[str, Field(max_length=253)]] | None = Field(None, max_length=16)
    """Host names the route answers for."""


class ExposureSpec(AlmModel):
    """How clients reach the Agent."""

    service: ServiceExposure = ServiceExposure()
    """The Service (always created)."""
    http_route: HTTPRouteExposure | None = None
    """An optional HTTPRoute in front of the Service."""


# --- Monitoring and budget -----------------------------------------------------------------------


class PrometheusProvider(AlmModel):
    """Where the prometheus metric provider sends PromQL."""

    address: str = Field(pattern=r"^https?://[^\s]+$", max_length=2048)
    """Base URL of the Prometheus HTTP API, e.g. http://prometheus.monitoring:9090."""
    auth_secret_ref: SecretKeyRef | None = None
    """Secret key holding a bearer token for Prometheus."""
    timeout: Duration = "10s"
    """Timeout of one query, a duration such as 10s."""


MetricProviderType = Literal["scrape", "prometheus"]

_PROMETHEUS_NEEDS_CONFIG = CelRule(
    "self.type != 'prometheus' || has(self.prometheus)",
    "a metric provider of type prometheus needs prometheus",
    field_path=".prometheus",
    reason="FieldValueRequired",
)


class MetricProviderSpec(AlmModel):
    """Which MetricProvider measures the KPIs."""

    model_config = ConfigDict(json_schema_extra=validations(_PROMETHEUS_NEEDS_CONFIG))

    type: MetricProviderType = "scrape"
    """scrape: the operator reads the pods' metrics itself; prometheus: PromQL over the HTTP API."""
    prometheus: PrometheusProvider | None = None
    """Settings for type prometheus."""

    @model_validator(mode="after")
    def _check_rules(self) -> Self:
        _PROMETHEUS_NEEDS_CONFIG.check(self.type != "prometheus" or self.prometheus is not None)
        return self


class MonitoringSpec(AlmModel):
    """Continuous KPI monitoring of the stable version."""

    provider: MetricProviderSpec = MetricProviderSpec()
    """How KPIs are measured."""
    interval: Duration = "30s"
    """Time between measurements, a duration such as 30s."""
    consecutive_breaches: int = Field(3, ge=1)
    """Measurements in a row breaching spec.kpis before the Agent becomes Degraded."""


BudgetAction = Literal["alert", "suspend"]


class BudgetSpec(AlmModel):
    """A daily spending limit (UTC days)."""

    tokens_per_day: int | None = Field(None, ge=1)
    """Most model tokens (input + output) per day."""
    usd_per_day: float | None = Field(None, gt=0)
    """Most model cost per day, in US dollars."""
    on_exceeded: BudgetAction = "alert"
    """alert: set the BudgetExceeded condition and emit an event; suspend: also scale to zero until
    the next day."""


# --- Spec, status, object ------------------------------------------------------------------------


class AgentSpec(AlmModel):
    """The desired state of an Agent."""

    version: DNS1123Subdomain
    """Name of the AgentVersion (same namespace) to run; changing it starts a rollout."""
    replicas: int = Field(1, ge=0)
    """Number of agent pods of the stable version."""
    owner: str | None = Field(None, max_length=253)
    """Who answers for this agent (a team or person)."""
    purpose: str | None = None
    """Why this agent exists."""
    service_account: ServiceAccountSpec = ServiceAccountSpec()
    """The Agent's ServiceAccount."""
    permissions: list[PolicyRule] = Field(default_factory=list, max_length=64)
    """RBAC rules of the Agent's Role in its namespace; empty means no API access."""
    egress: list[EgressRule] | None = Field(None, max_length=64)
    """Allowed outbound traffic. Absent: no NetworkPolicy (egress is not restricted). Present
    (even empty): a NetworkPolicy denies all egress except DNS and these rules."""
    exposure: ExposureSpec = ExposureSpec()
    """Service and optional HTTPRoute; by default a ClusterIP Service on port 80."""
    rollout: RolloutStrategy | None = None
    """Strategy of rollouts started by changing version; absent means a default canary."""
    kpis: KPIThresholds | None = None
    """KPI limits for monitoring and for analysis without thresholds of its own."""
    monitoring: MonitoringSpec | None = None
    """How KPIs are measured; absent means scrape every 30s."""
    budget: BudgetSpec | None = None
    """Daily spending limit."""


class AgentPhase(enum.StrEnum):
    """Lifecycle phase of an Agent.

    - Pending: accepted, children not ready yet (or the version is not Ready).
    - Progressing: a rollout is moving traffic to a new version.
    - Available: the stable version serves with enough ready replicas and KPIs within limits.
    - Degraded: too few ready replicas, KPIs breached, or the last rollout failed.
    - Suspended: scaled to zero by the budget (or by hand); resumes by itself or when lifted.
    - Retired: retired by an AgentRetirement; never provisioned again.
    """

    PENDING = "Pending"
    PROGRESSING = "Progressing"
    AVAILABLE = "Available"
    DEGRADED = "Degraded"
    SUSPENDED = "Suspended"
    RETIRED = "Retired"


class KPIObservation(AlmModel):
    """The five KPIs of one version, as last measured."""

    success_rate: float | None = None
    """Fraction of tasks that succeeded."""
    latency_seconds: float | None = None
    """Task latency at the configured quantile, in seconds."""
    cost_per_task_usd: float | None = Field(None, alias="costPerTaskUSD")
    """Mean model cost of one task, in US dollars."""
    tool_error_rate: float | None = None
    """Fraction of tool calls that failed."""
    alignment_score: float | None = None
    """Mean evaluation (alignment) score."""
    observed_at: str | None = None
    """When the measurement was taken (RFC 3339)."""


class AgentCost(AlmModel):
    """Spending of the current budget day."""

    day: str
    """The UTC day counted, YYYY-MM-DD."""
    tokens: int = Field(0, ge=0)
    """Model tokens used that day."""
    usd: float = Field(0, ge=0)
    """Model cost that day, in US dollars."""


class VersionHistoryEntry(AlmModel):
    """One version change of the Agent."""

    version: str
    """The AgentVersion rolled out."""
    promoted_at: str
    """When the rollout finished (RFC 3339)."""
    rollout: str | None = None
    """Name of the AgentRollout that did it."""
    result: str
    """Outcome of the rollout: Succeeded, RolledBack or Aborted."""


class MonitoringState(AlmModel):
    """Bookkeeping of continuous monitoring, kept in status so a restarted operator goes on counting."""

    breaches: dict[str, int] = Field(default_factory=dict)
    """Consecutive measuring intervals in which a version breached a KPI threshold, by version."""


class AgentStatus(AlmModel):
    """What the operator observed about the Agent."""

    # No docstring: the CRD shows the enum's, which documents every phase.
    phase: AgentPhase = AgentPhase.PENDING
    stable_version: str | None = None
    """The version serving most traffic."""
    canary_version: str | None = None
    """The version being rolled out, if any."""
    canary_weight: int = Field(0, ge=0, le=100)
    """Percentage of new sessions sent to the canary."""
    replicas: int = Field(0, ge=0)
    """Agent pods of all versions."""
    ready_replicas: int = Field(0, ge=0)
    """Ready agent pods of all versions."""
    credentials_secret: str | None = None
    """Name of the Agent's scoped Secret (content-hashed)."""
    config_hash: str | None = None
    """Hash of the rendered config of the stable version."""
    conditions: list[Condition] = Field(default_factory=list, json_schema_extra=list_map("type"))
    """Standard conditions (Ready, Invalid, RolloutFailed, KPIBreached, BudgetExceeded, ...)."""
    observed_generation: int | None = Field(None, ge=0)
    """The metadata.generation this status describes."""
    kpis: dict[str, KPIObservation] | None = None
    """Last measured KPIs, by version name."""
    cost: AgentCost | None = None
    """Spending of the current budget day."""
    monitoring: MonitoringState | None = None
    """Consecutive KPI breaches per version (Degraded is raised at spec.monitoring.consecutiveBreaches)."""
    history: list[VersionHistoryEntry] = Field(default_factory=list)
    """Version changes, oldest first."""
    audit_head: str | None = None
    """Hash of the newest entry of the Agent's hash-chained audit log."""
    kopf: KopfState | None = None
    """Progress and diff-base kopf stores in status instead of annotations (GitOps-friendly)."""


class Agent(AlmModel):
    """The long-lived identity of an agent: desired version, permissions, exposure, limits."""

    api_version: Literal["alm.dev/v1alpha1"] = API_VERSION
    """alm.dev/v1alpha1"""
    kind: Literal["Agent"] = "Agent"
    """Agent"""
    metadata: dict[str, Any] = Field(default_factory=dict)
    """Standard object metadata."""
    spec: AgentSpec
    """Desired state."""
    status: AgentStatus | None = None
    """Observed state, written by the operator."""
