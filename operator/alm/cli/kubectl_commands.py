"""``kubectl alm``'s commands: the API calls behind each command, results as :class:`Outcome`.

Every call goes through :class:`Session`, which turns API failures into :class:`CliError` with
the exit code scripts rely on (:data:`EXIT_CODES`) and a message that says what to do: a
missing CRD, a missing object, or the verb and resource RBAC refused. What is shown is decided
in the ``alm.cli.kubectl_*_view(s)`` modules (pure).

Human commands never write a spec the user owns, except ``rollback`` (which says so): the
rollout controls are annotations on the AgentRollout that the operator consumes
(:mod:`alm.core.rolloutcontrols`).
"""

from __future__ import annotations

import dataclasses
import datetime
import getpass
import os
import pathlib
import time
from collections.abc import Callable, Mapping
from typing import Any

from kubernetes import client as k8s
from kubernetes import config as k8s_config

from alm.cli import kubectl_agent_views as agent_views
from alm.cli import kubectl_audit_view as audit_view
from alm.cli import kubectl_format as fmt
from alm.cli import kubectl_objects as objects
from alm.cli import kubectl_retirement_view as retirement_view
from alm.cli import kubectl_status_view as status_view
from alm.core import auditchain, auditstorage, naming, rolloutcontrols
from alm.kube import errors, resources
from alm.kube.api import Kube
from alm.kube.client import build_configuration

__all__ = [
    "CRDS_MISSING",
    "EXIT_CODES",
    "EXIT_FAILED",
    "EXIT_FORBIDDEN",
    "EXIT_NOT_FOUND",
    "EXIT_OK",
    "EXIT_USAGE",
    "FIELD_MANAGER",
    "GITOPS_HINT",
    "CliError",
    "Outcome",
    "Session",
    "audit_log",
    "budget",
    "connect",
    "control",
    "history",
    "list_agents",
    "retire",
    "rollback",
    "status",
    "watch_status",
]

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_NOT_FOUND = 3
EXIT_FORBIDDEN = 4
EXIT_CODES = {
    EXIT_OK: "success",
    EXIT_FAILED: "the operation failed (also: audit verification failed, rollout or retirement did not succeed)",
    EXIT_USAGE: "usage error (bad flags or arguments)",
    EXIT_NOT_FOUND: "not found: the agent (or the object named) does not exist, or the alm CRDs are not installed",
    EXIT_FORBIDDEN: "forbidden: RBAC refused a call (the message names the verb and resource)",
}

FIELD_MANAGER = "kubectl-alm"
CRDS_MISSING = "the alm CRDs are not installed in this cluster: kubectl apply -k manifests/"
GITOPS_HINT = ("note: this changed Agent.spec.version in the cluster. Under GitOps (Argo CD, Flux) change the "
               "version in Git instead, or the next sync reverts it.")

Obj = dict[str, Any]
Out = Callable[["Outcome"], None]


class CliError(Exception):
    """A failure to report: ``message`` on stderr, ``code`` as the exit status."""

    def __init__(self, message: str, code: int = EXIT_FAILED) -> None:
        super().__init__(message)
        self.code = code


@dataclasses.dataclass(frozen=True)
class Outcome:
    """What a command produced: ``data`` for ``-o json|yaml``, ``text`` for people, the exit code."""

    data: Any
    text: str
    code: int = EXIT_OK


def _today() -> str:
    return datetime.datetime.now(datetime.UTC).date().isoformat()


# --- connecting -------------------------------------------------------------------------------

def _kubeconfig_present(kubeconfig: str | None) -> bool:
    if kubeconfig:
        return True
    env = os.environ.get("KUBECONFIG")
    if env:
        return any(pathlib.Path(p).expanduser().exists() for p in env.split(os.pathsep) if p)
    return pathlib.Path("~/.kube/config").expanduser().exists()


def _context_info(kubeconfig: str | None, context: str | None) -> tuple[str | None, str | None]:
    """(namespace, user) of the context in use, from the kubeconfig."""
    contexts, current = k8s_config.list_kube_config_contexts(config_file=kubeconfig)  # type: ignore[no-untyped-call]
    chosen = current
    if context:
        chosen = next((c for c in contexts if c.get("name") == context), None)
        if chosen is None:
            raise CliError(f"context {context!r} is not in the kubeconfig", EXIT_USAGE)
    ctx = (chosen or {}).get("context") or {}
    return ctx.get("namespace"), ctx.get("user")


