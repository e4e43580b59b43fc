"""The beats of ``alm sandbox``'s story, each driving the operator through the API and reading back what it did.

Every beat changes objects the way a user (or GitOps) would, waits for the operator's effect,
and returns the key facts read from the API state (never from logs): versions, weights, the
analysis verdict, the approver, the cost, the revoked credentials, the archive checksum, the
audit verdict. :mod:`alm.sandbox.story` runs them in order and prints the timeline.
"""

from __future__ import annotations

import copy
import hashlib
import time
from collections.abc import Callable
from typing import Any, TypeVar

from alm.core import archive, auditactions, auditchain, auditstorage
from alm.kube import resources
from alm.kube.api import Kube

__all__ = ["APPROVER", "Stage", "approve", "audit_verdict", "canary", "deploy", "exceed_budget", "retire",
           "roll_back"]

T = TypeVar("T")
APPROVER = "sandbox"
CREDENTIAL_KINDS = ("Secret", "ServiceAccount", "Role", "RoleBinding")
CHILD_KINDS = ("ServiceAccount", "Role", "RoleBinding", "Secret", "Service", "NetworkPolicy",
               "PodDisruptionBudget", "Deployment")
# Short steps and intervals so the whole story runs in well under two minutes: a canary is measured
# for 3 s at 50 %, then promoted. (A bad canary is rolled back during those 3 s.)
STEPS: list[dict[str, Any]] = [{"setWeight": 50}, {"analysis": {"duration": "3s"}}]
# A loaded machine can leave a 1 s window without a finished task: tolerate a few.
ANALYSIS = {"interval": "1s", "inconclusiveLimit": 10}
CANARY = {"steps": STEPS, "analysis": ANALYSIS}
# The approval beat's strategy: the same canary, then it waits for a human before the promotion.
APPROVAL_MESSAGE = "The analysis passed: look at the KPIs, then approve."
CANARY_WITH_APPROVAL = {"steps": [*STEPS, {"approval": {"message": APPROVAL_MESSAGE}}], "analysis": ANALYSIS}
MONITORING = {"interval": "1s", "consecutiveBreaches": 2}
GOOD = {"successRate": "1.0", "toolErrorRate": "0", "inputTokens": "500", "outputTokens": "200"}
BAD_SUCCESS_RATE = "0.5"


class Stage:
    """The API, the namespace and the Agent of the story, and a deadline shared by every wait."""

    def __init__(self, kube: Kube, namespace: str, deadline: float) -> None:
        self.kube, self.namespace, self.deadline = kube, namespace, deadline
        self.agent = ""
        self.version_template: dict[str, Any] = {}

    def wait(self, probe: Callable[[], T | None], what: str) -> T:
        while True:
            result = probe()
            if result:
                return result
            if time.monotonic() > self.deadline:
                raise TimeoutError(f"timed out waiting for {what}")
            time.sleep(0.1)

    def get(self, kind: str, name: str) -> dict[str, Any]:
        return self.kube.get(kind, self.namespace, name) or {}

    def create(self, doc: dict[str, Any]) -> dict[str, Any]:
        doc["metadata"]["namespace"] = self.namespace
        created = self.kube.request("POST", resources.for_object(doc).path(self.namespace), body=doc)
        return created or {}

    def patch_agent(self, spec: dict[str, Any]) -> None:
        self.kube.merge_patch("Agent", self.namespace, self.agent, {"spec": spec})

    def status(self) -> dict[str, Any]:
        return dict(self.get("Agent", self.agent).get("status") or {})

    def condition(self, type_: str) -> dict[str, Any]:
        return next((dict(c) for c in self.status().get("conditions") or [] if c.get("type") == type_), {})

    def add_version(self, name: str, **extra: str) -> str:
        version = copy.deepcopy(self.version_template)
        version["metadata"] = {"name": name}
        version["spec"]["model"].setdefault("parameters", {})["extra"] = {**GOOD, **extra}
        self.create(version)
        return name


# --- the beats ---------------------------------------------------------------------------------------


