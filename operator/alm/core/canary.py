"""The canary strategy: shift traffic to the new version step by step, measuring as it goes.

``status.currentStep`` is the index of the step being carried out; ``len(steps)`` means "all
steps done, promoting". Each pass runs the current step; a step that completes hands over to
the next one in the same pass (``stepStartedAt`` := now), so a pass stops only where something
must be waited for::

    setWeight w   route w % (pods + router); done once the canary's pods are ready and the router
                  reads back what it should (a broken stable never blocks this)
    pause         done after its duration, or on resume; without a duration only on resume
    analysis      measure every interval for its duration; Successful: done, Failed: roll back,
                  Inconclusive: pause until resume (measure afresh) or promote (skip)
    approval      AwaitingApproval until alm.dev/approve (by an allowed approver, if listed)
    (end)         100 %, then promote: Agent stableVersion := target

The weight set by the last ``setWeight`` holds through the steps after it (every step keeps the
pods and the router there). The background analysis (``canary.analysis``) runs from the start to
the end, through pauses; it rolls back on failure, pauses when inconclusive, and must have
passed once before the promotion (no data is never success).

``promote`` skips the current step; ``promote: full`` skips every remaining step up to the next
approval step that is not approved (approval gates are never skipped: the audit log must show a
human approved) and ends the background analysis.
"""

from __future__ import annotations

from alm.api import AgentRolloutSpec, AnalysisVerdict, CanaryStep, CanaryStrategy, KPIThresholds, parse_duration
from alm.core import analysis, weights
from alm.core.analysis import Criteria
from alm.core.auditactions import AuditAction
from alm.core.rolloutpass import Pass
from alm.core.rollouttypes import RolloutReason as R

__all__ = ["KEY", "advance", "criteria", "promote", "step_label"]

KEY = "background"


def _strategy(spec: AgentRolloutSpec) -> CanaryStrategy:
    strategy = spec.strategy.canary
    if strategy is None:
        raise ValueError("not a canary rollout")
    return strategy


def criteria(spec: AgentRolloutSpec, key: str, fallback: KPIThresholds | None) -> Criteria:
    """The background analysis (``background``) or the analysis of step ``step/<index>``."""
    strategy = _strategy(spec)
    if key == KEY:
        return analysis.criteria(strategy.analysis, fallback=fallback)
    step = strategy.steps[int(key.split("/")[1])].analysis
    if step is None:
        return analysis.criteria(strategy.analysis, fallback=fallback)
    interval = analysis.criteria(strategy.analysis).interval
    duration = parse_duration(step.duration) if step.duration else interval
    return analysis.criteria(strategy.analysis, fallback=fallback, thresholds=step.thresholds,
                             queries=step.queries, duration=duration)


def step_label(step: CanaryStep, index: int, count: int) -> str:
    if step.set_weight is not None:
        kind = f"setWeight {step.set_weight}"
    elif step.pause is not None:
        kind = f"pause {step.pause.duration}" if step.pause.duration else "pause"
    else:
        kind = "analysis" if step.analysis is not None else "approval"
    return f"Step {index + 1}/{count} ({kind})"


def advance(p: Pass) -> None:
    """Run the current step, and the ones after it while each completes at once."""
    strategy = _strategy(p.spec)
    if strategy.analysis is not None:
        p.analyse(KEY, None)
    for _ in range(len(strategy.steps) + 1):
        if p.done:
            return
        if p.step >= len(strategy.steps):
            _finish(p, strategy)
            return
        step = strategy.steps[p.step]
        label = step_label(step, p.step, len(strategy.steps))
        if not _run(p, step, label) or p.done or p.hold:
            return
        p.tell(R.STEP_COMPLETED, f"{label} done")
        p.record(AuditAction.ROLLOUT_STEP, step=p.step, label=label, weight=p.weight)
        p.enter_step(p.step + 1)


def _run(p: Pass, step: CanaryStep, label: str) -> bool:
    if step.set_weight is not None:
        return _set_weight(p, step.set_weight, label)
    p.route(p.weight)  # the last setWeight holds: keep pods and router there
    if step.pause is not None:
        return _pause(p, step.pause.duration, label)
    if step.analysis is not None:
        return _analysis(p, label)
    return _approval(p, step, label)


def _set_weight(p: Pass, weight: int, label: str) -> bool:
    if p.route(weight):
        return True
    p.reason = R.SETTING_WEIGHT
    want = weights.canary_replicas(weight, p.total)
    seen = "unknown" if p.obs.router_weight is None else f"{p.obs.router_weight}%"
    p.waiting_for_pods(f"{label}: setting weight {weight}%: {p.ready(p.target)} of {want} canary pods ready, "
                       f"the router reads {seen}")
    return False


