"""The AgentVersion planner: validation, hashing, the rendered ConfigMap."""

from __future__ import annotations

import json
from typing import Any

import pytest

from alm.core.versionplan import plan_version
from tests.unit.builders import LATER, NOW, SECRET_VALUE, version_body


def cond(status: dict[str, Any], type_: str) -> dict[str, Any]:
    return next(c for c in status["conditions"] if c["type"] == type_)


def test_valid_version_renders_its_config_without_credential_values() -> None:
    body = version_body()
    p = plan_version(body, [], NOW)
    (cm,) = p.apply
    assert p.status["phase"] == "Ready"
    assert p.status["configMapName"] == cm["metadata"]["name"]
    assert cm["metadata"]["ownerReferences"][0] == {
        "apiVersion": "alm.dev/v1alpha1", "kind": "AgentVersion", "name": "bot-v1", "uid": "uid-bot-v1",
        "controller": True, "blockOwnerDeletion": True,
    }
    config = json.loads(cm["data"]["config.json"])
    crm = next(t for t in config["tools"] if t["name"] == "crm")
    assert crm["credentialFile"] == "/var/run/alm/credentials/tool-crm"
    assert "credentials" not in crm and "secretRef" not in json.dumps(config)
    assert cm["data"]["instructions.md"] == body["spec"]["instructions"]
    assert SECRET_VALUE not in json.dumps(cm)


def test_the_hash_and_name_follow_the_content() -> None:
    a = plan_version(version_body(), [], NOW)
    b = plan_version(version_body(instructions="Be terse."), [], NOW)
    assert a.status["specHash"] != b.status["specHash"]
    assert a.apply[0]["metadata"]["name"] != b.apply[0]["metadata"]["name"]
    assert plan_version(version_body(), [], LATER).status["specHash"] == a.status["specHash"]


def test_nothing_to_do_once_rendered() -> None:
    body = version_body()
    first = plan_version(body, [], NOW)
    body["status"] = first.status
    live = [dict(first.apply[0], metadata={**first.apply[0]["metadata"], "resourceVersion": "5"})]
    second = plan_version(body, live, LATER)
    assert second.apply == () and second.events == ()
    assert second.status == first.status


@pytest.mark.parametrize(("override", "field"), [
    ({"runtime": {}}, "spec.runtime.image"),
    ({"instructions": ""}, "spec.instructions"),
    ({"tools": [{"name": "x", "type": "mcp"}]}, "spec.tools"),
    ({"model": {"provider": "simulated"}}, "spec.model.name"),
])
def test_invalid_version_says_which_field_to_fix(override: dict[str, Any], field: str) -> None:
    p = plan_version(version_body(**override), [], NOW)
    assert p.apply == ()
    assert p.status["phase"] == "Invalid"
    assert field in cond(p.status, "Invalid")["message"]
    assert [e.reason for e in p.events] == ["InvalidSpec"]
    body = version_body(**override)
    body["status"] = p.status
    assert plan_version(body, [], LATER).events == ()  # announced once
