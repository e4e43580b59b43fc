"""The examples are valid, and the broken samples are rejected, the way an API server would do it.

Each document is defaulted from the generated CRD schema (as the API server does before
validating), checked against the OpenAPI schema with ``jsonschema`` (draft 4 semantics, as
Kubernetes' OpenAPI v3.0), then every ``x-kubernetes-validations`` rule is evaluated with celpy
with ``self`` bound to its node (transition rules with ``oldSelf`` are skipped: these are
creations). The pydantic model must agree in both directions.
"""

from __future__ import annotations

import copy
import pathlib
from collections.abc import Iterable, Iterator
from typing import Any

import celpy
import jsonschema
import kubernetes_validate
import pydantic
import pytest
import yaml

from alm.api import KINDS, build_crds

ROOT = pathlib.Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "manifests" / "examples"
BROKEN = ROOT / "tests" / "data" / "broken"

# Property names Kubernetes escapes as __name__ in CEL (the CEL reserved words).
_CEL_RESERVED = frozenset(
    {"true", "false", "null", "in", "as", "break", "const", "continue", "else", "for", "function"}
    | {"if", "import", "let", "loop", "package", "namespace", "return", "var", "void", "while"}
)

SCHEMAS: dict[str, dict[str, Any]] = {
    crd["spec"]["names"]["kind"]: crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"] for crd in build_crds()
}
_CEL_ENV = celpy.Environment()


# --- A tiny API server: defaulting, OpenAPI validation, CEL ---------------------------------------


def apply_defaults(schema: dict[str, Any], value: Any) -> Any:
    """The value with schema defaults filled in, recursively (API server defaulting)."""
    if isinstance(value, dict) and "properties" in schema:
        value = dict(value)
        for name, prop in schema["properties"].items():
            if name not in value and "default" in prop:
                value[name] = copy.deepcopy(prop["default"])
            if name in value:
                value[name] = apply_defaults(prop, value[name])
    elif isinstance(value, dict) and isinstance(schema.get("additionalProperties"), dict):
        value = {key: apply_defaults(schema["additionalProperties"], item) for key, item in value.items()}
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        value = [apply_defaults(schema["items"], item) for item in value]
    return value


def schema_errors(schema: dict[str, Any], value: Any) -> list[tuple[str, str]]:
    """(path, "validator: message") of every OpenAPI violation."""
    validator = jsonschema.Draft4Validator(schema)
    return sorted(
        (_path(error.absolute_path), f"{error.validator}: {error.message}") for error in validator.iter_errors(value)
    )


def _path(parts: Iterable[str | int]) -> str:
    """``.spec.steps[0].setWeight``, the same shape as the CEL paths."""
    return "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in parts)


def _escaped(schema: dict[str, Any], value: Any) -> Any:
    """The value as CEL sees it: reserved property names escaped, recursively."""
    if isinstance(value, dict) and "properties" in schema:
        properties = schema["properties"]
        return {
            (f"__{key}__" if key in _CEL_RESERVED else key): _escaped(properties.get(key, {}), item)
            for key, item in value.items()
        }
    if isinstance(value, dict) and isinstance(schema.get("additionalProperties"), dict):
        return {key: _escaped(schema["additionalProperties"], item) for key, item in value.items()}
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        return [_escaped(schema["items"], item) for item in value]
    return value


def _nodes(schema: dict[str, Any], value: Any, path: str = "") -> Iterator[tuple[str, dict[str, Any], Any]]:
    """Every (path, schema node, value) present in the object."""
    yield path, schema, value
    if isinstance(value, dict):
        for name, prop in schema.get("properties", {}).items():
            if name in value:
                yield from _nodes(prop, value[name], f"{path}.{name}")
        if isinstance(schema.get("additionalProperties"), dict):
            for key, item in value.items():
                yield from _nodes(schema["additionalProperties"], item, f"{path}[{key}]")
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        for index, item in enumerate(value):
            yield from _nodes(schema["items"], item, f"{path}[{index}]")


def evaluate_rule(rule: str, schema: dict[str, Any], value: Any) -> bool | str:
    """True when the rule holds, False when not, an error text when evaluation fails."""
    program = _CEL_ENV.program(_CEL_ENV.compile(rule))
    try:
        result = program.evaluate({"self": celpy.json_to_cel(_escaped(schema, value))})
    except celpy.CELEvalError as error:
        return f"error: {error}"
    if isinstance(result, celpy.CELEvalError):
        return f"error: {result}"
    return bool(result)


