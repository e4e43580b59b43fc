"""`alm sandbox`: the README's main command, run as a user runs it."""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys

from alm.sandbox import story

ROOT = pathlib.Path(__file__).resolve().parents[2]


def test_packaged_example_is_the_documented_one() -> None:
    for name in story.EXAMPLE_FILES:
        packaged = ROOT / "operator" / "alm" / "sandbox" / "examples" / name
        assert packaged.read_text() == (ROOT / "manifests" / "examples" / name).read_text(), (
            f"operator/alm/sandbox/examples/{name} differs from manifests/examples/{name}: copy it over")


def test_sandbox_deploys_the_example_agent_and_exits_cleanly() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "alm.cli.main", "sandbox", "-o", "json", "--timeout", "60"],
        capture_output=True, text=True, timeout=120, cwd=ROOT, check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout)
    status = report["agent"]["status"]
    assert status["phase"] == "Available"
    assert status["stableVersion"] == "support-bot-v1"
    assert status["readyReplicas"] == 2
    assert report["agentVersion"]["status"]["phase"] == "Ready"
    kinds = sorted(c["kind"] for c in report["children"])
    assert kinds == sorted(["ServiceAccount", "Role", "RoleBinding", "Secret", "Service", "NetworkPolicy",
                            "PodDisruptionBudget", "Deployment"])
    reasons = {e["reason"] for e in report["events"]}
    assert {"Created", "ConfigRendered"} <= reasons
    assert "not-a-real-key-replace-me" not in result.stdout + result.stderr


def test_sandbox_text_report_names_what_it_made() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "alm.cli.main", "sandbox", "--timeout", "60"],
        capture_output=True, text=True, timeout=120, cwd=ROOT, check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Agent default/support-bot is Available" in result.stdout
    assert "Deployment" in result.stdout and "support-bot-support-bot-v1" in result.stdout
