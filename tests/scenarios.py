"""The operator's user stories, written once and run against two backends:
``tests/integration`` (the emulated API server in-process) and ``tests/e2e`` (a real
cluster). Each scenario creates objects the way a user would, waits for the
operator's effects, and asserts them through the API: nothing here can pass unless
the operator really did the work.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import hashlib
import json
import os
import pathlib
import re
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from typing import Any, Protocol, TypeVar

import yaml

import alm
from alm.core import archive, auditchain, auditstorage
from alm.handlers.registry import FINALIZER
from alm.kube import errors
from alm.kube.api import Kube

T = TypeVar("T")

TOOL_KEY_VALUE = "crm-key-" + "s3cr3t-value-for-tests-only"
HOLD = "alm.dev/test-hold"  # a finalizer the tests add to watch an Agent after alm let it go


class Cluster(Protocol):
    kube: Kube
    namespace: str

    async def wait_for(self, probe: Callable[[], T | None], *, timeout: float = 30, what: str = "") -> T: ...

    async def restart_operator(self) -> None: ...

    def count_writes(self) -> int | None: ...

    def describe_writes(self, since: int) -> str: ...

    def kubeconfig(self) -> pathlib.Path:
        """A kubeconfig file for this cluster as its user: its server, its credentials, and the test's
        namespace as the current context's namespace (for ``kubectl alm``)."""
        ...


# --- objects as a user writes them ----------------------------------------------------

def tool_secret(ns: str, value: str = TOOL_KEY_VALUE) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "bot-tools", "namespace": ns},
            "type": "Opaque", "data": {"crm-key": base64.b64encode(value.encode()).decode()}}


def agent_version(ns: str, name: str = "bot-v1", *, tools: bool = True, **overrides: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "model": {"provider": "simulated", "name": "sim-1"},
        "instructions": f"You are {name}. Answer support questions.",
        "tools": [{"name": "crm", "type": "http", "endpoint": "https://crm.example.com/api",
                   "credentials": {"secretRef": {"name": "bot-tools", "key": "crm-key"}}}] if tools else [],
        "runtime": {"image": "ghcr.io/alm-dev/alm-agent:0.1.0",
                    "resources": {"requests": {"cpu": "10m", "memory": "32Mi"}}},
    }
    spec.update(overrides)
    return {"apiVersion": "alm.dev/v1alpha1", "kind": "AgentVersion",
            "metadata": {"name": name, "namespace": ns}, "spec": spec}


def agent(ns: str, name: str = "bot", version: str = "bot-v1", replicas: int = 2, **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "alm.dev/v1alpha1", "kind": "Agent", "metadata": {"name": name, "namespace": ns},
            "spec": {"version": version, "replicas": replicas, "owner": "team-support", **spec}}


# --- small helpers ---------------------------------------------------------------------

def create(cluster: Cluster, obj: dict[str, Any]) -> dict[str, Any]:
    from alm.kube import resources

    res = resources.for_object(obj)
    created = cluster.kube.request("POST", res.path(obj["metadata"].get("namespace")), body=obj)
    assert created is not None
    return created


def get(cluster: Cluster, kind: str, name: str) -> dict[str, Any] | None:
    return cluster.kube.get(kind, cluster.namespace, name)


def patch_spec(cluster: Cluster, kind: str, name: str, spec: dict[str, Any]) -> None:
    cluster.kube.merge_patch(kind, cluster.namespace, name, {"spec": spec})


def condition(obj: dict[str, Any] | None, type_: str) -> dict[str, Any] | None:
    for cond in ((obj or {}).get("status") or {}).get("conditions") or []:
        if cond.get("type") == type_:
            return dict(cond)
    return None


def children(cluster: Cluster, kind: str, agent_name: str = "bot") -> list[dict[str, Any]]:
    return cluster.kube.list(kind, cluster.namespace, {"alm.dev/agent": agent_name})


async def wait_phase(cluster: Cluster, name: str, phase: str, timeout: float = 60) -> dict[str, Any]:
    def probe() -> dict[str, Any] | None:
        obj = get(cluster, "Agent", name)
        status = (obj or {}).get("status") or {}
        generation = (obj or {}).get("metadata", {}).get("generation")
        ok = status.get("phase") == phase and status.get("observedGeneration") == generation
        return obj if ok else None

    return await cluster.wait_for(probe, timeout=timeout, what=f"Agent {name} to be {phase}")


