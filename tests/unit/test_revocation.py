"""The revocation webhook's pure parts: signature, backoff, retry decisions, body and headers."""

from __future__ import annotations

import hashlib
import hmac
import json

import pytest

from alm.core import revocation
from alm.core.revocation import WebhookOutcome
from tests.unit.builders import SECRET_VALUE

# RFC 4231, test case 2: a published HMAC-SHA256 vector, independent of both implementations.
RFC4231_KEY = b"Jefe"
RFC4231_DATA = b"what do ya want for nothing?"
RFC4231_MAC = "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"


def test_signature_matches_the_published_vector() -> None:
    assert revocation.sign(RFC4231_DATA, RFC4231_KEY) == "sha256=" + RFC4231_MAC


@pytest.mark.parametrize(("body", "key"), [
    (b"{}", b"k"),
    (b'{"agent":"bot"}', "text-key"),
    ("{\"n\":\"caf\u00e9\"}".encode(), b"\x00\xffbinary"),
    (b"", b"empty-body"),
])
def test_signature_is_hmac_sha256_of_the_exact_body(body: bytes, key: bytes | str) -> None:
    raw = key.encode() if isinstance(key, str) else key
    expected = "sha256=" + hmac.new(raw, body, hashlib.sha256).hexdigest()
    assert revocation.sign(body, key) == expected
    assert revocation.signature_matches(body, key, expected)
    assert not revocation.signature_matches(body + b" ", key, expected)
    assert not revocation.signature_matches(body, raw + b"x", expected)


@pytest.mark.parametrize(("attempt", "delay"), [
    (0, 0.0), (-1, 0.0), (1, 1.0), (2, 2.0), (3, 4.0), (4, 8.0), (9, 256.0), (10, 300.0), (100, 300.0), (10**6, 300.0),
])
def test_backoff_doubles_up_to_the_cap(attempt: int, delay: float) -> None:
    assert revocation.next_attempt_delay(attempt) == delay


def test_backoff_parameters() -> None:
    assert revocation.next_attempt_delay(3, base=0.5, factor=3, cap=10) == 4.5
    assert revocation.next_attempt_delay(5, base=0.5, factor=3, cap=10) == 10


@pytest.mark.parametrize(("result", "retry"), [
    (500, True), (502, True), (503, True), (504, True), (599, True),
    (408, True), (425, True), (429, True),
    (400, False), (401, False), (403, False), (404, False), (410, False), (422, False),
    (301, False), (302, False),
    (200, False), (202, False), (204, False),
    ("timed out after 10s", True), ("ConnectionRefusedError", True),
    (TimeoutError("slow"), True), (ConnectionResetError(), True),
])
def test_should_retry(result: int | str | BaseException, retry: bool) -> None:
    assert revocation.should_retry(result) is retry


@pytest.mark.parametrize(("outcome", "ok", "retryable", "detail"), [
    (WebhookOutcome(status_code=200), True, False, "HTTP 200"),
    (WebhookOutcome(status_code=204), True, False, "HTTP 204"),
    (WebhookOutcome(status_code=503), False, True, "HTTP 503"),
    (WebhookOutcome(status_code=401), False, False, "HTTP 401"),
    (WebhookOutcome(error="timed out after 10s"), False, True, "timed out after 10s"),
    (WebhookOutcome(), False, True, "no answer"),
    (WebhookOutcome(error="x" * 500), False, True, "x" * 200),
])
def test_outcome(outcome: WebhookOutcome, ok: bool, retryable: bool, detail: str) -> None:
    assert (outcome.ok, outcome.retryable, outcome.detail) == (ok, retryable, detail)


def test_delivery_id_is_stable_per_retirement() -> None:
    one = revocation.delivery_id("team", "retire-bot", "uid-1")
    assert one == revocation.delivery_id("team", "retire-bot", "uid-1")
    assert one != revocation.delivery_id("team", "retire-bot", "uid-2")
    assert len(one) == 32


def test_body_is_canonical_and_carries_identifiers_only() -> None:
    payload = revocation.body(
        namespace="team", agent="bot", retirement="retire-bot", reason="replaced", delivery="d1",
        requested_at="2026-11-24T12:00:00Z",
        credentials=[{"kind": "Secret", "name": "bot-credentials-abc", "data": SECRET_VALUE}],
    )
    doc = json.loads(payload)
    assert payload == json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    assert doc["kind"] == "RevocationRequest" and doc["agent"] == "bot" and doc["delivery"] == "d1"
    assert doc["credentials"] == [{"kind": "Secret", "name": "bot-credentials-abc"}]
    assert SECRET_VALUE.encode() not in payload


def test_headers() -> None:
    payload = b'{"agent":"bot"}'
    headers = revocation.headers(payload, "k", delivery="d1", attempt=3)
    assert headers == {
        "Content-Type": "application/json",
        "X-Alm-Signature": revocation.sign(payload, "k"),
        "X-Alm-Delivery": "d1",
        "X-Alm-Attempt": "3",
    }
