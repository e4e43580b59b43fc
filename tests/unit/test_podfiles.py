"""A pod's ConfigMap/Secret volumes as local files and its env pointing there (alm.sandbox.podfiles)."""

from __future__ import annotations

import base64
import pathlib
from typing import Any

from alm.sandbox.podfiles import container_port, pod_environment


def _pod() -> tuple[dict[str, Any], dict[str, Any]]:
    container = {
        "name": "agent",
        "env": [{"name": "ALM_CONFIG_FILE", "value": "/etc/alm/config/config.json"},
                {"name": "ALM_CREDENTIALS_DIR", "value": "/var/run/alm/credentials"},
                {"name": "OTHER", "value": "/etc/alm/config/x"},
                {"name": "FROM_FIELD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}],
        "volumeMounts": [{"name": "config", "mountPath": "/etc/alm/config"},
                         {"name": "credentials", "mountPath": "/var/run/alm/credentials"}],
    }
    pod = {"metadata": {"name": "p", "namespace": "team"},
           "spec": {"containers": [container], "volumes": [
               {"name": "config", "configMap": {"name": "cfg"}},
               {"name": "credentials", "secret": {"secretName": "creds"}},
               {"name": "tmp", "emptyDir": {}}]}}
    return pod, container


def test_volumes_become_files_and_mount_paths_point_at_them(tmp_path: pathlib.Path) -> None:
    pod, container = _pod()
    asked: list[tuple[str, str, str]] = []

    def configmap(ns: str, name: str) -> dict[str, Any]:
        asked.append(("cm", ns, name))
        return {"data": {"config.json": "{}"}, "binaryData": {"blob": base64.b64encode(b"\x00\x01").decode()}}

    def secret(ns: str, name: str) -> dict[str, Any]:
        asked.append(("secret", ns, name))
        return {"data": {"key": base64.b64encode(b"s3cret").decode()}}

    env = pod_environment(pod, container, tmp_path, configmap=configmap, secret=secret, base={"HOME": "/h"})
    assert asked == [("cm", "team", "cfg"), ("secret", "team", "creds")]
    assert env["ALM_CONFIG_FILE"] == str(tmp_path / "config" / "config.json")
    assert env["ALM_CREDENTIALS_DIR"] == str(tmp_path / "credentials")
    assert env["OTHER"] == "/etc/alm/config/x"  # only ALM_* variables are paths we rewrite
    assert "FROM_FIELD" not in env and env["HOME"] == "/h"
    assert (tmp_path / "config" / "config.json").read_text() == "{}"
    assert (tmp_path / "config" / "blob").read_bytes() == b"\x00\x01"
    assert (tmp_path / "credentials" / "key").read_bytes() == b"s3cret"
    assert not (tmp_path / "tmp").exists()


def test_a_missing_object_gives_an_empty_directory(tmp_path: pathlib.Path) -> None:
    pod, container = _pod()
    env = pod_environment(pod, container, tmp_path, configmap=lambda ns, n: None, secret=lambda ns, n: None,
                          base={})
    assert list((tmp_path / "config").iterdir()) == [] and env["ALM_CONFIG_FILE"].startswith(str(tmp_path))


def test_container_port_prefers_the_named_one() -> None:
    assert container_port({"ports": [{"name": "metrics", "containerPort": 9090},
                                     {"name": "http", "containerPort": 8080}]}) == 8080
    assert container_port({"ports": [{"name": "metrics", "containerPort": 9090}]}) == 9090
    assert container_port({}) is None
