"""Names and labels of everything alm creates, decided in one place.

Children are found again by their labels (``alm.dev/agent``, ``alm.dev/version``) and
by deterministic names, so a restarted operator recognises what it made before.
Label values are limited to 63 characters by Kubernetes; longer names are shortened
with a hash suffix so two long names never collide.
"""

from __future__ import annotations

import hashlib
from typing import Any

__all__ = [
    "AGENT_LABEL",
    "COMPONENT_LABEL",
    "CONFIG_HASH_ANNOTATION",
    "FIELD_MANAGER",
    "MANAGED_BY_LABEL",
    "MANAGED_BY_VALUE",
    "VERSION_LABEL",
    "agent_labels",
    "credentials_secret_name",
    "deployment_name",
    "label_value",
    "owner_reference",
    "version_config_name",
    "version_labels",
]

GROUP = "alm.dev"
FIELD_MANAGER = "alm-operator"
AGENT_LABEL = "alm.dev/agent"
VERSION_LABEL = "alm.dev/version"
COMPONENT_LABEL = "alm.dev/component"
MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
MANAGED_BY_VALUE = "alm-operator"
CONFIG_HASH_ANNOTATION = "alm.dev/config-hash"

_LABEL_MAX = 63
_NAME_MAX = 253


def _shorten(value: str, limit: int) -> str:
    if len(value) <= limit:
        return value
    digest = hashlib.sha256(value.encode()).hexdigest()[:10]
    return f"{value[: limit - 11].rstrip('-.')}-{digest}"


def label_value(value: str) -> str:
    """``value`` if it fits a label (63 chars), else a unique shortened form."""
    return _shorten(value, _LABEL_MAX)


def agent_labels(agent: str, component: str) -> dict[str, str]:
    return {
        AGENT_LABEL: label_value(agent),
        COMPONENT_LABEL: component,
        MANAGED_BY_LABEL: MANAGED_BY_VALUE,
    }


def version_labels(agent: str, version: str, component: str) -> dict[str, str]:
    return {**agent_labels(agent, component), VERSION_LABEL: label_value(version)}


def deployment_name(agent: str, version: str) -> str:
    # A Deployment's pods are named after it plus two suffixes (~17 chars), and pod
    # names become hostnames (DNS labels): keep Deployment names at 63 - 17 chars or less.
    return _shorten(f"{agent}-{version}", 46)


def credentials_secret_name(agent: str, content_hash: str) -> str:
    """Content-hashed, so a rollback to an older version still finds its credentials."""
    return _shorten(f"{agent}-credentials", _NAME_MAX - 11) + f"-{content_hash[:10]}"


def version_config_name(version: str, spec_hash: str) -> str:
    return _shorten(f"{version}-config", _NAME_MAX - 11) + f"-{spec_hash[:10]}"


def owner_reference(kind: str, name: str, uid: str, *, controller: bool = True) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/v1alpha1",
        "kind": kind,
        "name": name,
        "uid": uid,
        "controller": controller,
        "blockOwnerDeletion": True,
    }
