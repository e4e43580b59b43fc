"""What every handler shares, carried in kopf's ``memo``: the API client, the
coalescer, the freshness cache, and the two impurities the core takes as inputs
(the clock and a source of randomness)."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import os
import secrets
from typing import Any

from alm.core.archive import DEFAULT_JOB_IMAGE
from alm.handlers.coalesce import Coalescer
from alm.handlers.freshness import Freshness
from alm.kube.api import Kube

__all__ = ["Context", "random_string", "utcnow"]


def utcnow() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def random_string(length: int) -> str:
    return secrets.token_urlsafe(length)[:length]


@dataclasses.dataclass
class Context:
    kube: Kube
    coalescer: Coalescer = dataclasses.field(default_factory=Coalescer)
    freshness: Freshness = dataclasses.field(default_factory=Freshness)
    retries: int = 3
    backoff: float = 0.5
    # How often every Agent is reconciled even when no watch event says it changed.
    resync: float = dataclasses.field(default_factory=lambda: float(os.environ.get("ALM_RESYNC_SECONDS", "60")))
    # kopf hands its indexes only to handlers; the resync loop borrows them from the
    # first handler call (they are live views, updated by kopf as watch events arrive).
    indexes: dict[str, Any] = dataclasses.field(default_factory=dict)
    resync_task: asyncio.Task[None] | None = None
    monitor_task: asyncio.Task[None] | None = None
    # Metric providers by (namespace, agent, provider spec): the scrape provider remembers scrapes.
    providers: dict[tuple[str, str, str], Any] = dataclasses.field(default_factory=dict)
    # Rollouts (alm.handlers.rollouts): the running rollout's decisions about each Agent's children
    # (an agenttraffic.RolloutTraffic by (namespace, agent)), and one requeue timer per AgentRollout.
    traffic: dict[tuple[str, str], Any] = dataclasses.field(default_factory=dict)
    rollout_timers: dict[tuple[str, str], asyncio.Task[None]] = dataclasses.field(default_factory=dict)
    background: set[asyncio.Task[None]] = dataclasses.field(default_factory=set)
    # Users' Secrets that tools read credentials from, briefly remembered: creating an Agent
    # causes a burst of passes (one per child event) that would each read them again.
    # Rotations are picked up after at most ``secret_ttl`` seconds (Secrets are not watched;
    # the resync catches up).
    secret_ttl: float = 2.0
    secrets: dict[tuple[str, str], tuple[float, Any]] = dataclasses.field(default_factory=dict)
    # The image of the Job that copies a retired Agent's archive onto a PersistentVolumeClaim
    # (archive.to: pvc): anything with sh and sha256sum. ``alm run --archive-image`` sets it.
    archive_image: str = dataclasses.field(
        default_factory=lambda: os.environ.get("ALM_ARCHIVE_IMAGE") or DEFAULT_JOB_IMAGE)

    @classmethod
    def of(cls, memo: Any) -> Context:
        ctx = memo.alm
        assert isinstance(ctx, Context)
        return ctx
