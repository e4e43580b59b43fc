"""Arithmetic on the RFC 3339 strings that status fields and ``now`` carry.

The planners never read a clock: ``now`` is handed in as a string, and every moment they keep
(a step's start, a deadline, a transition) is written back as one, so the same inputs give the
same status. The retirement and rollout planners both compare and shift such moments; these
three helpers are how, in one place.
"""

from __future__ import annotations

import datetime

__all__ = ["later", "parse_time", "since"]


def parse_time(value: str) -> datetime.datetime:
    """``value`` as an aware datetime ("Z" understood; a naive one is taken as UTC)."""
    parsed = datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=datetime.UTC)


def since(then: str, now: str) -> float:
    """Seconds from ``then`` to ``now`` (negative if ``then`` is later)."""
    return (parse_time(now) - parse_time(then)).total_seconds()


def later(then: str, seconds: float) -> str:
    """``seconds`` after ``then``, as a UTC timestamp with whole seconds."""
    moment = parse_time(then) + datetime.timedelta(seconds=seconds)
    return moment.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
