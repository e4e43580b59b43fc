"""``kubectl alm`` against the emulated API server: every command, its output and its exit code.

Objects (and their status, as the operator would write it) are created directly through the
API; the CLI reads and writes them over HTTP with a kubeconfig from ``ApiServerThread.kubeconfig()``.
``retire --wait`` runs once against the real retirement controller
(``test_retire_wait_with_the_real_operator``); elsewhere a stand-in writes the retirement's status
so every outcome (Retired, Failed) and its exit code is exercised. The whole CLI against the real
operator, with a rollout, is ``scenario_kubectl_alm_drives_a_rollout_and_a_retirement`` (tests/scenarios.py).
"""

from __future__ import annotations

import dataclasses
import http.server
import io
import json
import pathlib
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from alm.api import build_crds
from alm.cli import kubectl, kubectl_commands
from alm.core import auditchain, auditstorage
from alm.kube.api import Kube
from alm.sandbox.apiserverthread import ApiServerThread
from tests import scenarios

USER = "alice@example.com"


@dataclasses.dataclass
class Result:
    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)


@pytest.fixture(scope="module")
def server() -> Iterator[ApiServerThread]:
    with ApiServerThread() as srv:
        for crd in build_crds():
            srv.call(lambda crd=crd: srv.emulator.install_crd(crd))
        yield srv


class Cli:
    """One namespace on the server, a kubeconfig whose context points at it, and ``run``."""

    def __init__(self, server: ApiServerThread, tmp: pathlib.Path, capsys: pytest.CaptureFixture[str]) -> None:
        self.server = server
        self.namespace = scenarios.unique("kubectl")
        self.kube = Kube(server.api_client(), field_manager="alm-test-user")
        self.capsys = capsys
        config = server.kubeconfig()
        config["users"][0]["name"] = USER
        config["contexts"][0]["context"].update(user=USER, namespace=self.namespace)
        self.kubeconfig = tmp / "kubeconfig"
        self.kubeconfig.write_text(yaml.safe_dump(config))

    def run(self, *args: str) -> Result:
        self.capsys.readouterr()
        out = io.StringIO()
        try:
            code = kubectl.main(["--kubeconfig", str(self.kubeconfig), *args], stream=out)
        except SystemExit as exc:  # argparse: usage errors
            code = int(exc.code or 0)
        return Result(code, out.getvalue(), self.capsys.readouterr().err)

    def create(self, obj: dict[str, Any], status: dict[str, Any] | None = None) -> dict[str, Any]:
        obj["metadata"]["namespace"] = self.namespace
        created = scenarios.create(self, obj)  # type: ignore[arg-type]
        if status is not None:
            self.set_status(obj["kind"], obj["metadata"]["name"], status)
        return created

    def set_status(self, kind: str, name: str, status: dict[str, Any]) -> None:
        self.kube.merge_patch(kind, self.namespace, name, {"status": status}, subresource="status")

    def get(self, kind: str, name: str) -> dict[str, Any]:
        found = self.kube.get(kind, self.namespace, name)
        assert found is not None
        return found


@pytest.fixture
def cli(server: ApiServerThread, tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]) -> Cli:
    return Cli(server, tmp_path, capsys)


# --- objects --------------------------------------------------------------------------------

TODAY = "2026-01-13"  # the CLI's "today", pinned: a run across midnight UTC must not see two days


@pytest.fixture(autouse=True)
def _today(monkeypatch: pytest.MonkeyPatch) -> None:
    """``list`` and ``budget`` count the spend of status.cost only when its day is today (UTC)."""
    monkeypatch.setattr(kubectl_commands, "_today", lambda: TODAY)

HISTORY = [
    {"version": "bot-v1", "promotedAt": "2026-01-10T09:00:00Z", "rollout": "bot-bot-v1", "result": "Succeeded"},
    {"version": "bot-v2", "promotedAt": "2026-01-12T09:00:00Z", "rollout": "bot-bot-v2", "result": "Succeeded"},
]


