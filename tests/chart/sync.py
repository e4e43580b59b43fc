"""Keep the packaging copies in step with their single sources.

Three kinds of files are copies, checked in so that `kubectl apply -k manifests/`,
`helm install` and ArgoCD work from a plain checkout:

- the CRDs: `crds/*.yaml` (generated from `alm.api`) copied into `manifests/crds/` and
  `helm/alm-operator/crds/` (kustomize refuses files outside its root, and Helm only
  installs CRDs from the chart's own `crds/` folder);
- the plain operator manifests `manifests/base/{serviceaccount,clusterrole,
  clusterrolebinding,deployment,service}.yaml`: the Helm chart rendered with its default
  values as release `alm-operator` in namespace `alm-system`, minus the Helm-only label;
- `argocd/argocd-cm-patch.yaml`: the Lua health checks of `argocd/health/` inlined into
  an `argocd-cm` patch.

Run `python tests/chart/sync.py` after changing a source to rewrite the copies;
`python tests/chart/sync.py --check` (and tests/chart/test_manifests.py) fails on drift.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
CRD_SOURCE = ROOT / "crds"
CHART = ROOT / "helm" / "alm-operator"
CRD_COPIES = (ROOT / "manifests" / "crds", CHART / "crds")
BASE = ROOT / "manifests" / "base"
HEALTH = ROOT / "argocd" / "health"
CM_PATCH = ROOT / "argocd" / "argocd-cm-patch.yaml"

#: The CRDs the operator needs; a missing one is an error, not an empty copy.
CRD_FILES = (
    "alm.dev_agents.yaml",
    "alm.dev_agentversions.yaml",
    "alm.dev_agentrollouts.yaml",
    "alm.dev_agentretirements.yaml",
)
#: The kinds that carry a health check, in the order of the argocd-cm patch.
HEALTH_KINDS = ("Agent", "AgentVersion", "AgentRollout", "AgentRetirement")

#: The documented plain install: release `alm-operator` in namespace `alm-system`.
RELEASE = "alm-operator"
NAMESPACE = "alm-system"
#: Which base file holds each kind rendered by the chart.
BASE_FILES = {
    "ServiceAccount": "serviceaccount.yaml",
    "ClusterRole": "clusterrole.yaml",
    "ClusterRoleBinding": "clusterrolebinding.yaml",
    "Deployment": "deployment.yaml",
    "Service": "service.yaml",
}
GENERATED_HEADER = (
    "# Generated from helm/alm-operator (default values) by `python tests/chart/sync.py`.\n"
    "# Edit the chart's templates, then run that command; a test fails when this file drifts.\n"
)


def render_chart(values: dict | None = None, *, name: str = RELEASE, namespace: str = NAMESPACE) -> dict[str, str]:
    """Render the chart with Helm's own engine (no cluster): template path -> text."""
    import helm_python

    with helm_python.Chart.load(CHART) as chart:
        return chart.render(values, name=name, namespace=namespace)


def split_documents(text: str) -> list[str]:
    """Split a multi-document YAML text into its non-empty documents (comments kept)."""
    documents = re.split(r"^---[ \t]*$\n?", text, flags=re.MULTILINE)
    return [doc.strip("\n") + "\n" for doc in documents if yaml.safe_load(doc) is not None]


def chart_objects(values: dict | None = None, **kwargs: str) -> list[dict]:
    """Render the chart and parse every manifest it produces (NOTES.txt excluded)."""
    objects = []
    for path, text in sorted(render_chart(values, **kwargs).items()):
        if path.endswith(".yaml"):
            objects.extend(yaml.safe_load(doc) for doc in split_documents(text))
    return objects


def base_manifests() -> dict[Path, str]:
    """The generated files of manifests/base, rendered from the chart."""
    files: dict[Path, list[str]] = {}
    for path, text in sorted(render_chart().items()):
        if not path.endswith(".yaml"):
            continue
        for document in split_documents(text):
            kind = yaml.safe_load(document)["kind"]
            if kind not in BASE_FILES:
                raise ValueError(f"{path} renders a {kind}, which has no file in manifests/base")
            document = re.sub(r"^\s*helm\.sh/chart: .*\n", "", document, flags=re.MULTILINE)
            document = document.replace("app.kubernetes.io/managed-by: Helm", "app.kubernetes.io/managed-by: kustomize")
            files.setdefault(BASE / BASE_FILES[kind], []).append(document)
    return {path: GENERATED_HEADER + "---\n".join(docs) for path, docs in files.items()}


def missing_crds() -> list[str]:
    """CRD sources that crds/ should hold but does not (generate them from alm.api first)."""
    return [f"crds/{name}" for name in CRD_FILES if not (CRD_SOURCE / name).is_file()]


def crd_copies() -> dict[Path, str]:
    """Every CRD present in crds/ at its place in each copy folder."""
    copies = {}
    for name in CRD_FILES:
        source = CRD_SOURCE / name
        if source.is_file():
            for folder in CRD_COPIES:
                copies[folder / name] = source.read_text()
    return copies


def argocd_cm_patch() -> str:
    """The argocd-cm patch that installs every health check, inlined from argocd/health/."""
    lines = [
        "# Installs alm's health checks in ArgoCD. Generated from argocd/health/*.lua by",
        "# `python tests/chart/sync.py`; edit the .lua files, not this one.",
        "# Apply: kubectl -n argocd patch configmap argocd-cm --patch-file argocd/argocd-cm-patch.yaml",
        "apiVersion: v1",
        "kind: ConfigMap",
        "metadata:",
        "  name: argocd-cm",
        "  namespace: argocd",
        "data:",
    ]
    for kind in HEALTH_KINDS:
        script = (HEALTH / f"alm.dev_{kind}.lua").read_text()
        lines.append(f"  resource.customizations.health.alm.dev_{kind}: |")
        lines.extend(f"    {line}" if line else "" for line in script.splitlines())
    return "\n".join(lines) + "\n"


def expected_files() -> dict[Path, str]:
    """Every managed copy with the content it must have."""
    return {**crd_copies(), **base_manifests(), CM_PATCH: argocd_cm_patch()}


def stale_files() -> list[Path]:
    """CRD copies whose source is gone (a renamed or dropped kind)."""
    return sorted(
        path for folder in CRD_COPIES if folder.is_dir() for path in folder.glob("*.yaml") if path.name not in CRD_FILES
    )


def drift() -> list[str]:
    """Human-readable differences between the copies and their sources; empty when in step."""
    problems = [f"missing source: {name}" for name in missing_crds()]
    for path, content in expected_files().items():
        if not path.is_file():
            problems.append(f"missing: {path.relative_to(ROOT)}")
        elif path.read_text() != content:
            problems.append(f"out of date: {path.relative_to(ROOT)}")
    problems.extend(f"stale: {path.relative_to(ROOT)}" for path in stale_files())
    return problems


def write() -> list[Path]:
    """Rewrite every copy that differs; remove stale CRD copies. Returns what changed."""
    changed = []
    for path, content in expected_files().items():
        if not path.is_file() or path.read_text() != content:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(content)
            changed.append(path)
    for path in stale_files():
        path.unlink()
        changed.append(path)
    return changed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="report drift, change nothing")
    args = parser.parse_args(argv)
    if args.check:
        problems = drift()
        for problem in problems:
            print(problem)
        return 1 if problems else 0
    for path in write():
        print(f"updated {path.relative_to(ROOT)}")
    for name in missing_crds():
        print(f"missing source: {name} (generate the CRDs, then run this again)")
    return 1 if missing_crds() else 0


if __name__ == "__main__":
    sys.exit(main())
