"""The audit trail's hash chain: an append-only log of everything that happened to one Agent.

Why a module: the chain is what makes the log evidence. :func:`append` builds the next entry,
:func:`verify` checks a whole log and names the first tampering it finds; where the entries are
kept is :mod:`alm.core.auditstorage`'s job, what they record :mod:`alm.core.auditactions`'.

Each entry names the previous entry's hash, so changing, removing or reordering any entry
breaks the chain at that point, and anyone holding the log can check it with :func:`verify`::

      seq 0                        seq 1                        seq 2   (newest)
    +--------------------------+ +--------------------------+ +--------------------------+
    | seq     0                | | seq     1                | | seq     2                |
    | at      2026-11-24T12:.. | | at      ...              | | at      ...              |
    | actor   alm-operator     | | actor   alice@example    | | actor   ...              |
    | action  created          | | action  approved         | | action  ...              |
    | subject Agent/bot        | | subject AgentRollout/r1  | | subject ...              |
    | details {...}            | | details {...}            | | details {...}            |
    | prev    000...000 (64)   | | prev    a3f1...  <-------+-+ prev    9c0e...  <-------+-- ...
    | hash    a3f1...  --------+-+ hash    9c0e...  --------+-+ hash    51bd...           |
    +--------------------------+ +--------------------------+ +--------------------------+
                                                                head = 51bd... -> Agent.status.auditHead

    hash = sha256(canonical JSON of the entry without "hash")   (sorted keys, no spaces, UTF-8)

The chain alone cannot tell a log whose newest entries were cut off from a shorter log:
:func:`verify` compares with a head known from elsewhere (``Agent.status.auditHead``, the
Events) for that. It proves integrity, not authorship: whoever can write the ConfigMaps can
also append well-formed entries.

Nothing here reads a clock: handlers pass ``at``.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Mapping, Sequence
from typing import Any, TypedDict

from alm.core import hashing
from alm.core.auditredaction import redact

__all__ = [
    "GENESIS",
    "MAX_DETAILS_BYTES",
    "Entry",
    "Tampering",
    "Verdict",
    "append",
    "entry_hash",
    "head",
    "verify",
]

GENESIS = "0" * 64  # the ``prev`` of the first entry
MAX_DETAILS_BYTES = 16 * 1024  # larger details are replaced by their digest (see append)

_FIELDS = ("seq", "at", "actor", "action", "subject", "details", "prev", "hash")


class Entry(TypedDict):
    seq: int
    at: str
    actor: str
    action: str
    subject: str
    details: dict[str, Any]
    prev: str
    hash: str


def entry_hash(entry: Mapping[str, Any]) -> str:
    """sha256 of the canonical JSON of every field but ``hash`` (an added field changes it too)."""
    return hashing.content_hash({key: value for key, value in entry.items() if key != "hash"})


def head(entries: Sequence[Mapping[str, Any]]) -> str:
    """The newest entry's hash (what ``Agent.status.auditHead`` shows); :data:`GENESIS` when empty."""
    return str(entries[-1]["hash"]) if entries else GENESIS


def _bounded(details: dict[str, Any]) -> dict[str, Any]:
    """Details too large for a log line are replaced by their digest, so the fact is kept."""
    size = len(hashing.canonical_json(details).encode())
    if size <= MAX_DETAILS_BYTES:
        return details
    return {"truncated": True, "sizeBytes": size, "sha256": hashing.content_hash(details)}


def append(
    entries: Sequence[Mapping[str, Any]],
    *,
    at: str,
    actor: str,
    action: str,
    subject: str,
    details: Mapping[str, Any] | None = None,
) -> Entry:
    """The entry that extends ``entries``; the caller stores it (see :func:`plan_storage`).

    ``details`` go through :func:`redact` first, so a careless caller cannot put a credential
    into a record that is kept forever; above 16 KiB they are replaced by their size and digest.
    """
    clean = _bounded(redact(dict(details or {})))
    seq = int(entries[-1]["seq"]) + 1 if entries else 0
    prev = head(entries)
    body = {"seq": seq, "at": at, "actor": actor, "action": str(action), "subject": subject,
            "details": clean, "prev": prev}
    return Entry(seq=seq, at=at, actor=actor, action=str(action), subject=subject, details=clean, prev=prev,
                 hash=hashing.content_hash(body))


