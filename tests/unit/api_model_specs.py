"""Minimal valid specs of each resource, and ``with_`` to vary one field, for the pydantic model tests."""

from __future__ import annotations

import copy
from typing import Any

VERSION_SPEC: dict[str, Any] = {
    "model": {"provider": "simulated", "name": "sim-small"},
    "instructions": "Help customers.",
    "runtime": {"image": "ghcr.io/alm-dev/alm-agent:0.1.0"},
}
AGENT_SPEC: dict[str, Any] = {"version": "support-bot-v1"}
CANARY: dict[str, Any] = {"canary": {"steps": [{"setWeight": 50}]}}
ROLLOUT_SPEC: dict[str, Any] = {
    "agentRef": {"name": "support-bot"},
    "targetVersion": "support-bot-v2",
    "strategy": CANARY,
}
RETIREMENT_SPEC: dict[str, Any] = {"agentRef": {"name": "support-bot"}, "reason": "Replaced."}

def with_(base: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    """A deep copy of ``base`` with ``value`` at the dotted ``path`` (list indexes allowed)."""
    data = copy.deepcopy(base)
    *parents, last = path.split(".")
    node: Any = data
    for part in parents:
        node = node[int(part)] if isinstance(node, list) else node.setdefault(part, {})
    if isinstance(node, list):
        node[int(last)] = value
    else:
        node[last] = value
    return data
