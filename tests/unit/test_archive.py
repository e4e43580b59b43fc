"""The archive: a deterministic bundle, split into immutable objects and checked on the way back."""

from __future__ import annotations

import base64
import copy
import hashlib
import json
import os
import pathlib
import subprocess
from typing import Any

import pytest

from alm.core import archive, auditchain

T0 = "2026-11-24T12:00:00Z"


def agent_body() -> dict[str, Any]:
    return {
        "apiVersion": "alm.dev/v1alpha1", "kind": "Agent",
        "metadata": {"name": "bot", "namespace": "team", "uid": "uid-bot", "managedFields": [{"manager": "x"}]},
        "spec": {"version": "bot-v2", "replicas": 2},
        "status": {"phase": "Available", "kpis": {"bot-v2": {"successRate": 0.97}},
                   "cost": {"day": "2026-11-24", "tokens": 10, "usd": 0.5},
                   "history": [{"version": "bot-v1", "promotedAt": T0, "result": "Succeeded"}],
                   "kopf": {"progress": {}}},
    }


def _bundle(**overrides: Any) -> archive.Bundle:
    entries = [dict(auditchain.append([], at=T0, actor="alm-operator", action="created", subject="Agent/bot"))]
    args: dict[str, Any] = {
        "namespace": "team", "retirement": {"name": "retire-bot", "reason": "done"}, "agent": agent_body(),
        "versions": [{"metadata": {"name": "bot-v2"}, "spec": {"n": 2}}, {"metadata": {"name": "bot-v1"},
                                                                          "spec": {"n": 1}}],
        "rollouts": [], "audit_entries": entries, "archived_at": T0,
    }
    args.update(overrides)
    return archive.bundle(**args)


def test_the_bundle_holds_the_whole_history_in_canonical_json() -> None:
    b = _bundle()
    doc = json.loads(b.data)
    assert b.sha256 == hashlib.sha256(b.data).hexdigest() and b.size_bytes == len(b.data)
    assert b.data == json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    assert [v["name"] for v in doc["versions"]] == ["bot-v1", "bot-v2"]
    assert doc["kpis"] == {"bot-v2": {"successRate": 0.97}} and doc["cost"]["usd"] == 0.5
    assert doc["history"][0]["version"] == "bot-v1"
    assert doc["audit"]["intact"] is True and len(doc["audit"]["entries"]) == 1
    assert "kopf" not in doc["agent"]["status"]
    assert _bundle() == b
    assert _bundle(archived_at="2026-11-24T12:00:01Z").sha256 != b.sha256


def test_a_damaged_audit_log_is_archived_with_its_verdict() -> None:
    entries = [dict(auditchain.append([], at=T0, actor="a", action="created", subject="Agent/bot"))]
    entries[0]["actor"] = "mallory"
    assert json.loads(_bundle(audit_entries=entries).data)["audit"]["intact"] is False


