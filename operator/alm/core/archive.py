"""The archive of a retired Agent: one canonical JSON document, split to fit Kubernetes objects.

What goes in (:func:`bundle`): every AgentVersion spec, the rollouts, the Agent's final spec and
status (version history, KPIs, cost), the retirement's own record (reason, transitions, revoked
credentials) and the whole audit log with the verdict of :func:`alm.core.auditchain.verify`. The bytes
are canonical JSON, so the sha256 in ``AgentRetirement.status.archive`` identifies them exactly.

Where it goes (:func:`to_objects`): ConfigMaps (or Secrets) of at most 900 KiB of data each,
immutable, labelled ``alm.dev/component: archive`` and owned by nothing, so they outlive the
Agent and the AgentRetirement::

    <agent>-archive-<sha256[:10]>        manifest.json (+ archive.json when it fits in one object)
    <agent>-archive-<sha256[:10]>-1      part          (larger archives: parts in order)
    <agent>-archive-<sha256[:10]>-2      part
    ...

The name carries the content hash: objects are immutable, so a second write with other content
(after a restart, say) must not reuse a name. :func:`reassemble` checks every part and the whole
against the manifest.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
from collections.abc import Mapping, Sequence
from typing import Any

from alm.core import auditchain, hashing, naming

__all__ = [
    "ANNOTATION_ATTEMPT",
    "ANNOTATION_PARTS",
    "ANNOTATION_RETIREMENT",
    "ANNOTATION_SHA256",
    "ANNOTATION_SIZE",
    "COMPONENT",
    "DEFAULT_JOB_IMAGE",
    "JOB_DEADLINE_SECONDS",
    "PART_LIMIT",
    "Bundle",
    "JobState",
    "bundle",
    "job_state",
    "pvc_job",
    "pvc_location",
    "reassemble",
    "to_objects",
]

Obj = dict[str, Any]

PART_LIMIT = 900 * 1024  # bytes of archive data per ConfigMap/Secret (the object limit is 1 MiB)
COMPONENT = "archive"
ANNOTATION_SHA256 = "alm.dev/archive-sha256"
ANNOTATION_SIZE = "alm.dev/archive-size"
ANNOTATION_PARTS = "alm.dev/archive-parts"
ANNOTATION_RETIREMENT = "alm.dev/retirement-uid"  # on a copy Job: the AgentRetirement it works for
ANNOTATION_ATTEMPT = "alm.dev/archive-attempt"  # ... and which of its archive attempts it is
DEFAULT_JOB_IMAGE = "busybox:1.36"  # any image with sh, cat, cp, mkdir, mv and sha256sum
JOB_TTL_SECONDS = 86400  # a finished copy Job is garbage-collected a day later
JOB_DEADLINE_SECONDS = 600  # the default bound on a copy Job, pending pod included
JOB_USER = 65534  # nobody: the restricted Pod Security Standard wants a non-root user


@dataclasses.dataclass(frozen=True)
class Bundle:
    """The archive document as canonical JSON bytes, and its sha256."""

    data: bytes
    sha256: str

    @property
    def size_bytes(self) -> int:
        return len(self.data)


def _object_summary(obj: Mapping[str, Any]) -> Obj:
    """Name, uid, spec and status: what the object was, without the server's bookkeeping."""
    meta = obj.get("metadata") or {}
    status = {k: v for k, v in (obj.get("status") or {}).items() if k != "kopf"}
    summary: Obj = {"name": meta.get("name"), "uid": meta.get("uid"), "created": meta.get("creationTimestamp"),
                    "spec": obj.get("spec"), "status": status}
    return {k: v for k, v in summary.items() if v is not None}


