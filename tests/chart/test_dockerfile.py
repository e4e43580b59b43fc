"""operator/Dockerfile, checked statically (no Docker engine runs here).

What can be known without building: the base images are pinned (never `latest`), the
final stage runs as the non-root uid the Deployment's securityContext expects, the entry
point is the `alm` console script, every file the build copies exists and survives
.dockerignore, and the runtime image gets only the virtualenv from the build stage.
"""

from __future__ import annotations

import fnmatch
import json
import re
import tomllib
from dataclasses import dataclass, field

import pytest
import yaml

from . import sync

DOCKERFILE = sync.ROOT / "operator" / "Dockerfile"
DOCKERIGNORE = sync.ROOT / ".dockerignore"
PYPROJECT = tomllib.loads((sync.ROOT / "pyproject.toml").read_text())


@dataclass
class Stage:
    image: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, keyword: str) -> list[str]:
        return [args for kw, args in self.instructions if kw == keyword]


def parse(text: str) -> tuple[dict[str, str], list[Stage]]:
    """Global ARGs and the stages of a Dockerfile (continuation lines joined, comments dropped)."""
    text = re.sub(r"\\\n", " ", text)
    args: dict[str, str] = {}
    stages: list[Stage] = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        keyword, _, rest = line.partition(" ")
        keyword, rest = keyword.upper(), rest.strip()
        if keyword == "FROM":
            match = re.fullmatch(r"(\S+)(?:\s+AS\s+(\S+))?", rest, flags=re.IGNORECASE)
            assert match, line
            stages.append(Stage(match[1], match[2]))
        elif not stages:
            assert keyword == "ARG", f"only ARG may precede FROM: {line}"
            name, _, default = rest.partition("=")
            args[name] = default
        else:
            stages[-1].instructions.append((keyword, rest))
    return args, stages


def resolve(image: str, args: dict[str, str]) -> str:
    return re.sub(r"\$\{?(\w+)\}?", lambda m: args[m[1]], image)


def pinned(image: str) -> bool:
    """An image reference with a digest, or a tag other than `latest`."""
    if "@sha256:" in image:
        return True
    last = image.rsplit("/", 1)[-1]
    return ":" in last and last.rsplit(":", 1)[1] != "latest"


def dockerignored(path: str, patterns: list[str]) -> bool:
    """Docker's rule: the last matching pattern wins; `!` re-includes (parents count too)."""
    ignored = False
    parts = path.split("/")
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    for pattern in patterns:
        negate = pattern.startswith("!")
        pattern = pattern.lstrip("!").rstrip("/")
        if any(
            fnmatch.fnmatchcase(c, pattern) or fnmatch.fnmatchcase(c, pattern.replace("**/", "")) for c in candidates
        ):
            ignored = not negate
    return ignored


@pytest.fixture(scope="module")
def dockerfile() -> tuple[dict[str, str], list[Stage]]:
    return parse(DOCKERFILE.read_text())


@pytest.fixture(scope="module")
def ignore_patterns() -> list[str]:
    lines = DOCKERIGNORE.read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def test_multi_stage_from_pinned_python_311_slim(dockerfile: tuple[dict[str, str], list[Stage]]) -> None:
    args, stages = dockerfile
    assert len(stages) >= 2
    for stage in stages:
        image = resolve(stage.image, args)
        assert image.startswith("python:3.11-slim"), image
        assert pinned(image), f"{image} must be pinned by tag or digest, never latest"


def test_runtime_stage_runs_as_non_root(dockerfile: tuple[dict[str, str], list[Stage]]) -> None:
    _, stages = dockerfile
    users = stages[-1].all("USER")
    assert users, "the final stage must set USER"
    uid, _, gid = users[-1].partition(":")
    assert uid.isdigit() and int(uid) != 0, "USER must be numeric (runAsNonRoot checks the uid) and not root"
    assert gid.isdigit() and int(gid) != 0
    # The uid the chart and the plain manifests run the pod as.
    values = yaml.safe_load((sync.CHART / "values.yaml").read_text())
    assert int(uid) == values["podSecurityContext"]["runAsUser"] == values["securityContext"]["runAsUser"] == 65532


def test_entrypoint_is_the_alm_console_script(dockerfile: tuple[dict[str, str], list[Stage]]) -> None:
    _, stages = dockerfile
    final = stages[-1]
    assert json.loads(final.all("ENTRYPOINT")[-1]) == ["alm"]
    assert json.loads(final.all("CMD")[-1]) == ["run", "--standalone"]
    assert PYPROJECT["project"]["scripts"]["alm"], "pyproject must define the `alm` console script"


def test_build_installs_the_package_from_the_repo(dockerfile: tuple[dict[str, str], list[Stage]]) -> None:
    _, stages = dockerfile
    build, final = stages[0], stages[-1]
    assert any(re.search(r"pip install\b.*\s\.$", run) for run in build.all("RUN"))
    # The runtime stage copies the built virtualenv, not the source tree.
    copies = final.all("COPY")
    assert copies and all(c.startswith(f"--from={build.name} ") for c in copies)
    assert not any("pip install" in run for run in final.all("RUN"))


def test_copied_sources_exist_and_are_in_the_context(
    dockerfile: tuple[dict[str, str], list[Stage]], ignore_patterns: list[str]
) -> None:
    _, stages = dockerfile
    sources = [
        source
        for stage in stages
        for copy in stage.all("COPY")
        if not copy.startswith("--from=")
        for source in copy.split()[:-1]
    ]
    assert "pyproject.toml" in sources
    assert "operator/alm" in sources
    for source in sources:
        if any(char in source for char in "*?["):
            # A glob may match nothing (Docker accepts that beside a literal source).
            matches = [p.relative_to(sync.ROOT).as_posix() for p in sync.ROOT.glob(source)]
        else:
            assert (sync.ROOT / source).exists(), f"COPY {source}: not in the repository"
            matches = [source]
        for match in matches:
            assert not dockerignored(match, ignore_patterns), f"COPY {match}: excluded by .dockerignore"


def test_dockerignore_keeps_the_context_small(ignore_patterns: list[str]) -> None:
    for path in (
        "tests/chart/sync.py",
        ".git/config",
        "helm/alm-operator/Chart.yaml",
        "benchmarks/x.py",
        "operator/alm/__pycache__/x.pyc",
        ".venv/bin/python",
    ):
        assert dockerignored(path, ignore_patterns), path
    assert not dockerignored("operator/alm/__init__.py", ignore_patterns)


def test_exposed_ports_match_the_deployment(dockerfile: tuple[dict[str, str], list[Stage]]) -> None:
    _, stages = dockerfile
    exposed = {int(port) for expose in stages[-1].all("EXPOSE") for port in expose.split()}
    values = yaml.safe_load((sync.CHART / "values.yaml").read_text())
    assert exposed == {values["liveness"]["port"], values["metrics"]["port"]}


@pytest.mark.parametrize(
    ("image", "ok"),
    [
        ("python:3.11-slim-bookworm", True),
        ("python:3.11-slim@sha256:" + "0" * 64, True),
        ("python", False),
        ("python:latest", False),
        ("registry:5000/python", False),
    ],
)
def test_pin_check_can_fail(image: str, ok: bool) -> None:
    assert pinned(image) is ok


def test_user_check_sees_root() -> None:
    """The non-root check is not vacuous: a final stage running as root parses as uid 0."""
    _, stages = parse("FROM python:3.11-slim AS a\nUSER nobody\nFROM python:3.11-slim\nUSER 0:0\n")
    assert stages[-1].all("USER") == ["0:0"]
