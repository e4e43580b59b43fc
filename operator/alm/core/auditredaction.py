"""Redaction of audit details: no credential value may enter a record that is kept forever.

Why a module: deciding what looks like a secret (key names such as ``token`` or ``apiKey``,
known key prefixes, bearer values, URL user info, long opaque tokens) is a job of its own, with
its own rules and tests; :func:`alm.core.auditchain.append` runs every entry's details through
:func:`redact` before hashing them.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

__all__ = [
    "MIN_SECRET_LENGTH",
    "REDACTED",
    "looks_secret",
    "redact",
]

REDACTED = "[redacted]"

# Key names are split into words (camelCase, snake_case, kebab-case); a key holds a credential
# when one of its words is below, unless its last word says it only names or counts one
# ("secretName", "tokenCount"): those values still go through the value rules.
_SENSITIVE_WORDS = frozenset({
    "apikey", "auth", "authorization", "bearer", "cookie", "cookies", "credential", "credentials",
    "creds", "hmac", "key", "keys", "passphrase", "passwd", "password", "passwords", "private",
    "privatekey", "pwd", "secret", "secrets", "signature", "token", "tokens",
})
_NAMING_WORDS = frozenset({"at", "count", "digest", "hash", "id", "kind", "length", "name", "names", "ref",
                           "sha256", "type"})
_WORD = re.compile(r"[A-Z]+(?=[A-Z][a-z])|[A-Z]?[a-z]+|[A-Z]+|\d+")
_SECRET_PREFIXES = ("sk-", "sk_", "pk_", "rk_", "ghp_", "gho_", "ghu_", "ghs_", "github_pat_", "glpat-",
                    "xoxa-", "xoxb-", "xoxp-", "AKIA", "ASIA", "AIza", "eyJ")
_AUTH_SCHEME = re.compile(r"\b(bearer|basic|token)\s+\S{8,}", re.IGNORECASE)
_URL_USERINFO = re.compile(r"[a-zA-Z][a-zA-Z0-9+.-]*://[^/@\s]+@")
_OPAQUE = re.compile(r"[A-Za-z0-9+/_=-]+")
MIN_SECRET_LENGTH = 20


def _words(key: str) -> list[str]:
    return [word.lower() for word in _WORD.findall(key)]


def _sensitive_key(key: str) -> bool:
    words = _words(key)
    if not words or words[-1] in _NAMING_WORDS:
        return False
    return any(word in _SENSITIVE_WORDS for word in words) or "".join(words) in _SENSITIVE_WORDS


def _opaque_token(word: str, min_length: int) -> bool:
    # Random base64/base64url of this length almost always mixes cases and has a digit or a
    # symbol; Kubernetes names (lower-case), hex digests (lower-case) and CamelCase words
    # (letters only) do not, so they stay readable.
    if len(word) < min_length or not _OPAQUE.fullmatch(word) or word.isalpha():
        return False
    has_other = any(c.isdigit() or c in "+/_=" for c in word)
    return any(c.isupper() for c in word) and any(c.islower() for c in word) and has_other


def looks_secret(value: str, *, min_length: int = MIN_SECRET_LENGTH) -> bool:
    """Whether a string looks like a credential: a best-effort net behind the key-name rule.

    True for: a known key prefix (``sk-``, ``ghp_``, ``AKIA``, a JWT, ...), an ``Authorization``
    style value (``Bearer <x>``), a URL with user info, a PEM block, or any word of at least
    ``min_length`` characters from the base64 alphabet that mixes upper and lower case with a
    digit or symbol.
    """
    if "-----BEGIN" in value or _AUTH_SCHEME.search(value) or _URL_USERINFO.search(value):
        return True
    for word in value.split():
        if any(word.startswith(p) and len(word) >= len(p) + 8 for p in _SECRET_PREFIXES):
            return True
        if _opaque_token(word, min_length):
            return True
    return False


def redact(details: Any, *, min_length: int = MIN_SECRET_LENGTH) -> Any:
    """A copy of ``details`` safe to keep forever: no credential values.

    - a string (or bytes) under a key naming a credential (``token``, ``apiKey``,
      ``client_secret``, ``password``, ``credentials``, ``hmacKey``, ...) becomes ``[redacted]``;
      numbers and booleans under such keys stay (``tokens: 1234`` is a count);
    - any other string that :func:`looks_secret` becomes ``[redacted]``;
    - mappings and lists are redacted recursively; tuples become lists, keys become strings.

    The rules err on the side of hiding: a log that hides a name is an inconvenience, a log
    that leaks a key is an incident. Callers still must not put credential values in details;
    this is the net, not the rule.
    """
    if isinstance(details, Mapping):
        out: dict[str, Any] = {}
        for key, value in details.items():
            key = str(key)
            if isinstance(value, str | bytes) and _sensitive_key(key):
                out[key] = REDACTED
            else:
                out[key] = redact(value, min_length=min_length)
        return out
    if isinstance(details, list | tuple):
        return [redact(item, min_length=min_length) for item in details]
    if isinstance(details, bytes):
        return REDACTED  # raw bytes are never audit material
    if isinstance(details, str) and looks_secret(details, min_length=min_length):
        return REDACTED
    return details
