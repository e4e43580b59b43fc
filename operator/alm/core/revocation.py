"""The revocation webhook, minus the HTTP: what to send, how to sign it, when to try again.

A retiring Agent's upstream keys (model provider, tool APIs) live outside the cluster; the
user's endpoint revokes them when alm POSTs the Agent's identity and the identifiers (never
the values) of its credentials. The request is signed so the endpoint can trust it::

    POST <spec.revoke.webhook.url>
    Content-Type:    application/json
    X-Alm-Signature: sha256=<hex HMAC-SHA256 of the raw body, keyed with the Secret's value>
    X-Alm-Delivery:  <id, the same for every attempt of one retirement: deduplicate on it>
    X-Alm-Attempt:   <1, 2, ...>

A 2xx answer revokes; 408, 425, 429, 5xx and network errors are retried with exponential
backoff; any other answer is final (the endpoint understood and refused: retrying cannot help).
The shell makes the call and hands back a :class:`WebhookOutcome`; the retirement planner
decides the rest. Deterministic on purpose (no jitter): one webhook per retirement cannot
cause a thundering herd, and tests can name the exact delays.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
from collections.abc import Mapping, Sequence
from typing import Any

from alm.core import hashing

__all__ = [
    "ATTEMPT_HEADER",
    "BASE_DELAY",
    "DELIVERY_HEADER",
    "MAX_DELAY",
    "SIGNATURE_HEADER",
    "WebhookOutcome",
    "body",
    "delivery_id",
    "headers",
    "is_success",
    "next_attempt_delay",
    "should_retry",
    "sign",
    "signature_matches",
]

SIGNATURE_HEADER = "X-Alm-Signature"
DELIVERY_HEADER = "X-Alm-Delivery"
ATTEMPT_HEADER = "X-Alm-Attempt"
BASE_DELAY = 1.0  # seconds after the first failed attempt
FACTOR = 2.0
MAX_DELAY = 300.0  # a long outage costs at most one call per 5 minutes
_RETRYABLE_STATUS = frozenset({408, 425, 429})


def next_attempt_delay(
    attempt: int, *, base: float = BASE_DELAY, factor: float = FACTOR, cap: float = MAX_DELAY
) -> float:
    """Seconds to wait after failed attempt number ``attempt`` (1-based) before the next one.

    1 → 1 s, 2 → 2 s, 3 → 4 s, ... doubling up to ``cap`` (300 s). ``attempt`` < 1 (nothing
    failed yet) waits 0.
    """
    if attempt < 1:
        return 0.0
    return float(min(cap, base * factor ** min(attempt - 1, 64)))


def sign(body: bytes, key: bytes | str) -> str:
    """The ``X-Alm-Signature`` value: ``sha256=`` + hex HMAC-SHA256 of the exact body bytes."""
    raw_key = key.encode() if isinstance(key, str) else key
    return "sha256=" + hmac.new(raw_key, body, hashlib.sha256).hexdigest()


def signature_matches(body: bytes, key: bytes | str, header: str) -> bool:
    """What a receiver does: recompute and compare in constant time."""
    return hmac.compare_digest(sign(body, key), header.strip())


def is_success(status_code: int) -> bool:
    return 200 <= status_code < 300


def should_retry(result: int | str | BaseException) -> bool:
    """Whether another attempt can help, given an HTTP status code or an error.

    Errors (timeouts, refused connections, TLS failures) are transient until proven otherwise.
    Of the answers, only the ones that mean "not now" are retried: 408 Request Timeout, 425
    Too Early, 429 Too Many Requests and every 5xx. A 2xx needs no retry; other 3xx/4xx answers
    mean the endpoint understood and refused (wrong URL, bad signature): a human must act.
    """
    if isinstance(result, bool) or not isinstance(result, int):
        return True
    return result in _RETRYABLE_STATUS or result >= 500


@dataclasses.dataclass(frozen=True)
class WebhookOutcome:
    """What one call returned: a status code, or an error the shell caught.

    ``error`` should be short and credential-free (an exception class, "timed out after 10s"):
    it lands in status, Events and the audit log.
    """

    status_code: int | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.status_code is not None and is_success(self.status_code)

    @property
    def retryable(self) -> bool:
        if self.ok:
            return False
        return should_retry(self.status_code if self.status_code is not None else str(self.error))

    @property
    def detail(self) -> str:
        if self.status_code is not None:
            return f"HTTP {self.status_code}"
        return (self.error or "no answer")[:200]


def delivery_id(namespace: str, retirement: str, uid: str) -> str:
    """Stable across attempts and restarts, unique per retirement: the receiver's dedup key."""
    return hashing.short_hash({"namespace": namespace, "retirement": retirement, "uid": uid}, 32)


def body(
    *,
    namespace: str,
    agent: str,
    retirement: str,
    reason: str,
    delivery: str,
    requested_at: str,
    credentials: Sequence[Mapping[str, Any]],
) -> bytes:
    """The request body: canonical JSON (so the signed bytes are reproducible) of identifiers only.

    ``credentials``: the Kubernetes credentials being revoked, as ``{kind, name}`` (other keys
    are dropped: no value can slip in). ``requestedAt`` lets receivers reject stale replays.
    """
    doc = {
        "apiVersion": "alm.dev/v1alpha1",
        "kind": "RevocationRequest",
        "namespace": namespace,
        "agent": agent,
        "retirement": retirement,
        "reason": reason,
        "delivery": delivery,
        "requestedAt": requested_at,
        "credentials": [{"kind": str(c.get("kind")), "name": str(c.get("name"))} for c in credentials],
    }
    return hashing.canonical_json(doc).encode()


def headers(payload: bytes, key: bytes | str, *, delivery: str, attempt: int) -> dict[str, str]:
    """Every header of one attempt; the shell adds nothing but the transport's own."""
    return {
        "Content-Type": "application/json",
        SIGNATURE_HEADER: sign(payload, key),
        DELIVERY_HEADER: delivery,
        ATTEMPT_HEADER: str(attempt),
    }