class Tampering(enum.StrEnum):
    """What :func:`verify` found wrong, named after the evidence."""

    MALFORMED = "Malformed"  # not an entry: a field is missing or of the wrong type
    EDITED = "Edited"  # an entry no longer matches its hash, or the next one's prev
    REMOVED = "Removed"  # a gap in seq: entries are missing
    REORDERED = "Reordered"  # entries are out of seq order
    INSERTED = "Inserted"  # a second entry claims a seq already used
    BAD_GENESIS = "BadGenesis"  # the first entry does not start from the genesis hash
    TRUNCATED = "Truncated"  # the known head is not in the chain: the newest entries are gone


@dataclasses.dataclass(frozen=True)
class Verdict:
    """The result of :func:`verify`; truthy when the chain is intact."""

    ok: bool
    kind: Tampering | None = None
    seq: int | None = None  # the first bad seq (for Removed/Truncated: the first missing one)
    index: int | None = None  # position in the list where the problem was found
    message: str = ""

    def __bool__(self) -> bool:
        return self.ok


def _malformed(entry: Any) -> str | None:
    if not isinstance(entry, Mapping):
        return "is not an object"
    missing = [field for field in _FIELDS if field not in entry]
    if missing:
        return f"lacks {', '.join(missing)}"
    if not isinstance(entry["seq"], int) or isinstance(entry["seq"], bool) or entry["seq"] < 0:
        return "has a seq that is not a non-negative integer"
    if not isinstance(entry["details"], Mapping):
        return "has details that are not an object"
    for field in ("at", "actor", "action", "subject", "prev", "hash"):
        if not isinstance(entry[field], str):
            return f"has a {field} that is not a string"
    return None


def _out_of_order(entries: Sequence[Mapping[str, Any]], index: int, prev_seq: int) -> Verdict:
    """Classify a seq that does not follow the previous one."""
    seq: int = entries[index]["seq"]
    later = {e.get("seq") for e in entries[index + 1:] if isinstance(e, Mapping)}
    if seq > prev_seq + 1:
        missing = range(prev_seq + 1, seq)
        if any(s in later for s in missing):
            return Verdict(False, Tampering.REORDERED, seq, index,
                           f"entry {seq} comes before entry {prev_seq + 1}: entries were reordered")
        span = f"{missing[0]}" if len(missing) == 1 else f"{missing[0]}..{missing[-1]}"
        return Verdict(False, Tampering.REMOVED, prev_seq + 1, index, f"entries {span} are missing")
    return Verdict(False, Tampering.INSERTED, seq, index,
                   f"a second entry claims seq {seq} after entry {prev_seq}: an entry was inserted")


def verify(entries: Sequence[Mapping[str, Any]], *, head: str | None = None) -> Verdict:
    """Check the chain; report the first problem, or ok.

    ``head``: a hash known to belong to the chain (``Agent.status.auditHead``, an Event). The
    chain must contain it; entries after it are later appends and fine (the log is written
    before the status). Without ``head`` a log cut off at its newest end looks intact.
    """
    prev_hash, prev_seq = GENESIS, -1
    hashes: set[str] = set()
    for index, entry in enumerate(entries):
        problem = _malformed(entry)
        if problem is not None:
            return Verdict(False, Tampering.MALFORMED, prev_seq + 1, index, f"entry at position {index} {problem}")
        seq = entry["seq"]
        if entry_hash(entry) != entry["hash"]:
            return Verdict(False, Tampering.EDITED, seq, index,
                           f"entry {seq} was changed: it no longer matches its hash")
        if seq != prev_seq + 1:
            return _out_of_order(entries, index, prev_seq)
        if entry["prev"] != prev_hash:
            if index == 0:
                return Verdict(False, Tampering.BAD_GENESIS, seq, index,
                               f"entry 0 must have prev {GENESIS[:12]}... (the genesis hash)")
            # The entry is intact, so the one before it was rewritten (with a fresh hash), or
            # entries between them were removed and the rest renumbered.
            return Verdict(False, Tampering.EDITED, prev_seq, index,
                           f"entry {prev_seq} was rewritten: entry {seq} names a different predecessor")
        prev_hash, prev_seq = entry["hash"], seq
        hashes.add(prev_hash)
    if head is not None and head != GENESIS and head not in hashes:
        return Verdict(False, Tampering.TRUNCATED, prev_seq + 1, len(entries),
                       f"the known head {head[:12]}... is not in the chain: entries after {prev_seq} were removed")
    if head is not None and head != prev_hash and head != GENESIS:
        return Verdict(True, message="intact; the log continues past the known head")
    return Verdict(True, message=f"intact: {len(entries)} entries")
