"""Writing an AgentRetirement's archive: ConfigMaps or Secrets applied, or a copy Job onto a PVC.

The planner (:mod:`alm.core.retirement`, :mod:`alm.core.archive`) decides what the archive holds
and where; this module puts it there and says how it went, as an
:class:`~alm.core.retirementtypes.Outcome`. A PVC archive is the one write that takes more than a
request: staging ConfigMaps and a Job that copies them onto the claim, followed across passes by
the Job's annotations. That protocol (start, find, judge, verify what was copied) is kept here,
apart from the other actions (:mod:`alm.handlers.retirementacting`).
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Mapping
from typing import Any

from alm.core import archive, naming
from alm.core.retirementtypes import Outcome, WriteArchive
from alm.handlers.retirementobserving import Seen, is_live
from alm.kube import errors
from alm.kube.api import Kube
from alm.metrics import operator as metrics

__all__ = ["agent_of", "write_archive"]

Obj = dict[str, Any]


def write_archive(kube: Kube, action: WriteArchive, seen: Seen, image: str) -> Outcome | None:
    """Apply the archive objects, parts first and the manifest last; never owned by anything.

    For a PVC they are staging ConfigMaps, and a Job (:func:`alm.core.archive.pvc_job`) copies
    them onto the claim: None while it runs (the plan looks again soon), an outcome once it is
    Complete or Failed.
    """
    try:
        if action.target == "pvc":
            return _copy_to_claim(kube, action, seen, image)
        for obj in action.objects:
            kube.apply(obj)
    except errors.ApiError as exc:
        return Outcome(action, False, f"{type(exc).__name__} (HTTP {exc.status})", exc.retriable)
    return Outcome(action, True, f"{action.parts} object(s), sha256 {action.bundle.sha256[:12]}")


def _copy_to_claim(
    kube: Kube, action: WriteArchive, seen: Seen, image: str
) -> Outcome | None:
    """One archive attempt onto a PVC: start its Job, or report how the Job started earlier ended.

    The Job of an attempt is found by its annotations (retirement uid, attempt), not by the
    archive's name: the bundle planned now may differ from the one the Job copies (an audit
    entry appended since), and the outcome must report what is on the claim. A failed Job is
    deleted, so that the next attempt starts afresh (backoff and attempts: the planner's).
    """
    namespace, agent = seen.namespace, seen.agent_name
    started = _attempt_job(kube, namespace, agent, seen.obs.uid, action.attempt)
    if started is None:
        wanted = archive.pvc_job(action.objects, agent=agent, namespace=namespace, claim=str(action.claim_name),
                                 image=image, retirement_uid=seen.obs.uid, attempt=action.attempt,
                                 deadline_seconds=action.deadline_seconds)
        namesake = kube.get("Job", namespace, str(wanted["metadata"]["name"]))
        if namesake is not None:  # an earlier attempt's Job with the same content: gone first
            if not namesake["metadata"].get("deletionTimestamp"):
                kube.delete("Job", namespace, namesake["metadata"]["name"], uid=namesake["metadata"].get("uid"))
            return None
        for obj in action.objects:
            kube.apply(obj)
        kube.apply(wanted)
        metrics.WRITES.labels(kind="Job", verb="apply").inc()
        return None
    meta = started["metadata"]
    state = archive.job_state(started)
    if state.failed:
        kube.delete("Job", namespace, meta["name"], uid=meta.get("uid"))
        metrics.WRITES.labels(kind="Job", verb="delete").inc()
        return Outcome(action, False, f"{state.detail}; Job {meta['name']} deleted", retryable=True)
    if not state.done:
        return None
    copied = _what_the_job_copied(kube, action, started)
    if copied is None:
        return Outcome(action, False, f"Job {meta['name']} is complete but its staging ConfigMaps "
                                                 "are missing or damaged", retryable=True)
    return Outcome(copied, True, f"Job {meta['name']} copied {copied.parts} part(s) to "
                                            f"{copied.location}, sha256 verified")


def _attempt_job(kube: Kube, namespace: str, agent: str, uid: str, attempt: int) -> Obj | None:
    for job in kube.list("Job", namespace, {naming.AGENT_LABEL: naming.label_value(agent),
                                            naming.COMPONENT_LABEL: archive.COMPONENT}):
        annotations = job.get("metadata", {}).get("annotations") or {}
        if (annotations.get(archive.ANNOTATION_RETIREMENT), annotations.get(archive.ANNOTATION_ATTEMPT)) == (
                uid, str(attempt)) and is_live(job):
            return job
    return None


def _what_the_job_copied(kube: Kube, action: WriteArchive, job: Mapping[str, Any]
                         ) -> WriteArchive | None:
    """``action`` as it was when the Job started: its staging ConfigMaps, bundle and location."""
    namespace = str(job["metadata"]["namespace"])
    pod = job["spec"]["template"]["spec"]
    objects = [kube.get("ConfigMap", namespace, str(v["configMap"]["name"]))
               for v in pod.get("volumes") or [] if v.get("configMap")]
    claim = next((str(v["persistentVolumeClaim"]["claimName"]) for v in pod.get("volumes") or []
                  if v.get("persistentVolumeClaim")), str(action.claim_name))
    found = [o for o in objects if o is not None]
    if len(found) != len(objects) or not found:
        return None
    try:
        data = archive.reassemble(found)
    except ValueError:
        return None
    sha = hashlib.sha256(data).hexdigest()
    if sha != (job["metadata"].get("annotations") or {}).get(archive.ANNOTATION_SHA256):
        return None
    agent = str((job["metadata"].get("labels") or {}).get(naming.AGENT_LABEL) or "")
    ordered = sorted(found, key=lambda o: "manifest.json" in (o.get("data") or {}))  # the manifest last
    return dataclasses.replace(action, claim_name=claim, bundle=archive.Bundle(data, sha), objects=tuple(ordered),
                               location=archive.pvc_location(claim, agent_of(job, agent), sha))


def agent_of(job: Mapping[str, Any], fallback: str) -> str:
    """The Agent a copy Job works for (its exact name, which a label value may not hold)."""
    pod = (((job.get("spec") or {}).get("template") or {}).get("spec")) or {}
    for container in pod.get("containers") or []:
        for env in container.get("env") or []:
            if env.get("name") == "ALM_AGENT":
                return str(env.get("value"))
    return fallback