def connect(kubeconfig: str | None, context: str | None, namespace: str | None) -> Session:
    """A session for the kubeconfig context (or in-cluster when there is no kubeconfig)."""
    ns, user = None, None
    try:
        if _kubeconfig_present(kubeconfig) or context:
            ns, user = _context_info(kubeconfig, context)
            configuration = k8s.Configuration()
            k8s_config.load_kube_config(  # type: ignore[no-untyped-call]
                config_file=kubeconfig, context=context, client_configuration=configuration)
        else:
            configuration = build_configuration()
    except k8s_config.ConfigException as exc:
        raise CliError(f"cannot load the kubeconfig: {exc}", EXIT_USAGE) from None
    except OSError as exc:
        raise CliError(f"cannot read the kubeconfig: {exc}", EXIT_USAGE) from None
    kube = Kube(k8s.ApiClient(configuration), field_manager=FIELD_MANAGER)
    return Session(kube, namespace or ns or "default", user or getpass.getuser())


@dataclasses.dataclass
class Session:
    """API access for one command, in one namespace, as one user."""

    kube: Kube
    namespace: str
    user: str

    def _fail(self, exc: errors.ApiError, verb: str, kind: str, name: str | None = None) -> CliError:
        res = resources.for_kind(kind)
        resource = f"{res.plural}.{res.group}" if res.group else res.plural
        what = f"{resource} {name!r}" if name else resource
        if isinstance(exc, errors.Forbidden):
            return CliError(f"forbidden: you may not {verb} {what} in namespace {self.namespace!r} "
                            f"(ask for an RBAC Role allowing {verb} on {resource}): {exc}", EXIT_FORBIDDEN)
        if isinstance(exc, errors.NotFound):
            if res.group == "alm.dev" and name is None:
                return CliError(CRDS_MISSING, EXIT_NOT_FOUND)
            return CliError(f"{kind} {name!r} not found in namespace {self.namespace!r}", EXIT_NOT_FOUND)
        if isinstance(exc, errors.ServerError):
            return CliError(f"cannot {verb} {what}: {exc}", EXIT_FAILED)
        return CliError(f"cannot {verb} {what}: {exc}", EXIT_FAILED)

    def list(self, kind: str, labels: Mapping[str, str] | None = None) -> list[Obj]:
        try:
            return self.kube.list(kind, self.namespace, labels)
        except errors.ApiError as exc:
            raise self._fail(exc, "list", kind) from None

    def get(self, kind: str, name: str) -> Obj | None:
        try:
            found = self.kube.get(kind, self.namespace, name)
        except errors.ApiError as exc:
            raise self._fail(exc, "get", kind, name) from None
        if found is None and resources.for_kind(kind).group == "alm.dev":
            self.list(kind)  # tells a missing CRD (exit 3 with the install hint) from a missing object
        return found

    def need(self, kind: str, name: str) -> Obj:
        found = self.get(kind, name)
        if found is None:
            raise CliError(f"{kind} {name!r} not found in namespace {self.namespace!r}", EXIT_NOT_FOUND)
        return found

    def patch(self, kind: str, name: str, patch: Mapping[str, Any]) -> Obj | None:
        try:
            return self.kube.merge_patch(kind, self.namespace, name, patch)
        except errors.ApiError as exc:
            raise self._fail(exc, "patch", kind, name) from None

    def create(self, obj: Obj) -> Obj | None:
        kind = str(obj["kind"])
        res = resources.for_kind(kind)
        try:
            return self.kube.request("POST", res.path(self.namespace), query={"fieldManager": FIELD_MANAGER},
                                     body={"apiVersion": res.api_version, **obj})
        except errors.NotFound:
            raise CliError(CRDS_MISSING if res.group == "alm.dev" else f"cannot create {kind}: not found",
                           EXIT_NOT_FOUND) from None
        except errors.ApiError as exc:
            raise self._fail(exc, "create", kind, obj["metadata"]["name"]) from None


# --- read commands ----------------------------------------------------------------------------

def list_agents(s: Session, width: int = fmt.DEFAULT_WIDTH) -> Outcome:
    agents = s.list("Agent")
    today = _today()
    return Outcome({"items": agent_views.list_data(agents, today)}, agent_views.render_list(agents, today, width=width))


def _status(s: Session, agent: str, width: int) -> tuple[Outcome, Mapping[str, Any] | None]:
    body = s.need("Agent", agent)
    rollouts = s.list("AgentRollout")
    active = objects.active_rollout(rollouts, agent)
    last = objects.latest_rollout(rollouts, agent) if active is None else None
    text = status_view.render_status(body, active, last=last, width=width)
    return Outcome(status_view.status_data(body, active), text), active


