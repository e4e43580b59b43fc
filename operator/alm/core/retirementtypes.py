"""What the AgentRetirement planner and its shell say to each other: observations in, a plan out.

The shell (:mod:`alm.handlers.retirement`) observes the cluster into
:class:`RetirementObservations`, carries out a :class:`RetirementPlan`'s actions and reports
how a webhook call or an archive write went as an :class:`Outcome`; :mod:`alm.core.retirement`
decides. These types and the status vocabulary (``Result``, ``RetirementReason``) are the
contract between the two, kept apart from the phase machine so each side reads one short module
and the decisions can change without touching the interface.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

from alm.core import archive, revocation
from alm.core.auditactions import AuditIntent
from alm.core.events import EventIntent

__all__ = [
    "RETRY_ANNOTATION",
    "WEBHOOK_KIND",
    "Action",
    "CallWebhook",
    "ConsumeRetry",
    "Credential",
    "MarkAgentRetired",
    "Outcome",
    "Result",
    "RetirementObservations",
    "RetirementPlan",
    "RetirementReason",
    "RevokeRBAC",
    "RevokeSecret",
    "RevokeServiceAccount",
    "ScaleToZero",
    "StopTraffic",
    "WriteArchive",
]

Obj = dict[str, Any]

RETRY_ANNOTATION = "alm.dev/retry"
WEBHOOK_KIND = "Webhook"  # status.revoked[].kind of the revocation webhook


class Result:
    """Values of ``status.revoked[].result``."""

    PENDING = "Pending"  # found and recorded (revokedAt: when found); revoked on the next pass
    REVOKED = "Revoked"
    ALREADY_GONE = "AlreadyGone"  # was recorded, then gone before alm deleted it (or after a restart)
    SKIPPED = "Skipped"  # kept because spec.revoke says so
    FAILED = "Failed"  # the webhook gave up; a human can retry


class RetirementReason:
    """Condition and Event reasons of AgentRetirements."""

    INVALID_SPEC = "InvalidSpec"
    AGENT_NOT_FOUND = "AgentNotFound"
    DRAINING = "Draining"
    TRAFFIC_STOPPED = "TrafficStopped"
    SCALED_TO_ZERO = "ScaledToZero"
    REVOKING = "Revoking"
    CREDENTIAL_REVOKED = "CredentialRevoked"
    WEBHOOK_RETRYING = "WebhookRetrying"
    WEBHOOK_FAILED = "WebhookFailed"
    ARCHIVING = "Archiving"
    ARCHIVE_WRITTEN = "ArchiveWritten"
    ARCHIVE_RETRYING = "ArchiveRetrying"
    ARCHIVE_FAILED = "ArchiveFailed"
    RETIRED = "Retired"
    RETRY_REQUESTED = "RetryRequested"


# --- Observations ---------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Credential:
    """A credential-bearing object alm made for the Agent (Secret, ServiceAccount, Role, RoleBinding).

    The shell lists only live ones: an object already being deleted is not passed.
    """

    kind: str
    name: str


@dataclasses.dataclass(frozen=True)
class RetirementObservations:
    name: str  # the AgentRetirement
    namespace: str
    uid: str = ""
    generation: int | None = None
    agent: Mapping[str, Any] | None = None  # the Agent body; None: not found
    serving: bool = False  # a Service or HTTPRoute still sends traffic to the Agent's pods
    replicas: int = 0  # desired replicas over the Agent's Deployments
    ready_replicas: int = 0
    credentials: Sequence[Credential] = ()
    retry_requested: bool = False  # the alm.dev/retry annotation is present
    versions: Sequence[Mapping[str, Any]] = ()  # the Agent's AgentVersions, for the archive
    rollouts: Sequence[Mapping[str, Any]] = ()  # its AgentRollouts
    audit: Sequence[Mapping[str, Any]] = ()  # its audit log (auditstorage.load of the segments)


# --- Actions --------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class StopTraffic:
    """Take the Agent out of its Service selector and HTTPRoute backendRefs."""

    agent: str


@dataclasses.dataclass(frozen=True)
class ScaleToZero:
    """Set every Deployment of the Agent to 0 replicas (the runtime drains on SIGTERM)."""

    agent: str


@dataclasses.dataclass(frozen=True)
class RevokeSecret:
    name: str


@dataclasses.dataclass(frozen=True)
class RevokeServiceAccount:
    """Deleting the ServiceAccount invalidates every token issued for it."""

    name: str


@dataclasses.dataclass(frozen=True)
class RevokeRBAC:
    kind: str  # Role or RoleBinding
    name: str


@dataclasses.dataclass(frozen=True)
class CallWebhook:
    """POST ``body`` to ``url`` with :func:`alm.core.revocation.headers`, keyed with the Secret's value.

    The shell reports the answer with :func:`alm.core.retirement.record_outcome` (``Outcome.of_webhook``).
    """

    attempt: int  # 1-based
    max_attempts: int
    url: str
    name: str  # the endpoint's host, as shown in status.revoked
    secret_name: str
    secret_key: str
    timeout_seconds: int
    delivery: str
    body: bytes


@dataclasses.dataclass(frozen=True)
class WriteArchive:
    """Apply ``objects`` (parts first, manifest last), all immutable and owned by nobody.

    For ``target == "pvc"`` the objects are staging ConfigMaps; the shell copies them onto
    ``claim_name`` with a Job and reports the outcome when the Job is done.
    """

    attempt: int
    target: str
    claim_name: str | None
    location: str
    bundle: archive.Bundle
    objects: tuple[Obj, ...]
    deadline_seconds: int = archive.JOB_DEADLINE_SECONDS

    @property
    def parts(self) -> int:
        return max(1, len(self.objects) - 1)


@dataclasses.dataclass(frozen=True)
class MarkAgentRetired:
    """Set the Agent's ``status.phase`` to Retired; its controller never provisions it again."""

    agent: str


@dataclasses.dataclass(frozen=True)
class ConsumeRetry:
    """Remove the ``alm.dev/retry`` annotation: the command was carried out."""

    annotation: str = RETRY_ANNOTATION


Action = (StopTraffic | ScaleToZero | RevokeSecret | RevokeServiceAccount | RevokeRBAC | CallWebhook
          | WriteArchive | MarkAgentRetired | ConsumeRetry)


@dataclasses.dataclass(frozen=True)
class RetirementPlan:
    """Do ``actions`` in order, then write ``status`` once, post ``events``, append ``audit``."""

    status: Obj
    actions: tuple[Action, ...] = ()
    requeue_after: float | None = None  # seconds until the next look; None: nothing to wait for
    events: tuple[EventIntent, ...] = ()
    audit: tuple[AuditIntent, ...] = ()
    subject: str = ""  # "AgentRetirement/<name>", the audit entries' subject


@dataclasses.dataclass(frozen=True)
class Outcome:
    """How a :class:`CallWebhook` or :class:`WriteArchive` went, reported by the shell."""

    action: CallWebhook | WriteArchive
    ok: bool
    detail: str  # short and credential-free: "HTTP 503", "timed out", "Forbidden"
    retryable: bool = True

    @classmethod
    def of_webhook(cls, action: CallWebhook, result: revocation.WebhookOutcome) -> Outcome:
        return cls(action, result.ok, result.detail, result.retryable)