def bundle(
    *,
    namespace: str,
    retirement: Mapping[str, Any],
    agent: Mapping[str, Any] | None,
    versions: Sequence[Mapping[str, Any]],
    rollouts: Sequence[Mapping[str, Any]],
    audit_entries: Sequence[Mapping[str, Any]],
    archived_at: str,
) -> Bundle:
    """The archive: every AgentVersion spec, the rollout history, final KPIs and cost, the audit log.

    Canonical JSON (sorted keys, no spaces, UTF-8), lists in a fixed order and ``archived_at``
    passed in: the same inputs give the same bytes and the same sha256. The audit log is
    verified on the way in and the verdict kept with it.
    """
    agent_status = (agent or {}).get("status") or {}
    verdict = auditchain.verify(audit_entries)
    doc = {
        "apiVersion": "alm.dev/v1alpha1",
        "kind": "AgentArchive",
        "namespace": namespace,
        "archivedAt": archived_at,
        "retirement": dict(retirement),
        "agent": _object_summary(agent) if agent is not None else None,
        "versions": sorted((_object_summary(v) for v in versions), key=lambda v: str(v.get("name"))),
        "rollouts": sorted((_object_summary(r) for r in rollouts),
                           key=lambda r: (str(r.get("created", "")), str(r.get("name")))),
        "history": agent_status.get("history") or [],
        "kpis": agent_status.get("kpis"),
        "cost": agent_status.get("cost"),
        "audit": {"head": auditchain.head(audit_entries), "intact": verdict.ok, "verdict": verdict.message,
                  "entries": list(audit_entries)},
    }
    data = hashing.canonical_json(doc).encode()
    return Bundle(data, hashlib.sha256(data).hexdigest())


def _split(data: bytes, limit: int) -> list[bytes]:
    """Chunks of at most ``limit`` bytes, cut between UTF-8 characters so each part is text."""
    parts: list[bytes] = []
    start = 0
    while start < len(data):
        end = min(start + limit, len(data))
        while start < end < len(data) and data[end] & 0xC0 == 0x80:
            end -= 1
        parts.append(data[start:end])
        start = end
    return parts or [b""]


def _archive_name(agent: str, sha256: str) -> str:
    """Content-addressed: a retry with other content never collides with an immutable earlier write."""
    base = agent if len(agent) <= 200 else f"{agent[:189]}-{hashlib.sha256(agent.encode()).hexdigest()[:10]}"
    return f"{base}-archive-{sha256[:10]}"


def to_objects(
    b: Bundle, *, agent: str, namespace: str, target: str = "configMap", limit: int = PART_LIMIT
) -> tuple[Obj, ...]:
    """The ConfigMaps (or Secrets) holding ``b``: parts first, the manifest last.

    Small archives are one object with ``archive.json`` and ``manifest.json``; larger ones put
    each part in ``<name>-<i>`` (key ``part``) and only the manifest in ``<name>``. The manifest
    lists every part with its sha256, so :func:`reassemble` (or a human) can check them.
    """
    name = _archive_name(agent, b.sha256)
    chunks = _split(b.data, limit)
    single = len(chunks) == 1
    listed = [{"name": name if single else f"{name}-{i}", "key": "archive.json" if single else "part",
               "sha256": hashlib.sha256(c).hexdigest(), "sizeBytes": len(c)} for i, c in enumerate(chunks, 1)]
    manifest = {"format": "alm.dev/archive/v1", "sha256": b.sha256, "sizeBytes": b.size_bytes, "parts": listed}
    secret = target == "secret"

    def obj(obj_name: str, data: dict[str, bytes], annotations: dict[str, str] | None = None) -> Obj:
        meta: Obj = {"name": obj_name, "namespace": namespace, "labels": naming.agent_labels(agent, COMPONENT)}
        if annotations:
            meta["annotations"] = annotations
        out: Obj = {"apiVersion": "v1", "kind": "Secret" if secret else "ConfigMap", "metadata": meta,
                    "immutable": True}
        if secret:
            out["type"] = "Opaque"
        out["data"] = {k: base64.b64encode(v).decode() if secret else v.decode() for k, v in data.items()}
        return out

    annotations = {ANNOTATION_SHA256: b.sha256, ANNOTATION_SIZE: str(b.size_bytes),
                   ANNOTATION_PARTS: str(len(chunks))}
    manifest_data = {"manifest.json": hashing.canonical_json(manifest).encode()}
    if single:
        return (obj(name, {"archive.json": chunks[0], **manifest_data}, annotations),)
    parts = tuple(obj(str(p["name"]), {"part": c}) for p, c in zip(listed, chunks, strict=True))
    return (*parts, obj(name, manifest_data, annotations))