def agent_status(**extra: Any) -> dict[str, Any]:
    status: dict[str, Any] = {
        "phase": "Progressing", "stableVersion": "bot-v2", "canaryVersion": "bot-v3", "canaryWeight": 20,
        "observedGeneration": 1,
        "conditions": [{"type": "Ready", "status": "True", "reason": "Available", "message": "2/2 ready",
                        "lastTransitionTime": "2026-01-12T09:00:00Z"}],
        "kpis": {"bot-v2": {"successRate": 0.97, "latencySeconds": 1.25, "observedAt": "2026-01-12T10:00:00Z"}},
        "cost": {"day": TODAY, "tokens": 12000, "usd": 1.5},
        "history": HISTORY,
    }
    status.update(extra)
    return status


def canary_rollout(name: str = "bot-bot-v3", agent: str = "bot") -> dict[str, Any]:
    steps = [{"setWeight": 20}, {"analysis": {"duration": "5m"}}, {"approval": {"message": "ship it?"}},
             {"setWeight": 100}]
    return {"apiVersion": "alm.dev/v1alpha1", "kind": "AgentRollout", "metadata": {"name": name},
            "spec": {"agentRef": {"name": agent}, "targetVersion": "bot-v3", "fromVersion": "bot-v2",
                     "strategy": {"canary": {"steps": steps}}}}


AWAITING = {
    "phase": "AwaitingApproval", "currentStep": 2, "weight": 20, "message": "waiting for approval",
    "startedAt": "2026-01-13T09:00:00Z",
    "analysisRuns": [{"step": 1, "startedAt": "2026-01-13T09:01:00Z", "verdict": "Successful", "measurements": [
        {"kpi": "successRate", "value": 0.98, "threshold": 0.95, "verdict": "Successful",
         "measuredAt": "2026-01-13T09:02:00Z"},
        {"kpi": "latencySeconds", "value": 1.1, "threshold": 2.0, "verdict": "Successful",
         "measuredAt": "2026-01-13T09:02:00Z"}]}],
}


def setup_agent(cli: Cli, *, rollout: bool = True, **status: Any) -> None:
    cli.create(scenarios.agent_version(cli.namespace, "bot-v1", tools=False))
    cli.create(scenarios.agent_version(cli.namespace, "bot-v2", tools=False))
    cli.create(scenarios.agent_version(cli.namespace, "bot-v3", tools=False))
    cli.create(scenarios.agent(cli.namespace, version="bot-v3",
                               budget={"tokensPerDay": 100000, "usdPerDay": 2.0, "onExceeded": "suspend"}),
               agent_status(**status))
    if rollout:
        cli.create(canary_rollout(), AWAITING)


# --- read commands --------------------------------------------------------------------------

def test_version(cli: Cli) -> None:
    result = cli.run("version")
    assert result.code == 0 and result.out.startswith("kubectl-alm ")


def test_list(cli: Cli) -> None:
    setup_agent(cli, rollout=False)
    cli.create(scenarios.agent(cli.namespace, name="other", version="bot-v1"), {"phase": "Available"})
    result = cli.run("list")
    assert result.code == 0, result.err
    header, bot, other = result.out.splitlines()
    assert header.split() == ["NAME", "VERSION", "STABLE", "CANARY", "WEIGHT", "PHASE", "SUCCESS", "LATENCY",
                              "COST", "TODAY"]
    assert bot.split() == ["bot", "bot-v3", "bot-v2", "bot-v3", "20%", "Progressing", "97.0%", "1.25s", "p95",
                           "$1.50"]
    assert other.split()[:2] == ["other", "bot-v1"] and "Available" in other
    data = cli.run("list", "-o", "json").json()
    assert [row["name"] for row in data["items"]] == ["bot", "other"]
    assert data["items"][0]["costToday"] == {"day": TODAY, "tokens": 12000, "usd": 1.5}
    assert yaml.safe_load(cli.run("list", "-o", "yaml").out)["items"][0]["canaryWeight"] == 20


def test_list_uses_namespace_flag_over_the_context(cli: Cli) -> None:
    setup_agent(cli, rollout=False)
    result = cli.run("list", "-n", "somewhere-else")
    assert result.code == 0 and result.out == "No agents found.\n"
    assert "bot" in cli.run("-n", cli.namespace, "list").out


