"""Condition types, condition reasons and event reasons: named once, used everywhere.

Users alert and script on these strings (``kubectl wait --for=condition=Ready``,
ArgoCD health checks, Prometheus rules on events), so they are part of the API:
change them only with a CHANGELOG entry.
"""

from __future__ import annotations

__all__ = ["Cond", "Reason"]


class Cond:
    """Condition types."""

    READY = "Ready"  # the agent serves traffic at its desired version and replica count
    PROVISIONED = "Provisioned"  # every child object matches the spec
    INVALID = "Invalid"  # the spec cannot be acted on; the message says what to fix
    DEGRADED = "Degraded"  # provisioned, but the workload is not available
    RETIRED = "Retired"  # the Agent was retired; it is never provisioned again


class Reason:
    """Reasons for conditions and Kubernetes Events."""

    # Agent
    PROVISIONED = "Provisioned"
    PROVISIONING = "Provisioning"
    AVAILABLE = "Available"
    ROLLING_OUT = "RollingOut"
    UNAVAILABLE = "DeploymentUnavailable"
    VERSION_NOT_FOUND = "VersionNotFound"
    VERSION_NOT_READY = "VersionNotReady"
    VERSION_INVALID = "VersionInvalid"
    SECRET_NOT_FOUND = "SecretNotFound"
    SECRET_KEY_NOT_FOUND = "SecretKeyNotFound"
    INVALID_SPEC = "InvalidSpec"
    VALID = "Valid"
    SCALED_TO_ZERO = "ScaledToZero"
    RETIRED = "Retired"
    SPEC_IGNORED = "SpecIgnored"
    BUDGET_SUSPENDED = "BudgetSuspended"
    # Events about children
    CREATED = "Created"
    UPDATED = "Updated"
    DELETED = "Deleted"
    # AgentVersion
    VALIDATED = "Validated"
    CONFIG_RENDERED = "ConfigRendered"
