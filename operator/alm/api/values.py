"""Small value types shared by the alm kinds: durations, names, quantities, references, conditions.

Why a module: these are the field types every kind reuses (a Go-style :data:`Duration` with
:func:`parse_duration`, DNS-1123 names, resource quantities, same-namespace references, the
standard Kubernetes :class:`Condition`); they carry no behaviour of their own beyond parsing and
validation, so they live apart from the kinds and from the rollout settings built on them.
"""

from __future__ import annotations

import enum
import re
from typing import Annotated, Any

from pydantic import AfterValidator, BeforeValidator, Field, WithJsonSchema

from alm.api.base import AlmModel, CelRule, validations

__all__ = [
    "DURATION_PATTERN",
    "Condition",
    "ConditionStatus",
    "ConfigMapKeyRef",
    "DNS1123Label",
    "DNS1123Subdomain",
    "Duration",
    "KopfState",
    "LocalObjectRef",
    "Quantity",
    "SecretKeyRef",
    "parse_duration",
]

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