def status(s: Session, agent: str, width: int = fmt.DEFAULT_WIDTH) -> Outcome:
    return _status(s, agent, width)[0]


def watch_status(
    s: Session, agent: str, out: Out, *, width: int = fmt.DEFAULT_WIDTH, interval: float = 1.0,
    sleep: Callable[[float], None] = time.sleep,
) -> Outcome:
    """Show the status every ``interval`` seconds until the rollout being watched finishes.

    Exit code 0 when it Succeeded (or there was none), 1 when it was RolledBack or Aborted.
    """
    outcome, active = _status(s, agent, width)
    out(outcome)
    if active is None:
        return Outcome(None, "", EXIT_OK)
    name = objects.name_of(active)
    while True:
        sleep(interval)
        body = s.need("Agent", agent)
        rollout = s.get("AgentRollout", name)
        if rollout is None:
            raise CliError(f"AgentRollout {name!r} was deleted while watching", EXIT_FAILED)
        out(Outcome(status_view.status_data(body, rollout), status_view.render_status(body, rollout, width=width)))
        if objects.is_finished(rollout):
            phase = rollout["status"]["phase"]
            return Outcome(None, "", EXIT_OK if phase == "Succeeded" else EXIT_FAILED)


def history(s: Session, agent: str, width: int = fmt.DEFAULT_WIDTH) -> Outcome:
    body = s.need("Agent", agent)
    return Outcome({"items": agent_views.history_data(body)}, agent_views.render_history(body, width=width))


def budget(s: Session, agent: str, width: int = fmt.DEFAULT_WIDTH) -> Outcome:
    body = s.need("Agent", agent)
    today = _today()
    return Outcome(agent_views.budget_data(body, today), agent_views.render_budget(body, today, width=width))


def _segments(s: Session, agent: str) -> list[Obj]:
    """The Agent's audit ConfigMaps; labels may be shortened, so the name says exactly whose it is."""
    labels = {naming.AGENT_LABEL: naming.label_value(agent), naming.COMPONENT_LABEL: auditstorage.COMPONENT}
    found = []
    for cm in s.list("ConfigMap", labels):
        name = str(cm.get("metadata", {}).get("name", ""))
        index = name.rsplit("-", 1)[-1]
        if index.isdigit() and auditstorage.segment_name(agent, int(index)) == name:
            found.append(cm)
    return found


def audit_log(s: Session, agent: str, *, verify: bool = False, width: int = fmt.DEFAULT_WIDTH) -> Outcome:
    """The audit entries; with ``verify`` the chain is checked against ``status.auditHead`` (exit 1 if broken).

    The log outlives its Agent (retirement archives it), so a deleted Agent is fine when entries remain.
    """
    body = s.get("Agent", agent)
    segments = _segments(s, agent)
    if body is None and not segments:
        raise CliError(f"Agent {agent!r} not found in namespace {s.namespace!r} (and no audit log either)",
                       EXIT_NOT_FOUND)
    entries = auditstorage.load(segments)
    verdict: dict[str, Any] | None = None
    code = EXIT_OK
    if verify:
        head = (body or {}).get("status", {}).get("auditHead")
        result = auditchain.verify(entries, head=head)
        verdict = {"ok": result.ok, "kind": str(result.kind) if result.kind else None, "seq": result.seq,
                   "message": result.message, "head": head}
        code = EXIT_OK if result.ok else EXIT_FAILED
    return Outcome(audit_view.audit_data(entries, verdict),
                   audit_view.render_audit(agent, entries, verdict, width=width), code)


# --- rollout controls -------------------------------------------------------------------------

CONTROLS = {
    "promote": rolloutcontrols.PROMOTE,
    "abort": rolloutcontrols.ABORT,
    "pause": rolloutcontrols.PAUSE,
    "resume": rolloutcontrols.RESUME,
    "approve": rolloutcontrols.APPROVE,
}


