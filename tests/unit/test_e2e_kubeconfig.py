"""tests/e2e/cluster.py ``namespaced_kubeconfig``: the per-test kubeconfig copy ``kubectl alm`` uses."""

from __future__ import annotations

import pathlib
import stat
from typing import Any

import pytest
import yaml

from tests.e2e.cluster import namespaced_kubeconfig

SOURCE: dict[str, Any] = {
    "apiVersion": "v1", "kind": "Config", "current-context": "kind-alm",
    "clusters": [{"name": "kind-alm", "cluster": {"server": "https://127.0.0.1:6443",
                                                  "certificate-authority": "pki/ca.crt"}},
                 {"name": "prod", "cluster": {"server": "https://prod:6443",
                                              "certificate-authority-data": "Q0E="}}],
    "users": [{"name": "kind-alm", "user": {"client-certificate": "pki/admin.crt", "client-key": "/abs/admin.key"}},
              {"name": "ops", "user": {"token": "t0ken", "exec": {"command": "./bin/get-token", "args": ["x"]}}},
              {"name": "sso", "user": {"exec": {"command": "kubelogin"}}}],
    "contexts": [{"name": "kind-alm", "context": {"cluster": "kind-alm", "user": "kind-alm", "namespace": "team"}},
                 {"name": "prod-ops", "context": {"cluster": "prod", "user": "ops"}}],
}


def _write(tmp_path: pathlib.Path) -> pathlib.Path:
    source = tmp_path / "home" / "config"
    source.parent.mkdir()
    source.write_text(yaml.safe_dump(SOURCE))
    return source


def test_the_current_context_gets_the_namespace_and_relative_paths_become_absolute(tmp_path: pathlib.Path) -> None:
    source = _write(tmp_path)
    target = namespaced_kubeconfig(source, None, "alm-e2e-1234", tmp_path / "copy" / "kubeconfig")
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    copy = yaml.safe_load(target.read_text())
    assert copy["current-context"] == "kind-alm"
    contexts = {c["name"]: c["context"] for c in copy["contexts"]}
    assert contexts["kind-alm"] == {"cluster": "kind-alm", "user": "kind-alm", "namespace": "alm-e2e-1234"}
    assert contexts["prod-ops"] == {"cluster": "prod", "user": "ops"}
    home = source.parent.resolve()
    clusters = {c["name"]: c["cluster"] for c in copy["clusters"]}
    assert clusters["kind-alm"]["certificate-authority"] == str(home / "pki/ca.crt")
    assert clusters["prod"] == SOURCE["clusters"][1]["cluster"]
    users = {u["name"]: u["user"] for u in copy["users"]}
    assert users["kind-alm"] == {"client-certificate": str(home / "pki/admin.crt"), "client-key": "/abs/admin.key"}
    assert users["ops"]["token"] == "t0ken" and users["ops"]["exec"]["command"] == str(home / "bin/get-token")
    assert users["sso"]["exec"]["command"] == "kubelogin"  # looked up on PATH, as kubectl does
    assert yaml.safe_load(source.read_text()) == SOURCE  # the original is left alone


def test_a_named_context_becomes_current(tmp_path: pathlib.Path) -> None:
    target = tmp_path / "kubeconfig"
    target.write_text("old")
    target.chmod(0o644)
    namespaced_kubeconfig(_write(tmp_path), "prod-ops", "alm-e2e-9", target)
    copy = yaml.safe_load(target.read_text())
    assert copy["current-context"] == "prod-ops"
    contexts = {c["name"]: c["context"] for c in copy["contexts"]}
    assert contexts["prod-ops"]["namespace"] == "alm-e2e-9" and contexts["kind-alm"]["namespace"] == "team"
    assert stat.S_IMODE(target.stat().st_mode) == 0o600


def test_an_unknown_context_is_an_error(tmp_path: pathlib.Path) -> None:
    with pytest.raises(ValueError, match="'nope' is not in the kubeconfig"):
        namespaced_kubeconfig(_write(tmp_path), "nope", "ns", tmp_path / "kubeconfig")