def deploy(stage: Stage, documents: list[dict[str, Any]]) -> dict[str, Any]:
    """Apply the packaged example, tuned for a fast story; wait until it is Available."""
    for doc in copy.deepcopy(documents):
        if doc["kind"] == "AgentVersion":
            doc["spec"]["model"].setdefault("parameters", {})["extra"] = dict(GOOD)
            stage.version_template = copy.deepcopy(doc)
        elif doc["kind"] == "Agent":
            stage.agent = doc["metadata"]["name"]
            doc["spec"]["rollout"] = {"canary": CANARY}
            doc["spec"]["monitoring"] = MONITORING
        stage.create(doc)

    def available() -> dict[str, Any] | None:
        agent = stage.get("Agent", stage.agent)
        status = agent.get("status") or {}
        ok = status.get("phase") == "Available" and status.get("observedGeneration") == agent["metadata"]["generation"]
        return agent if ok else None

    try:
        agent = stage.wait(available, f"Agent {stage.agent} to become Available")
    except TimeoutError as exc:
        ready = stage.condition("Ready")
        raise TimeoutError(f"{exc}; it is {stage.status().get('phase', 'not reconciled')}: "
                           f"{ready.get('message', '')}") from None
    status = agent["status"]
    pods = stage.kube.list("Pod", stage.namespace, {"alm.dev/agent": stage.agent})
    children = [{"kind": kind, "name": obj["metadata"]["name"]} for kind in CHILD_KINDS
                for obj in stage.kube.list(kind, stage.namespace, {"alm.dev/agent": stage.agent})]
    return {
        "phase": status["phase"], "stableVersion": status.get("stableVersion"),
        "readyReplicas": status.get("readyReplicas"), "replicas": status.get("replicas"),
        "ports": sorted(p["spec"]["containers"][0]["ports"][0]["containerPort"] for p in pods
                        if p["spec"]["containers"][0].get("ports")),
        "children": children,
        "summary": (f"{status.get('stableVersion')} Available, {status.get('readyReplicas')}/{status.get('replicas')}"
                    f" pods are local alm-agent processes; {len(children)} children created"),
    }


def _rollout(stage: Stage, target: str, done: Callable[[dict[str, Any]], bool], what: str
             ) -> tuple[dict[str, Any], list[int]]:
    """Wait for the AgentRollout to ``target`` to satisfy ``done``; also the canary weights seen on the way.

    A rollout that finishes otherwise fails the beat at once; a timeout names where it stands.
    """
    weights: list[int] = []
    last: dict[str, Any] = {}

    def probe() -> dict[str, Any] | None:
        for rollout in stage.kube.list("AgentRollout", stage.namespace):
            if rollout["spec"].get("targetVersion") != target:
                continue
            status = rollout.get("status") or {}
            last.update(status)
            weight = status.get("weight")
            if isinstance(weight, int) and (not weights or weights[-1] != weight):
                weights.append(weight)
            if done(status):
                return rollout
            if status.get("finishedAt"):
                raise RuntimeError(f"while waiting for {what}, the rollout ended {status.get('phase')}: "
                                   f"{status.get('message')}")
        return None

    try:
        return stage.wait(probe, what), weights
    except TimeoutError as exc:
        raise TimeoutError(f"{exc}; the rollout is {last.get('phase', 'not created')}: {last.get('message', '')}"
                           ) from None


def _successful_rate(rollout: dict[str, Any]) -> dict[str, Any]:
    """The newest successRate measurement of the rollout's analysis."""
    found: dict[str, Any] = {}
    for run in (rollout.get("status") or {}).get("analysisRuns") or []:
        for measurement in run.get("measurements") or []:
            if measurement.get("kpi") == "successRate" and measurement.get("value") is not None:
                found = measurement
    return found


def _stable(stage: Stage, version: str) -> dict[str, Any]:
    return stage.wait(lambda: (lambda s: s if s.get("stableVersion") == version else None)(stage.status()),
                      f"{version} to become the stable version")