def test_status_shows_the_active_rollout(cli: Cli) -> None:
    setup_agent(cli)
    # A finished older rollout of the same agent and an active one of another agent are not shown.
    cli.create(canary_rollout("bot-bot-v2"), {"phase": "Succeeded", "finishedAt": "2026-01-12T09:00:00Z"})
    cli.create(canary_rollout("x-rollout", agent="other"), {"phase": "Progressing"})
    result = cli.run("status", "bot")
    assert result.code == 0, result.err
    out = result.out
    assert "Phase:      Progressing" in out and "Rollout:    bot-bot-v3 (canary)" in out
    assert "[████░░░░░░░░░░░░░░░░]  20% canary" in out
    assert "▶  2     approval: ship it?" in out
    assert "✔  0     setWeight 20%" in out
    assert "Analysis (step 1): Successful" in out
    assert "successRate" in out and "0.98" in out and "0.95" in out
    assert "waiting at step 2 (approval: ship it?): run 'kubectl alm approve bot'" in out
    data = cli.run("status", "bot", "-o", "json").json()
    assert data["rollout"]["name"] == "bot-bot-v3" and data["rollout"]["awaitingApproval"] is True
    assert data["agent"]["conditions"][0]["type"] == "Ready"


def test_status_without_an_active_rollout(cli: Cli) -> None:
    setup_agent(cli, rollout=False)
    cli.create(canary_rollout("bot-bot-v2"), {"phase": "Succeeded"})
    result = cli.run("status", "bot")
    assert result.code == 0
    assert "Rollout:    none active" in result.out and "Last:       bot-bot-v2 -> bot-v3: Succeeded" in result.out
    assert cli.run("status", "bot", "-o", "json").json()["rollout"] is None


@pytest.mark.parametrize(("final", "code"), [("Succeeded", 0), ("RolledBack", 1)])
def test_status_watch_follows_the_rollout_until_it_finishes(cli: Cli, final: str, code: int) -> None:
    setup_agent(cli)
    cli.set_status("AgentRollout", "bot-bot-v3", {"phase": "Progressing", "currentStep": 3, "weight": 60})

    def finish() -> None:
        time.sleep(1.5)
        cli.set_status("AgentRollout", "bot-bot-v3", {"phase": final, "weight": 100 if final == "Succeeded" else 0,
                                                      "finishedAt": "2026-01-13T10:00:00Z"})

    writer = threading.Thread(target=finish)
    writer.start()
    started = time.monotonic()
    result = cli.run("status", "bot", "--watch")
    writer.join()
    assert result.code == code, result.err
    assert 1.0 < time.monotonic() - started < 10
    assert result.out.count("Rollout:    bot-bot-v3") >= 2  # refreshed at least once
    assert "Phase:      Progressing" in result.out and f"Phase:      {final}" in result.out


def test_history(cli: Cli) -> None:
    setup_agent(cli, rollout=False)
    result = cli.run("history", "bot")
    assert result.code == 0
    lines = result.out.splitlines()
    assert lines[0].split() == ["#", "VERSION", "RESULT", "AT", "ROLLOUT"]
    assert lines[2].split() == ["1", "bot-v2", "Succeeded", "2026-01-12T09:00:00Z", "bot-bot-v2"]
    assert cli.run("history", "bot", "-o", "json").json() == {"items": HISTORY}


def test_budget(cli: Cli) -> None:
    exceeded = {"type": "BudgetExceeded", "status": "False", "reason": "WithinBudget", "message": "75% used",
                "lastTransitionTime": "2026-01-13T00:00:00Z"}
    setup_agent(cli, rollout=False, conditions=[exceeded])
    result = cli.run("budget", "bot")
    assert result.code == 0
    assert "On exceed:  suspend" in result.out
    usd = next(line for line in result.out.splitlines() if line.startswith("usd "))
    assert usd.split() == ["usd", "$1.50", "$2.00", "[███████████████░░░░░]", "75%"]
    assert "BudgetExceeded: False (WithinBudget): 75% used" in result.out
    data = cli.run("budget", "bot", "-o", "json").json()
    assert data["usd"] == {"used": 1.5, "limit": 2.0} and data["tokens"] == {"used": 12000, "limit": 100000}


# --- rollout controls -----------------------------------------------------------------------

def annotations(cli: Cli, name: str = "bot-bot-v3") -> dict[str, str]:
    return dict(cli.get("AgentRollout", name)["metadata"].get("annotations") or {})


