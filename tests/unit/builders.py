"""Plain-data builders for Agents, AgentVersions and their observed children."""

from __future__ import annotations

import base64
import copy
import itertools
from typing import Any

NOW = "2026-11-24T12:00:00Z"
LATER = "2026-11-24T12:05:00Z"

SECRET_VALUE = "sk-test-do-not-leak-0123456789"
SECRET_B64 = base64.b64encode(SECRET_VALUE.encode()).decode()


def version_body(name: str = "bot-v1", **spec_overrides: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "model": {"provider": "simulated", "name": "sim-1",
                  "pricing": {"inputPerMillionTokensUSD": 1.0, "outputPerMillionTokensUSD": 2.0}},
        "instructions": "You answer support questions politely.",
        "tools": [
            {"name": "crm", "type": "http", "endpoint": "https://crm.example.com/api",
             "credentials": {"secretRef": {"name": "bot-tools", "key": "crm-key"}}},
            {"name": "search", "type": "http", "endpoint": "https://search.example.com", "readOnly": True},
        ],
        "runtime": {"image": "ghcr.io/alm-dev/alm-agent:0.1.0"},
    }
    spec.update(spec_overrides)
    return {
        "apiVersion": "alm.dev/v1alpha1", "kind": "AgentVersion",
        "metadata": {"name": name, "namespace": "team", "uid": f"uid-{name}", "generation": 1},
        "spec": spec,
    }


def ready(version: dict[str, Any], config_map: str = "bot-v1-config-abc") -> dict[str, Any]:
    version = copy.deepcopy(version)
    version["status"] = {"phase": "Ready", "configMapName": config_map, "specHash": "abc"}
    return version


def agent_body(name: str = "bot", **spec_overrides: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {"version": "bot-v1", "replicas": 2}
    spec.update(spec_overrides)
    return {
        "apiVersion": "alm.dev/v1alpha1", "kind": "Agent",
        "metadata": {"name": name, "namespace": "team", "uid": f"uid-{name}", "generation": 1},
        "spec": spec,
    }


_rv = itertools.count(100)


def as_live(obj: dict[str, Any], **status: Any) -> dict[str, Any]:
    """What the API server would hold after applying ``obj``: server defaults added."""
    live = copy.deepcopy(obj)
    live["metadata"]["resourceVersion"] = str(next(_rv))
    live["metadata"]["uid"] = f"uid-{obj['kind']}-{obj['metadata']['name']}"
    live["metadata"]["creationTimestamp"] = NOW
    live["metadata"]["generation"] = 1
    if obj["kind"] == "Deployment":
        live["spec"]["strategy"] = {"type": "RollingUpdate"}  # a server default
        live["status"] = status or {}
    if obj["kind"] == "Service":
        live["spec"]["clusterIP"] = "10.0.0.7"
    return live


def available_status(replicas: int) -> dict[str, Any]:
    return {
        "observedGeneration": 1, "replicas": replicas, "readyReplicas": replicas,
        "updatedReplicas": replicas, "availableReplicas": replicas,
        "conditions": [{"type": "Available", "status": "True", "reason": "MinimumReplicasAvailable"}],
    }


def fixed_random(length: int) -> str:
    return ("r" * length)[:length]
