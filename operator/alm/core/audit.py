"""The audit trail: an append-only, hash-chained log of everything that happened to one Agent.

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

Storage: the entries live in ConfigMaps ``<agent>-audit-<n>`` (one canonical JSON object per
line under ``entries.jsonl``) that are sealed (``immutable: true``) before they reach the
1 MiB object limit; :func:`plan_storage` decides what to write, :func:`load` reads them back.
They are not owned by the Agent: the log must outlive it (the retirement archives it).

Nothing here reads a clock or talks to the API server: handlers pass ``at`` and apply the
ConfigMaps :func:`plan_storage` returns.
"""

from __future__ import annotations

import dataclasses
import enum
import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from typing import Any, TypedDict

from alm.core import hashing, naming

__all__ = [
    "ANNOTATION_HEAD",
    "ANNOTATION_SEQ_RANGE",
    "COMPONENT",
    "DATA_KEY",
    "GENESIS",
    "MAX_DETAILS_BYTES",
    "MIN_SECRET_LENGTH",
    "OPERATOR_ACTOR",
    "REDACTED",
    "SEGMENT_LIMIT",
    "AuditAction",
    "AuditIntent",
    "Entry",
    "Tampering",
    "Verdict",
    "append",
    "entry_hash",
    "head",
    "load",
    "looks_secret",
    "plan_storage",
    "redact",
    "segment_name",
    "verify",
]

GENESIS = "0" * 64  # the ``prev`` of the first entry
OPERATOR_ACTOR = "alm-operator"
DATA_KEY = "entries.jsonl"
COMPONENT = "audit"
ANNOTATION_HEAD = "alm.dev/audit-head"
ANNOTATION_SEQ_RANGE = "alm.dev/audit-seq-range"
SEGMENT_LIMIT = 900 * 1024  # bytes of entries.jsonl; leaves ~120 KiB of the 1 MiB for metadata
MAX_DETAILS_BYTES = 16 * 1024  # larger details are replaced by their digest (see append)
REDACTED = "[redacted]"

_FIELDS = ("seq", "at", "actor", "action", "subject", "details", "prev", "hash")
_NAME_MAX = 253


class AuditAction(enum.StrEnum):
    """What an entry records. Users filter and alert on these: change only with a CHANGELOG entry."""

    CREATED = "created"
    VERSION_PUBLISHED = "versionPublished"
    PROVISIONED = "provisioned"
    ROLLOUT_STARTED = "rolloutStarted"
    ROLLOUT_STEP = "rolloutStep"
    ANALYSIS_VERDICT = "analysisVerdict"
    APPROVED = "approved"
    PROMOTED = "promoted"
    ROLLED_BACK = "rolledBack"
    BUDGET_EXCEEDED = "budgetExceeded"
    BUDGET_SUSPENDED = "budgetSuspended"
    BUDGET_RESTORED = "budgetRestored"
    RETIREMENT_DRAINING = "retirementDraining"
    RETIREMENT_REVOKING = "retirementRevoking"
    CREDENTIAL_REVOKED = "credentialRevoked"
    WEBHOOK_CALLED = "revocationWebhookCalled"
    RETIREMENT_ARCHIVING = "retirementArchiving"
    RETIRED = "retired"
    RETIREMENT_FAILED = "retirementFailed"
    MANUAL_OVERRIDE = "manualOverride"
    DELETED = "deleted"


class Entry(TypedDict):
    seq: int
    at: str
    actor: str
    action: str
    subject: str
    details: dict[str, Any]
    prev: str
    hash: str


@dataclasses.dataclass(frozen=True)
class AuditIntent:
    """An entry a planner wants appended; the handler adds ``at`` and the chain fields."""

    action: str
    subject: str
    details: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    actor: str = OPERATOR_ACTOR


# --- Redaction -----------------------------------------------------------------------------------

# Key names are split into words (camelCase, snake_case, kebab-case); a key holds a credential
# when one of its words is below, unless its last word says it only names or counts one
# ("secretName", "tokenCount"): those values still go through the value rules.
_SENSITIVE_WORDS = frozenset({
    "apikey", "auth", "authorization", "bearer", "cookie", "cookies", "credential", "credentials",
    "creds", "hmac", "key", "keys", "passphrase", "passwd", "password", "passwords", "private",
    "privatekey", "pwd", "secret", "secrets", "signature", "token", "tokens",
})
_NAMING_WORDS = frozenset({"at", "count", "digest", "hash", "id", "kind", "length", "name", "names", "ref",
                           "sha256", "type"})
