"""The ArgoCD health checks (argocd/health/*.lua) run in a real Lua 5.1 interpreter.

ArgoCD evaluates them with gopher-lua, a Lua 5.1 implementation, so they run here in
lupa's Lua 5.1 runtime (`lupa.lua51`), with the libraries ArgoCD does not offer removed:
a script that reached for `os`, `io` or `require` fails here as it would there.
Each case is a live object (a Python dict turned into Lua tables) and the health
status and message ArgoCD must show for it.
"""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from . import sync

lua51 = pytest.importorskip("lupa.lua51")

#: What ArgoCD's Lua VM lacks; removing it makes any use of it an error here too.
SANDBOX = "os = nil; io = nil; require = nil; dofile = nil; loadfile = nil; package = nil; debug = nil"
ARGO_STATUSES = {"Healthy", "Progressing", "Degraded", "Suspended", "Missing", "Unknown"}


def run_health(kind: str, obj: dict[str, Any]) -> dict[str, Any]:
    """Run alm.dev_<kind>.lua against `obj` the way ArgoCD does; return the `hs` table."""
    runtime = lua51.LuaRuntime(unpack_returned_tuples=True)
    assert runtime.lua_version == (5, 1)
    runtime.execute(SANDBOX)
    runtime.globals().obj = runtime.table_from(obj, recursive=True)
    result = runtime.execute((sync.HEALTH / f"alm.dev_{kind}.lua").read_text())
    assert result is not None, f"alm.dev_{kind}.lua returned nothing"
    hs = dict(result.items())
    assert set(hs) <= {"status", "message"}, hs
    return hs


def cond(type_: str, status: str = "True", message: str = "", reason: str = "Reason") -> dict[str, Any]:
    return {
        "type": type_,
        "status": status,
        "reason": reason,
        "message": message,
        "lastTransitionTime": "2025-01-01T00:00:00Z",
    }


def make(
    kind: str,
    phase: str | None = None,
    *,
    generation: int = 3,
    observed: int | None = 3,
    conditions: list[dict[str, Any]] | None = None,
    with_status: bool = True,
    **status: Any,
) -> dict[str, Any]:
    """A live alm.dev object with the given status."""
    obj: dict[str, Any] = {
        "apiVersion": "alm.dev/v1alpha1",
        "kind": kind,
        "metadata": {"name": "support-bot", "namespace": "team-a", "generation": generation},
        "spec": {},
    }
    if with_status:
        body = dict(status)
        if observed is not None:
            body["observedGeneration"] = observed
        if phase is not None:
            body["phase"] = phase
        if conditions is not None:
            body["conditions"] = conditions
        obj["status"] = body
    return obj


KINDS = sync.HEALTH_KINDS
ABORT_KPI = {
    "reason": "AnalysisFailed",
    "kpi": "successRate",
    "value": 0.62,
    "threshold": 0.95,
    "at": "2025-01-01T00:10:00Z",
}
ABORT_USER = {"reason": "AbortedByUser", "at": "2025-01-01T00:10:00Z"}
WAIT = "Waiting for the operator to observe generation "

