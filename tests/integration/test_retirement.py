"""Retirement, the Agent finalizer and the audit trail: the real operator against the emulated API server.

The revocation webhook is a real HTTP server on 127.0.0.1 (``webhook_server.py``) that checks
the HMAC signature of every call. The shared scenarios (``scenario_retirement``,
``scenario_deletion_revokes_credentials``) run in test_agents.py; here are the stories that need
the webhook server or control over the operator's process.
"""

from __future__ import annotations

import asyncio
import base64
import datetime
import hashlib
import json
import logging
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from alm.core import archive, auditchain, retirement, retirementtypes, revocation
from alm.core.auditactions import AuditAction, AuditIntent
from alm.handlers import auditing
from alm.handlers.context import Context
from alm.kube import webhook
from alm.kube.api import Kube
from alm.metrics import operator as metrics
from alm.sandbox.apiserverthread import ApiServerThread
from alm.sandbox.jobs import JobController
from tests import scenarios
from tests.integration.operator_harness import EmulatedCluster
from tests.integration.webhook_server import WebhookServer

HMAC_KEY = b"whsec-" + b"Zq8xY2u9Lk3pV7tR1mN4bQ6w"  # a value that must never leave the Secret
RETIREMENT = "bot-retirement"






@pytest.fixture
def hook() -> Iterator[WebhookServer]:
    with WebhookServer(HMAC_KEY) as server:
        yield server


def hmac_secret(ns: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "revocation-hmac", "namespace": ns},
            "type": "Opaque", "data": {"key": base64.b64encode(HMAC_KEY).decode()}}


def with_webhook(hook: WebhookServer, max_retries: int = 5) -> dict[str, Any]:
    return {"webhook": {"url": hook.url, "hmacSecretRef": {"name": "revocation-hmac", "key": "key"},
                        "timeoutSeconds": 5, "maxRetries": max_retries}}


async def live_agent(cluster: EmulatedCluster) -> dict[tuple[str, str], dict[str, Any]]:
    ns = cluster.namespace
    scenarios.create(cluster, scenarios.tool_secret(ns))
    scenarios.create(cluster, hmac_secret(ns))
    scenarios.create(cluster, scenarios.agent_version(ns))
    scenarios.create(cluster, scenarios.agent(ns, permissions=scenarios.PERMISSIONS))
    await scenarios.wait_phase(cluster, "bot", "Available")
    issued = scenarios.credentials(cluster)
    assert {kind for kind, _ in issued} == set(scenarios.CREDENTIAL_KINDS)
    return issued


def status_of(cluster: EmulatedCluster, name: str = RETIREMENT) -> dict[str, Any]:
    return (scenarios.get(cluster, "AgentRetirement", name) or {}).get("status") or {}


def revoked_map(status: dict[str, Any]) -> dict[tuple[str, str], str]:
    return {(r["kind"], r["name"]): r["result"] for r in status.get("revoked") or []}


# --- the full story -------------------------------------------------------------------------------------