async def deploy(cluster: Cluster, replicas: int = 2) -> dict[str, Any]:
    ns = cluster.namespace
    create(cluster, tool_secret(ns))
    create(cluster, agent_version(ns))
    create(cluster, agent(ns, replicas=replicas))
    return await wait_phase(cluster, "bot", "Available")


def snapshot(cluster: Cluster) -> dict[tuple[str, str], str]:
    """resourceVersion of the Agent and everything it owns: unchanged means nothing was written."""
    versions: dict[tuple[str, str], str] = {}
    bot = get(cluster, "Agent", "bot")
    assert bot is not None
    versions[("Agent", "bot")] = bot["metadata"]["resourceVersion"]
    for kind in ("ServiceAccount", "Secret", "Service", "Deployment", "PodDisruptionBudget", "Role", "RoleBinding",
                 "NetworkPolicy"):
        for obj in children(cluster, kind):
            versions[(kind, obj["metadata"]["name"])] = obj["metadata"]["resourceVersion"]
    return versions


async def _settled(probe: Callable[[], T], *, quiet: float, timeout: float, what: str) -> T:
    """``probe()`` once its value has not changed for ``quiet`` seconds; fails after ``timeout``."""
    value = probe()
    deadline, quiet_since = time.monotonic() + timeout, time.monotonic()
    while time.monotonic() - quiet_since < quiet:
        await asyncio.sleep(0.1)
        now = probe()
        if now != value:
            value, quiet_since = now, time.monotonic()
        assert time.monotonic() < deadline, f"{what} never stopped changing for {quiet}s"
    return value


async def settled_writes(cluster: Cluster, *, quiet: float = 1.5, timeout: float = 20) -> int | None:
    """The write count once no write has come for ``quiet`` seconds (None where writes are not counted).

    A first pass's trailing writes (an Event posted in the background, kopf's finalizer) may land
    late on a loaded machine; a retry storm never goes quiet, so it still fails here.
    """
    if cluster.count_writes() is None:
        return None
    try:
        return await _settled(cluster.count_writes, quiet=quiet, timeout=timeout, what="the writes")
    except AssertionError as exc:
        count = cluster.count_writes() or 0
        raise AssertionError(f"{exc}:\n{cluster.describe_writes(count - 20)}") from None


async def assert_quiet(cluster: Cluster, seconds: float) -> None:
    """Nothing the operator owns changes for ``seconds`` (covering at least one resync).

    It starts once the writes and the objects' resourceVersions have stood still for 1.5 s (more
    than a resync), so a late status write or Event of the pass before cannot race with it, on
    either harness (a real cluster counts no writes: there the objects alone tell). Writing at
    every resync never stands still that long, and a slower write lands in ``seconds``: both fail.
    """
    writes_before, before = await _settled(lambda: (cluster.count_writes(), snapshot(cluster)),
                                           quiet=1.5, timeout=20, what="the operator's writes and objects")
    await asyncio.sleep(seconds)
    assert snapshot(cluster) == before
    writes_after = cluster.count_writes()
    if writes_before is not None and writes_after is not None:
        assert writes_after == writes_before, "the operator wrote during a resync with nothing to do:\n" + \
            cluster.describe_writes(writes_before)


# --- retirement ---------------------------------------------------------------------------

