"""The plain manifests: `kubectl apply --server-side -k manifests/`.

manifests/base is rendered from the Helm chart (tests/chart/sync.py), manifests/crds and
helm/alm-operator/crds are copies of crds/: these tests fail when any copy drifts, when the
kustomizations name a missing file or miss one, and when an object is not valid Kubernetes.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from . import sync

kubernetes_validate = pytest.importorskip("kubernetes_validate")

K8S_VERSIONS = ("1.30.0", "1.33.0")
MANIFESTS = sync.ROOT / "manifests"
VERSION = tomllib.loads((sync.ROOT / "pyproject.toml").read_text())["project"]["version"]


def load_all(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]


def kustomization(folder: Path) -> dict[str, Any]:
    return yaml.safe_load((folder / "kustomization.yaml").read_text())


def base_objects() -> list[dict[str, Any]]:
    return [obj for name in kustomization(sync.BASE)["resources"] for obj in load_all(sync.BASE / name)]


def by_kind(objects: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    [found] = [obj for obj in objects if obj["kind"] == kind]
    return found


def normalized_rules(rules: list[dict[str, Any]]) -> list[tuple]:
    """RBAC rules as comparable values: order of rules and of list items does not matter."""
    return sorted(
        tuple((key, tuple(sorted(rule.get(key, [])))) for key in ("apiGroups", "resources", "verbs")) for rule in rules
    )


# --- the kustomizations ----------------------------------------------------------------------------


def test_base_kustomization_lists_exactly_the_base_files() -> None:
    resources = kustomization(sync.BASE)["resources"]
    assert len(resources) == len(set(resources))
    on_disk = sorted(p.name for p in sync.BASE.glob("*.yaml") if p.name != "kustomization.yaml")
    assert sorted(resources) == on_disk


def test_top_kustomization_composes_crds_and_base() -> None:
    top = kustomization(MANIFESTS)
    assert top["apiVersion"] == "kustomize.config.k8s.io/v1beta1"
    assert top["kind"] == "Kustomization"
    resources = top["resources"]
    assert "base" in resources
    assert sorted(r for r in resources if r != "base") == sorted(f"crds/{name}" for name in sync.CRD_FILES)
    # Nothing outside manifests/: kustomize's default load restrictor refuses it.
    assert not any(r.startswith("..") or r.startswith("/") for r in resources)
    assert "examples" not in resources
    missing = [r for r in resources if not (MANIFESTS / r).exists()]
    assert missing == [], f"run `python tests/chart/sync.py` (after generating crds/): {missing}"


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl (with built-in kustomize) not installed")
def test_kustomize_builds() -> None:
    """The real kustomize (kubectl's) builds the install: 4 CRDs and the operator objects."""
    built = subprocess.run(
        ["kubectl", "kustomize", str(MANIFESTS)], capture_output=True, text=True, timeout=120, check=False
    )
    assert built.returncode == 0, built.stderr
    objects = [doc for doc in yaml.safe_load_all(built.stdout) if doc]
    kinds = sorted(obj["kind"] for obj in objects)
    assert kinds == sorted(
        ["CustomResourceDefinition"] * 4
        + ["Namespace", "ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Deployment", "Service"]
    )


# --- the copies are in step with their sources -------------------------------------------------


def test_crds_exist() -> None:
    assert sync.missing_crds() == [], "crds/ must hold every CRD generated from alm.api"


@pytest.mark.parametrize("copies", sync.CRD_COPIES, ids=lambda p: str(p.relative_to(sync.ROOT)))
def test_crd_copies_match_crds(copies: Path) -> None:
    for name in sync.CRD_FILES:
        source, copy = sync.CRD_SOURCE / name, copies / name
        assert source.is_file(), f"crds/{name} is missing"
        assert copy.is_file(), f"{copy.relative_to(sync.ROOT)} is missing: run `python tests/chart/sync.py`"
        assert copy.read_bytes() == source.read_bytes(), (
            f"{copy.relative_to(sync.ROOT)} differs from crds/{name}: run `python tests/chart/sync.py`"
        )
    assert sync.stale_files() == []


def test_nothing_drifts() -> None:
    """The one check `python tests/chart/sync.py --check` runs: base, CRD copies, argocd-cm patch."""
    assert sync.drift() == [], "run `python tests/chart/sync.py` and commit the result"


def test_base_cluster_role_equals_the_charts() -> None:
    """One set of rules: the plain ClusterRole grants exactly what the chart's does."""
    chart_role = by_kind(sync.chart_objects(), "ClusterRole")
    base_role = by_kind(base_objects(), "ClusterRole")
    assert normalized_rules(base_role["rules"]) == normalized_rules(chart_role["rules"])
    assert base_role["rules"]  # not vacuously equal


def test_base_objects_equal_the_chart_minus_helm_labels() -> None:
    """Parsed, the base is the chart's default render with only the Helm-specific labels changed."""

    def as_plain(obj: dict[str, Any]) -> dict[str, Any]:
        text = yaml.safe_dump(obj).replace("managed-by: Helm", "managed-by: kustomize")
        return yaml.safe_load(re.sub(r"^\s*helm\.sh/chart: .*\n", "", text, flags=re.MULTILINE))

    rendered = {(o["kind"], o["metadata"]["name"]): as_plain(o) for o in sync.chart_objects()}
    base = {(o["kind"], o["metadata"]["name"]): o for o in base_objects() if o["kind"] != "Namespace"}
    assert base == rendered
    assert len(base) == 5


# --- the objects themselves ------------------------------------------------------------------------


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_base_objects_are_valid_kubernetes(version: str) -> None:
    objects = base_objects()
    assert len(objects) == 6
    for obj in objects:
        try:
            kubernetes_validate.validate(obj, version, strict=True)
        except kubernetes_validate.ValidationError as error:
            pytest.fail(f"{obj['kind']}/{obj['metadata']['name']} is invalid for {version}: {error}")


@pytest.mark.parametrize("version", K8S_VERSIONS)
@pytest.mark.parametrize("name", sync.CRD_FILES)
def test_crd_copies_are_valid_crds(name: str, version: str) -> None:
    path = MANIFESTS / "crds" / name
    if not path.is_file():
        pytest.fail(f"{path.relative_to(sync.ROOT)} is missing: run `python tests/chart/sync.py`")
    [crd] = load_all(path)
    assert crd["kind"] == "CustomResourceDefinition"
    assert crd["spec"]["group"] == "alm.dev"
    kubernetes_validate.validate(crd, version, strict=True)


def test_everything_lives_in_alm_system() -> None:
    objects = base_objects()
    namespace = by_kind(objects, "Namespace")
    assert namespace["metadata"]["name"] == "alm-system"
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    for obj in objects:
        if obj["kind"] in {"Namespace", "ClusterRole", "ClusterRoleBinding"}:
            assert "namespace" not in obj["metadata"]
        else:
            assert obj["metadata"]["namespace"] == "alm-system"
        assert obj["metadata"]["labels"]["app.kubernetes.io/name"] == "alm-operator"
        assert obj["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "kustomize"
        assert "helm.sh/chart" not in yaml.safe_dump(obj)
    binding = by_kind(objects, "ClusterRoleBinding")
    account = by_kind(objects, "ServiceAccount")
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": account["metadata"]["name"], "namespace": "alm-system"}
    ]


def test_base_image_is_the_package_version() -> None:
    deployment = by_kind(base_objects(), "Deployment")
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    assert container["image"] == f"ghcr.io/alm-dev/alm-operator:{VERSION}"
    assert container["args"][:2] == ["run", "--standalone"]
