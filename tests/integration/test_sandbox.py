"""`alm sandbox`: the README's main command, run as a user runs it.

The story's JSON is what the sandbox read back from the API (rollouts, Agent status, the
retirement, the audit ConfigMaps), so each beat is asserted on API state, not on printed text.
"""

from __future__ import annotations

import ctypes
import json
import os
import pathlib
import subprocess
import sys
from typing import Any

import pytest

from alm.sandbox import story

ROOT = pathlib.Path(__file__).resolve().parents[2]


def test_packaged_example_is_the_documented_one() -> None:
    for name in story.EXAMPLE_FILES:
        packaged = ROOT / "operator" / "alm" / "sandbox" / "examples" / name
        assert packaged.read_text() == (ROOT / "manifests" / "examples" / name).read_text(), (
            f"operator/alm/sandbox/examples/{name} differs from manifests/examples/{name}: copy it over")


def _runtime_processes(parent: int | None = None) -> set[int]:
    """Live ``alm.runtime.server`` processes (zombies excluded), optionally only the children of ``parent``."""
    found = set()
    for entry in pathlib.Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            if (b"alm.runtime.server" in (entry / "cmdline").read_bytes() and fields[0] != "Z"
                    and (parent is None or int(fields[1]) == parent)):
                found.add(int(entry.name))
        except (OSError, IndexError, ValueError):
            continue
    return found


def _become_subreaper() -> None:
    """Orphans of our descendants are re-parented to this process (PR_SET_CHILD_SUBREAPER), not to init:
    an agent process the sandbox left behind shows up as our child."""
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(36, 1)


@pytest.fixture(scope="module")
def run() -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
    _become_subreaper()
    result = subprocess.run(
        [sys.executable, "-m", "alm.cli.main", "sandbox", "-o", "json", "--timeout", "100"],
        capture_output=True, text=True, timeout=150, cwd=ROOT, check=False, env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout)
    report["leftover"] = sorted(_runtime_processes(parent=os.getpid()))
    return result, report


def _beat(report: dict[str, Any], name: str) -> dict[str, Any]:
    (beat,) = [b for b in report["timeline"] if b["beat"] == name]
    return beat


def test_the_story_plays_every_beat_in_order_in_under_two_minutes(run: Any) -> None:
    _, report = run
    assert [b["beat"] for b in report["timeline"]] == [
        "deploy", "canary", "rollback", "approval", "budget", "retirement", "audit"]
    elapsed = [b["elapsedSeconds"] for b in report["timeline"]]
    assert elapsed == sorted(elapsed) and report["totalSeconds"] < 120
    assert report["traffic"]["answered"] > 0


def test_deploy_runs_pods_as_real_processes(run: Any) -> None:
    _, report = run
    deploy = _beat(report, "deploy")
    assert (deploy["phase"], deploy["stableVersion"], deploy["readyReplicas"]) == ("Available", "support-bot-v1", 2)
    assert len(deploy["ports"]) == 2
    assert sorted(c["kind"] for c in deploy["children"]) == sorted(story.beats.CHILD_KINDS)


def test_a_good_canary_is_measured_and_promoted_without_approval(run: Any) -> None:
    _, report = run
    canary = _beat(report, "canary")
    assert canary["to"] == "support-bot-v2" and canary["from"] == "support-bot-v1"
    assert canary["steps"] == ["setWeight", "analysis"] and canary["approvals"] == []
    assert 50 in canary["weights"] and canary["analysisVerdicts"] == ["Successful"]
    assert canary["successRate"] >= canary["threshold"] == 0.95
    assert canary["phase"] == "Succeeded" and canary["stableVersion"] == "support-bot-v2"


def test_a_bad_canary_is_rolled_back_with_the_kpi(run: Any) -> None:
    _, report = run
    rollback = _beat(report, "rollback")
    assert rollback["to"] == "support-bot-v3" and rollback["from"] == "support-bot-v2"
    assert rollback["phase"] == "RolledBack"
    assert (rollback["reason"], rollback["kpi"], rollback["threshold"]) == ("AnalysisFailed", "successRate", 0.95)
    assert rollback["value"] < 0.95
    assert rollback["agentCondition"]["reason"] == "AnalysisFailed"
    assert rollback["stableVersion"] == "support-bot-v2"