def control(s: Session, agent: str, command: str, *, full: bool = False, reason: str = "") -> Outcome:
    """Annotate the Agent's active AgentRollout; the operator carries the command out and removes the annotation."""
    s.need("Agent", agent)
    rollout = objects.active_rollout(s.list("AgentRollout"), agent)
    if rollout is None:
        raise CliError(f"Agent {agent!r} has no active rollout: nothing to {command} "
                       f"(see 'kubectl alm status {agent}')", EXIT_FAILED)
    name = rollout["metadata"]["name"]
    phase = (rollout.get("status") or {}).get("phase") or "Pending"
    annotations: dict[str, str] = {}
    note = ""
    if command == "promote":
        annotations[rolloutcontrols.PROMOTE] = rolloutcontrols.PROMOTE_FULL if full else ""
    elif command == "abort":
        annotations[rolloutcontrols.ABORT] = reason
    elif command == "approve":
        waiting = phase == "AwaitingApproval"
        step = (rollout.get("status") or {}).get("currentStep")
        # Naming the step makes a late or repeated approval unable to pass a later approval step.
        annotations[rolloutcontrols.APPROVE] = str(step) if waiting and step is not None else ""
        annotations[rolloutcontrols.APPROVED_BY] = s.user
        if not waiting:
            note = (f"\nnote: the rollout is {phase}, not AwaitingApproval; the operator consumes the "
                    "annotation and says why in an Event")
    else:
        annotations[CONTROLS[command]] = ""
    s.patch("AgentRollout", name, {"metadata": {"annotations": annotations}})
    shown = ", ".join(f"{k}={v!r}" for k, v in annotations.items())
    text = (f"AgentRollout {name} ({phase}): {command}{' --full' if full else ''} requested ({shown}).\n"
            f"The operator carries it out and records it in the rollout's status; "
            f"follow it with 'kubectl alm status {agent} --watch'.{note}\n")
    return Outcome({"agent": agent, "rollout": name, "command": command, "annotations": annotations}, text)


def rollback(s: Session, agent: str, to: str | None = None) -> Outcome:
    body = s.need("Agent", agent)
    current = body.get("spec", {}).get("version")
    target = to or objects.previous_version(body)
    if target is None:
        raise CliError(f"Agent {agent!r} has no earlier successful version in status.history; "
                       "name one with --to VERSION", EXIT_FAILED)
    if target == current:
        raise CliError(f"Agent {agent!r} is already at version {target!r}", EXIT_FAILED)
    s.need("AgentVersion", target)
    s.patch("Agent", agent, {"spec": {"version": target}})
    text = (f"Agent {agent}: spec.version {current} -> {target}; the operator rolls it out "
            f"(follow with 'kubectl alm status {agent} --watch').\n{GITOPS_HINT}\n")
    return Outcome({"agent": agent, "from": current, "to": target, "hint": GITOPS_HINT}, text)


# --- retirement -------------------------------------------------------------------------------

def retirement_name(agent: str) -> str:
    return f"{agent}-retirement"


def retire(
    s: Session, agent: str, reason: str, *, grace: int | None = None, wait: bool = False,
    timeout: float = 600.0, interval: float = 1.0, out: Out | None = None,
    sleep: Callable[[float], None] = time.sleep, clock: Callable[[], float] = time.monotonic,
) -> Outcome:
    """Create ``<agent>-retirement``; with ``wait`` poll until Retired (exit 0) or Failed (exit 1)."""
    s.need("Agent", agent)
    name = retirement_name(agent)
    spec: Obj = {"agentRef": {"name": agent}, "reason": reason}
    if grace is not None:
        spec["drain"] = {"gracePeriodSeconds": grace}
    existing = s.get("AgentRetirement", name)
    if existing is None:
        created = s.create({"kind": "AgentRetirement", "metadata": {"name": name, "namespace": s.namespace},
                            "spec": spec})
        obj = created or s.need("AgentRetirement", name)
        lead = f"AgentRetirement {name} created: the operator drains, revokes, archives and retires {agent}.\n"
    else:
        obj = existing
        lead = f"AgentRetirement {name} already exists (phase {retirement_view.retirement_data(existing)['phase']}).\n"
    if not wait:
        return Outcome(retirement_view.retirement_data(obj), lead + f"Follow it with 'kubectl alm retire {agent} "
                       f"--reason ... --wait' or 'kubectl get agentretirement {name}'.\n")
    if out is not None:
        out(Outcome(None, lead))
    deadline = clock() + timeout
    while retirement_view.retirement_data(obj)["phase"] not in objects.RETIREMENT_DONE:
        if clock() > deadline:
            raise CliError(f"AgentRetirement {name} is still {retirement_view.retirement_data(obj)['phase']} after "
                           f"{timeout:.0f}s", EXIT_FAILED)
        sleep(interval)
        obj = s.need("AgentRetirement", name)
    data = retirement_view.retirement_data(obj)
    return Outcome(data, retirement_view.render_retirement(obj), EXIT_OK if data["phase"] == "Retired" else EXIT_FAILED)