@pytest.mark.parametrize(("args", "expected"), [
    (["promote"], {"alm.dev/promote": ""}),
    (["promote", "--full"], {"alm.dev/promote": "full"}),
    (["abort", "--reason", "bad answers"], {"alm.dev/abort": "bad answers"}),
    (["pause"], {"alm.dev/pause": ""}),
    (["resume"], {"alm.dev/resume": ""}),
    (["approve"], {"alm.dev/approve": "2", "alm.dev/approved-by": USER}),
])
def test_controls_annotate_the_active_rollout(cli: Cli, args: list[str], expected: dict[str, str]) -> None:
    setup_agent(cli)
    cli.create(canary_rollout("bot-bot-v2"), {"phase": "Succeeded"})
    before, rollout_before = cli.get("Agent", "bot"), cli.get("AgentRollout", "bot-bot-v3")
    result = cli.run(args[0], "bot", *args[1:])
    assert result.code == 0, result.err
    assert f"AgentRollout bot-bot-v3 (AwaitingApproval): {args[0]}" in result.out
    assert annotations(cli) == expected
    assert annotations(cli, "bot-bot-v2") == {}
    assert cli.get("Agent", "bot")["spec"] == before["spec"]  # no spec is written
    assert cli.get("AgentRollout", "bot-bot-v3")["spec"] == rollout_before["spec"]


def test_approve_before_the_approval_step_leaves_the_step_open(cli: Cli) -> None:
    setup_agent(cli)
    cli.set_status("AgentRollout", "bot-bot-v3", {"phase": "Progressing", "currentStep": 1})
    result = cli.run("approve", "bot", "-o", "json")
    assert result.code == 0
    assert annotations(cli) == {"alm.dev/approve": "", "alm.dev/approved-by": USER}
    assert result.json()["annotations"]["alm.dev/approved-by"] == USER


def test_controls_without_an_active_rollout_fail(cli: Cli) -> None:
    setup_agent(cli, rollout=False)
    cli.create(canary_rollout("bot-bot-v2"), {"phase": "Aborted"})
    for command in ("promote", "abort", "pause", "resume", "approve"):
        result = cli.run(command, "bot")
        assert result.code == 1
        assert "error: Agent 'bot' has no active rollout" in result.err
    assert annotations(cli, "bot-bot-v2") == {}


# --- rollback -------------------------------------------------------------------------------

def test_rollback_to_the_previous_version(cli: Cli) -> None:
    setup_agent(cli, rollout=False)
    result = cli.run("rollback", "bot")
    assert result.code == 0, result.err
    assert "spec.version bot-v3 -> bot-v2" in result.out and "change the version in Git instead" in result.out
    assert cli.get("Agent", "bot")["spec"]["version"] == "bot-v2"


def test_rollback_to_a_named_version(cli: Cli) -> None:
    setup_agent(cli, rollout=False)
    result = cli.run("rollback", "bot", "--to", "bot-v1", "-o", "json")
    assert result.code == 0 and result.json()["to"] == "bot-v1"
    assert "Git" in result.err  # the hint still reaches the user, outside the data
    assert cli.get("Agent", "bot")["spec"]["version"] == "bot-v1"
    missing = cli.run("rollback", "bot", "--to", "bot-v9")
    assert missing.code == 3 and "AgentVersion 'bot-v9' not found" in missing.err
    same = cli.run("rollback", "bot", "--to", "bot-v1")
    assert same.code == 1 and "already at version 'bot-v1'" in same.err


def test_rollback_without_history_asks_for_a_version(cli: Cli) -> None:
    setup_agent(cli, rollout=False, history=[])
    result = cli.run("rollback", "bot")
    assert result.code == 1 and "--to VERSION" in result.err


# --- retire ---------------------------------------------------------------------------------

def test_retire_creates_the_retirement(cli: Cli) -> None:
    setup_agent(cli, rollout=False)
    result = cli.run("retire", "bot", "--reason", "replaced by bot-2", "--grace", "5")
    assert result.code == 0, result.err
    assert "AgentRetirement bot-retirement created" in result.out
    retirement = cli.get("AgentRetirement", "bot-retirement")
    assert retirement["spec"]["agentRef"] == {"name": "bot"}
    assert retirement["spec"]["reason"] == "replaced by bot-2"
    assert retirement["spec"]["drain"]["gracePeriodSeconds"] == 5
    again = cli.run("retire", "bot", "--reason", "again")
    assert again.code == 0 and "already exists" in again.out
    assert cli.run("retire", "bot").code == 2  # --reason is required