def reassemble(objects: Sequence[Mapping[str, Any]]) -> bytes:
    """The archive bytes from its objects, checked against the manifest; ValueError when damaged."""

    def raw(obj: Mapping[str, Any], key: str) -> bytes:
        value = str((obj.get("data") or {})[key])
        return base64.b64decode(value) if obj.get("kind") == "Secret" else value.encode()

    by_name = {str((o.get("metadata") or {}).get("name")): o for o in objects}
    holders = [o for o in objects if "manifest.json" in (o.get("data") or {})]
    if len(holders) != 1:
        raise ValueError(f"expected one archive manifest, found {len(holders)}")
    manifest = json.loads(raw(holders[0], "manifest.json"))
    data = b""
    for part in manifest["parts"]:
        holder = by_name.get(part["name"])
        if holder is None:
            raise ValueError(f"archive part {part['name']} is missing")
        chunk = raw(holder, part["key"])
        if hashlib.sha256(chunk).hexdigest() != part["sha256"]:
            raise ValueError(f"archive part {part['name']} does not match its sha256")
        data += chunk
    if hashlib.sha256(data).hexdigest() != manifest["sha256"]:
        raise ValueError("the archive does not match the manifest's sha256")
    return data


# --- The PVC target: a Job copies the staging ConfigMaps onto the claim -----------------------------


def pvc_location(claim: str, agent: str, sha256: str) -> str:
    """``status.archive.location`` of an archive on a claim: ``pvc/<claim>/<agent>/<sha256>``."""
    return f"pvc/{claim}/{agent}/{sha256}"


_COPY_SCRIPT = """set -eu
dest="/archive/$ALM_AGENT/$ALM_SHA256"
work="$dest.partial"
rm -rf "$work"
mkdir -p "$work"
printf '%s\\n' "$ALM_PART_SUMS" > "$work/parts.sha256"
sha256sum -c "$work/parts.sha256"
rm "$work/parts.sha256"
cat $ALM_PARTS > "$work/archive.json"
cp /staging/manifest/manifest.json "$work/manifest.json"
echo "$ALM_SHA256  $work/archive.json" > "$work/archive.json.sha256"
sha256sum -c "$work/archive.json.sha256"
echo "$ALM_SHA256  archive.json" > "$work/archive.json.sha256"
rm -rf "$dest"
mv "$work" "$dest"
echo "archive written to $dest"
"""


