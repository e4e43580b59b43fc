"""``to_structural``: pydantic JSON schema in, structural Kubernetes schema out, rule by rule."""

from __future__ import annotations

from typing import Any, Literal

import pytest
import yaml
from pydantic import ConfigDict, Field

from alm.api import AlmModel, build_crds, crd_filename, render_crd_yaml
from alm.api.base import CelRule, list_map, validations
from alm.api.crdgen import to_structural
from alm.api.values import KopfState, Quantity


class Inner(AlmModel):
    """Inner type.

    Second paragraph, wrapped
    over two lines.
    """

    model_config = ConfigDict(json_schema_extra=validations(CelRule("has(self.some_value)", "inner rule")))

    some_value: int = Field(3, gt=0, lt=10)
    """A value."""


class Outer(AlmModel):
    """Outer type."""

    inner: Inner = Inner()
    """The field's own description."""
    maybe: Inner | None = Field(None, json_schema_extra=validations(CelRule("true", "field rule")))
    """Optional inner."""
    labels: dict[str, str] | None = None
    """Free labels."""
    mode: Literal["a", "b"] = "a"
    """Mode."""
    items: list[Inner] = Field(default_factory=list, json_schema_extra=list_map("someValue"))
    """Items."""
    size: Quantity | None = None
    """Size."""
    state: KopfState | None = None
    """State."""


def structural() -> dict[str, Any]:
    return to_structural(Outer.model_json_schema(by_alias=True))


def test_refs_are_inlined_and_the_field_description_wins() -> None:
    inner = structural()["properties"]["inner"]
    assert inner["type"] == "object"
    assert inner["description"] == "The field's own description."
    assert "someValue" in inner["properties"]


def test_defaults_of_nested_models_use_wire_names() -> None:
    assert structural()["properties"]["inner"]["default"] == {"someValue": 3}


def test_optional_becomes_plain_and_rules_of_type_and_field_both_apply() -> None:
    maybe = structural()["properties"]["maybe"]
    assert "anyOf" not in maybe and "default" not in maybe and "nullable" not in maybe
    assert maybe["type"] == "object"
    assert [rule["message"] for rule in maybe["x-kubernetes-validations"]] == ["inner rule", "field rule"]


def test_dict_of_strings() -> None:
    assert structural()["properties"]["labels"] == {
        "type": "object",
        "description": "Free labels.",
        "additionalProperties": {"type": "string"},
    }


def test_literal_is_a_string_enum() -> None:
    assert structural()["properties"]["mode"] == {
        "type": "string",
        "description": "Mode.",
        "default": "a",
        "enum": ["a", "b"],
    }


def test_exclusive_bounds_use_openapi_v3_0_booleans() -> None:
    value = structural()["properties"]["inner"]["properties"]["someValue"]
    assert (value["minimum"], value["exclusiveMinimum"], value["maximum"], value["exclusiveMaximum"]) == (
        0,
        True,
        10,
        True,
    )


def test_list_map_markers_are_kept() -> None:
    items = structural()["properties"]["items"]
    assert items["x-kubernetes-list-type"] == "map"
    assert items["x-kubernetes-list-map-keys"] == ["someValue"]
    assert "default" not in items


def test_int_or_string_and_preserve_unknown_fields() -> None:
    properties = structural()["properties"]
    assert properties["size"]["x-kubernetes-int-or-string"] is True
    assert properties["size"]["anyOf"] == [{"type": "integer"}, {"type": "string"}]
    assert properties["state"] == {
        "type": "object",
        "description": "State.",
        "x-kubernetes-preserve-unknown-fields": True,
    }


def test_pydantic_only_keys_are_dropped() -> None:
    text = yaml.safe_dump(structural())
    for key in ("title", "$ref", "$defs", "additionalProperties: false", "null"):
        assert key not in text


def test_key_order_is_type_then_description() -> None:
    inner = structural()["properties"]["inner"]
    assert list(inner)[:3] == ["type", "description", "default"]
    rule = inner["x-kubernetes-validations"][0]
    assert list(rule) == ["rule", "message"]


def test_descriptions_join_wrapped_lines_and_keep_paragraphs_and_bullets() -> None:
    description = to_structural(Inner.model_json_schema(by_alias=True))["description"]
    assert description == "Inner type.\n\nSecond paragraph, wrapped over two lines."
    agent = build_crds()[1]["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    phase = agent["properties"]["status"]["properties"]["phase"]["description"]
    assert phase.startswith("Lifecycle phase of an Agent.\n\n- Pending: accepted, children not ready")


@pytest.mark.parametrize(
    ("kind", "filename"),
    [
        ("AgentVersion", "alm.dev_agentversions.yaml"),
        ("Agent", "alm.dev_agents.yaml"),
        ("AgentRollout", "alm.dev_agentrollouts.yaml"),
        ("AgentRetirement", "alm.dev_agentretirements.yaml"),
    ],
)
def test_crd_filenames(kind: str, filename: str) -> None:
    (crd,) = [crd for crd in build_crds() if crd["spec"]["names"]["kind"] == kind]
    assert crd_filename(crd) == filename


def test_rendered_yaml_writes_multi_line_descriptions_as_blocks() -> None:
    text = render_crd_yaml(build_crds()[1])
    assert text.startswith("# Generated from alm.api")
    assert "description: |" in text
