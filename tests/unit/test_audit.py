"""The audit chain: append, redact, verify (every kind of tampering), and ConfigMap storage."""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Callable
from typing import Any

import pytest

from alm.core import auditchain, auditredaction, auditstorage, hashing
from alm.core.auditactions import AuditAction
from alm.core.auditchain import Tampering
from tests.unit.builders import SECRET_B64, SECRET_VALUE

Entries = list[dict[str, Any]]


def chain(n: int, *, start: int = 0, entries: Entries | None = None) -> Entries:
    entries = list(entries or [])
    for i in range(start, start + n):
        entries.append(dict(auditchain.append(
            entries, at=f"2026-11-24T12:00:{i:02d}Z", actor="alm-operator", action=AuditAction.ROLLOUT_STEP,
            subject="AgentRollout/bot-v2", details={"step": i, "weight": 10 * i},
        )))
    return entries


def rehash(entry: dict[str, Any]) -> dict[str, Any]:
    entry["hash"] = auditchain.entry_hash(entry)
    return entry


# --- append ----------------------------------------------------------------------------------------


def test_first_entry_starts_from_genesis_and_hashes_its_canonical_json() -> None:
    entry = auditchain.append([], at="2026-11-24T12:00:00Z", actor="alice", action=AuditAction.APPROVED,
                              subject="AgentRollout/r1", details={"step": 2})
    assert entry["seq"] == 0 and entry["prev"] == auditchain.GENESIS == "0" * 64
    without_hash = {k: v for k, v in entry.items() if k != "hash"}
    canonical = json.dumps(without_hash, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    assert entry["hash"] == hashlib.sha256(canonical.encode()).hexdigest()
    assert entry["action"] == "approved"


def test_each_entry_names_the_previous_hash_and_the_head_is_the_newest() -> None:
    entries = chain(4)
    assert [e["seq"] for e in entries] == [0, 1, 2, 3]
    assert all(entries[i]["prev"] == entries[i - 1]["hash"] for i in range(1, 4))
    assert auditchain.head(entries) == entries[-1]["hash"]
    assert auditchain.head([]) == auditchain.GENESIS


def test_same_inputs_give_the_same_entry() -> None:
    assert chain(3) == chain(3)


def test_append_redacts_details() -> None:
    entry = auditchain.append([], at="t", actor="a", action="x", subject="s",
                              details={"token": SECRET_VALUE, "note": f"got {SECRET_B64}", "version": "bot-v2"})
    assert entry["details"] == {"token": auditredaction.REDACTED, "note": auditredaction.REDACTED, "version": "bot-v2"}
    assert SECRET_VALUE not in json.dumps(entry) and SECRET_B64 not in json.dumps(entry)


def test_oversized_details_are_replaced_by_their_digest() -> None:
    big = {"blob": "a b " * 10_000}
    entry = auditchain.append([], at="t", actor="a", action="x", subject="s", details=big)
    assert entry["details"]["truncated"] is True
    assert entry["details"]["sizeBytes"] > auditchain.MAX_DETAILS_BYTES
    assert len(entry["details"]["sha256"]) == 64
    assert auditchain.verify([dict(entry)])


def test_action_names_are_unique_camel_case() -> None:
    values = [a.value for a in AuditAction]
    assert len(values) == len(set(values))
    assert all(v[0].islower() and "_" not in v and "-" not in v for v in values)
    for required in ("created", "versionPublished", "provisioned", "rolloutStarted", "rolloutStep",
                     "analysisVerdict", "approved", "promoted", "rolledBack", "budgetExceeded", "budgetSuspended",
                     "retirementDraining", "retirementRevoking", "credentialRevoked", "retirementArchiving",
                     "retired", "manualOverride", "deleted"):
        assert required in values


# --- redaction -------------------------------------------------------------------------------------


@pytest.mark.parametrize(("details", "expected"), [
    ({"token": "abc"}, {"token": "[redacted]"}),
    ({"apiKey": "abc"}, {"apiKey": "[redacted]"}),
    ({"api_key": "abc"}, {"api_key": "[redacted]"}),
    ({"x-api-key": "abc"}, {"x-api-key": "[redacted]"}),
    ({"APIKey": "abc"}, {"APIKey": "[redacted]"}),
    ({"client_secret": "abc"}, {"client_secret": "[redacted]"}),
    ({"password": "hunter2"}, {"password": "[redacted]"}),
    ({"Authorization": "Basic abc"}, {"Authorization": "[redacted]"}),
    ({"credentials": {"user": "u"}}, {"credentials": {"user": "u"}}),  # containers recurse
    ({"credentials": "u:p"}, {"credentials": "[redacted]"}),
    ({"hmacKey": b"raw"}, {"hmacKey": "[redacted]"}),
    ({"privateKey": "-----BEGIN KEY-----"}, {"privateKey": "[redacted]"}),
    # names, refs and counts of credentials are not credentials
    ({"secretName": "bot-credentials-0a1b2c3d4e"}, {"secretName": "bot-credentials-0a1b2c3d4e"}),
    ({"tokenCount": 3}, {"tokenCount": 3}),
    ({"tokens": 1234, "tokensPerDay": 5000}, {"tokens": 1234, "tokensPerDay": 5000}),
    ({"secretRef": {"name": "bot-tools", "key": "crm-key"}}, {"secretRef": {"name": "bot-tools", "key": "[redacted]"}}),
    ({"kind": "Secret", "name": "bot-credentials"}, {"kind": "Secret", "name": "bot-credentials"}),
    # values that look like credentials, wherever they are
    ({"note": SECRET_VALUE}, {"note": "[redacted]"}),
    ({"note": SECRET_B64}, {"note": "[redacted]"}),
    ({"items": ["ok", SECRET_B64]}, {"items": ["ok", "[redacted]"]}),
    ({"url": "https://user:pa55@example.com/x"}, {"url": "[redacted]"}),
    ({"header": "Bearer eyJhbGciOiJIUzI1NiJ9.payload.sig"}, {"header": "[redacted]"}),
    ({"aws": "AKIAIOSFODNN7EXAMPLE"}, {"aws": "[redacted]"}),
    ({"gh": "ghp_0123456789abcdefABCDEF"}, {"gh": "[redacted]"}),
    # what must stay readable
    ({"hash": "a" * 64}, {"hash": "a" * 64}),
    ({"digest": hashlib.sha256(b"x").hexdigest()}, {"digest": hashlib.sha256(b"x").hexdigest()}),
    ({"version": "support-bot-v2-config-0a1b2c3d4e5f"}, {"version": "support-bot-v2-config-0a1b2c3d4e5f"}),
    ({"reason": "ProgressDeadlineExceeded"}, {"reason": "ProgressDeadlineExceeded"}),
    ({"message": "weight 20 -> 40, success 0.97"}, {"message": "weight 20 -> 40, success 0.97"}),
    ({"path": "/apis/alm.dev/v1alpha1/namespaces/t/agents"}, {"path": "/apis/alm.dev/v1alpha1/namespaces/t/agents"}),
    ({"n": 1, "ok": True, "none": None, "f": 0.5}, {"n": 1, "ok": True, "none": None, "f": 0.5}),
    ({1: "int key"}, {"1": "int key"}),
    ({"t": ("a", "b")}, {"t": ["a", "b"]}),
], ids=lambda v: json.dumps(v, default=str)[:40] if isinstance(v, dict) else None)
def test_redact(details: dict[Any, Any], expected: dict[str, Any]) -> None:
    assert auditredaction.redact(details) == expected


def test_redact_does_not_modify_its_input() -> None:
    details = {"token": "abc", "nested": {"password": "p"}}
    before = copy.deepcopy(details)
    auditredaction.redact(details)
    assert details == before


@pytest.mark.parametrize(("value", "secret"), [
    ("Zm9vYmFyYmF6cXV4MTIzNDU2", True),  # base64, 24 chars
    ("zm9vymfyymf6cxv4mtiznDu2", True),
    ("short+Aa1", False),  # under the length
    ("alllowercaseletters-and-digits-0123456789", False),  # a Kubernetes-style name
    ("ThisIsJustAVeryLongCamelCaseWord", False),  # letters only
    ("sk-short", False),  # prefix but too short to be a key
    ("xoxb-1234567890-abcdef", True),
    ("token abcdefghijklmnop", True),
    ("-----BEGIN OPENSSH PRIVATE KEY-----", True),
    ("postgres://app:pw@db:5432/x", True),
    ("https://example.com/revoke", False),
])
def test_looks_secret(value: str, secret: bool) -> None:
    assert auditredaction.looks_secret(value) is secret


# --- verify ----------------------------------------------------------------------------------------


def test_an_intact_chain_verifies() -> None:
    entries = chain(6)
    verdict = auditchain.verify(entries)
    assert verdict and verdict.ok and verdict.kind is None
    assert auditchain.verify(entries, head=auditchain.head(entries))
    assert auditchain.verify([]) and auditchain.verify([], head=auditchain.GENESIS)


def test_a_log_ahead_of_the_known_head_is_intact() -> None:
    """The log is written before Agent.status.auditHead: a crash in between leaves it ahead."""
    entries = chain(6)
    verdict = auditchain.verify(entries, head=entries[3]["hash"])
    assert verdict.ok and "past the known head" in verdict.message


def _edit(i: int) -> Callable[[Entries], Entries]:
    def f(e: Entries) -> Entries:
        e[i]["details"]["weight"] = 100
        return e
    return f


def _edit_and_rehash(i: int) -> Callable[[Entries], Entries]:
    def f(e: Entries) -> Entries:
        e[i]["actor"] = "mallory"
        rehash(e[i])
        return e
    return f


def _add_field(e: Entries) -> Entries:
    e[2]["approvedBy"] = "mallory"
    return e


def _remove(*indexes: int) -> Callable[[Entries], Entries]:
    return lambda e: [x for i, x in enumerate(e) if i not in indexes]


def _swap(i: int, j: int) -> Callable[[Entries], Entries]:
    def f(e: Entries) -> Entries:
        e[i], e[j] = e[j], e[i]
        return e
    return f


def _move_last_first(e: Entries) -> Entries:
    return [e[-1], *e[:-1]]


def _insert_forged(position: int) -> Callable[[Entries], Entries]:
    """A well-formed entry claiming seq 2, correctly linked to entry 1."""
    def f(e: Entries) -> Entries:
        forged = dict(auditchain.append(e[:2], at="2026-11-24T12:30:00Z", actor="mallory",
                                        action=AuditAction.APPROVED, subject="AgentRollout/bot-v2"))
        return [*e[:position], forged, *e[position:]]
    return f


def _bad_genesis(e: Entries) -> Entries:
    e[0]["prev"] = "f" * 64
    rehash(e[0])
    return e


def _strip(field: str) -> Callable[[Entries], Entries]:
    def f(e: Entries) -> Entries:
        del e[3][field]
        return e
    return f


def _seq_as_text(e: Entries) -> Entries:
    e[1]["seq"] = "1"
    return e


def _not_an_object(e: Entries) -> Entries:
    e[2] = ["not", "an", "entry"]  # type: ignore[call-overload]
    return e


@pytest.mark.parametrize(("tamper", "kind", "seq"), [
    pytest.param(_edit(2), Tampering.EDITED, 2, id="edited-details"),
    pytest.param(_edit(5), Tampering.EDITED, 5, id="edited-newest"),
    pytest.param(_edit_and_rehash(2), Tampering.EDITED, 2, id="edited-and-rehashed"),
    pytest.param(_edit_and_rehash(0), Tampering.EDITED, 0, id="genesis-edited-and-rehashed"),
    pytest.param(_add_field, Tampering.EDITED, 2, id="field-added"),
    pytest.param(_remove(3), Tampering.REMOVED, 3, id="removed-one"),
    pytest.param(_remove(2, 3), Tampering.REMOVED, 2, id="removed-two"),
    pytest.param(_remove(0), Tampering.REMOVED, 0, id="removed-first"),
    pytest.param(_swap(2, 3), Tampering.REORDERED, 3, id="swapped-neighbours"),
    pytest.param(_swap(1, 4), Tampering.REORDERED, 4, id="swapped-apart"),
    pytest.param(_move_last_first, Tampering.REORDERED, 5, id="last-moved-first"),
    pytest.param(_insert_forged(3), Tampering.INSERTED, 2, id="inserted-after"),
    pytest.param(_insert_forged(2), Tampering.INSERTED, 2, id="inserted-before"),
    pytest.param(_bad_genesis, Tampering.BAD_GENESIS, 0, id="bad-genesis"),
    pytest.param(_strip("hash"), Tampering.MALFORMED, 3, id="no-hash"),
    pytest.param(_strip("prev"), Tampering.MALFORMED, 3, id="no-prev"),
    pytest.param(_seq_as_text, Tampering.MALFORMED, 1, id="seq-as-text"),
    pytest.param(_not_an_object, Tampering.MALFORMED, 2, id="not-an-object"),
])
def test_every_kind_of_tampering_is_detected(tamper: Callable[[Entries], Entries], kind: Tampering, seq: int) -> None:
    original = chain(6)
    verdict = auditchain.verify(tamper(copy.deepcopy(original)))
    assert not verdict
    assert (verdict.kind, verdict.seq) == (kind, seq), verdict.message
    assert verdict.message


@pytest.mark.parametrize(("keep", "seq"), [(4, 4), (1, 1), (0, 0)])
def test_cutting_off_the_newest_entries_needs_the_known_head(keep: int, seq: int) -> None:
    entries = chain(6)
    known = auditchain.head(entries)
    assert auditchain.verify(entries[:keep])  # the chain alone cannot tell
    verdict = auditchain.verify(entries[:keep], head=known)
    assert (verdict.ok, verdict.kind, verdict.seq) == (False, Tampering.TRUNCATED, seq)


def test_a_rewritten_suffix_is_caught_by_the_head_only() -> None:
    """Remove entry 3 and re-chain the rest: internally consistent, but the known head is gone."""
    entries = chain(6)
    known = auditchain.head(entries)
    forged = entries[:3]
    for old in entries[4:]:
        forged.append(dict(auditchain.append(forged, at=old["at"], actor=old["actor"], action=old["action"],
                                             subject=old["subject"], details=old["details"])))
    assert auditchain.verify(forged)
    assert auditchain.verify(forged, head=known).kind is Tampering.TRUNCATED


# --- storage ---------------------------------------------------------------------------------------


def store(agent: str, segments: list[dict[str, Any]], new: Entries, limit: int = auditstorage.SEGMENT_LIMIT) -> None:
    """Apply plan_storage's objects to ``segments`` the way server-side apply would."""
    for obj in auditstorage.plan_storage(agent, "team", segments, new, limit=limit):
        name = obj["metadata"]["name"]
        current = next((s for s in segments if s["metadata"]["name"] == name), None)
        if current is not None:
            assert not current.get("immutable"), f"{name} is sealed and must not be written again"
            segments.remove(current)
        segments.append(copy.deepcopy(obj))


def test_first_segment_shape() -> None:
    entries = chain(2)
    [segment] = auditstorage.plan_storage("bot", "team", [], entries)
    assert segment["kind"] == "ConfigMap" and segment["metadata"]["name"] == "bot-audit-0"
    assert segment["metadata"]["namespace"] == "team"
    assert segment["metadata"]["labels"]["alm.dev/agent"] == "bot"
    assert segment["metadata"]["labels"]["alm.dev/component"] == "audit"
    assert "ownerReferences" not in segment["metadata"]  # outlives the Agent
    assert segment["metadata"]["annotations"] == {"alm.dev/audit-head": entries[-1]["hash"],
                                                  "alm.dev/audit-seq-range": "0-1"}
    lines = segment["data"]["entries.jsonl"].splitlines()
    assert [json.loads(line) for line in lines] == entries
    assert lines[0] == json.dumps(entries[0], sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    assert "immutable" not in segment


def test_appending_rewrites_only_the_open_segment() -> None:
    segments: list[dict[str, Any]] = []
    entries = chain(3)
    store("bot", segments, entries)
    entries = chain(2, start=3, entries=entries)
    objs = auditstorage.plan_storage("bot", "team", segments, entries[3:])
    assert [o["metadata"]["name"] for o in objs] == ["bot-audit-0"]
    assert objs[0]["metadata"]["annotations"]["alm.dev/audit-seq-range"] == "0-4"


@pytest.mark.parametrize(("count", "per"), [(10, 20), (10, 3), (10, 1), (9, 3)])
def test_segments_roll_over_before_the_limit(count: int, per: int) -> None:
    """With room for ``per`` lines, each segment holds ``per`` entries and is sealed when full."""
    sample = chain(count)
    line = max(len(hashing.canonical_json(e).encode()) + 1 for e in sample)
    limit = per * line
    segments: list[dict[str, Any]] = []
    entries: Entries = []
    for _ in range(count):  # one entry per write, as handlers do
        new = chain(1, start=len(entries), entries=entries)[-1:]
        entries += new
        store("bot", segments, new, limit=limit)
    expected = -(-count // per)
    by_name = {s["metadata"]["name"]: s for s in segments}
    assert sorted(by_name) == sorted(f"bot-audit-{i}" for i in range(expected))
    assert [i for i in range(expected) if by_name[f"bot-audit-{i}"].get("immutable")] == list(range(expected - 1))
    for s in segments:
        assert len(s["data"]["entries.jsonl"].encode()) <= limit
    assert auditstorage.load(segments) == entries
    assert auditchain.verify(auditstorage.load(segments), head=auditchain.head(entries))
    ranges = [by_name[f"bot-audit-{i}"]["metadata"]["annotations"]["alm.dev/audit-seq-range"]
              for i in range(expected)]
    assert ranges[0] == f"0-{min(per, count) - 1}" and ranges[-1].endswith(f"-{count - 1}")


def test_an_entry_larger_than_the_limit_still_gets_a_segment_of_its_own() -> None:
    entries = chain(3)
    objs = auditstorage.plan_storage("bot", "team", [], entries, limit=1)
    assert [o["metadata"]["annotations"]["alm.dev/audit-seq-range"] for o in objs] == ["0-0", "1-1", "2-2"]
    assert [bool(o.get("immutable")) for o in objs] == [True, True, False]


def test_a_batch_larger_than_a_segment_spreads_over_several() -> None:
    entries = chain(12)
    objs = auditstorage.plan_storage("bot", "team", [], entries, limit=1_000)
    assert len(objs) > 2 and all(o.get("immutable") for o in objs[:-1]) and not objs[-1].get("immutable")
    assert auditstorage.load(objs) == entries


def test_a_sealed_segment_is_never_written_again() -> None:
    entries = chain(2)
    sealed = auditstorage.plan_storage("bot", "team", [], entries)[0] | {"immutable": True}
    more = chain(1, start=2, entries=entries)
    objs = auditstorage.plan_storage("bot", "team", [sealed], more[2:])
    assert [o["metadata"]["name"] for o in objs] == ["bot-audit-1"]
    assert objs[0]["metadata"]["annotations"]["alm.dev/audit-seq-range"] == "2-2"


def test_replaying_a_write_changes_nothing() -> None:
    segments: list[dict[str, Any]] = []
    entries = chain(3)
    store("bot", segments, entries)
    assert auditstorage.plan_storage("bot", "team", segments, entries) == []
    assert auditstorage.plan_storage("bot", "team", segments, entries[1:]) == []


@pytest.mark.parametrize("bad", ["gap", "rewrite"])
def test_entries_that_do_not_extend_the_log_are_refused(bad: str) -> None:
    segments: list[dict[str, Any]] = []
    entries = chain(3)
    store("bot", segments, entries)
    gap = chain(2, start=3, entries=entries)[4:]
    new = gap if bad == "gap" else [rehash(entries[2] | {"actor": "mallory"})]
    with pytest.raises(ValueError, match=r"append-only|does not extend"):
        auditstorage.plan_storage("bot", "team", segments, new)


def test_load_orders_by_segment_index_and_keeps_stored_order() -> None:
    entries = chain(12)
    objs = auditstorage.plan_storage("bot", "team", [], entries, limit=1_000)
    shuffled = [*reversed(objs), {"metadata": {"name": "bot-archive"}, "data": {"entries.jsonl": "{}"}}]
    assert auditstorage.load(shuffled) == entries
    # within a segment the stored order is kept, so a reordering stays visible to verify
    first = copy.deepcopy(objs[0])
    lines = first["data"]["entries.jsonl"].splitlines()
    first["data"]["entries.jsonl"] = "\n".join([lines[1], lines[0], *lines[2:]]) + "\n"
    assert auditchain.verify(auditstorage.load([first, *objs[1:]])).kind is Tampering.REORDERED


def test_a_damaged_line_is_reported_where_it_is() -> None:
    objs = auditstorage.plan_storage("bot", "team", [], chain(4))
    lines = objs[0]["data"]["entries.jsonl"].splitlines()
    lines[2] = lines[2][:-5]
    objs[0]["data"]["entries.jsonl"] = "\n".join(lines)
    loaded = auditstorage.load(objs)
    assert len(loaded) == 4 and "malformed" in loaded[2]
    verdict = auditchain.verify(loaded)
    assert (verdict.kind, verdict.seq) == (Tampering.MALFORMED, 2)


@pytest.mark.parametrize(("agent", "index"), [("bot", 0), ("a" * 253, 7), ("b" * 240, 12345)])
def test_segment_names_fit(agent: str, index: int) -> None:
    name = auditstorage.segment_name(agent, index)
    assert len(name) <= 253 and name.endswith(f"-audit-{index}")
    assert (name == f"{agent}-audit-{index}") is (len(agent) + len(f"-audit-{index}") <= 253)