async def test_full_retirement_with_a_signed_webhook(cluster: EmulatedCluster, hook: WebhookServer) -> None:
    ns = cluster.namespace
    issued = await live_agent(cluster)
    retirement = scenarios.agent_retirement(ns, grace=1, revoke=with_webhook(hook))
    created = scenarios.create(cluster, retirement)
    done = await scenarios.wait_retirement(cluster, RETIREMENT, "Retired")
    status = done["status"]

    # Every credential revoked, with its time; the webhook too, once, with a valid signature.
    assert revoked_map(status) == {**{key: "Revoked" for key in issued}, ("Webhook", "127.0.0.1"): "Revoked"}
    assert scenarios.credentials(cluster) == {}
    transitions = {t["phase"]: t["at"] for t in status["transitions"]}
    assert list(transitions) == ["Pending", "Draining", "Revoking", "Archiving", "Retired"]
    assert all(transitions["Revoking"] <= r["revokedAt"] for r in status["revoked"])
    (call,) = hook.calls
    assert call.signature_ok and call.answered == 200 and call.attempt == 1
    assert call.delivery == revocation.delivery_id(ns, RETIREMENT, created["metadata"]["uid"])
    body = call.json
    assert body["kind"] == "RevocationRequest" and body["agent"] == "bot" and body["retirement"] == RETIREMENT
    assert {(c["kind"], c["name"]) for c in body["credentials"]} == set(issued)
    assert status["attempts"]["webhook"] == {"count": 1, "lastAt": status["attempts"]["webhook"]["lastAt"],
                                             "lastResult": "HTTP 200", "retryable": False}

    # Drained first: no Service, no replicas.
    assert scenarios.children(cluster, "Service") == []
    assert [d["spec"]["replicas"] for d in scenarios.children(cluster, "Deployment")] == [0]

    # The archive: checksum of its content, everything in it, owned by nobody.
    data = scenarios.read_archive(cluster, status["archive"]["location"])
    assert hashlib.sha256(data).hexdigest() == status["archive"]["sha256"]
    bundle = json.loads(data)
    assert bundle["retirement"]["name"] == RETIREMENT and bundle["agent"]["spec"]["version"] == "bot-v1"
    assert [v["name"] for v in bundle["versions"]] == ["bot-v1"] and bundle["audit"]["intact"]
    assert {r["kind"] for r in bundle["retirement"]["revoked"]} >= set(scenarios.CREDENTIAL_KINDS)
    archived = scenarios.get(cluster, "ConfigMap", status["archive"]["location"].split("/", 1)[1])
    assert archived is not None and archived.get("immutable") is True
    assert not archived["metadata"].get("ownerReferences")

    # The Agent: Retired, its audit log intact up to the head in its status, mirrored as Events.
    bot = await cluster.wait_for(lambda: (lambda a: a if a and a["status"].get("phase") == "Retired" else None)(
        scenarios.get(cluster, "Agent", "bot")), what="the Agent to be Retired")
    entries = scenarios.audit_log(cluster)
    assert auditchain.verify(entries, head=bot["status"]["auditHead"]).ok
    by_action = [e["action"] for e in entries]
    assert by_action[:2] == ["retirementDraining", "retirementRevoking"]
    assert by_action[-2:] == ["retirementArchiving", "retired"]
    assert by_action.count("revocationWebhookCalled") == 1
    revoked = {(e["details"]["kind"], e["details"]["name"]) for e in entries if e["action"] == "credentialRevoked"}
    assert revoked == {*issued, ("Webhook", "127.0.0.1")}
    events = await cluster.wait_for(lambda: (lambda es: es if len(es) >= len(entries) else None)(
        [e for e in cluster.kube.list("Event", ns) if str(e.get("reason", "")).startswith("Audit")]),
        what="an Event for every audit entry")
    assert any(entries[-1]["hash"] in e["message"] for e in events)

    # Quiet once retired, and never provisioned again. The last pass's trailing writes (status, Events)
    # may land late on a loaded machine: wait until writes stop for 1.5 s (more than a resync; an
    # operator writing at every resync never gets there), then nothing may come for 2 s.
    await scenarios.settled_writes(cluster)
    mark = cluster.server.emulator.mark()
    await asyncio.sleep(2.0)
    assert cluster.operator_writes(mark) == 0, "the operator kept writing after the retirement finished"
    await scenarios.assert_never_provisioned(cluster)
    assert (scenarios.condition(scenarios.get(cluster, "Agent", "bot"), "Retired") or {}).get("status") == "True"


async def test_drain_waits_the_grace_period_before_revoking(cluster: EmulatedCluster) -> None:
    await live_agent(cluster)
    scenarios.create(cluster, scenarios.agent_retirement(cluster.namespace, grace=2))
    draining = await scenarios.wait_retirement(cluster, RETIREMENT, "Draining")
    assert scenarios.children(cluster, "Service") == [], "traffic stops first"
    assert len(scenarios.credentials(cluster)) == 4, "credentials stay while running tasks finish"
    done = await scenarios.wait_retirement(cluster, RETIREMENT, "Retired", timeout=30)
    at = {t["phase"]: datetime.datetime.fromisoformat(t["at"].replace("Z", "+00:00"))
          for t in done["status"]["transitions"]}
    assert (at["Revoking"] - at["Draining"]).total_seconds() >= 2
    assert draining["status"]["message"].startswith("Draining")


