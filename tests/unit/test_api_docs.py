"""The API documents itself: exports are complete, every model, field and enum value says why."""

from __future__ import annotations

import enum
import importlib
import inspect

import pydantic
import pytest

import alm.api as api

# Helpers for writing the models and the generator, reachable through their modules only.
AUTHORING_HELPERS = {"count_set", "list_map", "validations", "to_structural"}
MODULES = [
    "base", "values", "analysis", "rolloutstrategy",
    "agentversion", "agent", "agentrollout", "agentretirement", "kinds", "crdgen",
]


def _public_models() -> list[type[pydantic.BaseModel]]:
    return [
        value
        for value in vars(api).values()
        if inspect.isclass(value) and issubclass(value, pydantic.BaseModel) and value is not api.AlmModel
    ]


def _enums() -> list[type[enum.Enum]]:
    return [value for value in vars(api).values() if inspect.isclass(value) and issubclass(value, enum.Enum)]


@pytest.mark.parametrize("module", MODULES)
def test_package_reexports_every_public_name(module: str) -> None:
    names = importlib.import_module(f"alm.api.{module}").__all__
    missing = sorted(set(names) - set(api.__all__) - AUTHORING_HELPERS)
    assert missing == []


def test_all_lists_only_existing_names() -> None:
    assert [name for name in api.__all__ if not hasattr(api, name)] == []
    assert len(set(api.__all__)) == len(api.__all__)


@pytest.mark.parametrize("model", _public_models(), ids=lambda model: model.__name__)
def test_every_model_and_field_is_documented(model: type[pydantic.BaseModel]) -> None:
    assert model.__doc__ and model.__doc__.strip(), model.__name__
    schema = model.model_json_schema(by_alias=True)
    assert schema.get("description")
    undocumented = [
        name
        for name, prop in schema.get("properties", {}).items()
        if not prop.get("description") and "$ref" not in prop and "allOf" not in prop
    ]
    assert undocumented == []


@pytest.mark.parametrize("model", _public_models(), ids=lambda model: model.__name__)
def test_every_model_follows_the_conventions(model: type[pydantic.BaseModel]) -> None:
    config = model.model_config
    assert config.get("frozen") is True
    assert config.get("extra") == "forbid"
    assert config.get("populate_by_name") is True


@pytest.mark.parametrize("enum_type", _enums(), ids=lambda enum_type: enum_type.__name__)
def test_every_enum_value_is_documented(enum_type: type[enum.Enum]) -> None:
    assert issubclass(enum_type, str)
    doc = enum_type.__doc__ or ""
    assert [member.value for member in enum_type if f"- {member.value}:" not in doc] == []
