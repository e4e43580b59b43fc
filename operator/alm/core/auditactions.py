"""The audit vocabulary: what an audit entry can record, and how a planner asks for one.

Why a module: the pure planners (rollouts, budget, retirement) only say *what* happened, as
:class:`AuditIntent` values naming an :class:`AuditAction`; they need neither the hash chain
(:mod:`alm.core.auditchain`) nor its storage (:mod:`alm.core.auditstorage`). The action names
are a public contract: users filter and alert on them.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Mapping
from typing import Any

__all__ = [
    "OPERATOR_ACTOR",
    "AuditAction",
    "AuditIntent",
]

OPERATOR_ACTOR = "alm-operator"


class AuditAction(enum.StrEnum):
    """What an entry records. Users filter and alert on these: change only with a CHANGELOG entry."""

    CREATED = "created"
    VERSION_PUBLISHED = "versionPublished"
    PROVISIONED = "provisioned"
    ROLLOUT_STARTED = "rolloutStarted"
    ROLLOUT_STEP = "rolloutStep"
    ANALYSIS_VERDICT = "analysisVerdict"
    APPROVED = "approved"
    PROMOTED = "promoted"
    ROLLED_BACK = "rolledBack"
    BUDGET_EXCEEDED = "budgetExceeded"
    BUDGET_SUSPENDED = "budgetSuspended"
    BUDGET_RESTORED = "budgetRestored"
    RETIREMENT_DRAINING = "retirementDraining"
    RETIREMENT_REVOKING = "retirementRevoking"
    CREDENTIAL_REVOKED = "credentialRevoked"
    WEBHOOK_CALLED = "revocationWebhookCalled"
    RETIREMENT_ARCHIVING = "retirementArchiving"
    RETIRED = "retired"
    RETIREMENT_FAILED = "retirementFailed"
    MANUAL_OVERRIDE = "manualOverride"
    DELETED = "deleted"


@dataclasses.dataclass(frozen=True)
class AuditIntent:
    """An entry a planner wants appended; the handler adds ``at`` and the chain fields."""

    action: str
    subject: str
    details: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    actor: str = OPERATOR_ACTOR