# --- the webhook failing --------------------------------------------------------------------------------


async def test_webhook_failing_then_recovering(cluster: EmulatedCluster, hook: WebhookServer) -> None:
    await live_agent(cluster)
    hook.fail_next(2, status=503)
    scenarios.create(cluster, scenarios.agent_retirement(cluster.namespace, revoke=with_webhook(hook)))
    seen: list[dict[str, Any]] = []

    def attempts() -> dict[str, Any] | None:
        webhook = (status_of(cluster).get("attempts") or {}).get("webhook")
        if webhook and webhook not in seen:
            seen.append(webhook)
        return status_of(cluster) if status_of(cluster).get("phase") == "Retired" else None

    status = await cluster.wait_for(attempts, timeout=30, what="the retirement to finish")
    assert [c.answered for c in hook.calls] == [503, 503, 200]
    assert [c.attempt for c in hook.calls] == [1, 2, 3]
    assert len({c.delivery for c in hook.calls}) == 1 and all(c.signature_ok for c in hook.calls)
    # Backoff between attempts: 1 s after the first failure, 2 s after the second. Never earlier; a
    # loaded machine adds the passes' own time, so the upper bounds are the next step of the doubling
    # (2 s, 4 s): a schedule off by one step (or not doubling) still fails.
    gaps = [b.at - a.at for a, b in zip(hook.calls, hook.calls[1:], strict=False)]
    assert 1.0 <= gaps[0] < 2.0 and 2.0 <= gaps[1] < 4.0, gaps
    assert [(a["count"], a["lastResult"], a["retryable"]) for a in seen if a["count"] < 3] == [
        (1, "HTTP 503", True), (2, "HTTP 503", True)]
    assert status["attempts"]["webhook"]["count"] == 3 and status["attempts"]["webhook"]["lastResult"] == "HTTP 200"
    assert revoked_map(status)[("Webhook", "127.0.0.1")] == "Revoked"
    def retrying() -> list[dict[str, Any]] | None:  # kopf posts Events in the background
        found = [e for e in cluster.kube.list("Event", cluster.namespace) if e.get("reason") == "WebhookRetrying"]
        return found if len(found) >= 2 else None

    warnings = await cluster.wait_for(retrying, timeout=10, what="two WebhookRetrying Events")
    assert len(warnings) == 2 and all(e["type"] == "Warning" for e in warnings)


async def test_a_webhook_that_gives_up_fails_then_a_human_retries(
    cluster: EmulatedCluster, hook: WebhookServer
) -> None:
    issued = await live_agent(cluster)
    hook.fail_next(1, status=500)
    scenarios.create(cluster, scenarios.agent_retirement(cluster.namespace, revoke=with_webhook(hook, 0)))
    failed = await scenarios.wait_retirement(cluster, RETIREMENT, "Failed")
    assert scenarios.credentials(cluster) == {}, "a failing webhook never keeps Kubernetes credentials alive"
    assert revoked_map(failed["status"]) == {**{k: "Revoked" for k in issued}, ("Webhook", "127.0.0.1"): "Failed"}
    assert "alm.dev/retry" in failed["status"]["message"]

    cluster.kube.merge_patch("AgentRetirement", cluster.namespace, RETIREMENT,
                             {"metadata": {"annotations": {"alm.dev/retry": "please"}}})
    done = await scenarios.wait_retirement(cluster, RETIREMENT, "Retired")
    assert "alm.dev/retry" not in (done["metadata"].get("annotations") or {})
    assert [c.answered for c in hook.calls] == [500, 200]
    assert [e["action"] for e in scenarios.audit_log(cluster)].count("manualOverride") == 1


# --- the operator stopping midway -----------------------------------------------------------------------


