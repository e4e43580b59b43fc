"""The linters as tests, so `pytest` alone says whether a change is ready."""

from __future__ import annotations

import pathlib
import shutil
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]


def run(*cmd: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300, check=False)


@pytest.mark.parametrize("cmd", [
    ("ruff", "check", "operator", "tests", "benchmarks"),
    ("mypy",),
    ("lint-imports",),
], ids=["ruff", "mypy", "import-linter"])
def test_linter_is_clean(cmd: tuple[str, ...]) -> None:
    exe = shutil.which(cmd[0], path=str(pathlib.Path(sys.executable).parent)) or shutil.which(cmd[0])
    assert exe, f"{cmd[0]} is not installed: pip install -e '.[test]'"
    result = run(exe, *cmd[1:])
    assert result.returncode == 0, result.stdout + result.stderr


def test_operator_is_not_a_package() -> None:
    assert not (ROOT / "operator" / "__init__.py").exists(), "a package named 'operator' shadows the stdlib"
