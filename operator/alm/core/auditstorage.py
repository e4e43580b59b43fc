"""Storage of the audit log in ConfigMaps: segments that are filled, sealed and read back.

Why a module: the chain (:mod:`alm.core.auditchain`) does not care where entries live; this
module maps it onto Kubernetes objects. The entries live in ConfigMaps ``<agent>-audit-<n>``
(one canonical JSON object per line under ``entries.jsonl``) that are sealed
(``immutable: true``) before they reach the 1 MiB object limit; :func:`plan_storage` decides
what to write, :func:`load` reads them back. They are not owned by the Agent: the log must
outlive it (the retirement archives it).

Nothing here talks to the API server: handlers apply the ConfigMaps :func:`plan_storage` returns.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

from alm.core import hashing, naming
from alm.core.auditchain import GENESIS

__all__ = [
    "ANNOTATION_HEAD",
    "ANNOTATION_SEQ_RANGE",
    "COMPONENT",
    "DATA_KEY",
    "SEGMENT_LIMIT",
    "load",
    "plan_storage",
    "segment_name",
]

DATA_KEY = "entries.jsonl"
COMPONENT = "audit"
ANNOTATION_HEAD = "alm.dev/audit-head"
ANNOTATION_SEQ_RANGE = "alm.dev/audit-seq-range"
SEGMENT_LIMIT = 900 * 1024  # bytes of entries.jsonl; leaves ~120 KiB of the 1 MiB for metadata

_NAME_MAX = 253
_SEGMENT_INDEX = re.compile(r"-audit-(\d+)$")


def segment_name(agent: str, index: int) -> str:
    """``<agent>-audit-<index>``, shortened with a hash when the name would pass 253 characters."""
    suffix = f"-audit-{index}"
    if len(agent) + len(suffix) > _NAME_MAX:
        digest = hashlib.sha256(agent.encode()).hexdigest()[:10]
        agent = f"{agent[: _NAME_MAX - len(suffix) - 11].rstrip('-.')}-{digest}"
    return agent + suffix


def _segment_index(segment: Mapping[str, Any]) -> int | None:
    match = _SEGMENT_INDEX.search(str(segment.get("metadata", {}).get("name", "")))
    return int(match.group(1)) if match else None


def _ordered(segments: Sequence[Mapping[str, Any]]) -> list[tuple[int, Mapping[str, Any]]]:
    found = [(_segment_index(s), s) for s in segments]
    return sorted(((i, s) for i, s in found if i is not None), key=lambda pair: pair[0])


def _lines(segment: Mapping[str, Any]) -> list[str]:
    text = str((segment.get("data") or {}).get(DATA_KEY, ""))
    return [line for line in text.split("\n") if line.strip()]


def _parse_line(line: str, name: str, number: int) -> dict[str, Any]:
    try:
        value = json.loads(line)
    except ValueError:
        value = None
    if isinstance(value, dict):
        return value
    # Kept in place (not skipped) so verify reports the damage where it is.
    return {"malformed": f"line {number} of {name} is not a JSON object"}


def load(segments: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Every entry, in segment order and, inside a segment, in stored order.

    Entries are deliberately not sorted by seq: sorting would hide a reordering from
    :func:`verify`. A line that is not a JSON object is returned as ``{"malformed": ...}``.
    Objects whose name does not end in ``-audit-<n>`` are ignored.
    """
    entries: list[dict[str, Any]] = []
    for _, segment in _ordered(segments):
        name = str(segment.get("metadata", {}).get("name"))
        entries += [_parse_line(line, name, n) for n, line in enumerate(_lines(segment), 1)]
    return entries


@dataclasses.dataclass
class _Segment:
    index: int
    lines: list[str]
    seqs: list[int]
    last_hash: str
    sealed: bool = False
    changed: bool = False

    @property
    def size(self) -> int:
        return sum(len(line.encode()) + 1 for line in self.lines)


def _segment_object(agent: str, namespace: str, seg: _Segment) -> dict[str, Any]:
    seq_range = f"{seg.seqs[0]}-{seg.seqs[-1]}" if seg.seqs else ""
    obj: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": segment_name(agent, seg.index),
            "namespace": namespace,
            "labels": naming.agent_labels(agent, COMPONENT),
            "annotations": {ANNOTATION_HEAD: seg.last_hash, ANNOTATION_SEQ_RANGE: seq_range},
        },
        "data": {DATA_KEY: "".join(line + "\n" for line in seg.lines)},
    }
    if seg.sealed:
        obj["immutable"] = True
    return obj


def _open_segment(ordered: list[tuple[int, Mapping[str, Any]]]) -> _Segment | None:
    if not ordered:
        return None
    index, live = ordered[-1]
    lines = _lines(live)
    parsed = [_parse_line(line, "", 0) for line in lines]
    seqs = [int(e["seq"]) for e in parsed if isinstance(e.get("seq"), int)]
    last = str(parsed[-1].get("hash", GENESIS)) if parsed else GENESIS
    return _Segment(index, lines, seqs, last, sealed=bool(live.get("immutable")))


def _unstored(stored: list[dict[str, Any]], new_entries: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """``new_entries`` minus those already stored, so replaying a write is harmless."""
    by_seq = {e.get("seq"): e for e in stored}
    next_seq = int(stored[-1].get("seq", -1)) + 1 if stored else 0
    fresh: list[Mapping[str, Any]] = []
    for entry in new_entries:
        seq = entry["seq"]
        if seq in by_seq and not fresh:
            if by_seq[seq].get("hash") != entry["hash"]:
                raise ValueError(f"audit entry {seq} differs from the stored one: the log is append-only")
            continue
        if seq != next_seq:
            raise ValueError(f"audit entry {seq} does not extend the log (next seq is {next_seq})")
        fresh.append(entry)
        next_seq += 1
    return fresh


def plan_storage(
    agent: str,
    namespace: str,
    existing_segments: Sequence[Mapping[str, Any]],
    new_entries: Sequence[Mapping[str, Any]],
    *,
    limit: int = SEGMENT_LIMIT,
) -> list[dict[str, Any]]:
    """The segment ConfigMaps to apply so that the log holds ``new_entries`` too.

    The newest unsealed segment is filled until the next line would push ``entries.jsonl``
    past ``limit`` bytes; it is then sealed (``immutable: true``: the API server itself refuses
    later edits) and the next segment starts. Only changed segments are returned, each whole
    (for server-side apply). Entries already stored are skipped; an entry that would not
    extend the log is a programming error (``ValueError``).
    """
    ordered = _ordered(existing_segments)
    fresh = _unstored(load(existing_segments), new_entries)
    if not fresh:
        return []
    current = _open_segment(ordered)
    touched: list[_Segment] = []
    for entry in fresh:
        line = hashing.canonical_json(entry)
        if current is None or current.sealed:
            current = _Segment(current.index + 1 if current else 0, [], [], GENESIS, changed=True)
            touched.append(current)
        elif current.lines and current.size + len(line.encode()) + 1 > limit:
            current.sealed = current.changed = True
            if current not in touched:
                touched.append(current)
            current = _Segment(current.index + 1, [], [], GENESIS, changed=True)
            touched.append(current)
        if current not in touched:
            touched.append(current)
        current.lines.append(line)
        current.seqs.append(int(entry["seq"]))
        current.last_hash = str(entry["hash"])
        current.changed = True
    return [_segment_object(agent, namespace, seg) for seg in touched]
