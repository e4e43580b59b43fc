"""``AgentVersion``: an immutable snapshot of one agent build.

A version fixes everything that decides how an agent behaves: the model and its parameters, the
instructions, the tools (and where their credentials come from), the runtime image and the
memory policy. The operator renders it into a content-hashed ConfigMap that Deployments of the
version mount. The spec cannot change after creation (a CEL transition rule); a change is a new
AgentVersion, so every rollout compares two fixed things.
"""

from __future__ import annotations

import enum
from typing import Any, Literal, Self

from pydantic import ConfigDict, Field, model_validator

from alm.api.base import (
    API_VERSION,
    AlmModel,
    CelRule,
    count_set,
    list_map,
    validations,
)
from alm.api.values import (
    Condition,
    ConfigMapKeyRef,
    DNS1123Label,
    KopfState,
    Quantity,
    SecretKeyRef,
)

__all__ = [
    "AgentVersion",
    "AgentVersionPhase",
    "AgentVersionSpec",
    "AgentVersionStatus",
    "EnvVar",
    "EvaluationResult",
    "EvaluationSpec",
    "GeneratedCredential",
    "GoldenSet",
    "MemoryMigration",
    "MemorySpec",
    "MemoryStore",
    "MemoryStoreType",
    "ModelParameters",
    "ModelPricing",
    "ModelSpec",
    "ResourceRequirements",
    "RuntimeSpec",
    "ToolCredentials",
    "ToolSpec",
    "ToolType",
]

_URL_PATTERN = r"^https?://[^\s/$.?#][^\s]*$"
_PATH_PATTERN = r"^/[^\s]*$"


# --- Model ---------------------------------------------------------------------------------------


class ModelParameters(AlmModel):
    """Sampling parameters passed to the model provider."""

    temperature: float | None = Field(None, ge=0, le=2)
    """Sampling temperature (0..2); absent means the provider's default."""
    top_p: float | None = Field(None, ge=0, le=1)
    """Nucleus sampling probability mass (0..1)."""
    max_output_tokens: int | None = Field(None, ge=1)
    """Upper bound on tokens generated per model call."""
    extra: dict[str, str] | None = None
    """Provider-specific parameters, passed through as strings."""


class ModelPricing(AlmModel):
    """Prices used to turn token counts into cost (the cost KPI and the budget)."""

    input_per_million_tokens_usd: float = Field(0, ge=0, alias="inputPerMillionTokensUSD")
    """US dollars per million input (prompt) tokens."""
    output_per_million_tokens_usd: float = Field(0, ge=0, alias="outputPerMillionTokensUSD")
    """US dollars per million output (completion) tokens."""


class ModelSpec(AlmModel):
    """Which model the agent thinks with."""

    provider: str = Field(min_length=1, max_length=63)
    """Model provider known to the runtime, e.g. openai, anthropic, or simulated for tests."""
    name: str = Field(min_length=1, max_length=253)
    """Model name at the provider."""
    parameters: ModelParameters = ModelParameters()
    """Sampling parameters."""
    pricing: ModelPricing = ModelPricing()
    """Token prices for cost accounting."""


# --- Tools ---------------------------------------------------------------------------------------


class GeneratedCredential(AlmModel):
    """Let the operator generate a random credential into the Agent's scoped Secret."""

    length: int = Field(32, ge=16, le=256)
    """Number of random characters."""


_ONE_CREDENTIAL = CelRule(
    "[has(self.secretRef), has(self.generate)].exists_one(x, x)",
    "credentials must set exactly one of secretRef or generate",
)


class ToolCredentials(AlmModel):
    """Where a tool's credential comes from: exactly one of secretRef or generate.

    The credential is copied into the Agent's own Secret and mounted as a file, never put in env,
    logs, events or status; it is revoked when the Agent retires.
    """

    model_config = ConfigDict(json_schema_extra=validations(_ONE_CREDENTIAL))

    secret_ref: SecretKeyRef | None = None
    """Take the credential from this Secret key."""
    generate: GeneratedCredential | None = None
    """Generate a random credential."""

    @model_validator(mode="after")
    def _check_rules(self) -> Self:
        _ONE_CREDENTIAL.check(count_set(self.secret_ref, self.generate) == 1)
        return self


ToolType = Literal["http", "mcp"]

