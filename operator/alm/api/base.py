"""The base of every alm API type and the CEL rules they declare.

Why a module: every kind and every shared type derives from :class:`AlmModel` (camelCase on the
wire, frozen, unknown fields rejected, field docstrings as CRD descriptions) and states its
validation rules as :class:`CelRule` values; this is that authoring machinery, with the API's
group and version, apart from the data types built on it.

A CEL rule is declared once. The model attaches it to its JSON schema
(``x-kubernetes-validations``, so ``kubectl apply`` enforces it) and calls :meth:`CelRule.check`
from a pydantic validator (so the operator enforces the same rule with the same message when it
parses an object). :mod:`alm.api.crdgen` turns the schema into a CRD.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Final, Self

from pydantic import BaseModel, ConfigDict, model_validator
from pydantic.alias_generators import to_camel

__all__ = [
    "API_VERSION",
    "CATEGORIES",
    "GROUP",
    "VERSION",
    "AlmModel",
    "CelRule",
    "count_set",
    "list_map",
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
