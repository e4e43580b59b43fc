"""The checked-in CRDs match the models, and are CRDs an API server would accept.

Structural-schema rules follow the Kubernetes docs ("Specifying a structural schema"): every
node has a type (or preserve-unknown-fields / int-or-string), no $ref, no nullable-less nulls,
anyOf only for int-or-string, properties and additionalProperties never together.
"""

from __future__ import annotations

import pathlib
from collections.abc import Iterator
from typing import Any

import celpy
import jsonschema
import kubernetes_validate
import pytest
import yaml

from alm.api import GROUP, KINDS, VERSION, build_crds, crd_filename, render_crd_yaml

ROOT = pathlib.Path(__file__).resolve().parents[2]
CRD_DIR = ROOT / "crds"
CRDS = {crd["spec"]["names"]["kind"]: crd for crd in build_crds()}
REGENERATE = "CRDs drifted from alm.api: regenerate them with `alm crds --output crds` and commit"


def _schema(kind: str) -> dict[str, Any]:
    schema: dict[str, Any] = CRDS[kind]["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return schema


def _nodes(schema: dict[str, Any], path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    yield path, schema
    for name, prop in schema.get("properties", {}).items():
        yield from _nodes(prop, f"{path}.{name}")
    for key in ("items", "additionalProperties"):
        if isinstance(schema.get(key), dict):
            yield from _nodes(schema[key], f"{path}[*]")


# --- Drift ---------------------------------------------------------------------------------------


def test_checked_in_crds_are_exactly_the_generated_ones() -> None:
    expected = {crd_filename(crd): render_crd_yaml(crd) for crd in build_crds()}
    actual = {path.name: path.read_text() for path in CRD_DIR.glob("*.yaml")}
    assert sorted(actual) == sorted(expected), REGENERATE
    for name, text in expected.items():
        assert actual[name] == text, f"{name}: {REGENERATE}"


def test_generation_is_deterministic() -> None:
    assert [render_crd_yaml(crd) for crd in build_crds()] == [render_crd_yaml(crd) for crd in build_crds()]


def test_rendered_yaml_loads_back_to_the_crd() -> None:
    for crd in build_crds():
        assert yaml.safe_load(render_crd_yaml(crd)) == crd


# --- Shape of each CRD ---------------------------------------------------------------------------


@pytest.mark.parametrize("kind", list(KINDS))
def test_crd_is_a_valid_customresourcedefinition(kind: str) -> None:
    """Checked against Kubernetes' own apiextensions.k8s.io/v1 schema, unknown fields refused."""
    kubernetes_validate.validate(CRDS[kind], kubernetes_validate.latest_version(), strict=True)


@pytest.mark.parametrize("kind", list(KINDS))
def test_names_scope_and_version(kind: str) -> None:
    info = KINDS[kind]
    crd = CRDS[kind]
    assert crd["apiVersion"] == "apiextensions.k8s.io/v1"
    assert crd["metadata"]["name"] == f"{info.plural}.{GROUP}"
    assert crd["spec"]["names"] == {
        "kind": kind,
        "listKind": f"{kind}List",
        "plural": info.plural,
        "singular": info.singular,
        "shortNames": list(info.short_names),
        "categories": ["alm"],
    }
    assert crd["spec"]["scope"] == "Namespaced"
    (version,) = crd["spec"]["versions"]
    assert (version["name"], version["served"], version["storage"]) == (VERSION, True, True)
    assert version["subresources"] == {"status": {}}


@pytest.mark.parametrize(
    ("kind", "short_names", "columns"),
    [
        ("AgentVersion", ["agv"], ["Model", "Provider", "Phase", "Hash", "Age"]),
        ("Agent", ["ag"], ["Version", "Stable", "Weight", "Phase", "Age"]),
        ("AgentRollout", ["agr"], ["Agent", "Target", "Step", "Weight", "Phase", "Age"]),
        ("AgentRetirement", ["agret"], ["Agent", "Phase", "Reason", "Age"]),
    ],
)
def test_printer_columns_and_short_names(kind: str, short_names: list[str], columns: list[str]) -> None:
    crd = CRDS[kind]
    assert crd["spec"]["names"]["shortNames"] == short_names
    printed = crd["spec"]["versions"][0]["additionalPrinterColumns"]
    assert [column["name"] for column in printed] == columns
    assert printed[-1] == {
        "name": "Age",
        "type": "date",
        "jsonPath": ".metadata.creationTimestamp",
        "description": "Time since creation.",
    }


@pytest.mark.parametrize("kind", list(KINDS))
def test_printer_columns_point_at_fields_of_their_type(kind: str) -> None:
    nodes = dict(_nodes(_schema(kind)))
    for column in CRDS[kind]["spec"]["versions"][0]["additionalPrinterColumns"]:
        if column["jsonPath"].startswith(".metadata."):
            continue
        node = nodes[column["jsonPath"]]
        assert node["type"] == column["type"], column


@pytest.mark.parametrize("kind", list(KINDS))
def test_top_level_schema(kind: str) -> None:
    schema = _schema(kind)
    assert schema["type"] == "object"
    assert schema["required"] == ["spec"]
    assert list(schema["properties"]) == ["apiVersion", "kind", "metadata", "spec", "status"]
    assert schema["properties"]["metadata"] == {"type": "object"}


@pytest.mark.parametrize("kind", list(KINDS))
def test_status_keeps_kopf_state(kind: str) -> None:
    kopf = _schema(kind)["properties"]["status"]["properties"]["kopf"]
    assert kopf["type"] == "object"
    assert kopf["x-kubernetes-preserve-unknown-fields"] is True


def test_agentversion_spec_is_immutable() -> None:
    spec = _schema("AgentVersion")["properties"]["spec"]
    assert {
        "rule": "self == oldSelf",
        "message": "AgentVersion spec is immutable; create a new AgentVersion instead",
    } in spec["x-kubernetes-validations"]


@pytest.mark.parametrize(
    ("kind", "path", "keys"),
    [
        ("AgentVersion", ".spec.tools", ["name"]),
        ("AgentVersion", ".spec.runtime.env", ["name"]),
        ("AgentVersion", ".status.conditions", ["type"]),
        ("Agent", ".status.conditions", ["type"]),
        ("AgentRollout", ".status.conditions", ["type"]),
        ("AgentRetirement", ".status.conditions", ["type"]),
    ],
)
def test_list_maps(kind: str, path: str, keys: list[str]) -> None:
    node = dict(_nodes(_schema(kind)))[path]
    assert node["x-kubernetes-list-type"] == "map"
    assert node["x-kubernetes-list-map-keys"] == keys


# --- Structural schema ---------------------------------------------------------------------------

_NOT_STRUCTURAL = {"$ref", "$defs", "title", "$schema", "const", "oneOf", "allOf", "not", "uniqueItems"}


def structural_problems(schema: dict[str, Any]) -> list[str]:
    """What keeps a schema from being structural (or from being accepted), one line per problem."""
    problems = []
    for path, node in _nodes(schema):
        problems += [f"{path}: {problem}" for problem in _node_problems(node)]
    return problems


def _node_problems(node: dict[str, Any]) -> Iterator[str]:
    for key in sorted(_NOT_STRUCTURAL & set(node)):
        yield f"has {key}"
    special = node.get("x-kubernetes-preserve-unknown-fields") or node.get("x-kubernetes-int-or-string")
    if "type" not in node and not special:
        yield "no type"
    if "anyOf" in node and node["anyOf"] != [{"type": "integer"}, {"type": "string"}]:
        yield "anyOf other than int-or-string"
    if "properties" in node and "additionalProperties" in node:
        yield "both properties and additionalProperties"
    if node.get("additionalProperties") is False:
        yield "additionalProperties: false"
    for key in ("exclusiveMinimum", "exclusiveMaximum"):
        if not isinstance(node.get(key, True), bool):
            yield f"{key} is not a boolean (OpenAPI v3.0)"
    if not set(node.get("required", [])) <= set(node.get("properties", {})):
        yield "requires an undeclared property"
    for key in node.get("x-kubernetes-list-map-keys", []):
        item = node["items"]
        if key not in item.get("required", []) and "default" not in item["properties"][key]:
            yield f"list-map key {key} is neither required nor defaulted"
    if "default" in node:
        if node["default"] is None:
            yield "default: null"
        elif not jsonschema.Draft4Validator(node).is_valid(node["default"]):
            yield "default does not validate"


@pytest.mark.parametrize("kind", list(KINDS))
def test_schema_is_structural(kind: str) -> None:
    assert structural_problems(_schema(kind)) == []


def test_structural_check_finds_problems() -> None:
    bad = {
        "type": "object",
        "required": ["b"],
        "properties": {
            "a": {"$ref": "#/$defs/A"},
            "n": {"type": "number", "exclusiveMinimum": 0, "default": None},
            "m": {"type": "object", "properties": {}, "additionalProperties": False},
            "i": {"type": "integer", "maximum": 3, "default": 5},
        },
    }
    assert structural_problems(bad) == [
        ": requires an undeclared property",
        ".a: has $ref",
        ".a: no type",
        ".n: exclusiveMinimum is not a boolean (OpenAPI v3.0)",
        ".n: default: null",
        ".m: both properties and additionalProperties",
        ".m: additionalProperties: false",
        ".i: default does not validate",
    ]


@pytest.mark.parametrize("kind", list(KINDS))
def test_every_field_is_described(kind: str) -> None:
    undocumented = [
        path
        for path, node in _nodes(_schema(kind))
        if path.count(".") >= 2 and not path.endswith("[*]") and not node.get("description")
    ]
    assert undocumented == []


# --- CEL -----------------------------------------------------------------------------------------


def _rules(kind: str) -> Iterator[tuple[str, dict[str, Any], dict[str, str]]]:
    for path, node in _nodes(_schema(kind)):
        for rule in node.get("x-kubernetes-validations", []):
            yield path, node, rule


@pytest.mark.parametrize("kind", list(KINDS))
def test_cel_rules_compile(kind: str) -> None:
    environment = celpy.Environment()
    rules = list(_rules(kind))
    assert rules
    for path, _, rule in rules:
        environment.compile(rule["rule"])
        assert rule["message"], path
        assert set(rule) <= {"rule", "message", "fieldPath", "reason"}, path


def test_cel_compilation_rejects_bad_syntax() -> None:
    with pytest.raises(celpy.CELParseError):
        celpy.Environment().compile("has(self.a) ||")


@pytest.mark.parametrize("kind", list(KINDS))
def test_cel_field_paths_and_reasons_exist(kind: str) -> None:
    for path, node, rule in _rules(kind):
        if "fieldPath" in rule:
            assert rule["fieldPath"].lstrip(".") in node["properties"], path
        if "reason" in rule:
            assert rule["reason"] in {"FieldValueRequired", "FieldValueForbidden", "FieldValueInvalid"}, path


@pytest.mark.parametrize("kind", list(KINDS))
def test_cel_rules_on_lists_and_strings_are_bounded(kind: str) -> None:
    """Bounded sizes keep the API server's CEL cost estimate within its budget."""
    for path, node, rule in _rules(kind):
        if node.get("type") == "string":
            assert "maxLength" in node, path
        for name, prop in node.get("properties", {}).items():
            if f"self.{name}.exists" in rule["rule"]:
                assert "maxItems" in prop and "maxLength" in prop["items"], f"{path}.{name}"
        if path.endswith("[*]"):
            parent = dict(_nodes(_schema(kind)))[path[: -len("[*]")]]
            assert "maxItems" in parent, f"{path}: rules in a list need maxItems"
