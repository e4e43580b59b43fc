"""The blue-green strategy: run the new version beside the old one, then switch all traffic at once.

``status.currentStep`` holds the stage; each stage hands over to the next in the same pass as
soon as it is done::

    0 preview     the new version at full size, no live traffic (weight 0); the preview Service
                  (``previewService``) reaches it for smoke tests. Done when all its pods are ready.
    1 analysis    ``prePromotionAnalysis``, if any, judges the preview. The preview gets no live
                  traffic: it judges what reaches the preview Service; with nothing, it is
                  Inconclusive and pauses (no data is never success).
    2 awaiting    ``autoPromotionSeconds`` after the preview became ready (and not before the
                  analysis passed), or on ``alm.dev/promote``; phase Paused meanwhile.
    3 switch      100 % to the new version (both versions keep all pods); done when the router
                  reads back 100 %: promote, and scale the old version down after
                  ``scaleDownDelaySeconds``.

``promote`` (and ``promote: full``, the same here) skips to the switch from any stage; the switch
itself still waits for the new version's pods. Abort and rollback are the shared ones: weight 0,
the new version scaled to zero, the preview Service removed.
"""

from __future__ import annotations

from collections.abc import Callable

from alm.api import AgentRolloutSpec, AnalysisVerdict, BlueGreenStrategy, KPIThresholds
from alm.core import analysis, weights
from alm.core.analysis import Criteria
from alm.core.auditactions import AuditAction
from alm.core.rolloutpass import Pass
from alm.core.rollouttypes import RolloutReason as R
from alm.core.timestamps import later

__all__ = ["KEY", "STAGES", "advance", "criteria", "promote"]

KEY = "prePromotion"
PREVIEW, ANALYSIS, AWAITING, SWITCH = range(4)
STAGES = ("preview", "pre-promotion analysis", "awaiting promotion", "switch")


def _strategy(spec: AgentRolloutSpec) -> BlueGreenStrategy:
    strategy = spec.strategy.blue_green
    if strategy is None:
        raise ValueError("not a blue-green rollout")
    return strategy


def criteria(spec: AgentRolloutSpec, key: str, fallback: KPIThresholds | None) -> Criteria:
    """The pre-promotion analysis: one interval long (longer while a KPI has no data yet)."""
    spec_analysis = _strategy(spec).pre_promotion_analysis
    interval = analysis.criteria(spec_analysis).interval
    return analysis.criteria(spec_analysis, fallback=fallback, duration=interval)


def advance(p: Pass) -> None:
    strategy = _strategy(p.spec)
    stages: tuple[Callable[[Pass, BlueGreenStrategy], bool], ...] = (_preview, _analysis, _awaiting, _switch)
    for _ in stages:
        stage = min(p.step, SWITCH)
        if p.done or not stages[stage](p, strategy) or p.done or p.hold:
            return
        p.tell(R.STEP_COMPLETED, f"Blue-green {STAGES[stage]} done")
        p.record(AuditAction.ROLLOUT_STEP, step=stage, label=STAGES[stage])
        p.enter_step(stage + 1)


def _hold_preview(p: Pass, strategy: BlueGreenStrategy) -> bool:
    """The new version at full size with no live traffic; True once its pods are all ready."""
    if strategy.preview_service:
        p.preview(p.target)
    return p.route(0, canary=p.total, stable=p.total)


def _preview(p: Pass, strategy: BlueGreenStrategy) -> bool:
    if _hold_preview(p, strategy):
        return True
    p.reason = R.PREVIEW
    p.waiting_for_pods(f"Preview: {p.ready(p.target)} of {p.total} pods of {p.target} ready (no live traffic)")
    return False


def _analysis(p: Pass, strategy: BlueGreenStrategy) -> bool:
    _hold_preview(p, strategy)
    if strategy.pre_promotion_analysis is None:
        return True
    run, result, due = p.analyse(KEY, None)
    verdict = run.get("verdict")
    if verdict == AnalysisVerdict.SUCCESSFUL:
        return True
    if verdict == AnalysisVerdict.RUNNING:
        p.reason = R.ANALYSIS_RUNNING
        p.message = f"Pre-promotion analysis of the preview: {result.message}; next measurement at {due}"
    return False


def _ready_since(p: Pass) -> str:
    """When the preview became ready: the start of the first pre-promotion run, else this stage's."""
    first = next((run for run in p.runs if run.get("step") is None), None)
    return str(first["startedAt"]) if first else (p.step_started or p.now)


def _awaiting(p: Pass, strategy: BlueGreenStrategy) -> bool:
    _hold_preview(p, strategy)
    seconds = strategy.auto_promotion_seconds
    if seconds is None:
        p.pause_at(R.AWAITING_PROMOTION, f"Preview of {p.target} is ready: waiting for promote (annotate "
                   "alm.dev/promote, or kubectl alm promote)")
        return False
    at = later(_ready_since(p), seconds)
    if p.reached(at):
        return True
    p.pause_at(R.AWAITING_PROMOTION, f"Preview of {p.target} is ready: promoting automatically at {at}")
    p.wait_until(at)
    return False


def _switch(p: Pass, strategy: BlueGreenStrategy) -> bool:
    if strategy.preview_service:
        p.preview(p.target)
    if p.route(weights.FULL, canary=p.total, stable=p.total):
        p.succeed()
        return True
    p.reason = R.SWITCHING
    seen = "unknown" if p.obs.router_weight is None else f"{p.obs.router_weight}%"
    p.waiting_for_pods(f"Switching to {p.target}: {p.ready(p.target)} of {p.total} pods ready, "
                       f"the router reads {seen}")
    return False


def promote(p: Pass, full: bool) -> str | None:
    """Go to the switch now (skipping the analysis and the wait); ``full`` is the same."""
    if p.step >= SWITCH:
        return None
    p.close_runs()
    p.enter_step(SWITCH)
    return None
