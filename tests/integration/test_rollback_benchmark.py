"""benchmarks/rollback.py runs end to end (one quick run) and prints the JSON the docs quote."""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[2]


def test_the_rollback_benchmark_measures_a_plausible_rollback() -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "rollback.py"), "--runs", "1", "--intervals", "1",
         "--failure-limits", "0", "--timeout", "30"],
        cwd=ROOT, capture_output=True, text=True, timeout=90, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout)
    assert report["benchmark"] == "rollback" and report["machine"]["cpus"] >= 1
    (result,) = report["results"]
    assert (result["intervalSeconds"], result["failureLimit"], result["runs"], result["goalSeconds"]) == (1, 0, 1, 2)
    assert set(result["seconds"]) == {"min", "median", "p90", "max"} and isinstance(result["met"], bool)
    (run,) = result["details"]
    assert 0 < run["seconds"] < 30
    assert run["seconds"] == max(run["statusWeightZeroSeconds"], run["serviceStableOnlySeconds"])
    assert run["phase"] == "RolledBack" and run["weightBeforeFlip"] == 50
    assert run["abort"] == {"reason": "AnalysisFailed", "kpi": "successRate", "value": run["abort"]["value"],
                            "threshold": 0.8}
    assert run["abort"]["value"] < 0.8
    assert run["failedMeasurementsSeen"], "the rollback follows a Failed measurement made after the flip"
    assert run["tasksServed"] > 0