def _analysis(rollout: dict[str, Any]) -> tuple[list[str], dict[str, Any]]:
    """The verdicts of the rollout's step analyses, and its newest successRate measurement."""
    verdicts = sorted({str(run.get("verdict")) for run in rollout["status"].get("analysisRuns") or []
                       if run.get("step") is not None})
    return verdicts, _successful_rate(rollout)


def _steps(rollout: dict[str, Any]) -> list[str]:
    """The kinds of the rollout's canary steps, as the AgentRollout spells them (setWeight, analysis, approval)."""
    return [next(iter(step)) for step in rollout["spec"]["strategy"]["canary"]["steps"]]


def _canary_weight(weights: list[int]) -> int | None:
    """The canary's weight on the way (neither 0 nor the promotion's 100)."""
    return next((w for w in weights if 0 < w < 100), None)


def _joined(first: list[int], then: list[int]) -> list[int]:
    joined = list(first)
    for weight in then:
        if not joined or joined[-1] != weight:
            joined.append(weight)
    return joined


def canary(stage: Stage) -> dict[str, Any]:
    """A good canary: 50 %, the analysis passes on real measurements, and it is promoted (no approval step)."""
    before = stage.status().get("stableVersion")
    target = stage.add_version(f"{stage.agent}-v2")
    stage.patch_agent({"version": target})
    rollout, weights = _rollout(stage, target, lambda s: s.get("phase") == "Succeeded",
                                f"{target} to pass its analysis and be promoted")
    status = _stable(stage, target)
    verdicts, measured = _analysis(rollout)
    return {
        "rollout": rollout["metadata"]["name"], "from": before, "to": target, "phase": rollout["status"]["phase"],
        "weights": weights, "steps": _steps(rollout),
        "analysisVerdicts": verdicts, "approvals": rollout["status"].get("approvals") or [],
        "successRate": measured.get("value"), "threshold": measured.get("threshold"),
        "stableVersion": status.get("stableVersion"),
        "summary": (f"canary {target} at {_canary_weight(weights)}%: successRate "
                    f"{_num(measured.get('value'))} ≥ {_num(measured.get('threshold'))}, analysis "
                    f"{'/'.join(verdicts) or '-'}; promoted, stable is {status.get('stableVersion')}"),
    }


def roll_back(stage: Stage) -> dict[str, Any]:
    """A bad canary (half its tasks fail): the analysis fails and traffic goes back, with the KPI in status."""
    before = stage.status().get("stableVersion")
    target = stage.add_version(f"{stage.agent}-v3", successRate=BAD_SUCCESS_RATE)
    stage.patch_agent({"version": target})
    rollout, weights = _rollout(stage, target, lambda s: s.get("phase") == "RolledBack" and bool(s.get("finishedAt")),
                                f"{target} to be rolled back")
    abort = rollout["status"].get("abort") or {}
    failed = stage.wait(lambda: (lambda c: c if c.get("status") == "True" else None)(stage.condition("RolloutFailed")),
                        "RolloutFailed on the Agent")
    status = stage.status()
    return {
        "rollout": rollout["metadata"]["name"], "from": before, "to": target, "phase": rollout["status"]["phase"],
        "weights": weights, "reason": abort.get("reason"), "kpi": abort.get("kpi"), "value": abort.get("value"),
        "threshold": abort.get("threshold"), "message": rollout["status"].get("message"),
        "agentCondition": {"type": "RolloutFailed", "reason": failed.get("reason")},
        "stableVersion": status.get("stableVersion"),
        "summary": (f"canary {target} rolled back automatically ({abort.get('reason')}): {abort.get('kpi')} "
                    f"{_num(abort.get('value'))} < {_num(abort.get('threshold'))}; stable stays "
                    f"{status.get('stableVersion')}"),
    }