CREDENTIAL_KINDS = ("Secret", "ServiceAccount", "Role", "RoleBinding")
PERMISSIONS = [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get"]}]


def agent_retirement(ns: str, name: str = "bot-retirement", agent: str = "bot", grace: int = 0,
                     **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "alm.dev/v1alpha1", "kind": "AgentRetirement", "metadata": {"name": name, "namespace": ns},
            "spec": {"agentRef": {"name": agent}, "reason": "Replaced by bot-next.",
                     "drain": {"gracePeriodSeconds": grace}, **spec}}


def credentials(cluster: Cluster, agent_name: str = "bot") -> dict[tuple[str, str], dict[str, Any]]:
    """The Agent's live credential objects (its scoped Secrets, ServiceAccount, Role, RoleBinding)."""
    found: dict[tuple[str, str], dict[str, Any]] = {}
    for kind in CREDENTIAL_KINDS:
        for obj in children(cluster, kind, agent_name):
            labels = obj["metadata"].get("labels") or {}
            if kind != "Secret" or labels.get("alm.dev/component") == "credentials":
                found[(kind, obj["metadata"]["name"])] = obj
    return found


async def wait_retirement(cluster: Cluster, name: str, phase: str, timeout: float = 60) -> dict[str, Any]:
    def probe() -> dict[str, Any] | None:
        obj = get(cluster, "AgentRetirement", name)
        return obj if ((obj or {}).get("status") or {}).get("phase") == phase else None

    return await cluster.wait_for(probe, timeout=timeout, what=f"AgentRetirement {name} to be {phase}")


def read_archive(cluster: Cluster, location: str) -> bytes:
    """The archive at ``status.archive.location``, reassembled and checked against its manifest."""
    kind_name, _, name = location.partition("/")
    kind = {"configmap": "ConfigMap", "secret": "Secret"}[kind_name]
    head = get(cluster, kind, name)
    assert head is not None, f"archive {location} not found"
    parts = int(head["metadata"]["annotations"][archive.ANNOTATION_PARTS])
    objects = [head] + [get(cluster, kind, f"{name}-{i}") or {} for i in range(1, parts + 1) if parts > 1]
    return archive.reassemble(objects)


def audit_log(cluster: Cluster, agent_name: str = "bot") -> list[dict[str, Any]]:
    segments = cluster.kube.list("ConfigMap", cluster.namespace,
                                 {"alm.dev/agent": agent_name, "alm.dev/component": "audit"})
    return auditstorage.load(segments)


async def assert_never_provisioned(cluster: Cluster, seconds: float = 3.0) -> None:
    """A retired Agent: a deleted Deployment stays deleted, a spec change creates nothing."""
    for deployment in children(cluster, "Deployment"):
        cluster.kube.delete("Deployment", cluster.namespace, deployment["metadata"]["name"])
    patch_spec(cluster, "Agent", "bot", {"replicas": 3})
    await asyncio.sleep(seconds)  # more than a resync
    for kind in ("Deployment", "Service", *CREDENTIAL_KINDS):
        assert [c for c in children(cluster, kind) if kind != "Secret" or
                c["metadata"]["labels"].get("alm.dev/component") == "credentials"] == [], f"a {kind} came back"
    bot = get(cluster, "Agent", "bot")
    assert bot is not None and bot["status"]["phase"] == "Retired"


# --- kubectl alm, as a user runs it ---------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class CliRun:
    args: tuple[str, ...]
    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)

    def __str__(self) -> str:
        return f"kubectl alm {' '.join(self.args)} -> exit {self.code}\nstdout:\n{self.out}\nstderr:\n{self.err}"


def kubectl_alm_command() -> list[str]:
    """The installed plugin (the ``kubectl-alm`` console script next to this Python), else the module."""
    script = pathlib.Path(sys.executable).with_name("kubectl-alm")
    return [str(script)] if script.exists() else [sys.executable, "-m", "alm.cli.kubectl"]


