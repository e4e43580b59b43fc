"""Small pure helpers: drift, conditions, status patches, names, credentials."""

from __future__ import annotations

from typing import Any

import pytest

from alm.api import AgentVersionSpec
from alm.core import conditions, credentials, naming, statuspatch
from alm.core.drift import covers
from alm.core.problems import Problem
from tests.unit.builders import LATER, NOW, SECRET_B64, version_body


@pytest.mark.parametrize(("live", "desired", "expected"), [
    ({"a": 1, "b": {"c": 2, "x": 0}}, {"b": {"c": 2}}, True),
    ({"a": 1}, {"a": 2}, False),
    ({"a": [1, 2]}, {"a": [1]}, False),
    ({"a": [{"n": 1, "extra": 2}]}, {"a": [{"n": 1}]}, True),
    ({}, {"a": None}, False),
    ({"a": True}, {"a": 1}, False),
    ({"a": 1.0}, {"a": 1}, True),
    ({"a": "1"}, {"a": 1}, False),
    ({"a": {}}, {"a": {}}, True),
    ([], {}, False),
])
def test_covers(live: Any, desired: Any, expected: bool) -> None:
    assert covers(live, desired) is expected


def test_conditions_keep_their_transition_time_while_status_holds() -> None:
    first = conditions.merge_conditions(None, [conditions.condition("Ready", False, "A", "a")], now=NOW)
    same = conditions.merge_conditions(first, [conditions.condition("Ready", False, "B", "b")], now=LATER)
    flipped = conditions.merge_conditions(same, [conditions.condition("Ready", True, "C", "c")], now=LATER)
    assert same[0]["lastTransitionTime"] == NOW and same[0]["reason"] == "B"
    assert flipped[0]["lastTransitionTime"] == LATER


@pytest.mark.parametrize(("current", "desired", "expected"), [
    ({"phase": "A"}, {"phase": "A"}, None),
    ({"phase": "A"}, {"phase": "B"}, {"phase": "B"}),
    ({"phase": "A", "stableVersion": "v1"}, {"phase": "A"}, {"stableVersion": None}),
    ({"phase": "A", "kopf": {"x": 1}}, {"phase": "A"}, None),  # not ours: untouched
    (None, {"phase": "A"}, {"phase": "A"}),
])
def test_status_patch(current: Any, desired: dict[str, Any], expected: Any) -> None:
    assert statuspatch.status_patch(current, desired, ["phase", "stableVersion"]) == expected


@pytest.mark.parametrize("name", ["a", "x" * 63, "y" * 64, "z" * 253])
def test_label_values_fit_and_stay_unique(name: str) -> None:
    value = naming.label_value(name)
    assert len(value) <= 63
    assert value == name if len(name) <= 63 else value != naming.label_value(name[:-1] + "q")


def test_deployment_names_leave_room_for_pod_suffixes() -> None:
    assert len(naming.deployment_name("a" * 100, "v" * 100)) <= 46


def test_credentials_are_generated_once_and_carried_over() -> None:
    spec = AgentVersionSpec.model_validate({
        **version_body()["spec"],
        "tools": [{"name": "gen", "type": "http", "endpoint": "https://x.example.com",
                   "credentials": {"generate": {"length": 20}}}],
    })
    calls: list[int] = []

    def gen(n: int) -> str:
        calls.append(n)
        return "g" * n

    first = credentials.resolve("v", spec, {}, None, gen)
    assert calls == [credentials.TOKEN_LENGTH, 20]
    again = credentials.resolve("v", spec, {}, first.data, gen)
    assert again.data == first.data and again.content_hash == first.content_hash
    assert len(calls) == 2


def test_referenced_secrets_reads_raw_specs_even_when_invalid() -> None:
    raw = {"tools": [{"credentials": {"secretRef": {"name": "b"}}}, {"credentials": {"secretRef": {"name": "a"}}},
                     None, {"credentials": {"generate": {}}}]}
    assert credentials.referenced_secrets(raw) == ["a", "b"]
    assert credentials.referenced_secrets(None) == []


def test_problem_is_a_value() -> None:
    assert Problem("R", "m") == Problem("R", "m", False)
    assert SECRET_B64
