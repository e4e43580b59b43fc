"""CustomResourceDefinitions generated from the pydantic models (pure: no file I/O).

The models are the single source of truth. :func:`build_crds` turns each kind's JSON schema
(``model_json_schema(by_alias=True)``) into a *structural* Kubernetes OpenAPI v3 schema:

- ``$ref``/``$defs`` are inlined; a field's own description and rules override or extend those of
  the type it refers to;
- ``Optional[X]`` (``anyOf [X, null]``) becomes plain X: absence, not null, means unset;
- ``title``, ``$schema``, ``additionalProperties: false`` and ``default: null`` are dropped;
- numeric ``exclusiveMinimum: n`` becomes ``minimum: n, exclusiveMinimum: true`` (OpenAPI v3.0);
- CEL rules (``x-kubernetes-validations``) and list-map markers come from the models as they are.

:func:`render_crd_yaml` renders one CRD deterministically; ``alm crds`` writes them to
``crds/<crd_filename>``, and a unit test fails when the checked-in files drift.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

import yaml

from alm.api.base import GROUP, VERSION
from alm.api.kinds import KINDS, KindInfo

__all__ = ["build_crd", "build_crds", "crd_filename", "render_crd_yaml", "to_structural"]

Schema = dict[str, Any]

_DROPPED_KEYS = frozenset({"title", "$schema", "$defs", "examples"})
# Keys first in this order, for readable YAML; anything else follows in the model's order.
_KEY_ORDER = (
    "type",
    "description",
    "default",
    "enum",
    "format",
    "pattern",
    "minimum",
    "exclusiveMinimum",
    "maximum",
    "exclusiveMaximum",
    "minLength",
    "maxLength",
    "minItems",
    "maxItems",
    "required",
)
_RULE_KEY_ORDER = ("rule", "message", "messageExpression", "fieldPath", "reason")


def to_structural(schema: Schema, defs: Mapping[str, Schema] | None = None) -> Schema:
    """Convert one pydantic JSON schema node (with its ``$defs``) to a structural schema node."""
    defs = schema.get("$defs", {}) if defs is None else defs
    node = _flatten(schema, defs)
    out: Schema = {}
    for key, value in node.items():
        if key in _DROPPED_KEYS or (key == "additionalProperties" and value is False):
            continue
        if key == "default" and value is None:
            continue
        if key == "description":
            out[key] = _clean_description(value)
        elif key in ("exclusiveMinimum", "exclusiveMaximum") and not isinstance(value, bool):
            out["minimum" if key == "exclusiveMinimum" else "maximum"] = value
            out[key] = True
        elif key == "default":
            out[key] = _without_nulls(value)
        elif key == "x-kubernetes-validations":
            out[key] = [_ordered(rule, _RULE_KEY_ORDER) for rule in value]
        elif key == "const":
            out["enum"] = [value]
        elif key == "properties":
            out[key] = {name: to_structural(prop, defs) for name, prop in value.items()}
        elif key in ("items", "additionalProperties") and isinstance(value, dict):
            out[key] = to_structural(value, defs)
        else:
            out[key] = copy.deepcopy(value)
    return _ordered(out, _KEY_ORDER)


def _without_nulls(value: Any) -> Any:
    """A default as the API server would store it: unset (None) fields are absent, not null."""
    if isinstance(value, dict):
        return {key: _without_nulls(item) for key, item in value.items() if item is not None}
    if isinstance(value, list):
        return [_without_nulls(item) for item in value]
    return value


def _flatten(node: Schema, defs: Mapping[str, Schema]) -> Schema:
    """Resolve ``$ref``, single ``allOf`` and ``anyOf [X, null]`` into one merged node."""
    node = dict(node)
    if "$ref" in node:
        target = _flatten(defs[node.pop("$ref").rsplit("/", 1)[-1]], defs)
        return _merge(target, node)
    if len(node.get("allOf", ())) == 1:
        return _merge(_flatten(node.pop("allOf")[0], defs), node)
    if "anyOf" in node and not node.get("x-kubernetes-int-or-string"):
        branches = [branch for branch in node["anyOf"] if branch.get("type") != "null"]
        if len(branches) == 1:
            del node["anyOf"]
            return _merge(_flatten(branches[0], defs), node)
    return node


def _merge(base: Schema, overlay: Schema) -> Schema:
    """``overlay`` (the field) wins over ``base`` (its type); CEL rules of both apply."""
    merged = {**base, **overlay}
    rules = base.get("x-kubernetes-validations", []) + overlay.get("x-kubernetes-validations", [])
    if rules:
        merged["x-kubernetes-validations"] = rules
    return merged


def _clean_description(text: str) -> str:
    """Join wrapped docstring lines into one line per paragraph or bullet."""
    lines: list[str] = []
    for raw in text.strip().splitlines():
        line = raw.strip()
        if not line:
            lines.append("")
        elif line.startswith("- ") or not lines or not lines[-1]:
            lines.append(line)
        else:
            lines[-1] = f"{lines[-1]} {line}"
    return "\n".join(lines)


def _ordered(node: Schema, order: tuple[str, ...]) -> Schema:
    first = {key: node[key] for key in order if key in node}
    return {**first, **{key: value for key, value in node.items() if key not in first}}


def _object_schema(info: KindInfo) -> Schema:
    """The openAPIV3Schema of one kind: standard envelope around the generated spec and status."""
    generated = to_structural(info.model.model_json_schema(by_alias=True))
    properties = generated["properties"]
    return {
        "type": "object",
        "description": generated["description"],
        "required": ["spec"],
        "properties": {
            "apiVersion": {
                "type": "string",
                "description": "Versioned schema of this representation of an object.",
            },
            "kind": {"type": "string", "description": "REST resource this object represents."},
            "metadata": {"type": "object"},
            "spec": properties["spec"],
            "status": properties["status"],
        },
    }


def build_crd(info: KindInfo) -> dict[str, Any]:
    """The CustomResourceDefinition (apiextensions.k8s.io/v1) of one kind."""
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": info.crd_name, "labels": {"app.kubernetes.io/part-of": "alm"}},
        "spec": {
            "group": GROUP,
            "names": {
                "kind": info.kind,
                "listKind": info.list_kind,
                "plural": info.plural,
                "singular": info.singular,
                "shortNames": list(info.short_names),
                "categories": list(info.categories),
            },
            "scope": "Namespaced",
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": [column.to_schema() for column in info.printer_columns],
                    "schema": {"openAPIV3Schema": _object_schema(info)},
                }
            ],
        },
    }


def build_crds() -> list[dict[str, Any]]:
    """One CRD per alm kind, in the order of :data:`alm.api.KINDS`."""
    return [build_crd(info) for info in KINDS.values()]


def crd_filename(crd: Mapping[str, Any]) -> str:
    """File name of a CRD in ``crds/``: ``<group>_<plural>.yaml``, e.g. ``alm.dev_agents.yaml``."""
    spec = crd["spec"]
    return f"{spec['group']}_{spec['names']['plural']}.yaml"


class _Dumper(yaml.SafeDumper):
    """Safe dumper writing multi-line strings (descriptions) as literal blocks."""


def _represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _represent_str)


def render_crd_yaml(crd: Mapping[str, Any]) -> str:
    """Deterministic YAML of one CRD (keys in insertion order), with a generated-file header."""
    body = yaml.dump(dict(crd), Dumper=_Dumper, sort_keys=False, width=100, allow_unicode=True)
    return f"# Generated from alm.api by `alm crds`; do not edit.\n---\n{body}"