# (kind, object, expected status, expected message)
# fmt: off
CASES = [
    # --- every kind: the operator has not caught up with the spec yet --------------------------
    *[(k, make(k, with_status=False, generation=1), "Progressing", WAIT + "1") for k in KINDS],
    *[(k, make(k, "Available", observed=None), "Progressing", WAIT + "3") for k in KINDS],
    *[(k, make(k, "Available", generation=4, observed=3), "Progressing", WAIT + "4") for k in KINDS],
    # --- every kind: an Invalid condition wins over the phase ----------------------------------
    *[(k, make(k, "Available", conditions=[cond("Ready"), cond("Invalid", message="spec.x: required")]),
       "Degraded", "spec.x: required") for k in KINDS],
    # --- Agent ---------------------------------------------------------------------------------
    ("Agent", make("Agent", "Available", conditions=[cond("Ready", message="2/2 replicas of v3 ready")]),
     "Healthy", "2/2 replicas of v3 ready"),
    ("Agent", make("Agent", "Available"), "Healthy", "Agent is available"),
    ("Agent", make("Agent", "Available", conditions=[cond("Invalid", "False", "was invalid")]),
     "Healthy", "Agent is available"),
    ("Agent", make("Agent", "Degraded", conditions=[
        cond("Ready", "False", "v3 is not ready"), cond("RolloutFailed", "True", "v4 rolled back")]),
     "Degraded", "v4 rolled back"),
    ("Agent", make("Agent", "Degraded", conditions=[
        cond("Ready", "True", "2/2 ready"), cond("KPIBreached", "True", "tool error rate 0.2 > 0.05")]),
     "Degraded", "tool error rate 0.2 > 0.05"),
    ("Agent", make("Agent", "Degraded", conditions=[cond("Ready", "False", "0/2 replicas ready")]),
     "Degraded", "0/2 replicas ready"),
    ("Agent", make("Agent", "Degraded"), "Degraded", "Agent is degraded"),
    ("Agent", make("Agent", "Progressing", conditions=[cond("Progressing", message="Rolling out v4")]),
     "Progressing", "Rolling out v4"),
    ("Agent", make("Agent", "Progressing"), "Progressing", "Agent is progressing"),
    ("Agent", make("Agent", "Pending", conditions=[cond("Ready", "False", "version v3 is not Ready")]),
     "Progressing", "version v3 is not Ready"),
    ("Agent", make("Agent", "Pending"), "Progressing", "Agent is pending"),
    ("Agent", make("Agent"), "Progressing", "Agent is pending"),
    ("Agent", make("Agent", "Suspended"), "Suspended", "Agent is suspended"),
    ("Agent", make("Agent", "Suspended", conditions=[cond("BudgetExceeded", message="$50 of $50 spent")]),
     "Suspended", "$50 of $50 spent"),
    ("Agent", make("Agent", "Retired", conditions=[cond("Ready", "False", "no replicas")]),
     "Healthy", "Retired"),
    ("Agent", make("Agent", "Exploded"), "Unknown", "Unknown phase Exploded"),
    # --- AgentVersion (spec immutable: generation stays 1) -------------------------------------
    ("AgentVersion", make("AgentVersion", "Ready", generation=1, observed=1),
     "Healthy", "Version is ready"),
    ("AgentVersion", make("AgentVersion", "Ready", generation=1, observed=1,
                          conditions=[cond("Ready", message="Evaluation score 0.93 >= 0.9")]),
     "Healthy", "Evaluation score 0.93 >= 0.9"),
    ("AgentVersion", make("AgentVersion", "Invalid", generation=1, observed=1),
     "Degraded", "Version is invalid"),
    ("AgentVersion", make("AgentVersion", "Invalid", generation=1, observed=1,
                          conditions=[cond("Invalid", message="tools[0].endpoint: not a URL")]),
     "Degraded", "tools[0].endpoint: not a URL"),
    ("AgentVersion", make("AgentVersion", "Invalid", generation=1, observed=1,
                          conditions=[cond("Ready", "False", "Evaluation score 0.41 < 0.9")]),
     "Degraded", "Evaluation score 0.41 < 0.9"),
    ("AgentVersion", make("AgentVersion", "Pending", generation=1, observed=1),
     "Progressing", "Version is pending"),
    ("AgentVersion", make("AgentVersion", "Gone", generation=1, observed=1),
     "Unknown", "Unknown phase Gone"),
    # --- AgentRollout --------------------------------------------------------------------------
    ("AgentRollout", make("AgentRollout", "Succeeded"), "Healthy", "Rollout succeeded"),
    ("AgentRollout", make("AgentRollout", "Progressing", currentStep=2, weight=20),
     "Progressing", "Step 2, weight 20%"),
    ("AgentRollout", make("AgentRollout", "Progressing", currentStep=2, weight=20,
                          conditions=[cond("Progressing", message="Scaling canary")]),
     "Progressing", "Scaling canary"),
    ("AgentRollout", make("AgentRollout", "Progressing", currentStep=3, weight=50,
                          message="Analysis 2 of 3 at weight 50%"),
     "Progressing", "Analysis 2 of 3 at weight 50%"),
    ("AgentRollout", make("AgentRollout", "Pending"), "Progressing", "Rollout is pending"),
    ("AgentRollout", make("AgentRollout", "Pending", message="Waiting for AgentVersion v4 to be Ready"),
     "Progressing", "Waiting for AgentVersion v4 to be Ready"),
    ("AgentRollout", make("AgentRollout", "Paused", currentStep=1),
     "Suspended", "Rollout is paused at step 1"),
    ("AgentRollout", make("AgentRollout", "Paused", currentStep=3,
                          message="Analysis inconclusive: no tasks in the window; run kubectl alm resume"),
     "Suspended", "Analysis inconclusive: no tasks in the window; run kubectl alm resume"),
    ("AgentRollout", make("AgentRollout", "AwaitingApproval", currentStep=4), "Suspended",
     "Waiting for approval of step 4: run kubectl alm approve support-bot -n team-a"),
    ("AgentRollout", make("AgentRollout", "RolledBack", abort=ABORT_KPI),
     "Degraded", "Rolled back: AnalysisFailed (successRate 0.62, limit 0.95)"),
    ("AgentRollout", make("AgentRollout", "RolledBack", abort=ABORT_KPI,
                          message="Traffic is back on v3; fix v4 or revert spec.version"),
     "Degraded", "Rolled back: AnalysisFailed (successRate 0.62, limit 0.95). "
                 "Traffic is back on v3; fix v4 or revert spec.version"),
    ("AgentRollout", make("AgentRollout", "RolledBack",
                          conditions=[cond("RolledBack", message="tool error rate 0.3 > 0.05")]),
     "Degraded", "Rolled back: tool error rate 0.3 > 0.05"),
    ("AgentRollout", make("AgentRollout", "RolledBack"), "Degraded", "Rolled back: no reason recorded"),
    ("AgentRollout", make("AgentRollout", "Aborted", abort=ABORT_USER, message="aborted by alice"),
     "Degraded", "Aborted: AbortedByUser. aborted by alice"),
    ("AgentRollout", make("AgentRollout", "Aborted", abort=ABORT_USER),
     "Degraded", "Aborted: AbortedByUser"),
    ("AgentRollout", make("AgentRollout", "Sideways"), "Unknown", "Unknown phase Sideways"),
    # --- AgentRetirement -----------------------------------------------------------------------
    ("AgentRetirement", make("AgentRetirement", "Retired"), "Healthy", "Retired"),
    ("AgentRetirement", make("AgentRetirement", "Failed", message="revocation webhook returned 500"),
     "Degraded", "revocation webhook returned 500"),
    ("AgentRetirement", make("AgentRetirement", "Failed",
                             conditions=[cond("Failed", message="archive Job failed")]),
     "Degraded", "archive Job failed"),
    ("AgentRetirement", make("AgentRetirement", "Failed"), "Degraded", "Retirement failed"),
    ("AgentRetirement", make("AgentRetirement", "Draining"), "Progressing", "Retirement is draining"),
    ("AgentRetirement", make("AgentRetirement", "Draining", message="3 tasks still running"),
     "Progressing", "3 tasks still running"),
    ("AgentRetirement", make("AgentRetirement", "Revoking",
                             conditions=[cond("Progressing", message="Revoked 2 of 3 credentials")]),
     "Progressing", "Revoked 2 of 3 credentials"),
    ("AgentRetirement", make("AgentRetirement", "Archiving"), "Progressing", "Retirement is archiving"),
    ("AgentRetirement", make("AgentRetirement"), "Progressing", "Retirement is pending"),
    ("AgentRetirement", make("AgentRetirement", "Notarizing"),
     "Progressing", "Retirement is in phase Notarizing"),
]
# fmt: on


