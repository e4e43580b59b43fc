"""Stable content hashes, so names and annotations derived from content never flap.

The same input must give the same hash in every process and Python version: we hash a
canonical JSON encoding (sorted keys, no whitespace), never ``repr`` or ``hash()``.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

__all__ = ["canonical_json", "content_hash", "short_hash"]


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def content_hash(value: Any) -> str:
    """The full sha256 hex digest of ``value``'s canonical JSON."""
    return hashlib.sha256(canonical_json(value).encode()).hexdigest()


def short_hash(value: Any, length: int = 10) -> str:
    """A prefix of :func:`content_hash`, short enough for object names and label values."""
    return content_hash(value)[:length]
