"""The agent's scoped credentials: which values go into its Secret, never what they say.

The scoped Secret holds the agent's own token plus a copy of each tool credential
its version references. Values are copied as the base64 strings Kubernetes stores and
are never decoded, logged or compared in clear. Values the operator generates (the
agent token, ``credentials.generate`` tools) are carried over from the agent's current
Secret, so a second reconcile, a restart or a version switch keeps them stable.
"""

from __future__ import annotations

import base64
import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

from alm.api import AgentVersionSpec
from alm.core import hashing, versionconfig
from alm.core.problems import Problem
from alm.core.reasons import Reason

__all__ = ["TOKEN_LENGTH", "Resolution", "referenced_secrets", "resolve"]

TOKEN_LENGTH = 48

SecretData = Mapping[str, str]


@dataclasses.dataclass(frozen=True)
class Resolution:
    data: dict[str, str]  # key -> base64 value, for the scoped Secret
    content_hash: str
    problem: Problem | None = None


def referenced_secrets(raw_spec: Mapping[str, Any] | None) -> list[str]:
    """Names of the user's Secrets the version's tools read, from the raw spec.

    Works on unvalidated input so the shell can fetch what exists even before the
    planner reports what is wrong with the rest.
    """
    names = set()
    for tool in (raw_spec or {}).get("tools") or []:
        ref = ((tool or {}).get("credentials") or {}).get("secretRef") or {}
        if isinstance(ref.get("name"), str):
            names.add(ref["name"])
    return sorted(names)


def _encode(value: str) -> str:
    return base64.b64encode(value.encode()).decode()


def resolve(
    version: str,
    spec: AgentVersionSpec,
    sources: Mapping[str, SecretData | None],
    existing: SecretData | None,
    generate: Callable[[int], str],
) -> Resolution:
    """The scoped Secret's data, or the first problem that prevents building it.

    ``sources`` maps each referenced Secret's name to its ``data`` (None: not found).
    ``generate(n)`` returns a fresh random string of ``n`` characters; it is only
    called for values that do not exist yet.
    """
    existing = existing or {}
    data: dict[str, str] = {}
    token = existing.get(versionconfig.TOKEN_KEY)
    data[versionconfig.TOKEN_KEY] = token or _encode(generate(TOKEN_LENGTH))
    for tool in spec.tools:
        creds = tool.credentials
        if creds is None:
            continue
        key = versionconfig.tool_secret_key(tool.name)
        if creds.secret_ref is not None:
            ref = creds.secret_ref
            source = sources.get(ref.name)
            if source is None:
                return Resolution({}, "", Problem(
                    Reason.SECRET_NOT_FOUND,
                    f"Secret {ref.name!r} referenced by tool {tool.name!r} of AgentVersion "
                    f"{version!r} was not found: create it in this namespace or fix the reference.",
                ))
            if ref.key not in source:
                return Resolution({}, "", Problem(
                    Reason.SECRET_KEY_NOT_FOUND,
                    f"Secret {ref.name!r} has no key {ref.key!r} (tool {tool.name!r} of AgentVersion "
                    f"{version!r}): add the key or fix credentials.secretRef.key.",
                ))
            data[key] = source[ref.key]
        elif creds.generate is not None:
            data[key] = existing.get(key) or _encode(generate(creds.generate.length))
    return Resolution(data, hashing.content_hash(data))