_WORD = re.compile(r"[A-Z]+(?=[A-Z][a-z])|[A-Z]?[a-z]+|[A-Z]+|\d+")
_SECRET_PREFIXES = ("sk-", "sk_", "pk_", "rk_", "ghp_", "gho_", "ghu_", "ghs_", "github_pat_", "glpat-",
                    "xoxa-", "xoxb-", "xoxp-", "AKIA", "ASIA", "AIza", "eyJ")
_AUTH_SCHEME = re.compile(r"\b(bearer|basic|token)\s+\S{8,}", re.IGNORECASE)
_URL_USERINFO = re.compile(r"[a-zA-Z][a-zA-Z0-9+.-]*://[^/@\s]+@")
_OPAQUE = re.compile(r"[A-Za-z0-9+/_=-]+")
MIN_SECRET_LENGTH = 20


def _words(key: str) -> list[str]:
    return [word.lower() for word in _WORD.findall(key)]


def _sensitive_key(key: str) -> bool:
    words = _words(key)
    if not words or words[-1] in _NAMING_WORDS:
        return False
    return any(word in _SENSITIVE_WORDS for word in words) or "".join(words) in _SENSITIVE_WORDS


def _opaque_token(word: str, min_length: int) -> bool:
    # Random base64/base64url of this length almost always mixes cases and has a digit or a
    # symbol; Kubernetes names (lower-case), hex digests (lower-case) and CamelCase words
    # (letters only) do not, so they stay readable.
    if len(word) < min_length or not _OPAQUE.fullmatch(word) or word.isalpha():
        return False
    has_other = any(c.isdigit() or c in "+/_=" for c in word)
    return any(c.isupper() for c in word) and any(c.islower() for c in word) and has_other


def looks_secret(value: str, *, min_length: int = MIN_SECRET_LENGTH) -> bool:
    """Whether a string looks like a credential: a best-effort net behind the key-name rule.

    True for: a known key prefix (``sk-``, ``ghp_``, ``AKIA``, a JWT, ...), an ``Authorization``
    style value (``Bearer <x>``), a URL with user info, a PEM block, or any word of at least
    ``min_length`` characters from the base64 alphabet that mixes upper and lower case with a
    digit or symbol.
    """
    if "-----BEGIN" in value or _AUTH_SCHEME.search(value) or _URL_USERINFO.search(value):
        return True
    for word in value.split():
        if any(word.startswith(p) and len(word) >= len(p) + 8 for p in _SECRET_PREFIXES):
            return True
        if _opaque_token(word, min_length):
            return True
    return False


def redact(details: Any, *, min_length: int = MIN_SECRET_LENGTH) -> Any:
    """A copy of ``details`` safe to keep forever: no credential values.

    - a string (or bytes) under a key naming a credential (``token``, ``apiKey``,
      ``client_secret``, ``password``, ``credentials``, ``hmacKey``, ...) becomes ``[redacted]``;
      numbers and booleans under such keys stay (``tokens: 1234`` is a count);
    - any other string that :func:`looks_secret` becomes ``[redacted]``;
    - mappings and lists are redacted recursively; tuples become lists, keys become strings.

    The rules err on the side of hiding: a log that hides a name is an inconvenience, a log
    that leaks a key is an incident. Callers still must not put credential values in details;
    this is the net, not the rule.
    """
    if isinstance(details, Mapping):
        out: dict[str, Any] = {}
        for key, value in details.items():
            key = str(key)
            if isinstance(value, str | bytes) and _sensitive_key(key):
                out[key] = REDACTED
            else:
                out[key] = redact(value, min_length=min_length)
        return out
    if isinstance(details, list | tuple):
        return [redact(item, min_length=min_length) for item in details]
    if isinstance(details, bytes):
        return REDACTED  # raw bytes are never audit material
    if isinstance(details, str) and looks_secret(details, min_length=min_length):
        return REDACTED
    return details


# --- The chain -----------------------------------------------------------------------------------


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


# --- Storage in ConfigMaps -----------------------------------------------------------------------

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