_HTTP_NEEDS_ENDPOINT = CelRule(
    "self.type != 'http' || has(self.endpoint)",
    "a tool of type http needs endpoint",
    field_path=".endpoint",
    reason="FieldValueRequired",
)
_MCP_NEEDS_URL = CelRule(
    "self.type != 'mcp' || has(self.mcpUrl)",
    "a tool of type mcp needs mcpUrl",
    field_path=".mcpUrl",
    reason="FieldValueRequired",
)


class ToolSpec(AlmModel):
    """A tool the agent may call: a plain HTTP endpoint or an MCP server."""

    model_config = ConfigDict(json_schema_extra=validations(_HTTP_NEEDS_ENDPOINT, _MCP_NEEDS_URL))

    name: DNS1123Label
    """Name of the tool, unique within the version."""
    description: str | None = None
    """What the tool does, as shown to the model."""
    type: ToolType
    """http: call endpoint; mcp: connect to the MCP server at mcpUrl."""
    endpoint: str | None = Field(None, pattern=_URL_PATTERN, max_length=2048)
    """URL of an http tool."""
    mcp_url: str | None = Field(None, pattern=_URL_PATTERN, max_length=2048)
    """URL of an MCP server (streamable HTTP or SSE)."""
    read_only: bool = False
    """The tool has no side effects, so a shadow version may really call it (others run dry)."""
    credentials: ToolCredentials | None = None
    """Credential the runtime presents to the tool."""

    @model_validator(mode="after")
    def _check_rules(self) -> Self:
        _HTTP_NEEDS_ENDPOINT.check(self.type != "http" or self.endpoint is not None)
        _MCP_NEEDS_URL.check(self.type != "mcp" or self.mcp_url is not None)
        return self


# --- Runtime -------------------------------------------------------------------------------------


class EnvVar(AlmModel):
    """A plain environment variable; credentials are files, so there is no valueFrom."""

    name: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$", max_length=253)
    """Variable name (a C identifier)."""
    value: str = ""
    """Variable value."""


class ResourceRequirements(AlmModel):
    """Compute resources of each agent container, as in a Pod spec."""

    requests: dict[str, Quantity] | None = None
    """Guaranteed resources, e.g. cpu: 100m, memory: 256Mi."""
    limits: dict[str, Quantity] | None = None
    """Resource ceilings."""


class RuntimeSpec(AlmModel):
    """The container that runs the agent, and the endpoints the operator probes and scrapes."""

    image: str = Field(min_length=1, max_length=1024)
    """Container image of the agent runtime."""
    command: list[str] | None = None
    """Entrypoint override."""
    args: list[str] | None = None
    """Arguments to the entrypoint."""
    env: list[EnvVar] | None = Field(None, max_length=128, json_schema_extra=list_map("name"))
    """Plain environment variables (never credentials)."""
    resources: ResourceRequirements | None = None
    """CPU and memory requests and limits."""
    port: int = Field(8080, ge=1, le=65535)
    """Port the runtime serves tasks, probes and metrics on."""
    health_path: str = Field("/healthz", pattern=_PATH_PATTERN)
    """HTTP path of the liveness probe."""
    ready_path: str = Field("/readyz", pattern=_PATH_PATTERN)
    """HTTP path of the readiness probe."""
    metrics_path: str = Field("/metrics", pattern=_PATH_PATTERN)
    """HTTP path of the Prometheus metrics."""


# --- Memory --------------------------------------------------------------------------------------

MemoryStoreType = Literal["none", "configMap", "pvc", "redis", "external"]
MemoryMigration = Literal["inherit", "fresh", "archiveThenFresh"]

_STORE_NEEDS_URI = CelRule(
    "!(self.type in ['redis', 'external']) || has(self.uri)",
    "a memory store of type redis or external needs uri",
    field_path=".uri",
    reason="FieldValueRequired",
)


class MemoryStore(AlmModel):
    """Where the agent keeps long-term memory."""

    model_config = ConfigDict(json_schema_extra=validations(_STORE_NEEDS_URI))

    type: MemoryStoreType = "none"
    """none: stateless; configMap or pvc: managed by the operator; redis or external: at uri."""
    uri: str | None = Field(None, max_length=2048)
    """Address of a redis or external store."""
    size: Quantity | None = None
    """Size of a pvc store, e.g. 1Gi."""

    @model_validator(mode="after")
    def _check_rules(self) -> Self:
        _STORE_NEEDS_URI.check(self.type not in ("redis", "external") or self.uri is not None)
        return self


