"""The revocation webhook's HTTP call: one signed POST, its answer as a ``WebhookOutcome``.

What to send, how to sign it and whether to try again are decided in
:mod:`alm.core.revocation` and :mod:`alm.core.retirement`; this module only reads the HMAC
key from the Secret the spec names, makes one attempt and reports what came back. The key
and the signature never reach a log line, an error message or the outcome: errors are
reported by their class only (an exception's text may quote the request).

Redirects are not followed: a 3xx is a final answer (the signed body is never sent to a
host the user did not name).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging

import aiohttp

from alm.core import revocation
from alm.core.retirementtypes import CallWebhook
from alm.kube import errors
from alm.kube.api import Kube

__all__ = ["KeyMissing", "call", "read_key"]

log = logging.getLogger(__name__)


class KeyMissing(Exception):
    """The Secret or its key is not there (yet): a retryable outcome, not a crash."""


def read_key(kube: Kube, namespace: str, secret_name: str, key: str) -> bytes:
    """The HMAC key: the raw bytes of ``data[key]`` of the Secret (sync; call it in a thread)."""
    try:
        secret = kube.get("Secret", namespace, secret_name)
    except errors.ApiError as exc:
        raise KeyMissing(f"reading Secret {secret_name} failed ({type(exc).__name__})") from None
    if secret is None:
        raise KeyMissing(f"Secret {secret_name} not found")
    encoded = (secret.get("data") or {}).get(key)
    if not encoded:
        raise KeyMissing(f"Secret {secret_name} has no key {key}")
    try:
        return base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise KeyMissing(f"key {key} of Secret {secret_name} is not base64") from None


async def call(
    kube: Kube, namespace: str, action: CallWebhook, *, session: aiohttp.ClientSession | None = None
) -> revocation.WebhookOutcome:
    """Make attempt ``action.attempt``; never raises for a failed call (a failure is data)."""
    try:
        key = await asyncio.to_thread(read_key, kube, namespace, action.secret_name, action.secret_key)
    except KeyMissing as exc:
        return revocation.WebhookOutcome(error=str(exc))
    headers = revocation.headers(action.body, key, delivery=action.delivery, attempt=action.attempt)
    timeout = aiohttp.ClientTimeout(total=action.timeout_seconds)
    try:
        if session is not None:
            return await _post(session, action, headers, timeout)
        async with aiohttp.ClientSession() as own:
            return await _post(own, action, headers, timeout)
    except TimeoutError:
        return revocation.WebhookOutcome(error=f"timed out after {action.timeout_seconds}s")
    except aiohttp.ClientError as exc:
        return revocation.WebhookOutcome(error=f"no answer ({type(exc).__name__})")


async def _post(
    session: aiohttp.ClientSession, action: CallWebhook, headers: dict[str, str], timeout: aiohttp.ClientTimeout
) -> revocation.WebhookOutcome:
    async with session.post(action.url, data=action.body, headers=headers, timeout=timeout,
                            allow_redirects=False) as response:
        await response.read()  # drain, so the connection can be reused; the body is not kept
        log.info("revocation webhook %s, delivery %s, attempt %d: HTTP %d",
                 action.name, action.delivery, action.attempt, response.status)
        return revocation.WebhookOutcome(status_code=response.status)