def start_kubectl_alm(kubeconfig: pathlib.Path, *args: str) -> subprocess.Popen[str]:
    """Start one command; only ``--kubeconfig`` says where (no $KUBECONFIG), the code is the tests' own."""
    env = {k: v for k, v in os.environ.items() if k != "KUBECONFIG"}
    code = str(pathlib.Path(alm.__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join([code, *filter(None, [env.get("PYTHONPATH")])])
    return subprocess.Popen([*kubectl_alm_command(), "--kubeconfig", str(kubeconfig), *args], env=env,
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish_kubectl_alm(process: subprocess.Popen[str], args: tuple[str, ...], timeout: float = 60) -> CliRun:
    try:
        out, err = process.communicate(timeout=timeout)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    return CliRun(args, process.returncode, out, err)


def run_kubectl_alm(kubeconfig: pathlib.Path, *args: str) -> CliRun:
    """One ``kubectl alm`` command in its own process (blocking): exit code, stdout, stderr."""
    return finish_kubectl_alm(start_kubectl_alm(kubeconfig, *args), args)


async def kubectl_alm(cluster: Cluster, *args: str) -> CliRun:
    return await asyncio.to_thread(run_kubectl_alm, cluster.kubeconfig(), *args)


def kubeconfig_user(path: pathlib.Path) -> str | None:
    """The user named by the kubeconfig's current context (what ``kubectl alm approve`` records)."""
    document = yaml.safe_load(path.read_text()) or {}
    current = document.get("current-context")
    context = next((c.get("context") or {} for c in document.get("contexts") or [] if c.get("name") == current), {})
    user = context.get("user")
    return str(user) if user else None


def the_rollout(cluster: Cluster, agent_name: str = "bot", target: str | None = None) -> dict[str, Any] | None:
    found = [r for r in cluster.kube.list("AgentRollout", cluster.namespace)
             if r["spec"]["agentRef"]["name"] == agent_name and target in (None, r["spec"].get("targetVersion"))]
    assert len(found) <= 1, [r["metadata"]["name"] for r in found]
    return found[0] if found else None


# --- scenarios --------------------------------------------------------------------------

async def scenario_create(cluster: Cluster) -> None:
    """A user applies a Secret, an AgentVersion and an Agent; the agent becomes Available."""
    bot = await deploy(cluster)
    ns = cluster.namespace
    status = bot["status"]
    assert status["stableVersion"] == "bot-v1"
    assert status["readyReplicas"] == 2
    assert condition(bot, "Ready") is not None and condition(bot, "Ready")["status"] == "True"  # type: ignore[index]

    version = get(cluster, "AgentVersion", "bot-v1")
    assert version is not None and version["status"]["phase"] == "Ready"
    assert len(version["status"]["specHash"]) == 64
    config = get(cluster, "ConfigMap", version["status"]["configMapName"])
    assert config is not None and "config.json" in config["data"]
    assert TOOL_KEY_VALUE not in str(config)

    (sa,) = children(cluster, "ServiceAccount")
    assert sa["automountServiceAccountToken"] is False
    (secret,) = children(cluster, "Secret")
    assert base64.b64decode(secret["data"]["tool-crm"]).decode() == TOOL_KEY_VALUE
    assert len(base64.b64decode(secret["data"]["agent-token"])) >= 32
    (service,) = children(cluster, "Service")
    assert service["spec"]["selector"] == {"alm.dev/agent": "bot"}
    assert len(children(cluster, "PodDisruptionBudget")) == 1
    (deployment,) = children(cluster, "Deployment")
    assert deployment["metadata"]["ownerReferences"][0]["uid"] == bot["metadata"]["uid"]
    pod = deployment["spec"]["template"]["spec"]
    assert pod["containers"][0]["securityContext"]["readOnlyRootFilesystem"] is True
    assert pod["serviceAccountName"] == "bot"
    assert {v["name"] for v in pod["volumes"]} >= {"config", "credentials"}
    assert TOOL_KEY_VALUE not in str(bot) and TOOL_KEY_VALUE not in str(deployment)

    # kopf posts Events in the background: on a loaded machine they can trail the Available phase.
    def created_event() -> list[dict[str, Any]] | None:
        found = cluster.kube.list("Event", ns)
        mine = [e for e in found if e.get("involvedObject", {}).get("name") == "bot"]
        return found if any(e.get("reason") == "Created" for e in mine) else None

    events = await cluster.wait_for(created_event, timeout=10, what="a Created event for the Agent")
    assert all(TOOL_KEY_VALUE not in str(e) for e in events)


async def scenario_update(cluster: Cluster) -> None:
    """Scale, grant permissions, restrict egress, then switch version: everything converges."""
    await deploy(cluster)
    patch_spec(cluster, "Agent", "bot", {
        "replicas": 3,
        "permissions": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "list"]}],
        "egress": [{"cidr": "10.20.0.0/16", "ports": [{"port": 443}]}],
    })
    await wait_phase(cluster, "bot", "Available")
    (deployment,) = children(cluster, "Deployment")
    assert deployment["spec"]["replicas"] == 3
    (role,) = children(cluster, "Role")
    assert role["rules"][0]["verbs"] == ["get", "list"]
    (binding,) = children(cluster, "RoleBinding")
    assert binding["subjects"][0]["name"] == "bot"
    (policy,) = children(cluster, "NetworkPolicy")
    assert {"ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}]} in policy["spec"]["egress"]

    create(cluster, agent_version(cluster.namespace, "bot-v2", tools=False))
    patch_spec(cluster, "Agent", "bot", {"version": "bot-v2", "permissions": None})
    bot = await wait_phase(cluster, "bot", "Available")
    assert bot["status"]["stableVersion"] == "bot-v2"
    deployments = await cluster.wait_for(
        lambda: (lambda ds: ds if len(ds) == 1 else None)(children(cluster, "Deployment")),
        what="the old version's Deployment to go")
    assert deployments[0]["metadata"]["labels"]["alm.dev/version"] == "bot-v2"
    await cluster.wait_for(lambda: not children(cluster, "Role") or None, what="the Role to be deleted")
    (secret,) = await cluster.wait_for(
        lambda: (lambda s: s if len(s) == 1 else None)(children(cluster, "Secret")), what="one credentials Secret")
    assert "tool-crm" not in secret["data"]


async def scenario_drift_repair(cluster: Cluster) -> None:
    """Children deleted or edited by hand are put back."""
    await deploy(cluster)
    (service,) = children(cluster, "Service")
    cluster.kube.delete("Service", cluster.namespace, "bot")
    await cluster.wait_for(
        lambda: next((s for s in children(cluster, "Service") if s["metadata"]["uid"] != service["metadata"]["uid"]),
                     None), what="the Service to be recreated")

    (deployment,) = children(cluster, "Deployment")
    name = deployment["metadata"]["name"]
    cluster.kube.merge_patch("Deployment", cluster.namespace, name, {"spec": {"replicas": 5}})
    await cluster.wait_for(
        lambda: (get(cluster, "Deployment", name) or {}).get("spec", {}).get("replicas") == 2 or None,
        what="the Deployment's replicas to be restored")

    cluster.kube.merge_patch("ServiceAccount", cluster.namespace, "bot", {"automountServiceAccountToken": True})
    await cluster.wait_for(
        lambda: (get(cluster, "ServiceAccount", "bot") or {}).get("automountServiceAccountToken") is False or None,
        what="token automount to be switched off again")


async def scenario_invalid_input(cluster: Cluster) -> None:
    """Missing version, missing Secret, invalid version: a condition says what to fix; fixes recover."""
    ns = cluster.namespace
    create(cluster, agent(ns, replicas=1))
    bot = await cluster.wait_for(
        lambda: (lambda a: a if (condition(a, "Ready") or {}).get("reason") == "VersionNotFound" else None)(
            get(cluster, "Agent", "bot")), what="VersionNotFound")
    assert bot["status"]["phase"] == "Pending"
    assert "bot-v1" in condition(bot, "Ready")["message"]  # type: ignore[index]
    assert children(cluster, "Deployment") == [] and children(cluster, "Secret") == []

    # kopf puts the revocation finalizer on every Agent, and the Events of the first pass are posted
    # in the background: let those land first (on a loaded machine they can trail the condition).
    await cluster.wait_for(lambda: FINALIZER in (get(cluster, "Agent", "bot") or {}).get("metadata", {}).get(
        "finalizers", []) or None, what="the Agent's finalizer")
    writes = await settled_writes(cluster)
    await asyncio.sleep(2.5)  # more than one resync: no retry storm, no repeated status writes
    if writes is not None:
        assert cluster.count_writes() == writes, "writes during resyncs with nothing new:\n" + \
            cluster.describe_writes(writes)

    create(cluster, agent_version(ns))  # references Secret bot-tools, which does not exist yet
    await cluster.wait_for(
        lambda: (condition(get(cluster, "Agent", "bot"), "Ready") or {}).get("reason") == "SecretNotFound" or None,
        what="SecretNotFound")
    assert children(cluster, "Deployment") == []

    create(cluster, tool_secret(ns))  # recovers by itself at the next resync
    await wait_phase(cluster, "bot", "Available")

    bad = agent_version(ns, "bot-bad")
    bad["spec"]["runtime"] = {"image": "x", "port": 70000}
    try:
        create(cluster, bad)
    except errors.Invalid as exc:  # a real API server rejects it with the CRD's schema: fine
        assert "port" in str(exc)
    else:  # a server without schema validation: the operator must catch it
        await cluster.wait_for(
            lambda: (condition(get(cluster, "AgentVersion", "bot-bad"), "Invalid") or {}).get("status") == "True"
            or None, what="the AgentVersion to be Invalid")
        patch_spec(cluster, "Agent", "bot", {"version": "bot-bad"})
        await cluster.wait_for(
            lambda: (condition(get(cluster, "Agent", "bot"), "Invalid") or {}).get("reason") == "VersionInvalid"
            or None, what="the Agent to report VersionInvalid")
        (deployment,) = children(cluster, "Deployment")
        assert deployment["metadata"]["labels"]["alm.dev/version"] == "bot-v1"  # the good version keeps serving


async def scenario_deletion(cluster: Cluster) -> None:
    """Deleting the Agent removes every child, credentials included."""
    await deploy(cluster)
    cluster.kube.delete("Agent", cluster.namespace, "bot")
    await cluster.wait_for(lambda: get(cluster, "Agent", "bot") is None or None, what="the Agent to go")
    for kind in ("Deployment", "Secret", "ServiceAccount", "Service", "PodDisruptionBudget"):
        await cluster.wait_for(lambda kind=kind: not children(cluster, kind) or None,  # type: ignore[misc]
                               timeout=60, what=f"{kind} children to be garbage-collected")


async def scenario_resync_is_quiet(cluster: Cluster) -> None:
    """Once converged, resyncs and an operator restart write nothing."""
    await deploy(cluster)
    await assert_quiet(cluster, 3.0)  # it waits for the last status write and Events to land first
    await cluster.restart_operator()
    await assert_quiet(cluster, 3.0)


async def scenario_retirement(cluster: Cluster) -> None:
    """A live Agent is retired: traffic stops, credentials are revoked, an archive is written, for good."""
    ns = cluster.namespace
    create(cluster, tool_secret(ns))
    create(cluster, agent_version(ns))
    create(cluster, agent(ns, permissions=PERMISSIONS))
    await wait_phase(cluster, "bot", "Available")
    issued = credentials(cluster)
    assert {kind for kind, _ in issued} == set(CREDENTIAL_KINDS)

    create(cluster, agent_retirement(ns))
    done = await wait_retirement(cluster, "bot-retirement", "Retired")
    status = done["status"]
    assert [t["phase"] for t in status["transitions"]] == ["Pending", "Draining", "Revoking", "Archiving", "Retired"]
    assert {(r["kind"], r["name"]): r["result"] for r in status["revoked"]} == {key: "Revoked" for key in issued}
    assert all(r["revokedAt"].endswith("Z") for r in status["revoked"])
    assert credentials(cluster) == {}
    assert children(cluster, "Service") == []
    assert all(d["spec"]["replicas"] == 0 for d in children(cluster, "Deployment"))

    data = read_archive(cluster, status["archive"]["location"])
    assert hashlib.sha256(data).hexdigest() == status["archive"]["sha256"]
    assert len(data) == status["archive"]["sizeBytes"]
    bundle = json.loads(data)
    assert bundle["agent"]["name"] == "bot" and [v["name"] for v in bundle["versions"]] == ["bot-v1"]
    assert bundle["audit"]["intact"] is True

    bot = await cluster.wait_for(lambda: (lambda a: a if (a or {}).get("status", {}).get("phase") == "Retired"
                                          else None)(get(cluster, "Agent", "bot")), what="the Agent to be Retired")
    assert (condition(bot, "Retired") or {}).get("status") == "True"
    entries = audit_log(cluster)
    assert auditchain.verify(entries, head=bot["status"]["auditHead"]), auditchain.verify(entries).message
    actions = [e["action"] for e in entries]
    for action in ("retirementDraining", "retirementRevoking", "retirementArchiving", "retired"):
        assert actions.count(action) == 1, (action, actions)
    assert actions.count("credentialRevoked") == len(issued)

    await assert_never_provisioned(cluster)
    cluster.kube.delete("AgentRetirement", ns, "bot-retirement")
    await assert_never_provisioned(cluster, 1.5)
    assert read_archive(cluster, status["archive"]["location"]) == data  # outlives the retirement


async def scenario_deletion_revokes_credentials(cluster: Cluster) -> None:
    """Deleting an Agent without a retirement revokes its credentials before the Agent is gone."""
    ns = cluster.namespace
    create(cluster, tool_secret(ns))
    create(cluster, agent_version(ns))
    create(cluster, agent(ns, permissions=PERMISSIONS))
    await wait_phase(cluster, "bot", "Available")
    issued = credentials(cluster)
    assert len(issued) == 4
    await cluster.wait_for(lambda: "alm.dev/finalizer" in (get(cluster, "Agent", "bot") or {}).get(
        "metadata", {}).get("finalizers", []) or None, what="the alm finalizer on the Agent")
    # A second finalizer keeps the Agent visible after alm's is gone, as a slow controller would.
    cluster.kube.merge_patch("Agent", ns, "bot", {"metadata": {"finalizers": ["alm.dev/finalizer", HOLD]}})
    cluster.kube.delete("Agent", ns, "bot")
    held = await cluster.wait_for(lambda: (lambda a: a if a and a["metadata"].get("finalizers") == [HOLD] else None)(
        get(cluster, "Agent", "bot")), what="alm to release the Agent")
    assert held["metadata"].get("deletionTimestamp")
    assert credentials(cluster) == {}, "credentials outlived the Agent's finalizer"
    assert children(cluster, "Deployment"), "the workload goes with the Agent (GC), not before"
    revoked = [e for e in audit_log(cluster) if e["action"] == "credentialRevoked"]
    assert {(e["details"]["kind"], e["details"]["name"]) for e in revoked} == set(issued)
    assert audit_log(cluster)[-1]["action"] == "deleted"
    cluster.kube.merge_patch("Agent", ns, "bot", {"metadata": {"finalizers": None}})
    await cluster.wait_for(lambda: get(cluster, "Agent", "bot") is None or None, what="the Agent to go")
    assert audit_log(cluster), "the audit log outlives the Agent"


async def scenario_kubectl_alm_drives_a_rollout_and_a_retirement(cluster: Cluster) -> None:
    """A user steers a canary and a retirement with ``kubectl alm`` alone: the installed plugin, in its
    own process, with a kubeconfig whose context names the test namespace. No KPIs and no analysis,
    so it needs no agent process (a node-less control plane only marks the pods Ready).
    """
    ns = cluster.namespace
    steps = [{"setWeight": 50}, {"approval": {"message": "check the canary"}}, {"pause": {}}]
    create(cluster, agent_version(ns, "bot-v1", tools=False))
    create(cluster, agent(ns, permissions=PERMISSIONS, rollout={"canary": {"steps": steps}}))
    await wait_phase(cluster, "bot", "Available")
    create(cluster, agent_version(ns, "bot-v2", tools=False))
    patch_spec(cluster, "Agent", "bot", {"version": "bot-v2"})
    kubeconfig = cluster.kubeconfig()

    def at(phase: str, step: int) -> Callable[[], dict[str, Any] | None]:
        def probe() -> dict[str, Any] | None:
            found = the_rollout(cluster, target="bot-v2")
            status = (found or {}).get("status") or {}
            return found if status.get("phase") == phase and status.get("currentStep") == step else None
        return probe

    waiting = await cluster.wait_for(at("AwaitingApproval", 1), timeout=60, what="the rollout at its approval step")
    name = waiting["metadata"]["name"]
    assert waiting["status"]["weight"] == 50

    def listed() -> dict[str, Any] | None:  # the Agent's status follows its rollout's
        run = run_kubectl_alm(kubeconfig, "list", "-o", "json")
        assert run.code == 0, run
        row = next((r for r in run.json()["items"] if r["name"] == "bot"), None)
        return row if row is not None and row["canaryWeight"] == 50 else None

    row = await cluster.wait_for(listed, what="'kubectl alm list' to show bot's canary at 50%")
    assert (row["version"], row["stable"], row["canary"]) == ("bot-v2", "bot-v1", "bot-v2"), row

    status = await kubectl_alm(cluster, "status", "bot", "-o", "json")
    assert status.code == 0, status
    shown = status.json()
    assert shown["agent"]["namespace"] == ns  # from the kubeconfig's context: no -n anywhere
    rollout = shown["rollout"]
    assert (rollout["name"], rollout["phase"], rollout["currentStep"], rollout["weight"]) == (
        name, "AwaitingApproval", 1, 50), rollout
    assert rollout["awaitingApproval"] is True and rollout["approvals"] == []
    human = await kubectl_alm(cluster, "status", "bot")
    assert human.code == 0 and "run 'kubectl alm approve bot'" in human.out, human

    approved = await kubectl_alm(cluster, "approve", "bot", "-o", "json")
    assert approved.code == 0, approved
    annotations = approved.json()["annotations"]
    who = annotations["alm.dev/approved-by"]
    assert who and who == kubeconfig_user(kubeconfig), (who, kubeconfig_user(kubeconfig))
    assert annotations["alm.dev/approve"] == "1"  # names the step it approves
    paused = await cluster.wait_for(at("Paused", 2), timeout=60, what="the rollout paused at step 2")
    assert [(a["step"], a["approvedBy"]) for a in paused["status"]["approvals"]] == [(1, who)]
    assert paused["status"]["weight"] == 50

    status = await kubectl_alm(cluster, "status", "bot", "-o", "json")
    assert status.code == 0, status
    rollout = status.json()["rollout"]
    assert (rollout["phase"], rollout["currentStep"], rollout["awaitingApproval"]) == ("Paused", 2, False), rollout
    assert [a["approvedBy"] for a in rollout["approvals"]] == [who]

    resumed = await kubectl_alm(cluster, "resume", "bot")
    assert resumed.code == 0 and f"AgentRollout {name} (Paused): resume requested" in resumed.out, resumed
    done = await cluster.wait_for(
        lambda: (lambda r: r if ((r or {}).get("status") or {}).get("phase") == "Succeeded" else None)(
            the_rollout(cluster, target="bot-v2")), timeout=60, what="the rollout to succeed")
    assert done["status"]["weight"] == 100
    assert not {"alm.dev/approve", "alm.dev/approved-by", "alm.dev/resume"} & set(
        done["metadata"].get("annotations") or {}), "the controls were not consumed"
    await cluster.wait_for(
        lambda: (lambda a: a if (a.get("status") or {}).get("stableVersion") == "bot-v2" and any(
            e.get("version") == "bot-v2" for e in a["status"].get("history") or []) else None)(
            get(cluster, "Agent", "bot") or {}), timeout=60, what="bot-v2 stable, in the Agent's history")

    history = await kubectl_alm(cluster, "history", "bot", "-o", "json")
    assert history.code == 0, history
    assert [(e["version"], e["result"], e["rollout"]) for e in history.json()["items"]] == [
        ("bot-v2", "Succeeded", name)], history
    status = await kubectl_alm(cluster, "status", "bot", "-o", "json")
    assert status.code == 0 and status.json()["rollout"] is None, status  # none active any more
    assert status.json()["agent"]["stable"] == "bot-v2"

    audited = await kubectl_alm(cluster, "audit", "bot", "--verify", "-o", "json")
    assert audited.code == 0, audited
    log = audited.json()
    assert log["verdict"]["ok"] is True, log["verdict"]
    actions = [e["action"] for e in log["entries"]]
    assert {"rolloutStarted", "rolloutStep", "approved", "promoted"} <= set(actions), actions
    assert [e["actor"] for e in log["entries"] if e["action"] == "approved"] == [who]

    issued = credentials(cluster)
    assert {kind for kind, _ in issued} == set(CREDENTIAL_KINDS)
    retiring = await asyncio.to_thread(start_kubectl_alm, kubeconfig, "retire", "bot", "--reason", "e2e",
                                       "--grace", "0", "--wait", "--timeout", "3600")
    try:  # the CLI waits for the operator; the scenario's wait (scaled on a real cluster) bounds it
        await cluster.wait_for(lambda: retiring.poll() is not None, timeout=90,
                               what="'kubectl alm retire bot --wait' to return")
    except BaseException as exc:
        retiring.kill()
        left = await asyncio.to_thread(finish_kubectl_alm, retiring, ("retire", "bot", "--wait"), 10)
        raise AssertionError(f"{exc}\n{left}") from exc
    retired = await asyncio.to_thread(finish_kubectl_alm, retiring, ("retire", "bot", "--wait"), 10)
    assert retired.code == 0, retired
    assert "AgentRetirement bot-retirement created" in retired.out and "Phase:      Retired" in retired.out
    assert "Revocation receipts:" in retired.out and "SHA-256:" in retired.out, retired
    for kind, cred in issued:
        assert re.search(rf"^{kind}\s+{re.escape(cred)}\s+Revoked\s", retired.out, re.MULTILINE), (kind, cred, retired)
    assert credentials(cluster) == {}
    record = get(cluster, "AgentRetirement", "bot-retirement")
    assert record is not None and record["spec"]["reason"] == "e2e"
    await cluster.wait_for(lambda: (get(cluster, "Agent", "bot") or {}).get("status", {}).get("phase") == "Retired"
                           or None, what="the Agent to be Retired")
    status = await kubectl_alm(cluster, "status", "bot", "-o", "json")
    assert status.code == 0 and status.json()["agent"]["phase"] == "Retired", status

    missing = await kubectl_alm(cluster, "status", "nobody")
    assert missing.code == 3 and "'nobody' not found" in missing.err and missing.out == "", missing


SCENARIOS = [
    scenario_create,
    scenario_update,
    scenario_drift_repair,
    scenario_invalid_input,
    scenario_deletion,
    scenario_resync_is_quiet,
    scenario_retirement,
    scenario_deletion_revokes_credentials,
    scenario_kubectl_alm_drives_a_rollout_and_a_retirement,
]


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"
