"""Rollback time: from the moment a measured-good canary turns bad to all traffic back on stable; prints JSON.

Each run is a fresh stack: the emulated API server, pods as real ``alm-agent`` processes (the
sandbox's process-backed Deployment controller), the real operator watching a fresh namespace, and
steady traffic to every pod of the Agent (the sandbox's traffic generator, as the Service would).

1. ``bench-v1`` (simulated, success rate 1.0) is deployed, 2 replicas; ``spec.kpis.minSuccessRate``
   0.8; rollout ``canary`` with steps ``[setWeight 50, analysis {duration 120s}]`` and
   ``analysis {interval, failureLimit}``: the step's analysis and the background analysis both
   measure the canary every interval (the scrape provider).
2. ``bench-v2`` is just as good, but its pods read ``ALM_SIM_OVERRIDES`` (set in the version's
   ``runtime.env``: only the canary's pods). ``spec.version`` moves to it; the benchmark waits
   until the step's analysis has at least one Successful measurement, then waits a random part
   of an interval (``--phase random``; a regression does not wait for the next measurement).
3. The flip: ``{"successRate": 0}`` is written to the canary's override file (an atomic replace;
   the agents look at it at most every 100 ms). t0 = right after the replace.
4. The API is polled every ``--poll`` seconds (20 ms): ``status.weight`` of the AgentRollout
   reaching 0, and the Service ``<agent>`` selecting only the stable version. t1 of each is the
   first poll that sees it; both are reported. Also when each Failed measurement first showed
   in the status, which is what the time is made of.

What to expect: an analysis run fails at its ``failureLimit + 1``-th Failed measurement. Rounds
are every interval, each over the interval since the previous one, so the first Failed round
comes up to one interval after the flip (one more when less than 1 - minSuccessRate of its window
was bad) and each further one an interval later: (failureLimit + 0.2) to (failureLimit + 1.2)
intervals (``analysisCadenceRangeSeconds``), plus the passes' own latency (scrape, status write,
the Agent's Service update). Timestamps have whole seconds, so a round may come up to a second
early when another pass finds it due. The step's and the background analysis keep their own
clocks; the first to fail rolls back.

    python benchmarks/rollback.py --runs 10 --intervals 1,5 --failure-limits 1,0
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import math
import os
import pathlib
import platform
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from typing import Any

from alm.api import build_crds
from alm.kube import resources
from alm.kube.api import Kube
from alm.sandbox.apiserverthread import ApiServerThread
from alm.sandbox.operator_thread import OperatorThread
from alm.sandbox.processes import ProcessDeploymentController
from alm.sandbox.traffic import Traffic

AGENT = "bench"
STABLE, CANARY = "bench-v1", "bench-v2"
MIN_SUCCESS_RATE = 0.8
STEP_DURATION = "120s"
ANALYSIS_STEP = 1  # the index of the analysis step
AGENT_ENV = {"ALM_SIM_LATENCY_MS": "5"}  # fast simulated model calls, as in the sandbox

log = logging.getLogger("rollback-bench")


@contextlib.contextmanager
def stack(namespace: str, workdir: pathlib.Path) -> Iterator[tuple[Kube, OperatorThread]]:
    """API server + process-backed pods + the operator watching ``namespace``; all stopped on exit."""
    with ApiServerThread() as server:
        for crd in build_crds():
            server.call(lambda crd=crd: server.emulator.install_crd(crd))
        controller = ProcessDeploymentController(server.emulator.store, workdir=workdir, env=AGENT_ENV)
        server.call(controller.start)
        operator = OperatorThread(server.configuration(), [namespace])
        try:
            operator.start()
            yield Kube(server.api_client(), field_manager="alm-bench"), operator
        finally:
            with contextlib.suppress(Exception):
                operator.stop()
            server.call(controller.stop)


def _create(kube: Kube, obj: dict[str, Any]) -> None:
    kube.request("POST", resources.for_object(obj).path(obj["metadata"].get("namespace")), body=obj)


def _version(ns: str, name: str, overrides: pathlib.Path | None = None) -> dict[str, Any]:
    runtime: dict[str, Any] = {"image": "ghcr.io/alm-dev/alm-agent:0.1.0"}
    if overrides is not None:
        runtime["env"] = [{"name": "ALM_SIM_OVERRIDES", "value": str(overrides)}]
    return {"apiVersion": "alm.dev/v1alpha1", "kind": "AgentVersion", "metadata": {"name": name, "namespace": ns},
            "spec": {"model": {"provider": "simulated", "name": "sim", "parameters": {"extra": {"successRate": "1.0"}}},
                     "instructions": "Benchmark.", "runtime": runtime}}


def _agent(ns: str, interval: float, failure_limit: int | None) -> dict[str, Any]:
    analysis: dict[str, Any] = {"interval": f"{interval:g}s"}
    if failure_limit is not None:
        analysis["failureLimit"] = failure_limit
    return {"apiVersion": "alm.dev/v1alpha1", "kind": "Agent", "metadata": {"name": AGENT, "namespace": ns},
            "spec": {"version": STABLE, "replicas": 2, "owner": "bench", "kpis": {"minSuccessRate": MIN_SUCCESS_RATE},
                     "rollout": {"canary": {"steps": [{"setWeight": 50}, {"analysis": {"duration": STEP_DURATION}}],
                                            "analysis": analysis}}}}


def _write(path: pathlib.Path, values: dict[str, Any]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(values))
    os.replace(tmp, path)


class Deadline:
    def __init__(self, seconds: float, operator: OperatorThread) -> None:
        self.end, self.operator = time.monotonic() + seconds, operator

    def check(self, what: str) -> None:
        self.operator.check_alive()
        if time.monotonic() > self.end:
            raise TimeoutError(f"timed out waiting for {what}")


def _rollout(kube: Kube, ns: str) -> dict[str, Any] | None:
    found = kube.list("AgentRollout", ns)
    return found[-1] if found else None


def _failed(rollout: dict[str, Any]) -> set[tuple[Any, str]]:
    runs = (rollout.get("status") or {}).get("analysisRuns") or ()
    return {(run.get("step"), str(m.get("measuredAt"))) for run in runs
            for m in run.get("measurements") or () if m.get("verdict") == "Failed"}


def one_run(index: int, interval: float, failure_limit: int | None, phase: str, poll: float, timeout: float,
            rng: random.Random) -> dict[str, Any]:
    ns = f"rollback-{index}-{os.getpid()}-{rng.randrange(1 << 24):06x}"
    workdir = pathlib.Path(tempfile.mkdtemp(prefix="alm-rollback-"))
    overrides = workdir / "canary-overrides.json"
    with stack(ns, workdir / "pods") as (kube, operator):
        deadline = Deadline(timeout, operator)
        _create(kube, _version(ns, STABLE))
        _create(kube, _version(ns, CANARY, overrides))
        _create(kube, _agent(ns, interval, failure_limit))
        while ((kube.get("Agent", ns, AGENT) or {}).get("status") or {}).get("phase") != "Available":
            deadline.check(f"{AGENT} Available")
            time.sleep(0.1)
        with Traffic(kube, ns, AGENT) as traffic:
            kube.merge_patch("Agent", ns, AGENT, {"spec": {"version": CANARY}})
            while True:  # the canary is measured good first
                rollout = _rollout(kube, ns) or {}
                runs = (rollout.get("status") or {}).get("analysisRuns") or ()
                if any(m.get("verdict") == "Successful" for run in runs if run.get("step") == ANALYSIS_STEP
                       for m in run.get("measurements") or ()):
                    break
                deadline.check("a Successful measurement of the canary")
                time.sleep(poll)
            good = (rollout.get("status") or {}).get("weight")
            offset = rng.uniform(0, interval) if phase == "random" else 0.0
            time.sleep(offset)
            failed_before = _failed(_rollout(kube, ns) or {})
            _write(overrides, {"successRate": 0})
            t0 = time.monotonic()
            status_at = service_at = None
            failed_seen: list[list[Any]] = []
            seen = set(failed_before)
            while status_at is None or service_at is None:
                rollout = _rollout(kube, ns) or {}
                now = time.monotonic() - t0
                new = _failed(rollout) - seen
                if new:
                    seen |= new
                    failed_seen += [[_key(step), round(now, 3)] for step, _ in sorted(new, key=str)]
                if status_at is None and (rollout.get("status") or {}).get("weight") == 0:
                    status_at = now
                service = kube.get("Service", ns, AGENT) or {}
                selector = (service.get("spec") or {}).get("selector") or {}
                if service_at is None and selector.get("alm.dev/version") == STABLE:
                    service_at = time.monotonic() - t0
                if now > timeout:
                    raise TimeoutError(f"no rollback {timeout:.0f}s after the flip (weight "
                                       f"{(rollout.get('status') or {}).get('weight')}, selector {selector})")
                time.sleep(poll)
            status = (_rollout(kube, ns) or {}).get("status") or {}
        abort = status.get("abort") or {}
        decided = [run.get("step") for run in status.get("analysisRuns") or () if run.get("verdict") == "Failed"]
    assert status_at is not None and service_at is not None
    return {
        "run": index,
        "seconds": round(max(status_at, service_at), 3),
        "statusWeightZeroSeconds": round(status_at, 3),
        "serviceStableOnlySeconds": round(service_at, 3),
        "flipOffsetSeconds": round(offset, 3),
        "weightBeforeFlip": good,
        "failedMeasurementsSeen": failed_seen,  # [analysis run, seconds after the flip it showed in status]
        "failedRuns": [_key(step) for step in decided],
        "phase": status.get("phase"),
        "abort": {k: abort.get(k) for k in ("reason", "kpi", "value", "threshold")},
        "tasksServed": traffic.answered,
    }


def _key(step: Any) -> str:
    return "background" if step is None else f"step/{step}"


def _p(sorted_values: list[float], q: float) -> float:
    """Nearest-rank quantile."""
    return sorted_values[max(0, math.ceil(q * len(sorted_values)) - 1)]


def summarise(interval: float, failure_limit: int | None, runs: list[dict[str, Any]]) -> dict[str, Any]:
    values = sorted(r["seconds"] for r in runs)
    goal = interval + 1.0
    limit = 0 if failure_limit is None else failure_limit
    return {
        "intervalSeconds": interval,
        "failureLimit": limit,
        "failureLimitIsDefault": failure_limit is None,
        "runs": len(runs),
        "seconds": {"min": values[0], "median": round(statistics.median(values), 3), "p90": _p(values, 0.9),
                    "max": values[-1]},
        "goalSeconds": goal,
        "met": values[-1] <= goal,
        "metByMedian": statistics.median(values) <= goal,
        "runsWithinGoal": sum(1 for v in values if v <= goal),
        # The first Failed round needs a bad share of at least 1 - minSuccessRate of its window, then
        # failureLimit more rounds: the analysis alone takes this long, before the passes' own latency.
        "analysisCadenceRangeSeconds": [round((limit + 1 - MIN_SUCCESS_RATE) * interval, 2),
                                        round((limit + 2 - MIN_SUCCESS_RATE) * interval, 2)],
        "durations": [r["seconds"] for r in runs],
        "details": runs,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--runs", type=int, default=10, help="runs per interval and failure limit")
    parser.add_argument("--intervals", default="1,5", help="analysis intervals in seconds, comma-separated")
    parser.add_argument("--failure-limits", default="default,1",
                        help="failureLimit values, comma-separated ('default' leaves it unset: 0)")
    parser.add_argument("--phase", choices=("random", "after-measurement"), default="random",
                        help="flip at a random point of an interval after the first Successful measurement, "
                             "or right after it")
    parser.add_argument("--poll", type=float, default=0.02, help="seconds between API polls")
    parser.add_argument("--timeout", type=float, default=120, help="seconds per stage of a run")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    for noisy in ("kopf", "aiohttp.access"):
        logging.getLogger(noisy).setLevel(logging.ERROR)

    intervals = [float(x) for x in args.intervals.split(",") if x.strip()]
    limits = [None if x.strip() == "default" else int(x) for x in args.failure_limits.split(",") if x.strip()]
    rng = random.Random(args.seed)
    started = time.monotonic()
    results = []
    index = 0
    for interval in intervals:
        for limit in limits:
            runs = []
            for _ in range(args.runs):
                index += 1
                runs.append(one_run(index, interval, limit, args.phase, args.poll, args.timeout, rng))
                sys.stderr.write(f"interval {interval:g}s failureLimit {'default' if limit is None else limit}: "
                                 f"run {len(runs)}: {runs[-1]['seconds']:.2f}s\n")
            results.append(summarise(interval, limit, runs))
    json.dump({
        "benchmark": "rollback",
        "measured": ("seconds from the moment a canary measured good turns bad (its pods' simulated success rate "
                     "set to 0 through ALM_SIM_OVERRIDES) to the first API poll showing all traffic back on stable: "
                     "the AgentRollout's status.weight 0 and the Service selecting only the stable version "
                     "(seconds = the later of the two)"),
        "setup": {"replicas": 2, "steps": [{"setWeight": 50}, {"analysis": {"duration": STEP_DURATION}}],
                  "kpis": {"minSuccessRate": MIN_SUCCESS_RATE}, "provider": "scrape", "pollSeconds": args.poll,
                  "flip": args.phase, "traffic": "every pod, one task each per ~20 ms"},
        "goal": "seconds <= interval + 1 (issue #4)",
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
        "results": results,
        "elapsedSeconds": round(time.monotonic() - started, 1),
    }, sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