@pytest.mark.parametrize(
    ("kind", "obj", "status", "message"),
    CASES,
    ids=[f"{c[0]}-{(c[1].get('status') or {}).get('phase', 'nostatus')}-{i}" for i, c in enumerate(CASES)],
)
def test_health(kind: str, obj: dict[str, Any], status: str, message: str) -> None:
    hs = run_health(kind, obj)
    assert hs == {"status": status, "message": message}


@pytest.mark.parametrize("kind", KINDS)
def test_every_answer_is_an_argo_status_with_a_message(kind: str) -> None:
    """Whatever the phase, the script returns a status ArgoCD knows and says why."""
    for phase in (None, "Available", "Ready", "Succeeded", "Retired", "Failed", "Paused", "Whatever"):
        hs = run_health(kind, make(kind, phase, conditions=[]))
        assert hs["status"] in ARGO_STATUSES
        assert isinstance(hs["message"], str) and hs["message"]


@pytest.mark.parametrize("kind", KINDS)
def test_sandbox_catches_forbidden_libraries(kind: str) -> None:
    """The sandbox is real: a script using os fails here, so passing scripts do not use it."""
    runtime = lua51.LuaRuntime()
    runtime.execute(SANDBOX)
    with pytest.raises(lua51.LuaError):
        runtime.execute("return os.time()")


def test_cm_patch_installs_every_check_verbatim() -> None:
    """argocd-cm-patch.yaml carries each .lua file under ArgoCD's per-kind key, unchanged."""
    patch = yaml.safe_load(sync.CM_PATCH.read_text())
    assert patch["kind"] == "ConfigMap"
    assert patch["metadata"] == {"name": "argocd-cm", "namespace": "argocd"}
    expected = {
        f"resource.customizations.health.alm.dev_{kind}": (sync.HEALTH / f"alm.dev_{kind}.lua").read_text()
        for kind in KINDS
    }
    assert patch["data"] == expected
    assert sorted(path.name for path in sync.HEALTH.glob("*.lua")) == sorted(f"alm.dev_{kind}.lua" for kind in KINDS)