def approve(stage: Stage) -> dict[str, Any]:
    """A fix after the rollback, behind an approval gate: the canary of v4 passes its analysis and waits
    for a human; the sandbox approves it as "sandbox" (the annotations ``kubectl alm approve`` writes);
    it goes to 100 % and becomes stable."""
    before = stage.status().get("stableVersion")
    target = stage.add_version(f"{stage.agent}-v4")
    stage.patch_agent({"version": target, "rollout": {"canary": CANARY_WITH_APPROVAL}})
    waiting, weights = _rollout(stage, target, lambda s: s.get("phase") == "AwaitingApproval",
                                f"{target} to pass its analysis and wait for approval")
    gate = waiting["status"]["currentStep"]
    time.sleep(1.0)  # it really waits: the analysis goes on, the step does not move
    still, _ = _rollout(stage, target, lambda s: s.get("phase") == "AwaitingApproval", f"{target} to wait")
    stage.kube.merge_patch("AgentRollout", stage.namespace, waiting["metadata"]["name"], {"metadata": {
        # The value names the step approved: an approval never passes a later gate by accident.
        "annotations": {"alm.dev/approve": str(gate), "alm.dev/approved-by": APPROVER}}})
    rollout, later = _rollout(stage, target, lambda s: s.get("phase") == "Succeeded", f"{target} to be promoted")
    status = _stable(stage, target)
    verdicts, measured = _analysis(rollout)
    approvals = rollout["status"].get("approvals") or [{}]
    return {
        "rollout": rollout["metadata"]["name"], "from": before, "to": target, "phase": rollout["status"]["phase"],
        "weights": _joined(weights, later),
        "steps": _steps(rollout), "waitedAtStep": gate, "stillWaitingAtStep": still["status"].get("currentStep"),
        "analysisVerdicts": verdicts, "successRate": measured.get("value"), "threshold": measured.get("threshold"),
        "approvals": approvals, "step": approvals[-1].get("step"),
        "approvedBy": approvals[-1].get("approvedBy"), "approvedAt": approvals[-1].get("approvedAt"),
        "stableVersion": status.get("stableVersion"),
        "summary": (f"canary {target} analysed ({'/'.join(verdicts) or '-'}), waited at step {gate}, approved by "
                    f"{approvals[-1].get('approvedBy')}: weight {rollout['status'].get('weight')}%, promoted, "
                    f"stable is {status.get('stableVersion')}"),
    }


def exceed_budget(stage: Stage, headroom: int = 100_000) -> dict[str, Any]:
    """A daily token budget a little above today's use, with onExceeded: suspend; traffic goes over it."""
    used = int((stage.status().get("cost") or {}).get("tokens") or 0)
    budget = {"tokensPerDay": used + headroom, "onExceeded": "suspend"}
    stage.patch_agent({"budget": budget})
    exceeded = stage.wait(
        lambda: (lambda c: c if c.get("status") == "True" else None)(stage.condition("BudgetExceeded")),
        "the budget to be exceeded")
    stage.wait(lambda: stage.status().get("phase") == "Suspended" or None, "the Agent to be Suspended")
    stage.wait(lambda: not stage.kube.list("Pod", stage.namespace, {"alm.dev/agent": stage.agent}) or None,
               "the suspended Agent's processes to stop")
    status = stage.status()
    cost = status.get("cost") or {}
    replicas = [d["spec"]["replicas"] for d in stage.kube.list("Deployment", stage.namespace,
                                                                 {"alm.dev/agent": stage.agent})]
    return {
        "budget": budget, "tokens": cost.get("tokens"), "usd": cost.get("usd"), "day": cost.get("day"),
        "phase": status.get("phase"), "reason": exceeded.get("reason"), "message": exceeded.get("message"),
        "deploymentReplicas": replicas,
        "summary": (f"{cost.get('tokens')} tokens (${_num(cost.get('usd'), 4)}) today > budget "
                    f"{budget['tokensPerDay']}: {exceeded.get('reason')}, phase {status.get('phase')}, "
                    f"replicas {replicas}"),
    }


