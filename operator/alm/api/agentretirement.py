"""``AgentRetirement``: the end of an Agent.

Retiring drains the Agent's pods, revokes every credential it held (its Secrets, its
ServiceAccount and tokens, its RBAC, and upstream keys through an optional webhook), archives
its audit log, history and memory, and marks the Agent Retired for good.
"""

from __future__ import annotations

import enum
from typing import Any, Literal, Self

from pydantic import ConfigDict, Field, model_validator

from alm.api.base import (
    API_VERSION,
    AlmModel,
    CelRule,
    list_map,
    validations,
)
from alm.api.values import (
    Condition,
    DNS1123Subdomain,
    KopfState,
    LocalObjectRef,
    SecretKeyRef,
)

__all__ = [
    "AgentRetirement",
    "AgentRetirementPhase",
    "AgentRetirementSpec",
    "AgentRetirementStatus",
    "ArchiveResult",
    "ArchiveSpec",
    "ArchiveTarget",
    "DrainSpec",
    "PhaseTransition",
    "RevocationWebhook",
    "RevokeSpec",
    "RevokedCredential",
    "StepAttempts",
]


class DrainSpec(AlmModel):
    """How the Agent stops serving."""

    grace_period_seconds: int = Field(30, ge=0)
    """Time given to running tasks to finish after the Agent stops taking new ones."""


ArchiveTarget = Literal["configMap", "secret", "pvc"]

_PVC_NEEDS_CLAIM = CelRule(
    "self.to != 'pvc' || has(self.claimName)",
    "archiving to a pvc needs claimName",
    field_path=".claimName",
    reason="FieldValueRequired",
)


class ArchiveSpec(AlmModel):
    """Where the audit log, history and memory go."""

    model_config = ConfigDict(json_schema_extra=validations(_PVC_NEEDS_CLAIM))

    to: ArchiveTarget = "configMap"
    """configMap or secret (split into parts when large), or pvc."""
    claim_name: DNS1123Subdomain | None = None
    """The PersistentVolumeClaim to write to, for to: pvc."""
    job_deadline_seconds: int = Field(600, ge=1, le=86400)
    """For to: pvc, how long the copy Job may run, pending pod included (its activeDeadlineSeconds),
    before it counts as a failed attempt: a Job that cannot start (missing claim, image pull, quota)
    is retried and, after the last attempt, fails the retirement instead of waiting forever."""

    @model_validator(mode="after")
    def _check_rules(self) -> Self:
        _PVC_NEEDS_CLAIM.check(self.to != "pvc" or self.claim_name is not None)
        return self


class RevocationWebhook(AlmModel):
    """An external endpoint told to revoke upstream keys (model provider, tool APIs)."""

    url: str = Field(pattern=r"^https?://[^\s]+$", max_length=2048)
    """URL receiving a POST with the Agent and its credentials' identifiers (never values)."""
    hmac_secret_ref: SecretKeyRef
    """Secret key used to sign the request body (HMAC-SHA256)."""
    timeout_seconds: int = Field(10, ge=1, le=300)
    """Timeout of one attempt."""
    max_retries: int = Field(5, ge=0, le=100)
    """Retries (with backoff) before the retirement fails."""


class RevokeSpec(AlmModel):
    """What to revoke."""

    secrets: bool = True
    """Delete the Agent's scoped Secrets."""
    service_account: bool = True
    """Delete the Agent's ServiceAccount (which invalidates its tokens)."""
    rbac: bool = True
    """Delete the Agent's Role and RoleBinding."""
    webhook: RevocationWebhook | None = None
    """Call this webhook to revoke upstream keys."""


class AgentRetirementSpec(AlmModel):
    """Which Agent retires, why, and how."""

    agent_ref: LocalObjectRef
    """The Agent (same namespace)."""
    reason: str = Field(min_length=1)
    """Why the Agent retires (kept in the audit log)."""
    drain: DrainSpec = DrainSpec()
    """How the Agent stops serving."""
    archive: ArchiveSpec = ArchiveSpec()
    """Where the archive goes."""
    revoke: RevokeSpec = RevokeSpec()
    """What to revoke."""


