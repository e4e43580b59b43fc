"""Appending to an Agent's audit log: the one place handlers write audit entries.

Every handler that records a lifecycle action calls :func:`record` with the planner's
:class:`~alm.core.auditactions.AuditIntent` values. One call:

1. loads the Agent's segment ConfigMaps (``<agent>-audit-<n>``, label selector),
2. chains the new entries onto the log (:func:`alm.core.auditchain.append`, which redacts),
3. writes the segments :func:`alm.core.auditstorage.plan_storage` returns: a new segment is
   created (POST: a concurrent creator gets 409), an existing one is applied with its
   ``resourceVersion`` as a precondition, so two writers can never overwrite each other's
   entries; on a conflict the whole step is redone from a fresh read,
4. merge-patches ``status.auditHead`` of the Agent (skipped when the Agent is gone),
5. mirrors each entry as a Kubernetes Event on the Agent (reason ``Audit<Action>``; the
   message carries the entry's hash, a second witness of the chain head).

Calls for the same Agent are serialised inside the process (one lock per Agent), so the
common case never conflicts. The segments are not owned by the Agent: the log outlives it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import re
import time
import weakref
from collections.abc import Mapping, Sequence
from typing import Any, cast

import kopf

from alm.core import auditchain, auditstorage, naming
from alm.core.auditactions import AuditIntent
from alm.handlers.context import Context
from alm.kube import errors, resources
from alm.kube.api import Kube

__all__ = ["EVENT_REASON_PREFIX", "event_reason", "load", "record", "segments"]

log = logging.getLogger(__name__)

EVENT_REASON_PREFIX = "Audit"
_ATTEMPTS = 8  # conflicting writers (another operator replica, a racing pass) before giving up
_JITTER = 0.01  # seconds, doubled per conflict: writers that collided do not collide again in step
_DETAILS_IN_EVENT = 600  # characters of details shown in an Event message
_INDEX = re.compile(r"-audit-(\d+)$")

Obj = dict[str, Any]

_locks: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[tuple[str, str], asyncio.Lock]] = (
    weakref.WeakKeyDictionary())


def _lock(namespace: str, agent: str) -> asyncio.Lock:
    per_loop = _locks.setdefault(asyncio.get_running_loop(), {})
    return per_loop.setdefault((namespace, agent), asyncio.Lock())


def _is_segment_of(obj: Mapping[str, Any], agent: str) -> bool:
    """Labels may be shortened (63 chars); the name says exactly whose segment it is."""
    name = str(obj.get("metadata", {}).get("name", ""))
    match = _INDEX.search(name)
    return match is not None and auditstorage.segment_name(agent, int(match.group(1))) == name


def segments(kube: Kube, namespace: str, agent: str) -> list[Obj]:
    """The Agent's audit segment ConfigMaps (sync: call it in a thread)."""
    labels = {naming.AGENT_LABEL: naming.label_value(agent), naming.COMPONENT_LABEL: auditstorage.COMPONENT}
    return [cm for cm in kube.list("ConfigMap", namespace, labels) if _is_segment_of(cm, agent)]


def load(kube: Kube, namespace: str, agent: str) -> list[dict[str, Any]]:
    """The Agent's audit entries, in stored order (sync)."""
    return auditstorage.load(segments(kube, namespace, agent))


def event_reason(action: str) -> str:
    """``credentialRevoked`` -> ``AuditCredentialRevoked``."""
    return EVENT_REASON_PREFIX + action[:1].upper() + action[1:]


def _chain(entries: list[dict[str, Any]], intents: Sequence[AuditIntent], at: str) -> list[auditchain.Entry]:
    new: list[auditchain.Entry] = []
    for intent in intents:
        new.append(auditchain.append([*entries, *new], at=at, actor=intent.actor, action=str(intent.action),
                                     subject=intent.subject, details=intent.details))
    return new


