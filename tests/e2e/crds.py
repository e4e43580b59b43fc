"""Installing (or upgrading) alm's CRDs on the cluster under test, once per session."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from alm.kube import errors
from alm.kube.api import Kube

__all__ = ["CRD_DIR", "crd_ready", "install_crds", "load_crds"]

log = logging.getLogger(__name__)

CRD_DIR = Path(__file__).resolve().parents[2] / "crds"

Obj = dict[str, Any]


def load_crds(directory: Path = CRD_DIR) -> list[Obj]:
    crds: list[Obj] = []
    for path in sorted(directory.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if isinstance(doc, dict) and doc.get("kind") == "CustomResourceDefinition":
                crds.append(doc)
    if not crds:
        raise FileNotFoundError(f"no CustomResourceDefinition in {directory}/*.yaml")
    return crds


def _storage_version(crd: Mapping[str, Any]) -> str:
    versions = crd["spec"]["versions"]
    return str(next((v["name"] for v in versions if v.get("storage")), versions[0]["name"]))


def crd_ready(kube: Kube, crd: Mapping[str, Any]) -> tuple[bool, str]:
    """Whether the API server serves ``crd`` now, and why not.

    A real API server reports it with the condition ``Established=True`` (set within
    milliseconds by its CRD controllers); that is what we wait for. A server that
    reports no conditions at all (an emulator without those controllers) counts as
    ready once discovery lists the resource *and* listing it answers: the behaviour
    ``Established`` stands for. Conditions that are present but not True never count.
    """
    name = crd["metadata"]["name"]
    live = kube.get("CustomResourceDefinition", None, name)
    if live is None:
        return False, "the CRD is not there"
    conditions = {c.get("type"): c for c in (live.get("status") or {}).get("conditions") or []}
    established = conditions.get("Established")
    if established is not None:
        if established.get("status") == "True":
            return True, "Established=True"
        problems = [f"{t}={c.get('status')} ({c.get('reason')}: {c.get('message')})" for t, c in conditions.items()]
        return False, "; ".join(problems)
    if conditions:
        return False, f"conditions {sorted(str(t) for t in conditions)} but no Established yet"
    group, plural = crd["spec"]["group"], crd["spec"]["names"]["plural"]
    version = _storage_version(crd)
    try:
        discovery = kube.request("GET", f"/apis/{group}/{version}") or {}
        served = any(r.get("name") == plural for r in discovery.get("resources", []))
        if not served:
            return False, f"/apis/{group}/{version} does not list {plural} yet"
        kube.request("GET", f"/apis/{group}/{version}/{plural}", query={"limit": "1"})
    except errors.ApiError as exc:
        return False, f"not served yet: {exc}"
    return True, "served (the server reports no CRD conditions)"


def install_crds(kube: Kube, *, directory: Path = CRD_DIR, timeout: float = 60.0) -> list[str]:
    """Server-side apply every CRD in ``directory``; wait until each is served. Returns their names."""
    crds = load_crds(directory)
    for crd in crds:
        kube.apply(crd)
        log.info("applied CRD %s", crd["metadata"]["name"])
    deadline = time.monotonic() + timeout
    pending = {crd["metadata"]["name"]: crd for crd in crds}
    reasons: dict[str, str] = {}
    while pending:
        for name, crd in list(pending.items()):
            ready, reasons[name] = crd_ready(kube, crd)
            if ready:
                log.info("CRD %s is ready: %s", name, reasons[name])
                del pending[name]
        if not pending:
            break
        if time.monotonic() > deadline:
            detail = "; ".join(f"{name}: {reasons[name]}" for name in pending)
            raise TimeoutError(f"CRDs not established after {timeout:.0f}s: {detail}")
        time.sleep(0.5)
    return [crd["metadata"]["name"] for crd in crds]