def retire(stage: Stage) -> dict[str, Any]:
    """An AgentRetirement: drain, revoke every credential, archive to a ConfigMap; the Agent is Retired."""
    issued = sorted(f"{kind}/{obj['metadata']['name']}" for kind in CREDENTIAL_KINDS
                    for obj in stage.kube.list(kind, stage.namespace, {"alm.dev/agent": stage.agent})
                    if kind != "Secret" or (obj["metadata"].get("labels") or {}).get("alm.dev/component")
                    == "credentials")
    name = f"retire-{stage.agent}"
    stage.create({"apiVersion": "alm.dev/v1alpha1", "kind": "AgentRetirement", "metadata": {"name": name},
                  "spec": {"agentRef": {"name": stage.agent}, "reason": "Replaced by support-bot-2 (sandbox).",
                           "drain": {"gracePeriodSeconds": 0}, "archive": {"to": "configMap"}}})
    done = stage.wait(lambda: (lambda r: r if (r.get("status") or {}).get("phase") == "Retired" else None)(
        stage.get("AgentRetirement", name)), "the retirement to finish")
    stage.wait(lambda: stage.status().get("phase") == "Retired" or None, "the Agent to be Retired")
    status = done["status"]
    location = status["archive"]["location"]
    checksum_ok = hashlib.sha256(_read_archive(stage, location)).hexdigest() == status["archive"]["sha256"]
    left = [f"{kind}/{obj['metadata']['name']}" for kind in CREDENTIAL_KINDS
            for obj in stage.kube.list(kind, stage.namespace, {"alm.dev/agent": stage.agent})
            if kind != "Secret" or (obj["metadata"].get("labels") or {}).get("alm.dev/component") == "credentials"]
    revoked = [{"kind": r["kind"], "name": r["name"], "result": r["result"]} for r in status.get("revoked") or []]
    return {
        "retirement": name, "phase": status["phase"], "agentPhase": stage.status().get("phase"),
        "transitions": [t["phase"] for t in status.get("transitions") or []],
        "issued": issued, "revoked": revoked, "credentialsLeft": left,
        "archive": {**status["archive"], "checksumVerified": checksum_ok},
        "summary": (f"drained, revoked {len(revoked)} credentials "
                    f"({', '.join(r['kind'] + '/' + r['name'] for r in revoked)}), archived to {location} "
                    f"sha256 {status['archive']['sha256'][:16]}… ({'verified' if checksum_ok else 'MISMATCH'})"),
    }


def _read_archive(stage: Stage, location: str) -> bytes:
    kind_name, _, name = location.partition("/")
    kind = {"configmap": "ConfigMap", "secret": "Secret"}[kind_name]
    head = stage.get(kind, name)
    parts = int(head["metadata"]["annotations"][archive.ANNOTATION_PARTS])
    objects = [head] + [stage.get(kind, f"{name}-{i}") for i in range(1, parts + 1) if parts > 1]
    return archive.reassemble(objects)


def audit_verdict(stage: Stage) -> dict[str, Any]:
    """Read the Agent's audit log back from its ConfigMaps and check the hash chain up to status.auditHead."""
    segments = stage.kube.list("ConfigMap", stage.namespace, {"alm.dev/agent": stage.agent,
                                                              "alm.dev/component": auditstorage.COMPONENT})
    entries = auditstorage.load(segments)
    head = stage.status().get("auditHead")
    verdict = auditchain.verify(entries, head=head)
    actions: dict[str, int] = {}
    for entry in entries:
        actions[str(entry.get("action"))] = actions.get(str(entry.get("action")), 0) + 1
    approvals = [e.get("actor") for e in entries if e.get("action") == auditactions.AuditAction.APPROVED]
    return {
        "ok": bool(verdict.ok), "message": verdict.message or "intact", "entries": len(entries),
        "segments": len(segments),
        "head": head, "actions": actions, "approvedBy": approvals,
        "summary": (f"{len(entries)} entries, hash chain {'intact' if verdict.ok else 'BROKEN'} up to head "
                    f"{str(head)[:16]}…{'' if verdict.ok else ': ' + verdict.message}"),
    }


def _num(value: Any, digits: int = 2) -> str:
    return f"{value:.{digits}f}" if isinstance(value, int | float) else str(value)