async def test_operator_killed_between_revoking_and_archiving_resumes(
    cluster: EmulatedCluster, hook: WebhookServer
) -> None:
    issued = await live_agent(cluster)
    hook.hold()  # the webhook call hangs: the retirement is in Revoking, its Kubernetes credentials gone
    scenarios.create(cluster, scenarios.agent_retirement(cluster.namespace, revoke=with_webhook(hook)))
    assert await asyncio.to_thread(hook.wait_held), "the webhook was never called"
    before = status_of(cluster)
    assert before["phase"] == "Revoking"
    assert {k: v for k, v in revoked_map(before).items() if k[0] != "Webhook"} == {k: "Revoked" for k in issued}

    await cluster.stop_operator()  # killed while the call is in flight: no status written for it
    hook.release()
    assert status_of(cluster) == before, "a stopped operator wrote nothing"
    assert "archive" not in before
    await cluster.start_operator()

    done = await scenarios.wait_retirement(cluster, RETIREMENT, "Retired")
    status = done["status"]
    assert [t["phase"] for t in status["transitions"]] == ["Pending", "Draining", "Revoking", "Archiving", "Retired"]
    kept = {(r["kind"], r["name"]): r["revokedAt"] for r in before["revoked"] if r["kind"] != "Webhook"}
    after = {(r["kind"], r["name"]): r["revokedAt"] for r in status["revoked"]}
    assert {key: after[key] for key in kept} == kept, "revocation times were rewritten"
    assert len({c.delivery for c in hook.calls}) == 1, "the receiver can deduplicate the repeated call"
    assert len(hook.revoked) == 1
    entries = scenarios.audit_log(cluster)
    assert auditchain.verify(entries).ok
    for action in ("retirementDraining", "retirementRevoking", "retirementArchiving", "retired"):
        assert [e["action"] for e in entries].count(action) == 1
    data = scenarios.read_archive(cluster, status["archive"]["location"])
    assert hashlib.sha256(data).hexdigest() == status["archive"]["sha256"]


# --- the archive on a PersistentVolumeClaim, copied by a Job ---------------------------------------------


def revocations(kind: str) -> float:
    return metrics.REGISTRY.get_sample_value("alm_operator_revocation_seconds_count", {"kind": kind}) or 0.0