class MemorySpec(AlmModel):
    """The version's memory and what happens to the previous version's memory on rollout."""

    store: MemoryStore = MemoryStore()
    """The memory store."""
    migration: MemoryMigration = "inherit"
    """inherit: keep using the previous memory; fresh: start empty; archiveThenFresh: archive the
    previous memory, then start empty."""


# --- Evaluation ----------------------------------------------------------------------------------


class GoldenSet(AlmModel):
    """Reference tasks with expected answers."""

    config_map_ref: ConfigMapKeyRef
    """ConfigMap key holding the golden set (JSON lines of task and expectation)."""


class EvaluationSpec(AlmModel):
    """Offline evaluation run before the version may serve traffic."""

    golden_set: GoldenSet
    """The reference tasks."""
    minimum_score: float = Field(ge=0, le=1)
    """Lowest acceptable score (0..1); below it the version is Invalid."""


# --- Spec, status, object ------------------------------------------------------------------------


class AgentVersionSpec(AlmModel):
    """Everything that decides an agent's behaviour; immutable once created."""

    model: ModelSpec
    """The model, its parameters and prices."""
    instructions: str = Field(min_length=1)
    """The system instructions (prompt) of the agent."""
    tools: list[ToolSpec] = Field(default_factory=list, max_length=64, json_schema_extra=list_map("name"))
    """Tools the agent may call."""
    runtime: RuntimeSpec
    """The container that runs the agent."""
    memory: MemorySpec | None = None
    """Long-term memory; absent means stateless."""
    evaluation: EvaluationSpec | None = None
    """Offline evaluation gate."""


class AgentVersionPhase(enum.StrEnum):
    """Lifecycle phase of an AgentVersion.

    - Pending: not yet validated (or evaluation still running).
    - Ready: validated, config rendered, evaluation (if any) passed; Agents may use it.
    - Invalid: the spec or its evaluation failed; see the Invalid condition for what to fix.
    """

    PENDING = "Pending"
    READY = "Ready"
    INVALID = "Invalid"


class EvaluationResult(AlmModel):
    """Outcome of the offline evaluation."""

    score: float | None = Field(None, ge=0, le=1)
    """Score on the golden set (0..1)."""
    passed: bool | None = None
    """Whether the score reached minimumScore."""
    evaluated_at: str | None = None
    """When the evaluation finished (RFC 3339)."""


class AgentVersionStatus(AlmModel):
    """What the operator observed about the version."""

    # No docstring: the CRD shows the enum's, which documents every phase.
    phase: AgentVersionPhase = AgentVersionPhase.PENDING
    spec_hash: str | None = None
    """Content hash of the spec; names the rendered ConfigMap."""
    config_map_name: str | None = None
    """Name of the ConfigMap holding the rendered config."""
    evaluation: EvaluationResult | None = None
    """Offline evaluation result."""
    conditions: list[Condition] = Field(default_factory=list, json_schema_extra=list_map("type"))
    """Standard conditions (Ready, Invalid)."""
    observed_generation: int | None = Field(None, ge=0)
    """The metadata.generation this status describes."""
    kopf: KopfState | None = None
    """Progress and diff-base kopf stores in status instead of annotations (GitOps-friendly)."""


_IMMUTABLE_SPEC = CelRule("self == oldSelf", "AgentVersion spec is immutable; create a new AgentVersion instead")


class AgentVersion(AlmModel):
    """An immutable snapshot of one agent build: model, instructions, tools, runtime, memory."""

    api_version: Literal["alm.dev/v1alpha1"] = API_VERSION
    """alm.dev/v1alpha1"""
    kind: Literal["AgentVersion"] = "AgentVersion"
    """AgentVersion"""
    metadata: dict[str, Any] = Field(default_factory=dict)
    """Standard object metadata."""
    spec: AgentVersionSpec = Field(json_schema_extra=validations(_IMMUTABLE_SPEC))
    """The version's definition; immutable."""
    status: AgentVersionStatus | None = None
    """Observed state, written by the operator."""