def test_after_the_rollback_a_fix_waits_at_the_approval_gate_is_approved_and_promoted(run: Any) -> None:
    _, report = run
    approval = _beat(report, "approval")
    assert approval["to"] == "support-bot-v4" and approval["from"] == "support-bot-v2"
    assert approval["steps"] == ["setWeight", "analysis", "approval"]
    assert 50 in approval["weights"] and approval["analysisVerdicts"] == ["Successful"]
    assert approval["successRate"] >= approval["threshold"] == 0.95
    # It waited at the gate (still there a second later) until the sandbox approved that step.
    assert approval["waitedAtStep"] == approval["stillWaitingAtStep"] == approval["step"] == 2
    assert [(a["step"], a["approvedBy"]) for a in approval["approvals"]] == [(2, "sandbox")]
    assert approval["approvedBy"] == "sandbox" and approval["approvedAt"]
    assert approval["phase"] == "Succeeded" and approval["stableVersion"] == "support-bot-v4"


def test_the_budget_is_exceeded_and_the_agent_suspended(run: Any) -> None:
    _, report = run
    budget = _beat(report, "budget")
    assert budget["phase"] == "Suspended" and budget["reason"] == "Exceeded"
    assert budget["tokens"] > budget["budget"]["tokensPerDay"] and budget["usd"] > 0
    assert budget["deploymentReplicas"] == [0]


def test_retirement_revokes_every_credential_and_archives(run: Any) -> None:
    _, report = run
    retired = _beat(report, "retirement")
    assert retired["phase"] == "Retired" and retired["agentPhase"] == "Retired"
    assert retired["transitions"] == ["Pending", "Draining", "Revoking", "Archiving", "Retired"]
    assert sorted(f"{r['kind']}/{r['name']}" for r in retired["revoked"]) == retired["issued"]
    assert {r["kind"] for r in retired["revoked"]} == {"Secret", "ServiceAccount", "Role", "RoleBinding"}
    assert {r["result"] for r in retired["revoked"]} == {"Revoked"} and retired["credentialsLeft"] == []
    assert retired["archive"]["location"].startswith("configmap/") and len(retired["archive"]["sha256"]) == 64
    assert retired["archive"]["checksumVerified"] is True


def test_the_audit_chain_verifies(run: Any) -> None:
    _, report = run
    verdict = _beat(report, "audit")
    assert verdict["ok"] is True and verdict["entries"] > 0 and len(verdict["head"]) == 64
    assert verdict["approvedBy"] == ["sandbox"]
    assert verdict["actions"]["budgetSuspended"] == 1  # one budget action, one entry
    for action in ("rolloutStarted", "approved", "promoted", "rolledBack", "budgetSuspended", "credentialRevoked",
                   "retired"):
        assert verdict["actions"].get(action), action


def test_no_process_is_left_behind(run: Any) -> None:
    _, report = run
    started = report["processes"]["started"]
    assert len(started) >= 4  # v1 x2, then the canaries: every pod was a real process
    assert report["processes"]["running"] == []
    assert report["leftover"] == []
    assert not set(started) & _runtime_processes()


def test_the_text_timeline_names_each_beat() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "alm.cli.main", "sandbox", "--timeout", "100"],
        capture_output=True, text=True, timeout=150, cwd=ROOT, check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout
    for text in ("deploy v1", "support-bot-v1 Available", "approved by sandbox", "rolled back automatically",
                 "successRate", "Suspended", "revoked 4 credentials", "sha256", "hash chain intact"):
        assert text in out, text
    assert out.index("rolled back automatically") < out.index("approved by sandbox") < out.index("Suspended")
    assert "not-a-real-key-replace-me" not in out + result.stderr