def pvc_job(
    objects: Sequence[Mapping[str, Any]], *, agent: str, namespace: str, claim: str, image: str = DEFAULT_JOB_IMAGE,
    retirement_uid: str = "", attempt: int = 1, deadline_seconds: int = JOB_DEADLINE_SECONDS,
) -> Obj:
    """The ``batch/v1`` Job that copies the archive in ``objects`` (staging ConfigMaps, manifest
    last, as :func:`to_objects` makes them) into ``/archive/<agent>/<sha256>/`` on ``claim``.

    Named like the archive (``<agent>-archive-<sha256[:10]>``), owned by nothing, no retries of
    its own (``backoffLimit: 0``: the operator counts attempts), restricted Pod Security Standard.
    ``activeDeadlineSeconds`` bounds it, pending pod included, so a Job that can never start
    (missing claim, image pull, quota) ends ``Failed`` and becomes a counted attempt.
    It checks every part against the manifest, then the whole document, with ``sha256sum -c``
    and moves the directory into place only when both match. Annotated with the retirement's
    uid and the attempt, so that later passes follow this very Job even if the archive they
    would write now differs (an audit entry or a status written since).
    """
    holder = objects[-1]
    meta = holder["metadata"]
    name = str(meta["name"])
    manifest = json.loads(str(holder["data"]["manifest.json"]))
    sha = str(manifest["sha256"])
    mounts: list[Obj] = [{"name": "archive", "mountPath": "/archive"}]
    volumes: list[Obj] = [{"name": "archive", "persistentVolumeClaim": {"claimName": claim}}]
    sums: list[str] = []
    paths: list[str] = []
    by_name = {str(o["metadata"]["name"]): i for i, o in enumerate(objects)}  # the manifest's holder is last
    for part in manifest["parts"]:
        index = by_name[str(part["name"])]
        mount = "/staging/manifest" if index == len(objects) - 1 else f"/staging/part-{index + 1}"
        path = f"{mount}/{part['key']}"
        paths.append(path)
        sums.append(f"{part['sha256']}  {path}")
    for index, obj in enumerate(objects):
        volume = "manifest" if index == len(objects) - 1 else f"part-{index + 1}"
        volumes.append({"name": volume, "configMap": {"name": str(obj["metadata"]["name"])}})
        mounts.append({"name": volume, "mountPath": f"/staging/{volume}", "readOnly": True})
    labels = naming.agent_labels(agent, COMPONENT)
    container: Obj = {
        "name": "copy",
        "image": image,
        "command": ["/bin/sh", "-c", _COPY_SCRIPT],
        "env": [{"name": "ALM_AGENT", "value": agent}, {"name": "ALM_SHA256", "value": sha},
                {"name": "ALM_PARTS", "value": " ".join(paths)},
                {"name": "ALM_PART_SUMS", "value": "\n".join(sums)}],
        "volumeMounts": mounts,
        "securityContext": {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                            "runAsNonRoot": True, "capabilities": {"drop": ["ALL"]},
                            "seccompProfile": {"type": "RuntimeDefault"}},
        "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}, "limits": {"memory": "64Mi"}},
    }
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name, "namespace": namespace, "labels": labels,
                     "annotations": {ANNOTATION_SHA256: sha, ANNOTATION_PARTS: str(len(manifest["parts"])),
                                     ANNOTATION_RETIREMENT: retirement_uid, ANNOTATION_ATTEMPT: str(attempt)}},
        "spec": {
            "backoffLimit": 0,
            "activeDeadlineSeconds": deadline_seconds,
            "ttlSecondsAfterFinished": JOB_TTL_SECONDS,
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "restartPolicy": "Never",
                    "automountServiceAccountToken": False,
                    "enableServiceLinks": False,
                    "securityContext": {"runAsNonRoot": True, "runAsUser": JOB_USER, "runAsGroup": JOB_USER,
                                        "fsGroup": JOB_USER, "seccompProfile": {"type": "RuntimeDefault"}},
                    "containers": [container],
                    "volumes": volumes,
                },
            },
        },
    }


@dataclasses.dataclass(frozen=True)
class JobState:
    """Where a copy Job stands: ``done`` (Complete=True), ``failed`` (Failed=True) or neither yet."""

    done: bool = False
    failed: bool = False
    detail: str = ""


def job_state(job: Mapping[str, Any] | None) -> JobState:
    """Read a Job's conditions (None: no Job, so neither done nor failed)."""
    for cond in ((job or {}).get("status") or {}).get("conditions") or []:
        if cond.get("status") != "True":
            continue
        if cond.get("type") == "Complete":
            return JobState(done=True, detail="Job complete")
        if cond.get("type") == "Failed":
            why = cond.get("reason") or "Failed"
            message = str(cond.get("message") or "")[:200]
            return JobState(failed=True, detail=f"Job failed: {why}" + (f" ({message})" if message else ""))
    return JobState()