async def test_pvc_archive_is_copied_by_a_job_and_revocations_are_timed(
    cluster: EmulatedCluster, jobs: JobController
) -> None:
    ns = cluster.namespace
    issued = await live_agent(cluster)
    before = {kind: revocations(kind) for kind in scenarios.CREDENTIAL_KINDS}
    scenarios.create(cluster, scenarios.agent_retirement(ns, archive={"to": "pvc", "claimName": "agent-archive"}))
    done = await scenarios.wait_retirement(cluster, RETIREMENT, "Retired")
    status = done["status"]
    sha = status["archive"]["sha256"]
    assert status["archive"]["location"] == f"pvc/agent-archive/bot/{sha}"
    assert scenarios.credentials(cluster) == {}
    assert revoked_map(status) == {key: "Revoked" for key in issued}
    assert (scenarios.condition(done, "Invalid") or {}).get("status") == "False"
    at = {t["phase"]: datetime.datetime.fromisoformat(t["at"].replace("Z", "+00:00")) for t in status["transitions"]}
    assert (at["Retired"] - at["Archiving"]).total_seconds() < retirement.JOB_POLL - 1, "the Job's event, not the poll"

    # The Job: named after the archive, owned by nothing, restricted, mounting the claim and every part.
    job = scenarios.get(cluster, "Job", f"bot-archive-{sha[:10]}")
    assert job is not None and not job["metadata"].get("ownerReferences")
    assert (scenarios.condition(job, "Complete") or {}).get("status") == "True"
    pod = job["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["image"] == "busybox:1.36" and "sha256sum -c" in container["command"][-1]
    assert pod["securityContext"]["runAsNonRoot"] and pod["automountServiceAccountToken"] is False
    assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert container["securityContext"]["capabilities"]["drop"] == ["ALL"]
    assert pod["restartPolicy"] == "Never" and job["spec"]["backoffLimit"] == 0
    assert job["spec"]["activeDeadlineSeconds"] == archive.JOB_DEADLINE_SECONDS
    mounted = {v["name"]: v for v in pod["volumes"]}
    assert mounted["archive"]["persistentVolumeClaim"]["claimName"] == "agent-archive"
    assert {m["name"]: m["mountPath"] for m in container["volumeMounts"]}["archive"] == "/archive"
    staged = cluster.kube.list("ConfigMap", ns, {"alm.dev/agent": "bot", "alm.dev/component": "archive"})
    assert {v["configMap"]["name"] for v in pod["volumes"] if "configMap" in v} == {
        c["metadata"]["name"] for c in staged}
    data = archive.reassemble(staged)
    assert hashlib.sha256(data).hexdigest() == sha
    env = {e["name"]: e["value"] for e in container["env"]}
    assert (env["ALM_AGENT"], env["ALM_SHA256"]) == ("bot", sha)

    # What the (simulated) Job wrote on the claim.
    written = jobs.claims[(ns, "agent-archive")]
    assert written[f"bot/{sha}/archive.json"] == data
    assert written[f"bot/{sha}/archive.json.sha256"] == f"{sha}  archive.json\n".encode()
    assert json.loads(data)["retirement"]["name"] == RETIREMENT

    # Every credential alm deleted was timed once, from the Revoking transition.
    assert {kind: revocations(kind) - before[kind] for kind in scenarios.CREDENTIAL_KINDS} == {
        kind: 1.0 for kind in scenarios.CREDENTIAL_KINDS}
    await scenarios.assert_never_provisioned(cluster)


async def test_a_failing_pvc_job_is_retried_then_fails_with_credentials_revoked(
    cluster: EmulatedCluster, jobs: JobController
) -> None:
    issued = await live_agent(cluster)
    jobs.fail_next(retirement.ARCHIVE_ATTEMPTS, "the claim is full")
    scenarios.create(cluster, scenarios.agent_retirement(
        cluster.namespace, archive={"to": "pvc", "claimName": "agent-archive"}))
    failed = await scenarios.wait_retirement(cluster, RETIREMENT, "Failed", timeout=60)
    status = failed["status"]
    assert scenarios.credentials(cluster) == {}, "an archive failure never keeps a credential alive"
    assert revoked_map(status) == {key: "Revoked" for key in issued}
    tried = status["attempts"]["archive"]
    assert tried["count"] == retirement.ARCHIVE_ATTEMPTS and tried["retryable"] is True
    assert tried["lastResult"].startswith("Job failed: BackoffLimitExceeded (the claim is full)")
    assert len(jobs.runs) == retirement.ARCHIVE_ATTEMPTS
    assert scenarios.get(cluster, "Job", jobs.runs[-1]["metadata"]["name"]) is None, "a failed Job is deleted"
    assert "archive" not in status and "alm.dev/retry" in status["message"]
    assert [t["phase"] for t in status["transitions"]][-2:] == ["Archiving", "Failed"]

    cluster.kube.merge_patch("AgentRetirement", cluster.namespace, RETIREMENT,
                             {"metadata": {"annotations": {"alm.dev/retry": "claim resized"}}})
    done = await scenarios.wait_retirement(cluster, RETIREMENT, "Retired")
    sha = done["status"]["archive"]["sha256"]
    assert done["status"]["archive"]["location"] == f"pvc/agent-archive/bot/{sha}"
    assert hashlib.sha256(jobs.claims[(cluster.namespace, "agent-archive")][f"bot/{sha}/archive.json"]
                          ).hexdigest() == sha


async def test_a_pvc_job_that_never_starts_fails_at_its_deadline_and_is_retried(
    cluster: EmulatedCluster, jobs: JobController
) -> None:
    # A claim that cannot be mounted, an image that cannot be pulled: the pod never starts and the
    # Job would be neither Complete nor Failed. Its activeDeadlineSeconds turns that into an attempt.
    issued = await live_agent(cluster)
    jobs.stall_next(1)
    scenarios.create(cluster, scenarios.agent_retirement(
        cluster.namespace, archive={"to": "pvc", "claimName": "agent-archive", "jobDeadlineSeconds": 1}))
    done = await scenarios.wait_retirement(cluster, RETIREMENT, "Retired", timeout=30)
    status = done["status"]
    assert revoked_map(status) == {key: "Revoked" for key in issued}
    assert status["attempts"]["archive"]["count"] == 2
    stalled, copied = jobs.runs
    assert stalled["spec"]["activeDeadlineSeconds"] == copied["spec"]["activeDeadlineSeconds"] == 1
    now = scenarios.get(cluster, "Job", stalled["metadata"]["name"])  # the retry may reuse the name
    assert now is None or now["metadata"]["uid"] != stalled["metadata"]["uid"], "the Job past its deadline is deleted"
    events = cluster.kube.list("Event", cluster.namespace)
    retrying = [e["message"] for e in events if e.get("reason") == "ArchiveRetrying"]
    assert any("attempt 1: Job failed: DeadlineExceeded" in m for m in retrying), retrying
    sha = status["archive"]["sha256"]
    assert hashlib.sha256(jobs.claims[(cluster.namespace, "agent-archive")][f"bot/{sha}/archive.json"]
                          ).hexdigest() == sha


# --- secrets never leak -----------------------------------------------------------------------------------


def _forms(value: str | bytes) -> list[str]:
    raw = value.encode() if isinstance(value, str) else value
    return [raw.decode(), base64.b64encode(raw).decode()]


async def test_no_credential_value_anywhere_after_a_full_lifecycle(
    cluster: EmulatedCluster, hook: WebhookServer, server: ApiServerThread,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    ns = cluster.namespace
    await live_agent(cluster)
    (secret,) = [obj for (kind, _), obj in scenarios.credentials(cluster).items() if kind == "Secret"]
    token = base64.b64decode(secret["data"]["agent-token"]).decode()
    # A version switch, a retirement with a (once failing) webhook, then the Agent deleted.
    scenarios.create(cluster, scenarios.agent_version(ns, "bot-v2"))
    scenarios.patch_spec(cluster, "Agent", "bot", {"version": "bot-v2"})
    await scenarios.wait_phase(cluster, "bot", "Available")
    hook.fail_next(1)
    scenarios.create(cluster, scenarios.agent_retirement(ns, revoke=with_webhook(hook)))
    done = await scenarios.wait_retirement(cluster, RETIREMENT, "Retired")
    cluster.kube.delete("Agent", ns, "bot")
    await cluster.wait_for(lambda: scenarios.get(cluster, "Agent", "bot") is None or None, what="the Agent to go")

    values = [*_forms(scenarios.TOOL_KEY_VALUE), *_forms(token), *_forms(HMAC_KEY)]
    places: dict[str, str] = {
        "events": json.dumps(cluster.kube.list("Event", ns)),
        "audit": json.dumps(scenarios.audit_log(cluster)),
        "archive": scenarios.read_archive(cluster, done["status"]["archive"]["location"]).decode(),
        "webhook bodies": " ".join(c.body.decode() + json.dumps(c.headers) for c in hook.calls),
        "operator logs": "\n".join(r.getMessage() for r in caplog.records),
    }
    for kind in ("AgentRetirement", "AgentVersion", "ConfigMap"):
        places[f"{kind} objects"] = json.dumps(cluster.kube.list(kind, ns))
    # Every write anyone sent to the API server, but the Secrets themselves: status, events, children...
    writes = server.emulator.requests_matching(writes=True, namespace=ns)
    places["every write but Secrets"] = "\n".join(
        r.text or "" for r in writes if r.resource is None or r.resource.plural != "secrets")
    assert len(caplog.records) > 100, "the scan must see the operator's logs"
    for place, text in places.items():
        for value in values:
            assert value not in text, f"a credential value leaked into {place}"
    assert auditchain.verify(scenarios.audit_log(cluster)).ok
    assert scenarios.audit_log(cluster)[-1]["action"] == "deleted"


@pytest.fixture
async def bare_cluster(server: ApiServerThread) -> AsyncIterator[EmulatedCluster]:
    """A namespace without the operator running (started by the test)."""
    cluster = EmulatedCluster(server, scenarios.unique("alm-ret"))
    try:
        yield cluster
    finally:
        await cluster.stop_operator()


async def test_an_agent_deleted_while_the_operator_is_down_is_revoked_at_the_next_start(
    bare_cluster: EmulatedCluster,
) -> None:
    cluster = bare_cluster
    await cluster.start_operator()
    issued = await live_agent(cluster)
    await cluster.wait_for(lambda: "alm.dev/finalizer" in (scenarios.get(cluster, "Agent", "bot") or {}).get(
        "metadata", {}).get("finalizers", []) or None, what="the finalizer")
    await cluster.stop_operator()
    cluster.kube.delete("Agent", cluster.namespace, "bot")
    await asyncio.sleep(0.5)
    assert scenarios.get(cluster, "Agent", "bot") is not None, "the finalizer holds the Agent"
    assert scenarios.credentials(cluster).keys() == issued.keys()
    await cluster.start_operator()
    await cluster.wait_for(lambda: scenarios.get(cluster, "Agent", "bot") is None or None, what="the Agent to go")
    revoked = {(e["details"]["kind"], e["details"]["name"]) for e in scenarios.audit_log(cluster)
               if e["action"] == "credentialRevoked"}
    assert revoked == set(issued)


async def test_deleting_an_agent_mid_retirement_revokes_at_once_and_waits_for_the_archive(
    cluster: EmulatedCluster,
) -> None:
    ns = cluster.namespace
    await live_agent(cluster)
    scenarios.create(cluster, scenarios.agent_retirement(ns, grace=3))
    await scenarios.wait_retirement(cluster, RETIREMENT, "Draining")
    cluster.kube.delete("Agent", ns, "bot")
    await cluster.wait_for(lambda: scenarios.credentials(cluster) == {} or None, timeout=5,
                           what="the finalizer to revoke the credentials")
    bot = scenarios.get(cluster, "Agent", "bot")
    assert bot is not None and bot["metadata"].get("deletionTimestamp"), "the Agent waits for its retirement"
    assert status_of(cluster)["phase"] == "Draining"
    done = await scenarios.wait_retirement(cluster, RETIREMENT, "Retired")
    await cluster.wait_for(lambda: scenarios.get(cluster, "Agent", "bot") is None or None, what="the Agent to go")
    bundle = json.loads(scenarios.read_archive(cluster, done["status"]["archive"]["location"]))
    assert bundle["agent"]["name"] == "bot", "the archive holds the Agent's last state"
    actions = [e["action"] for e in scenarios.audit_log(cluster)]
    assert actions.count("credentialRevoked") == 4 and actions[-1] == "deleted"
    assert auditchain.verify(scenarios.audit_log(cluster)).ok


# --- the pieces on their own: the webhook client and concurrent audit writers ------------------------------


def _call(hook_url: str, ns: str, *, timeout: int = 5, secret: str = "revocation-hmac") -> retirementtypes.CallWebhook:
    body = revocation.body(namespace=ns, agent="bot", retirement=RETIREMENT, reason="test", delivery="d-1",
                           requested_at="2026-11-24T00:00:00Z", credentials=[{"kind": "Secret", "name": "s"}])
    return retirementtypes.CallWebhook(attempt=1, max_attempts=3, url=hook_url, name="127.0.0.1", secret_name=secret,
                                  secret_key="key", timeout_seconds=timeout, delivery="d-1", body=body)


async def test_the_webhook_client_turns_every_failure_into_an_outcome(
    server: ApiServerThread, hook: WebhookServer
) -> None:
    kube = Kube(server.api_client(), field_manager="alm-test-user")
    ns = scenarios.unique("alm-hook")
    kube.request("POST", "/api/v1/namespaces/" + ns + "/secrets", body=hmac_secret(ns))

    ok = await webhook.call(kube, ns, _call(hook.url, ns))
    assert (ok.ok, ok.detail, hook.calls[-1].signature_ok) == (True, "HTTP 200", True)

    missing = await webhook.call(kube, ns, _call(hook.url, ns, secret="nope"))
    assert (missing.ok, missing.retryable, missing.detail) == (False, True, "Secret nope not found")

    hook.fail_next(1, status=302)
    moved = await webhook.call(kube, ns, _call(hook.url, ns))
    assert (moved.status_code, moved.retryable) == (302, False), "a redirect is an answer, never followed"

    kube.merge_patch("Secret", ns, "revocation-hmac", {"data": {"key": base64.b64encode(b"wrong").decode()}})
    refused = await webhook.call(kube, ns, _call(hook.url, ns))
    assert (refused.status_code, refused.retryable) == (401, False) and not hook.calls[-1].signature_ok

    hook.hold()
    slow = await webhook.call(kube, ns, _call(hook.url, ns, timeout=1))
    hook.release()
    assert (slow.ok, slow.retryable, slow.detail) == (False, True, "timed out after 1s")

    closed = await webhook.call(kube, ns, _call("http://127.0.0.1:9/revoke", ns))
    assert (closed.ok, closed.retryable) == (False, True) and closed.detail.startswith("no answer")


async def test_concurrent_audit_writers_never_lose_or_fork_an_entry(server: ApiServerThread) -> None:
    kube = Kube(server.api_client())
    ctx = Context(kube)
    ns = scenarios.unique("alm-audit")

    def intent(i: int) -> AuditIntent:
        return AuditIntent(AuditAction.MANUAL_OVERRIDE, "Agent/bot", {"i": i})

    # In one operator: serialised by the per-Agent lock.
    await asyncio.gather(*(auditing.record(ctx, ns, "bot", [intent(i)], "2026-11-24T00:00:00Z") for i in range(8)))
    # Two operators (no shared lock): the resourceVersion precondition makes the loser re-read.
    await asyncio.gather(*(asyncio.to_thread(auditing._store, kube, ns, "bot", [intent(i)], "2026-11-24T00:00:01Z")
                           for i in range(8, 16)))
    entries = auditing.load(kube, ns, "bot")
    assert auditchain.verify(entries).ok
    assert sorted(e["details"]["i"] for e in entries) == list(range(16))


async def test_deleting_a_retirement_before_it_is_done_gives_the_agent_back(cluster: EmulatedCluster) -> None:
    issued = await live_agent(cluster)
    scenarios.create(cluster, scenarios.agent_retirement(cluster.namespace, grace=30))
    await scenarios.wait_retirement(cluster, RETIREMENT, "Draining")
    await cluster.wait_for(lambda: scenarios.children(cluster, "Service") == [] or None, what="traffic to stop")
    cluster.kube.delete("AgentRetirement", cluster.namespace, RETIREMENT)
    await cluster.wait_for(lambda: scenarios.children(cluster, "Service") or None, what="the Service to come back")
    await scenarios.wait_phase(cluster, "bot", "Available")
    assert scenarios.credentials(cluster).keys() == issued.keys(), "never revoked: it was still draining"


async def test_a_new_agent_under_a_retired_name_is_not_retired_again(cluster: EmulatedCluster) -> None:
    ns = cluster.namespace
    await live_agent(cluster)
    scenarios.create(cluster, scenarios.agent_retirement(ns))
    await scenarios.wait_retirement(cluster, RETIREMENT, "Retired")
    cluster.kube.delete("Agent", ns, "bot")
    await cluster.wait_for(lambda: scenarios.get(cluster, "Agent", "bot") is None or None, what="the Agent to go")
    await asyncio.sleep(1.1)  # creation timestamps have whole seconds
    scenarios.create(cluster, scenarios.agent(ns, permissions=scenarios.PERMISSIONS))
    await asyncio.sleep(2.0)
    assert ((scenarios.get(cluster, "Agent", "bot") or {}).get("status") or {}).get("phase") != "Retired"
    cluster.kube.delete("AgentRetirement", ns, RETIREMENT)  # the old record goes; the archive stays
    await scenarios.wait_phase(cluster, "bot", "Available")
    await asyncio.sleep(1.0)
    assert len(scenarios.credentials(cluster)) == 4