def _pause(p: Pass, duration: str | None, label: str) -> bool:
    if p.resume_pending and p.command_step == p.step:
        p.resume_pending = False
        return True
    if duration is None:
        p.pause_at(R.PAUSE_STEP, f"{label}: paused until resumed (annotate alm.dev/resume, or kubectl alm resume)")
        return False
    end = p.step_deadline(parse_duration(duration))
    if p.reached(end):
        return True
    p.pause_at(R.PAUSE_STEP, f"{label}: paused until {end}")
    p.wait_until(end)
    return False


def _analysis(p: Pass, label: str) -> bool:
    run, _, due = p.analyse(f"step/{p.step}", p.step)
    if run.get("verdict") == AnalysisVerdict.SUCCESSFUL:
        return True
    if run.get("verdict") == AnalysisVerdict.RUNNING:
        rounds = len({m["measuredAt"] for m in run.get("measurements") or ()})
        p.reason, p.message = R.ANALYSIS_RUNNING, f"{label}: measuring ({rounds} rounds so far); next at {due}"
    return False


def _approval(p: Pass, step: CanaryStep, label: str) -> bool:
    if any(approval.get("step") == p.step for approval in p.approvals):
        return True
    gate = step.approval
    controls = p.obs.controls
    meant = controls.approve_step if controls.approve_step is not None else p.command_step
    if p.approval_pending and meant == p.step and gate is not None:
        p.approval_pending = False
        who = controls.approved_by or ""
        if gate.approvers and who not in gate.approvers:
            p.tell(R.APPROVAL_REFUSED, f"{label}: {who or 'an unnamed user'} may not approve; allowed: "
                   f"{', '.join(gate.approvers)} (set alm.dev/approved-by)", warning=True)
        else:
            p.approvals.append({"step": p.step, "approvedBy": who or "unknown", "approvedAt": p.now})
            p.tell(R.APPROVED, f"{label}: approved by {who or 'unknown'}")
            p.record(AuditAction.APPROVED, actor=who or None, step=p.step)
            return True
    hint = f": {gate.message}" if gate is not None and gate.message else ""
    p.pause_at(R.AWAITING_APPROVAL, f"{label}: waiting for approval{hint} (annotate alm.dev/approve and "
               "alm.dev/approved-by, or kubectl alm approve)")
    return False


def _finish(p: Pass, strategy: CanaryStrategy) -> None:
    if not p.route(weights.FULL):
        p.reason = R.SETTING_WEIGHT
        seen = "unknown" if p.obs.router_weight is None else f"{p.obs.router_weight}%"
        p.waiting_for_pods(f"Promoting: setting weight 100%: {p.ready(p.target)} of {p.total} pods ready, "
                           f"the router reads {seen}")
        return
    index = p.run_index(None)
    if strategy.analysis is not None and index is not None:
        run = p.runs[index]
        if run.get("verdict") == AnalysisVerdict.RUNNING and not analysis.passed(run, p.criteria(KEY)):
            p.reason = R.ANALYSIS_RUNNING
            p.message = "Promoting: waiting for the background analysis to pass once (no data is never success)"
            return
    if p.hold:
        return
    p.succeed()


def promote(p: Pass, full: bool) -> str | None:
    """Skip the current step (``full``: every step up to the next unapproved approval step).

    Returns why the promotion was refused, or None.
    """
    steps = _strategy(p.spec).steps
    approved = {approval.get("step") for approval in p.approvals}

    def gate(index: int) -> bool:
        return steps[index].approval is not None and index not in approved

    if p.step >= len(steps):
        return None
    if gate(p.step):
        return "promote does not pass an approval step: approve it (alm.dev/approve)"
    end = p.step + 1
    if full:
        end = next((index for index in range(p.step + 1, len(steps)) if gate(index)), len(steps))
    skipped = [weight for index in range(p.step, end) if (weight := steps[index].set_weight) is not None]
    if skipped:
        p.weight = skipped[-1]  # the weight the skipped steps would have left
    p.runs = [analysis.close(run, p.criteria(p.run_key(run)))
              if run.get("step") in range(p.step, end) or (full and run.get("step") is None) else run
              for run in p.runs]
    if full and _strategy(p.spec).analysis is not None and p.run_index(None) is None:
        p.runs.append(analysis.close(analysis.new_run(p.now), p.criteria(KEY)))  # skipped before it began
    p.enter_step(end)
    return None