def _write(kube: Kube, namespace: str, live: Sequence[Mapping[str, Any]], objects: Sequence[Obj]) -> None:
    versions = {str(s["metadata"]["name"]): s["metadata"].get("resourceVersion") for s in live}
    for obj in objects:
        name = str(obj["metadata"]["name"])
        if name not in versions:
            kube.request("POST", resources.for_object(obj).path(namespace), body=obj,
                         query={"fieldManager": kube.field_manager})
            continue
        guarded = {**obj, "metadata": {**obj["metadata"], "resourceVersion": versions[name]}}
        kube.apply(guarded)


def _store(kube: Kube, namespace: str, agent: str, intents: Sequence[AuditIntent], at: str) -> list[auditchain.Entry]:
    """Append and write, redoing both from a fresh read when another writer got there first."""
    for attempt in range(_ATTEMPTS):
        if attempt:
            time.sleep(random.uniform(0, _JITTER * 2 ** attempt))  # a worker thread, not the event loop
        live = segments(kube, namespace, agent)
        entries = auditstorage.load(live)
        if entries and "hash" not in entries[-1]:
            raise ValueError(f"the newest entry of the audit log of Agent {agent} is damaged "
                             f"({auditchain.verify(entries).message})")
        new = _chain(entries, intents, at)
        try:
            _write(kube, namespace, live, auditstorage.plan_storage(agent, namespace, live, new))
        except errors.Conflict:
            continue
        return new
    raise errors.Conflict(f"the audit log of Agent {agent} kept changing under {_ATTEMPTS} attempts")


def _set_head(kube: Kube, namespace: str, agent: str, head: str) -> Obj | None:
    try:
        return kube.merge_patch("Agent", namespace, agent, {"status": {"auditHead": head}}, subresource="status")
    except errors.NotFound:
        return None


def _agent_ref(namespace: str, agent: str, body: Mapping[str, Any] | None) -> kopf.Body:
    meta: Obj = {"name": agent, "namespace": namespace}
    uid = (body or {}).get("metadata", {}).get("uid")
    if uid:
        meta["uid"] = uid
    return kopf.Body(cast(kopf.RawBody, {"apiVersion": "alm.dev/v1alpha1", "kind": "Agent", "metadata": meta}))


def _message(entry: auditchain.Entry) -> str:
    details = json.dumps(entry["details"], sort_keys=True, separators=(",", ":"))
    if len(details) > _DETAILS_IN_EVENT:
        details = details[:_DETAILS_IN_EVENT] + "..."
    return (f"audit #{entry['seq']} {entry['action']} by {entry['actor']} on {entry['subject']}: {details} "
            f"(hash {entry['hash']})")


def _mirror(namespace: str, agent: str, body: Mapping[str, Any] | None, entries: Sequence[auditchain.Entry]) -> None:
    ref = _agent_ref(namespace, agent, body)
    for entry in entries:
        try:
            kopf.event(ref, type="Normal", reason=event_reason(entry["action"]), message=_message(entry))
        except LookupError:  # called outside a running operator (a script, a unit test): no poster
            return


async def record(
    ctx: Context, namespace: str, agent_name: str, intents: Sequence[AuditIntent], now: str
) -> list[auditchain.Entry]:
    """Append ``intents`` (in order) to the Agent's log at time ``now``; the entries written.

    API errors propagate (the caller retries its pass); a damaged log is reported, not
    extended, so nothing is appended to a chain that no longer verifies.
    """
    if not intents:
        return []
    async with _lock(namespace, agent_name):
        try:
            entries = await asyncio.to_thread(_store, ctx.kube, namespace, agent_name, intents, now)
        except ValueError as exc:
            log.error("audit: %s; %d entries not recorded", exc, len(intents))
            kopf.warn(_agent_ref(namespace, agent_name, None), reason="AuditLogDamaged", message=str(exc))
            return []
        body = await asyncio.to_thread(_set_head, ctx.kube, namespace, agent_name, auditchain.head(entries))
    _mirror(namespace, agent_name, body, entries)
    return entries
