"""A pod's files and environment on this machine: what a kubelet would mount, as local files.

Shared by the two places that run pods as local ``alm-agent`` processes: the sandbox's
:class:`~alm.sandbox.processes.ProcessDeploymentController` (objects from the emulated store)
and the e2e suite's node simulator (objects read from a real API server). Both hand in
lookup callables, so this module neither knows nor cares where ConfigMaps and Secrets live.

A ConfigMap or Secret volume becomes a directory ``<root>/<volume name>`` holding one file per
key; an ``ALM_*`` variable whose value is a path under the container's ``mountPath`` for that
volume is rewritten to the same path under the directory (the process cannot see ``/etc/...``).
Only literal ``value`` env entries are honoured: ``valueFrom`` needs a kubelet's downward API.
"""

from __future__ import annotations

import base64
import os
import pathlib
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["Lookup", "container_port", "pod_environment"]

Lookup = Callable[[str, str], Mapping[str, Any] | None]
"""``(namespace, name) -> object or None``: how a ConfigMap or Secret is found."""


def _volume_files(
    volume: Mapping[str, Any], namespace: str, configmap: Lookup, secret: Lookup,
) -> dict[str, bytes] | None:
    """The files of a ConfigMap/Secret volume (None for any other kind: nothing to materialise)."""
    if "configMap" in volume:
        cm = configmap(namespace, volume["configMap"]["name"]) or {}
        files = {k: str(v).encode() for k, v in (cm.get("data") or {}).items()}
        files.update({k: base64.b64decode(v) for k, v in (cm.get("binaryData") or {}).items()})
        return files
    if "secret" in volume:
        found = secret(namespace, volume["secret"]["secretName"]) or {}
        files = {k: base64.b64decode(v) for k, v in (found.get("data") or {}).items()}
        files.update({k: str(v).encode() for k, v in (found.get("stringData") or {}).items()})
        return files
    return None


def pod_environment(
    pod: Mapping[str, Any],
    container: Mapping[str, Any],
    root: pathlib.Path,
    *,
    configmap: Lookup,
    secret: Lookup,
    base: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """Write the pod's ConfigMap/Secret volumes under ``root``; return the container's environment.

    ``base`` (default: this process's environment) comes first, then the container's literal
    env values, then mount paths are rewritten into ``root`` (see the module docstring).
    """
    namespace = str(pod["metadata"].get("namespace") or "")
    mounts = {m["name"]: m["mountPath"] for m in container.get("volumeMounts") or []}
    env = dict(os.environ if base is None else base)
    for item in container.get("env") or []:
        if "value" in item:
            env[item["name"]] = str(item["value"])
    for volume in (pod.get("spec") or {}).get("volumes") or []:
        files = _volume_files(volume, namespace, configmap, secret)
        if files is None:
            continue
        target = root / volume["name"]
        target.mkdir(parents=True, exist_ok=True)
        for key, content in files.items():
            (target / key).write_bytes(content)
        mount = mounts.get(volume["name"])
        if mount is None:
            continue
        # Paths the container would see under its mounts point into our directory instead.
        for key, value in list(env.items()):
            if key.startswith("ALM_") and value.startswith(mount):
                env[key] = str(target) + value[len(mount):]
    return env


def container_port(container: Mapping[str, Any], name: str = "http") -> int | None:
    """The container port called ``name``, else its first declared port; None if it declares none."""
    ports = [p for p in container.get("ports") or [] if p.get("containerPort")]
    named = next((p for p in ports if p.get("name") == name), None)
    chosen = named or (ports[0] if ports else None)
    return None if chosen is None else int(chosen["containerPort"])