class AgentRetirementPhase(enum.StrEnum):
    """Lifecycle phase of an AgentRetirement.

    - Pending: accepted, not started.
    - Draining: the Agent takes no new tasks; running ones finish within the grace period.
    - Revoking: credentials are being revoked.
    - Archiving: audit log, history and memory are being archived.
    - Retired: done; the Agent is never provisioned again.
    - Failed: a step failed after its retries; the message says which and what to do.
    """

    PENDING = "Pending"
    DRAINING = "Draining"
    REVOKING = "Revoking"
    ARCHIVING = "Archiving"
    RETIRED = "Retired"
    FAILED = "Failed"


class PhaseTransition(AlmModel):
    """When the retirement entered a phase."""

    phase: AgentRetirementPhase
    """The phase entered."""
    at: str
    """When (RFC 3339)."""


class RevokedCredential(AlmModel):
    """One revoked credential."""

    kind: str
    """Kind of the revoked object (Secret, ServiceAccount, Role, RoleBinding, Webhook)."""
    name: str
    """Its name."""
    revoked_at: str
    """When (RFC 3339)."""
    result: str
    """Pending (recorded, to be revoked on the next pass), Revoked, AlreadyGone (gone before alm deleted it),
    Skipped (kept because spec.revoke says so) or Failed (the webhook gave up; annotate alm.dev/retry)."""


class ArchiveResult(AlmModel):
    """Where the archive is and how to verify it."""

    location: str
    """Where the archive was written, e.g. configmap/support-bot-archive."""
    sha256: str = Field(pattern=r"^[a-f0-9]{64}$")
    """SHA-256 of the whole archive."""
    size_bytes: int = Field(ge=0)
    """Size of the archive."""
    parts: int = Field(1, ge=1)
    """Number of objects the archive is split into."""


class StepAttempts(AlmModel):
    """Attempts of a step that is retried with backoff (the revocation webhook, the archive write)."""

    count: int = Field(ge=0)
    """Attempts made so far."""
    last_at: str
    """When the last attempt was made (RFC 3339)."""
    last_result: str
    """What the last attempt returned, e.g. HTTP 503 or timed out (never a credential)."""
    retryable: bool
    """Whether another attempt can help; false once the step succeeded or was refused for good."""


class AgentRetirementStatus(AlmModel):
    """Progress of the retirement."""

    # No docstring: the CRD shows the enum's, which documents every phase.
    phase: AgentRetirementPhase = AgentRetirementPhase.PENDING
    transitions: list[PhaseTransition] = Field(default_factory=list)
    """Phases entered, oldest first."""
    revoked: list[RevokedCredential] = Field(default_factory=list)
    """Credentials revoked."""
    archive: ArchiveResult | None = None
    """The archive written."""
    attempts: dict[str, StepAttempts] | None = None
    """Attempts of the retried steps, by step: webhook, archive."""
    message: str | None = None
    """What is happening, or what failed and what to do."""
    conditions: list[Condition] = Field(default_factory=list, json_schema_extra=list_map("type"))
    """Standard conditions."""
    observed_generation: int | None = Field(None, ge=0)
    """The metadata.generation this status describes."""
    kopf: KopfState | None = None
    """Progress and diff-base kopf stores in status instead of annotations (GitOps-friendly)."""


class AgentRetirement(AlmModel):
    """The end of an Agent: drain, revoke every credential, archive, retire for good."""

    api_version: Literal["alm.dev/v1alpha1"] = API_VERSION
    """alm.dev/v1alpha1"""
    kind: Literal["AgentRetirement"] = "AgentRetirement"
    """AgentRetirement"""
    metadata: dict[str, Any] = Field(default_factory=dict)
    """Standard object metadata."""
    spec: AgentRetirementSpec
    """Which Agent, why, and how."""
    status: AgentRetirementStatus | None = None
    """Observed state, written by the operator."""
