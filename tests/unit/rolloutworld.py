"""A simulated world for the rollout planner: what the shell would see and do, with no cluster.

Actions change the world, observations read it, a fake MetricProvider answers Measure requests
from per-version KPI values. Pods become ready at once unless told otherwise; the router reads
back what it was told unless it is stuck.
"""

from __future__ import annotations

import copy
import dataclasses
import datetime
from typing import Any

from alm.core import analysis, kpis, rollout, weights
from alm.core.analysis import Measure, RunReading
from alm.core.rollout import RolloutPlan
from alm.core.rolloutcontrols import from_annotations
from alm.core.rollouttypes import (
    ConsumeControl,
    MarkAgentRolloutFailed,
    Promote,
    RolloutObservations,
    ScaleDownAfter,
    ScaleVersion,
    SetMirror,
    SetPreview,
    SetWeight,
)

T0 = datetime.datetime(2026, 11, 24, 12, 0, 0, tzinfo=datetime.UTC)
STABLE, TARGET = "bot-v1", "bot-v2"
GOOD = {"successRate": 0.98, "latencySeconds": 1.2, "costPerTaskUSD": 0.01, "toolErrorRate": 0.01,
        "alignmentScore": 0.9}


def at(seconds: float) -> str:
    return (T0 + datetime.timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%SZ")


def spec(strategy: dict[str, Any] | None = None, *, routing: str = "replicas", **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = dict(strategy or {"canary": {"steps": [{"setWeight": 50}]}})
    body["trafficRouting"] = {"type": routing}
    return {"agentRef": {"name": "bot"}, "targetVersion": TARGET, "strategy": body, **extra}


def canary(*steps: dict[str, Any], analysis: dict[str, Any] | None = None, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"steps": list(steps)}
    if analysis is not None:
        body["analysis"] = analysis
    return spec({"canary": body}, **extra)


@dataclasses.dataclass
class World:
    routing: str = "replicas"
    replicas: int = 4
    scaled: dict[str, int] = dataclasses.field(default_factory=lambda: {STABLE: 4})
    unready: dict[str, int] = dataclasses.field(default_factory=dict)  # pods that never become ready
    startup: float = 0  # seconds a new pod takes to become ready
    booting: dict[str, tuple[float, int]] = dataclasses.field(default_factory=dict)  # version -> (since, ready then)
    now: float = 0
    shadows: set[str] = dataclasses.field(default_factory=set)
    weight: int = 0  # what the router was told
    mirror: int = 0
    stuck: int | None = None  # the router ignores SetWeight and reads back this
    preview: str | None = None
    desired: str | None = TARGET
    stable: str | None = STABLE
    target_ready: bool = True
    blocked_by: str | None = None
    kpis: dict[str, dict[str, float | None]] = dataclasses.field(
        default_factory=lambda: {STABLE: dict(GOOD), TARGET: dict(GOOD)})
    errors: dict[str, str] = dataclasses.field(default_factory=dict)  # kpi -> query error
    annotations: dict[str, str] = dataclasses.field(default_factory=dict)
    agent_kpis: dict[str, Any] | None = dataclasses.field(default_factory=lambda: {"minSuccessRate": 0.95})
    done: list[Any] = dataclasses.field(default_factory=list)
    measured: list[Measure] = dataclasses.field(default_factory=list)

    def ready(self) -> dict[str, int]:
        found = {}
        for version, count in self.scaled.items():
            since, before = self.booting.get(version, (-1e9, count))
            up = count if self.now - since >= self.startup else min(count, before)
            found[version] = max(0, up - self.unready.get(version, 0))
        return found

    def router_weight(self) -> int:
        if self.stuck is not None:
            return self.stuck
        if self.routing == "gatewayAPI":
            return self.weight
        ready = self.ready()
        return weights.actual_weight(ready.get(TARGET, 0), ready.get(STABLE, 0), weights.service_scope(self.weight))

    def observe(self, readings: tuple[RunReading, ...] = ()) -> RolloutObservations:
        from alm.api import KPIThresholds

        return RolloutObservations(
            name="bot-rollout", generation=1, desired_version=self.desired, stable_version=self.stable,
            replicas=self.replicas, target_ready=self.target_ready, scaled=dict(self.scaled), ready=self.ready(),
            shadows=frozenset(self.shadows), router_weight=self.router_weight(), router_mirror=self.mirror,
            preview=self.preview, readings=readings, controls=from_annotations(self.annotations),
            agent_kpis=KPIThresholds.model_validate(self.agent_kpis) if self.agent_kpis else None,
            blocked_by=self.blocked_by,
        )

    def measure(self, request: Measure, now: str) -> list[RunReading]:
        """Answer as a MetricProvider does (alm.core.kpis readings), turned into run readings."""
        self.measured.append(request)
        found: list[RunReading] = []
        for version in (request.version, request.baseline):
            if version is None:
                continue
            answers: dict[str, kpis.Reading] = {}
            for name in (*request.kpis, *(q.name for q in request.queries)):
                value = self.kpis.get(version, {}).get(name)
                answers[name] = (kpis.Reading.error(self.errors[name]) if name in self.errors
                                 else kpis.Reading.inconclusive("no tasks in the window") if value is None
                                 else kpis.Reading.measured(value))
            found += analysis.run_readings(request, version, now, answers)
        return found

    def apply(self, action: Any) -> None:
        self.done.append(action)
        if isinstance(action, ScaleVersion):
            if action.replicas > self.scaled.get(action.version, 0):
                self.booting[action.version] = (self.now, self.ready().get(action.version, 0))
            self.scaled[action.version] = action.replicas
            (self.shadows.add if action.shadow else self.shadows.discard)(action.version)
        elif isinstance(action, SetWeight):
            self.weight = action.weight
        elif isinstance(action, SetMirror):
            self.mirror = action.percent
        elif isinstance(action, SetPreview):
            self.preview = action.version
        elif isinstance(action, ConsumeControl):
            self.annotations.pop(action.annotation, None)
        elif isinstance(action, Promote):
            self.stable = action.version
        elif isinstance(action, ScaleDownAfter | MarkAgentRolloutFailed):
            pass


@dataclasses.dataclass
class Run:
    status: dict[str, Any] | None
    plans: list[RolloutPlan]
    times: list[float]
    world: World

    @property
    def now(self) -> float:
        return self.times[-1] if self.times else 0.0

    @property
    def actions(self) -> list[Any]:
        return [a for p in self.plans for a in p.actions]

    @property
    def events(self) -> list[str]:
        return [e.reason for p in self.plans for e in p.events]

    @property
    def phase(self) -> str | None:
        return (self.status or {}).get("phase")


def waits_on_a_human(status: dict[str, Any]) -> bool:
    """Approval, a pause without end, a human's pause, an inconclusive analysis: only a human moves it."""
    paused: dict[str, Any] = next((c for c in status.get("conditions") or () if c["type"] == "Paused"), {})
    if status.get("phase") == "AwaitingApproval" or paused.get("reason") in ("PausedByUser", "AnalysisInconclusive"):
        return True
    return (paused.get("reason") in ("PauseStep", "AwaitingPromotion") and "until resumed" in status["message"]) or (
        "waiting for promote" in status["message"])


def one_pass(body: dict[str, Any], status: dict[str, Any] | None, world: World, now: str) -> RolloutPlan:
    """What the handler does: measure what is due, plan with the readings, apply the actions."""
    world.now = (datetime.datetime.fromisoformat(now.replace("Z", "+00:00")) - T0).total_seconds()
    due = rollout.measurements_due(body, status, world.observe(), now)
    readings = tuple(r for request in due for r in world.measure(request, now))
    plan = rollout.plan(body, status, world.observe(readings), now)
    for action in plan.actions:
        world.apply(action)
    return plan


def drive(body: dict[str, Any], world: World, *, status: dict[str, Any] | None = None, start: float = 0,
          max_passes: int = 200, crash: frozenset[int] = frozenset(), idle: float | None = None) -> Run:
    """Pass after pass at now + requeue_after, until the rollout finishes or waits on a human.

    A crashed pass acts but saves no status (the operator restarts and looks again a second later).
    ``idle`` keeps going that many seconds apart when nothing is scheduled (a periodic resync).
    """
    now, plans, times = start, [], []
    for index in range(max_passes):
        plan = one_pass(body, status, world, at(now))
        plans.append(plan)
        times.append(now)
        if index in crash:
            now += 1
            continue
        status = copy.deepcopy(plan.status)
        if status.get("finishedAt") or waits_on_a_human(status):
            break
        wait = plan.requeue_after if plan.requeue_after is not None else idle
        if wait is None:
            break
        now += max(wait, 0.5) if wait == 0 else wait
    return Run(status, plans, times, world)