SHA = "ab" * 32


@pytest.mark.parametrize(("final", "code"), [("Retired", 0), ("Failed", 1)])
def test_retire_wait_prints_the_receipts(cli: Cli, final: str, code: int) -> None:
    """A stand-in for the retirement controller writes the status; the CLI waits and prints it."""
    setup_agent(cli, rollout=False)

    def controller() -> None:
        deadline = time.monotonic() + 10
        while cli.kube.get("AgentRetirement", cli.namespace, "bot-retirement") is None:
            assert time.monotonic() < deadline
            time.sleep(0.1)
        cli.set_status("AgentRetirement", "bot-retirement", {"phase": "Revoking"})
        time.sleep(1.2)
        status: dict[str, Any] = {"phase": final, "message": "done" if final == "Retired" else "webhook gave up",
                                  "revoked": [{"kind": "Secret", "name": "bot-credentials-1a2b", "result": "Revoked",
                                               "revokedAt": "2026-01-13T10:00:01Z"},
                                              {"kind": "ServiceAccount", "name": "bot", "result": "Revoked",
                                               "revokedAt": "2026-01-13T10:00:02Z"}]}
        if final == "Retired":
            status["archive"] = {"location": "configmap/bot-archive", "sha256": SHA, "sizeBytes": 2048, "parts": 1}
        cli.set_status("AgentRetirement", "bot-retirement", status)

    writer = threading.Thread(target=controller)
    writer.start()
    result = cli.run("retire", "bot", "--reason", "end of life", "--wait")
    writer.join()
    assert result.code == code, result.err
    assert f"Phase:      {final}" in result.out
    assert "Secret          bot-credentials-1a2b  Revoked" in result.out
    if final == "Retired":
        assert f"SHA-256:    {SHA}" in result.out


