"""The shadow strategy: mirror live traffic to the new version, judge it, then promote it.

The shadow serves no one: the router mirrors ``mirrorPercent`` % of the stable version's
requests to it and drops its answers, and its runtime runs tool calls in dry-run (unless a tool
is read-only), so it has no side effects. ``status.currentStep`` holds the stage::

    0 deploy    the shadow's pods (a share of the Agent's replicas matching the mirrored share,
                at least one) in shadow mode, no live traffic; done when they are ready.
    1 mirror    mirror on; once the router reads the mirror back, one analysis run for
                ``duration``: the shadow's absolute KPIs (``analysis``, else the Agent's
                ``spec.kpis``) and, over the same windows, relative limits against the stable
                version (``relative``: success-rate drop, latency and cost increase ratios).
                Failed: roll back (mirror off, shadow scaled to zero). Inconclusive: pause.
    2 switch    mirror off; the new version restarts live at full size; then 100 % at once and
                promote (like a blue-green switch). The old version is scaled down after
                30 seconds.

The shadow strategy promotes (the ShadowStrategy API says so): to only *report*, set a long
``duration`` and abort after reading the analysis in status. ``promote`` (or ``full``) ends the
mirroring early and switches.
"""

from __future__ import annotations

from collections.abc import Callable

from alm.api import AgentRolloutSpec, AnalysisVerdict, KPIThresholds, ShadowStrategy, parse_duration
from alm.core import analysis, weights
from alm.core.analysis import Criteria
from alm.core.auditactions import AuditAction
from alm.core.rolloutpass import Pass
from alm.core.rollouttypes import RolloutReason as R
from alm.core.timestamps import later

__all__ = ["KEY", "STAGES", "advance", "criteria", "promote", "shadow_replicas"]

KEY = "shadow"
DEPLOY, MIRROR, SWITCH = range(3)
STAGES = ("deploy shadow", "mirror and compare", "switch")


def _strategy(spec: AgentRolloutSpec) -> ShadowStrategy:
    strategy = spec.strategy.shadow
    if strategy is None:
        raise ValueError("not a shadow rollout")
    return strategy


def criteria(spec: AgentRolloutSpec, key: str, fallback: KPIThresholds | None) -> Criteria:
    strategy = _strategy(spec)
    return analysis.criteria(strategy.analysis, fallback=fallback, duration=parse_duration(strategy.duration),
                             relative=strategy.relative)


def shadow_replicas(percent: int, total: int) -> int:
    """Pods for a shadow taking ``percent`` % of the load of ``total`` pods: rounded up (capacity for
    the mirrored load), at least one; the same count ``alm.routers.replicas.shadow_replicas`` gives."""
    return 0 if total <= 0 else max(1, -(-total * percent // weights.FULL))


def advance(p: Pass) -> None:
    strategy = _strategy(p.spec)
    stages: tuple[Callable[[Pass, ShadowStrategy], bool], ...] = (_deploy, _mirror, _switch)
    for _ in stages:
        stage = min(p.step, SWITCH)
        if p.done or not stages[stage](p, strategy) or p.done or p.hold:
            return
        p.tell(R.STEP_COMPLETED, f"Shadow {STAGES[stage]} done")
        p.record(AuditAction.ROLLOUT_STEP, step=stage, label=STAGES[stage])
        p.enter_step(stage + 1)


def _hold_shadow(p: Pass, strategy: ShadowStrategy) -> bool:
    """The shadow's pods in shadow mode, no live traffic; True once they are ready."""
    return p.route(0, canary=shadow_replicas(strategy.mirror_percent, p.total), stable=p.total, shadow=True)


def _deploy(p: Pass, strategy: ShadowStrategy) -> bool:
    if _hold_shadow(p, strategy):
        return True
    want = shadow_replicas(strategy.mirror_percent, p.total)
    p.reason = R.MIRRORING
    p.waiting_for_pods(f"Shadow: {p.ready(p.target)} of {want} pods of {p.target} ready")
    return False


def _mirror(p: Pass, strategy: ShadowStrategy) -> bool:
    p.mirroring = strategy.mirror_percent
    _hold_shadow(p, strategy)
    mirrored = p.mirror(strategy.mirror_percent)
    if not mirrored and p.run_index(None) is None:
        seen = "unknown" if p.obs.router_mirror is None else f"{p.obs.router_mirror}%"
        p.reason = R.MIRRORING
        p.waiting_for_pods(f"Shadow: waiting for the router to mirror {strategy.mirror_percent}% (it reads {seen})")
        return False
    run, _, due = p.analyse(KEY, None, baseline=p.stable)
    if run.get("verdict") == AnalysisVerdict.SUCCESSFUL:
        return True
    if run.get("verdict") == AnalysisVerdict.RUNNING:
        until = later(str(run["startedAt"]), parse_duration(strategy.duration))
        p.reason = R.MIRRORING
        p.message = (f"Shadow: mirroring {strategy.mirror_percent}% of traffic to {p.target} and comparing with "
                     f"{p.stable} until {until} at least; next measurement at {due}")
    return False


def _switch(p: Pass, strategy: ShadowStrategy) -> bool:
    p.mirror(0)
    p.scale(p.stable, p.total)
    p.scale(p.target, p.total)
    live = p.obs.router_mirror == 0 and p.target not in p.obs.shadows and p.ready(p.target) >= p.total
    if live and p.route(weights.FULL, canary=p.total, stable=p.total):
        p.succeed()
        return True
    p.reason = R.SWITCHING
    p.waiting_for_pods(f"Switching to {p.target}: mirror off, {p.ready(p.target)} of {p.total} live pods ready")
    return False


def promote(p: Pass, full: bool) -> str | None:
    """End the mirroring now and switch; ``full`` is the same."""
    if p.step >= SWITCH:
        return None
    p.close_runs()
    p.enter_step(SWITCH)
    return None
