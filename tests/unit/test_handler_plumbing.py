"""The handlers' in-memory helpers: coalescing and the freshness cache."""

from __future__ import annotations

import asyncio

from alm.handlers.coalesce import Coalescer
from alm.handlers.freshness import Freshness


def obj(name: str, rv: int, owner: str = "u1", kind: str = "Service") -> dict[str, object]:
    return {"kind": kind, "metadata": {"name": name, "namespace": "ns", "resourceVersion": str(rv),
                                       "ownerReferences": [{"uid": owner}]}}


async def test_bursts_fold_into_one_rerun_and_never_overlap() -> None:
    coalescer = Coalescer()
    running = 0
    runs = 0
    gate = asyncio.Event()

    async def work() -> None:
        nonlocal running, runs
        running += 1
        assert running == 1
        runs += 1
        await gate.wait()
        running -= 1

    first = asyncio.create_task(coalescer.run("k", work))
    await asyncio.sleep(0)
    for _ in range(10):
        await coalescer.run("k", work)  # returns at once: marks dirty
    assert coalescer.busy("k")
    gate.set()
    await first
    assert runs == 2
    assert not coalescer.busy("k")


def test_freshness_prefers_our_newer_write_until_the_watch_catches_up() -> None:
    cache = Freshness()
    cache.wrote(obj("a", 10))
    assert cache.view(obj("a", 5))["metadata"]["resourceVersion"] == "10"  # type: ignore[index]
    assert cache.view(obj("a", 10))["metadata"]["resourceVersion"] == "10"  # type: ignore[index]
    assert cache.view(obj("a", 5))["metadata"]["resourceVersion"] == "5"  # type: ignore[index]  # forgotten


def test_freshness_shows_created_children_early_and_hides_deleted_ones() -> None:
    cache = Freshness()
    cache.wrote(obj("new", 3))
    cache.wrote(obj("elsewhere", 3, owner="u2"))
    cache.deleted(obj("old", 1), "u1")
    merged = cache.merge([obj("old", 1)], ["Service"], "ns", "u1")
    assert [m["metadata"]["name"] for m in merged] == ["new"]  # type: ignore[index]
    # once the watch no longer shows "old", its tombstone goes, so a namesake can appear again
    cache.merge([], ["Service"], "ns", "u1")
    assert [m["metadata"]["name"] for m in cache.merge([obj("old", 9)], ["Service"], "ns", "u1")] == ["old", "new"]  # type: ignore[index]