def cel_errors(schema: dict[str, Any], value: Any) -> list[tuple[str, str]]:
    """(path, message) of every CEL rule that does not hold (creation: no transition rules)."""
    errors = []
    for path, node, node_value in _nodes(schema, value):
        for rule in node.get("x-kubernetes-validations", []):
            if "oldSelf" in rule["rule"]:
                continue
            outcome = evaluate_rule(rule["rule"], node, node_value)
            if outcome is not True:
                errors.append((path, rule["message"] if outcome is False else str(outcome)))
    return errors


def admit(document: dict[str, Any]) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """(schema errors, CEL errors) of creating the document."""
    schema = SCHEMAS[document["kind"]]
    defaulted = apply_defaults(schema, document)
    return schema_errors(schema, defaulted), cel_errors(schema, defaulted)


def _documents(path: pathlib.Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


# --- Examples ------------------------------------------------------------------------------------

ALM_EXAMPLES = {
    f"{path.name}:{doc['kind']}/{doc['metadata']['name']}": doc
    for path in sorted(EXAMPLES.glob("*.yaml"))
    if path.name != "kustomization.yaml"
    for doc in _documents(path)
    if doc.get("apiVersion") == "alm.dev/v1alpha1"
}
EXAMPLE_DOCUMENTS = [pytest.param(doc, id=name) for name, doc in ALM_EXAMPLES.items()]


def test_every_kind_has_an_example() -> None:
    assert {doc["kind"] for doc in ALM_EXAMPLES.values()} == set(KINDS)


@pytest.mark.parametrize("document", EXAMPLE_DOCUMENTS)
def test_example_is_admitted_by_the_crd(document: dict[str, Any]) -> None:
    assert admit(document) == ([], [])


@pytest.mark.parametrize("document", EXAMPLE_DOCUMENTS)
def test_example_is_accepted_by_the_model(document: dict[str, Any]) -> None:
    KINDS[document["kind"]].model.model_validate(document)


@pytest.mark.parametrize(
    "document",
    [
        pytest.param(doc, id=f"{path.name}:{doc['kind']}")
        for path in sorted(EXAMPLES.glob("*.yaml"))
        if path.name != "kustomization.yaml"
        for doc in _documents(path)
        if doc.get("apiVersion") != "alm.dev/v1alpha1"
    ],
)
def test_other_example_objects_are_valid_kubernetes(document: dict[str, Any]) -> None:
    kubernetes_validate.validate(document, kubernetes_validate.latest_version(), strict=True)


def test_kustomization_lists_the_support_bot() -> None:
    kustomization = yaml.safe_load((EXAMPLES / "kustomization.yaml").read_text())
    assert kustomization["resources"] == ["secret.yaml", "agentversion.yaml", "agent.yaml"]
    for name in kustomization["resources"]:
        assert (EXAMPLES / name).is_file()


def test_support_bot_example_hangs_together() -> None:
    (version,) = _documents(EXAMPLES / "agentversion.yaml")
    (agent,) = _documents(EXAMPLES / "agent.yaml")
    (secret,) = _documents(EXAMPLES / "secret.yaml")
    assert agent["spec"]["version"] == version["metadata"]["name"] == "support-bot-v1"
    assert version["spec"]["model"]["provider"] == "simulated"
    assert version["spec"]["runtime"]["image"] == "ghcr.io/alm-dev/alm-agent:0.1.0"
    (tool,) = version["spec"]["tools"]
    ref = tool["credentials"]["secretRef"]
    assert tool["type"] == "http"
    assert ref == {"name": secret["metadata"]["name"], "key": "crm-api-key"}
    assert "crm-api-key" in secret["stringData"]
    assert agent["spec"]["replicas"] == 2
    assert agent["spec"]["egress"][0]["ports"] == [{"port": 443, "protocol": "TCP"}]


# --- Broken samples ------------------------------------------------------------------------------

# file -> (who rejects it, path of the offending node, text in the error)
BROKEN_SAMPLES: dict[str, tuple[str, str, str]] = {
    "rollout-weight-101.yaml": ("schema", ".spec.strategy.canary.steps[0].setWeight", "maximum: 101"),
    "rollout-two-strategies.yaml": ("cel", ".spec.strategy", "exactly one of canary, blueGreen or shadow"),
    "rollout-step-two-actions.yaml": ("cel", ".spec.strategy.canary.steps[1]", "exactly one of setWeight"),
    "rollout-zero-duration.yaml": ("cel", ".spec.strategy.canary.steps[1].pause.duration", "greater than zero"),
    "rollout-negative-duration.yaml": ("schema", ".spec.strategy.shadow.duration", "pattern: '-5s'"),
    "rollout-query-without-bounds.yaml": ("cel", ".spec.strategy.canary.analysis.queries[0]", "min or max"),
    "agent-bad-version-name.yaml": ("schema", ".spec.version", "pattern: 'Support_Bot_V1'"),
    "agent-missing-version.yaml": ("schema", ".spec", "required: 'version' is a required property"),
    "agent-wildcard-verb.yaml": ("cel", ".spec.permissions[0]", "least privilege; list verbs explicitly"),
    "agent-wildcard-resource.yaml": ("cel", ".spec.permissions[0]", "least privilege; list resources"),
    "agent-egress-without-peer.yaml": ("cel", ".spec.egress[0]", "at least one of cidr, namespace or podSelector"),
    "agent-egress-cidr-and-namespace.yaml": ("cel", ".spec.egress[0]", "cidr cannot be combined"),
    "agent-egress-except-without-cidr.yaml": ("cel", ".spec.egress[0]", "except needs cidr"),
    "agent-prometheus-without-address.yaml": ("cel", ".spec.monitoring.provider", "type prometheus needs"),
    "agentversion-mcp-without-url.yaml": ("cel", ".spec.tools[0]", "type mcp needs mcpUrl"),
    "agentversion-http-without-endpoint.yaml": ("cel", ".spec.tools[0]", "type http needs endpoint"),
    "agentversion-two-credentials.yaml": ("cel", ".spec.tools[0].credentials", "exactly one of secretRef"),
    "agentversion-redis-without-uri.yaml": ("cel", ".spec.memory.store", "redis or external needs uri"),
    "agentretirement-pvc-without-claim.yaml": ("cel", ".spec.archive", "pvc needs claimName"),
}


def test_every_broken_sample_is_listed() -> None:
    assert sorted(path.name for path in BROKEN.glob("*.yaml")) == sorted(BROKEN_SAMPLES)


@pytest.mark.parametrize(("name", "expected"), sorted(BROKEN_SAMPLES.items()))
def test_broken_sample_is_rejected_by_exactly_its_rule(name: str, expected: tuple[str, str, str]) -> None:
    (document,) = _documents(BROKEN / name)
    by, path, needle = expected
    schema_found, cel_found = admit(document)
    found = schema_found if by == "schema" else cel_found
    other = cel_found if by == "schema" else schema_found
    assert len(found) == 1, found
    assert found[0][0] == path
    assert needle in found[0][1]
    assert other == []


@pytest.mark.parametrize(("name", "expected"), sorted(BROKEN_SAMPLES.items()))
def test_broken_sample_is_rejected_by_the_model(name: str, expected: tuple[str, str, str]) -> None:
    (document,) = _documents(BROKEN / name)
    by, _, needle = expected
    with pytest.raises(pydantic.ValidationError) as caught:
        KINDS[document["kind"]].model.model_validate(document)
    if by == "cel":
        # The model mirrors the CEL rule with the very same message.
        assert needle in str(caught.value)


def test_every_cel_rule_is_tripped_by_a_broken_sample() -> None:
    """Each creation-time CEL rule of the CRDs is proven to fire by at least one sample."""
    tripped = {
        message
        for name in BROKEN_SAMPLES
        for document in _documents(BROKEN / name)
        for _, message in admit(document)[1]
    }
    rules = {
        rule["message"]
        for schema in SCHEMAS.values()
        for node in _all_nodes(schema)
        for rule in node.get("x-kubernetes-validations", [])
        if "oldSelf" not in rule["rule"]
    }
    assert rules - tripped == set()


def schema_node(kind: str, dotted: str) -> dict[str, Any]:
    node = SCHEMAS[kind]
    for name in dotted.split("."):
        node = node["properties"][name]
    return node


def _all_nodes(schema: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield schema
    for prop in schema.get("properties", {}).values():
        yield from _all_nodes(prop)
    for key in ("items", "additionalProperties"):
        if isinstance(schema.get(key), dict):
            yield from _all_nodes(schema[key])


@pytest.mark.parametrize(
    ("value", "holds"),
    [("30s", True), ("1h30m", True), ("0.5s", True), ("0s", False), ("0.0m", False), ("000ms", False)],
)
def test_duration_rule_matches_parse_duration(value: str, holds: bool) -> None:
    duration_node = schema_node("AgentRollout", "spec.strategy.shadow.duration")
    (rule,) = duration_node["x-kubernetes-validations"]
    assert evaluate_rule(rule["rule"], duration_node, value) is holds


def test_reserved_property_names_are_escaped_for_cel() -> None:
    egress = schema_node("Agent", "spec.egress")["items"]
    assert cel_errors(egress, {"namespace": "crm"}) == []