async def test_retire_wait_with_the_real_operator(server: ApiServerThread, tmp_path: pathlib.Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    import asyncio

    from alm.sandbox.workloads import DeploymentController
    from tests.integration.operator_harness import EmulatedCluster

    controller = DeploymentController(server.emulator.store)
    server.call(controller.start)
    cluster = EmulatedCluster(server, scenarios.unique("kubectl-op"))
    await cluster.start_operator()
    try:
        await scenarios.deploy(cluster)
        cli = Cli(server, tmp_path, capsys)
        cli.namespace = cluster.namespace
        config = yaml.safe_load(cli.kubeconfig.read_text())
        config["contexts"][0]["context"]["namespace"] = cluster.namespace
        cli.kubeconfig.write_text(yaml.safe_dump(config))
        result = await asyncio.to_thread(cli.run, "retire", "bot", "--reason", "test", "--grace", "0", "--wait",
                                         "--timeout", "60")
        assert result.code == 0, result.err
        assert "Revocation receipts:" in result.out and "SHA-256:" in result.out
    finally:
        await cluster.stop_operator()
        server.call(controller.stop)


# --- audit ----------------------------------------------------------------------------------

def write_audit(cli: Cli, agent: str = "bot", n: int = 3) -> list[dict[str, Any]]:
    entries: list[dict[str, Any]] = []
    for i in range(n):
        entries.append(dict(auditchain.append(entries, at=f"2026-01-13T10:00:0{i}Z",
                                              actor="alm-operator" if i else USER,
                                              action="created" if i == 0 else "rolloutStep", subject=f"Agent/{agent}",
                                              details={"step": i})))
    for cm in auditstorage.plan_storage(agent, cli.namespace, [], entries):
        cli.kube.request("POST", f"/api/v1/namespaces/{cli.namespace}/configmaps", body=cm)
    cli.set_status("Agent", agent, {"auditHead": auditchain.head(entries)})
    return entries


def test_audit_lists_and_verifies(cli: Cli) -> None:
    setup_agent(cli, rollout=False)
    entries = write_audit(cli)
    result = cli.run("audit", "bot")
    assert result.code == 0
    assert result.out.splitlines()[0].split() == ["SEQ", "AT", "ACTOR", "ACTION", "SUBJECT", "DETAILS"]
    assert "rolloutStep" in result.out and '{"step":2}' in result.out
    verified = cli.run("audit", "bot", "--verify")
    assert verified.code == 0 and "Verified: intact: 3 entries" in verified.out
    data = cli.run("audit", "bot", "--verify", "-o", "json").json()
    assert data["verdict"]["ok"] is True and [e["hash"] for e in data["entries"]] == [e["hash"] for e in entries]


def test_audit_verify_detects_tampering(cli: Cli) -> None:
    setup_agent(cli, rollout=False)
    write_audit(cli)
    name = auditstorage.segment_name("bot", 0)
    cm = cli.get("ConfigMap", name)
    cm["data"][auditstorage.DATA_KEY] = cm["data"][auditstorage.DATA_KEY].replace('"step":1', '"step":7')
    cli.kube.request("PUT", f"/api/v1/namespaces/{cli.namespace}/configmaps/{name}", body=cm)
    result = cli.run("audit", "bot", "--verify")
    assert result.code == 1
    assert "TAMPERED (Edited, seq 1): entry 1 was changed" in result.out
    assert cli.run("audit", "bot").code == 0  # without --verify only the entries are shown


def test_audit_detects_a_cut_off_log(cli: Cli) -> None:
    setup_agent(cli, rollout=False)
    entries = write_audit(cli)
    cli.set_status("Agent", "bot", {"auditHead": "f" * 64})
    result = cli.run("audit", "bot", "--verify", "-o", "json")
    assert result.code == 1 and result.json()["verdict"]["kind"] == "Truncated"
    assert len(result.json()["entries"]) == len(entries)


# --- errors and exit codes ------------------------------------------------------------------

@pytest.mark.parametrize("args", [["status", "ghost"], ["history", "ghost"], ["budget", "ghost"],
                                  ["promote", "ghost"], ["rollback", "ghost"], ["audit", "ghost"],
                                  ["retire", "ghost", "--reason", "x"]])
def test_missing_agent_exits_3(cli: Cli, args: list[str]) -> None:
    result = cli.run(*args)
    assert result.code == 3
    assert "not found in namespace" in result.err and "ghost" in result.err


def test_usage_errors_exit_2(cli: Cli) -> None:
    assert cli.run("status").code == 2
    assert cli.run("frobnicate").code == 2
    assert cli.run("list", "-o", "xml").code == 2
    bad = cli.run("--context", "nope", "list")
    assert bad.code == 2 and "context 'nope' is not in the kubeconfig" in bad.err


def test_missing_crds_exit_3(tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]) -> None:
    with ApiServerThread() as bare:
        cli = Cli(bare, tmp_path, capsys)
        for args in (["list"], ["status", "bot"], ["audit", "bot"]):
            result = cli.run(*args)
            assert result.code == 3, args
            assert "the alm CRDs are not installed in this cluster: kubectl apply -k manifests/" in result.err


class _Forbidding(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = json.dumps({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "Forbidden",
                           "code": 403, "message": 'agents.alm.dev is forbidden: User "alice@example.com" cannot '
                                                   'list resource "agents" in API group "alm.dev"'}).encode()
        self.send_response(403)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_: Any) -> None:
        pass


def test_forbidden_exits_4_and_names_verb_and_resource(tmp_path: pathlib.Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Forbidding)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        config = {"apiVersion": "v1", "kind": "Config", "current-context": "c",
                  "clusters": [{"name": "c", "cluster": {"server": f"http://127.0.0.1:{httpd.server_address[1]}"}}],
                  "users": [{"name": "u", "user": {}}],
                  "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u", "namespace": "team"}}]}
        path = tmp_path / "forbidden-kubeconfig"
        path.write_text(yaml.safe_dump(config))
        out = io.StringIO()
        capsys.readouterr()
        code = kubectl.main(["--kubeconfig", str(path), "list"], stream=out)
        err = capsys.readouterr().err
        assert code == 4
        assert "forbidden: you may not list agents.alm.dev in namespace 'team'" in err
        assert 'cannot list resource "agents"' in err
    finally:
        httpd.shutdown()
        httpd.server_close()
