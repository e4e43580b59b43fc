"""What an agent reads at start-up: its AgentVersion rendered to files.

The rendered ConfigMap holds instructions, model settings and tool endpoints, and for
each tool with credentials only the *path* of the file holding them: credential values
live in the agent's scoped Secret and never in a ConfigMap, a status or an event.
The ConfigMap is named after the spec hash; AgentVersion specs are immutable, so the
name is stable for the version's life and a rollback finds it again.
"""

from __future__ import annotations

from typing import Any

from alm.api import AgentVersionSpec
from alm.core import hashing, naming

__all__ = [
    "CONFIG_FILE",
    "CONFIG_MOUNT",
    "CREDENTIALS_MOUNT",
    "INSTRUCTIONS_FILE",
    "TOKEN_KEY",
    "render_config",
    "render_config_map",
    "spec_hash",
    "tool_secret_key",
]

CONFIG_MOUNT = "/etc/alm/config"
CREDENTIALS_MOUNT = "/var/run/alm/credentials"
CONFIG_FILE = "config.json"
INSTRUCTIONS_FILE = "instructions.md"
TOKEN_KEY = "agent-token"


def tool_secret_key(tool: str) -> str:
    """The key (and file name) of a tool's credential in the agent's scoped Secret."""
    return f"tool-{tool}"


def spec_hash(raw_spec: dict[str, Any]) -> str:
    """The hash of the spec as stored, so it matches what ``kubectl get -o json`` shows."""
    return hashing.content_hash(raw_spec)


def render_config(name: str, spec: AgentVersionSpec) -> dict[str, Any]:
    """The document the runtime reads from ``/etc/alm/config/config.json``."""
    tools = []
    for tool in spec.tools:
        entry: dict[str, Any] = tool.model_dump(by_alias=True, exclude_none=True, exclude={"credentials"})
        if tool.credentials is not None:
            entry["credentialFile"] = f"{CREDENTIALS_MOUNT}/{tool_secret_key(tool.name)}"
        tools.append(entry)
    doc: dict[str, Any] = {
        "agentVersion": name,
        "model": spec.model.model_dump(by_alias=True, exclude_none=True),
        "instructionsFile": f"{CONFIG_MOUNT}/{INSTRUCTIONS_FILE}",
        "tools": tools,
        "tokenFile": f"{CREDENTIALS_MOUNT}/{TOKEN_KEY}",
    }
    if spec.memory is not None:
        doc["memory"] = spec.memory.model_dump(by_alias=True, exclude_none=True)
    if spec.evaluation is not None:
        doc["evaluation"] = spec.evaluation.model_dump(by_alias=True, exclude_none=True)
    return doc


def render_config_map(
    name: str, namespace: str, uid: str, spec: AgentVersionSpec, hash_: str
) -> dict[str, Any]:
    """The ConfigMap child of an AgentVersion, owned by it (garbage-collected with it)."""
    labels = {
        naming.VERSION_LABEL: naming.label_value(name),
        naming.COMPONENT_LABEL: "config",
        naming.MANAGED_BY_LABEL: naming.MANAGED_BY_VALUE,
    }
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": naming.version_config_name(name, hash_),
            "namespace": namespace,
            "labels": labels,
            "ownerReferences": [naming.owner_reference("AgentVersion", name, uid)],
        },
        "data": {
            CONFIG_FILE: hashing.canonical_json(render_config(name, spec)),
            INSTRUCTIONS_FILE: spec.instructions,
        },
    }