@pytest.mark.parametrize(("target", "limit", "parts"), [
    ("configMap", archive.PART_LIMIT, 1),
    ("secret", archive.PART_LIMIT, 1),
    ("configMap", 300, None),
    ("secret", 300, None),
])
def test_archive_objects_split_and_reassemble(target: str, limit: int, parts: int | None) -> None:
    b = _bundle(retirement={"name": "retire-bot", "reason": "caf\u00e9 \u2615 " * 40})  # multi-byte characters
    objects = archive.to_objects(b, agent="bot", namespace="team", target=target, limit=limit)
    expected = parts or -(-b.size_bytes // limit)
    data_objects = max(1, len(objects) - 1)
    assert data_objects >= expected
    manifest = objects[-1]
    assert manifest["metadata"]["annotations"]["alm.dev/archive-sha256"] == b.sha256
    assert manifest["metadata"]["annotations"]["alm.dev/archive-parts"] == str(data_objects)
    assert manifest["metadata"]["name"].startswith("bot-archive-")
    for obj in objects:
        assert obj["kind"] == ("Secret" if target == "secret" else "ConfigMap")
        assert obj["immutable"] is True and "ownerReferences" not in obj["metadata"]
        assert obj["metadata"]["labels"]["alm.dev/component"] == "archive"
        for key, value in obj["data"].items():
            raw = base64.b64decode(value) if target == "secret" else value.encode()
            if key != "manifest.json":
                assert len(raw) <= limit
    assert archive.reassemble(list(reversed(objects))) == b.data


@pytest.mark.parametrize("damage", ["missing", "edited", "no-manifest"])
def test_a_damaged_archive_does_not_reassemble(damage: str) -> None:
    objects = [copy.deepcopy(o) for o in
               archive.to_objects(_bundle(), agent="bot", namespace="team", limit=200)]
    if damage == "missing":
        del objects[1]
    elif damage == "edited":
        objects[0]["data"]["part"] = "x" + objects[0]["data"]["part"][1:]
    else:
        objects.pop()
    with pytest.raises(ValueError, match=r"missing|sha256|manifest"):
        archive.reassemble(objects)


def test_the_bundle_keeps_specs_and_status_but_not_server_bookkeeping() -> None:
    doc = json.loads(_bundle().data)
    assert doc["agent"]["spec"] == {"version": "bot-v2", "replicas": 2}
    assert "managedFields" not in json.dumps(doc)
    assert set(doc["agent"]) <= {"name", "uid", "created", "spec", "status"}


@pytest.mark.parametrize(("size", "limit"), [(0, 10), (1, 10), (10, 10), (11, 10), (1000, 7)])
def test_split_parts_cover_the_data_exactly(size: int, limit: int) -> None:
    b = archive.Bundle(b"x" * size, hashlib.sha256(b"x" * size).hexdigest())
    objects = archive.to_objects(b, agent="bot", namespace="team", limit=limit)
    assert archive.reassemble(objects) == b.data
    assert max(1, len(objects) - 1) == max(1, -(-size // limit))


# --- The PVC target: the copy Job ------------------------------------------------------------------


def _job_for(limit: int) -> tuple[archive.Bundle, tuple[dict[str, Any], ...], dict[str, Any]]:
    b = archive.Bundle(b'{"doc":"' + "é".encode() * 400 + b'"}', "")
    b = archive.Bundle(b.data, hashlib.sha256(b.data).hexdigest())
    objects = archive.to_objects(b, agent="bot", namespace="team", target="pvc", limit=limit)
    job = archive.pvc_job(objects, agent="bot", namespace="team", claim="vault", image="busybox:1.36",
                          retirement_uid="uid-r", attempt=2)
    return b, objects, job


def _run_locally(job: dict[str, Any], objects: tuple[dict[str, Any], ...], root: pathlib.Path,
                 tamper: bool = False) -> subprocess.CompletedProcess[str]:
    """Run the Job's container script with sh, its volumes as directories under ``root``."""
    pod = job["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    by_name = {o["metadata"]["name"]: o for o in objects}
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    for volume in pod["volumes"]:
        where = root / mounts[volume["name"]].lstrip("/")
        where.mkdir(parents=True)
        if "configMap" in volume:
            for key, value in by_name[volume["configMap"]["name"]]["data"].items():
                (where / key).write_text(value + ("x" if tamper and key == "part" else ""), encoding="utf-8")
    script = container["command"][-1].replace('"/archive/', f'"{root}/archive/').replace("/staging", f"{root}/staging")
    env = {e["name"]: e["value"].replace("/staging", f"{root}/staging") for e in container["env"]}
    return subprocess.run(["sh", "-c", script], env={"PATH": os.environ["PATH"], **env},
                          capture_output=True, text=True, check=False)


@pytest.mark.parametrize("limit", [archive.PART_LIMIT, 300])
def test_the_pvc_job_copies_every_part_and_checks_the_sha256(limit: int, tmp_path: pathlib.Path) -> None:
    b, objects, job = _job_for(limit)
    assert (len(objects) > 2) is (limit == 300), "several parts when small"
    pod = job["spec"]["template"]["spec"]
    assert job["metadata"]["name"] == objects[-1]["metadata"]["name"] == f"bot-archive-{b.sha256[:10]}"
    assert {v["configMap"]["name"] for v in pod["volumes"] if "configMap" in v} == {
        o["metadata"]["name"] for o in objects}
    assert [v["persistentVolumeClaim"]["claimName"] for v in pod["volumes"] if "persistentVolumeClaim" in v] == [
        "vault"]
    assert job["metadata"]["annotations"][archive.ANNOTATION_ATTEMPT] == "2"
    assert "ownerReferences" not in job["metadata"] and job["spec"]["backoffLimit"] == 0
    assert pod["securityContext"]["runAsNonRoot"] and pod["containers"][0]["securityContext"][
        "readOnlyRootFilesystem"]
    done = _run_locally(job, objects, tmp_path)
    assert done.returncode == 0, done.stderr
    target = tmp_path / "archive" / "bot" / b.sha256
    assert (target / "archive.json").read_bytes() == b.data
    assert sorted(p.name for p in target.iterdir()) == ["archive.json", "archive.json.sha256", "manifest.json"]
    check = subprocess.run(["sha256sum", "-c", "archive.json.sha256"], cwd=target, capture_output=True, check=False)
    assert check.returncode == 0


def test_the_pvc_job_fails_on_a_damaged_part_and_writes_nothing(tmp_path: pathlib.Path) -> None:
    b, objects, job = _job_for(300)
    failed = _run_locally(job, objects, tmp_path, tamper=True)
    assert failed.returncode != 0 and "FAILED" in failed.stdout + failed.stderr
    assert not (tmp_path / "archive" / "bot" / b.sha256).exists()


@pytest.mark.parametrize(("conditions", "state"), [
    (None, archive.JobState()),
    ([{"type": "Complete", "status": "False"}], archive.JobState()),
    ([{"type": "SuccessCriteriaMet", "status": "True"}, {"type": "Complete", "status": "True"}],
     archive.JobState(done=True, detail="Job complete")),
    ([{"type": "Failed", "status": "True", "reason": "DeadlineExceeded", "message": "too slow"}],
     archive.JobState(failed=True, detail="Job failed: DeadlineExceeded (too slow)")),
])
def test_job_state_reads_the_conditions(conditions: list[dict[str, Any]] | None, state: archive.JobState) -> None:
    assert archive.job_state({"status": {"conditions": conditions}} if conditions is not None else None) == state
