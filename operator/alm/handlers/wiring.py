"""Every kopf handler of the operator, registered in ``REGISTRY``.

Reads come from kopf indexes (watch-fed caches) so a reconcile that finds nothing to
do sends no request; writes go through :mod:`alm.kube.shell`. Three things start an
Agent reconcile: an event on the Agent, an event on one of its children (drift
repair), and the periodic resync timer.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import kopf

from alm.core import agentplan, agenttypes, credentials, naming, versionplan
from alm.handlers import monitoring, posting, registry, rollouts
from alm.handlers.context import Context, random_string, utcnow
from alm.handlers.registry import FINALIZER, REGISTRY
from alm.kube import errors, resources, shell
from alm.metrics import operator as metrics

log = logging.getLogger(__name__)

GROUP, VERSION = "alm.dev", "v1alpha1"

AGENT_STATUS_KEYS = (
    "phase", "observedGeneration", "replicas", "readyReplicas", "canaryWeight", "conditions",
    "stableVersion", "credentialsSecret", "configHash", "canaryVersion",
)
VERSION_STATUS_KEYS = ("phase", "specHash", "observedGeneration", "conditions", "configMapName")

CHILD_INDEX = {kind: f"children_{resources.for_kind(kind).plural}" for kind in resources.AGENT_CHILD_KINDS}


@kopf.on.startup(registry=REGISTRY)
async def startup(settings: kopf.OperatorSettings, **_: Any) -> None:
    registry.configure(settings)


def _start_background(ctx: Context) -> None:
    """Start the resync and monitoring loops, from the first handler call.

    Not from the startup handler: kopf sets up its event poster after start-up, and a task
    inherits the context it was created in, so loops started there could not post Events.
    """
    if ctx.resync_task is None:
        ctx.resync_task = asyncio.create_task(_resync_loop(ctx, ctx.resync), name="alm-resync")
    if ctx.monitor_task is None:
        ctx.monitor_task = asyncio.create_task(monitoring.monitor_loop(ctx), name="alm-monitoring")


@kopf.on.cleanup(registry=REGISTRY)
async def cleanup(memo: kopf.Memo, **_: Any) -> None:
    ctx = Context.of(memo)
    tasks = [task for task in (ctx.resync_task, ctx.monitor_task) if task is not None]
    tasks += [*ctx.rollout_timers.values(), *ctx.background]
    ctx.rollout_timers.clear()
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    for provider in ctx.providers.values():
        await provider.close()
    ctx.providers.clear()


async def _resync_loop(ctx: Context, interval: float) -> None:
    """Reconcile every known Agent every ``interval`` seconds.

    The safety net for what no watch event announces (a user's Secret created later, a
    write that failed). One loop instead of kopf timers: a kopf timer needs a finalizer on
    every Agent and a task per Agent.
    """
    while True:
        await asyncio.sleep(interval)
        if "agent_index" not in ctx.indexes:
            continue
        for namespace, name in list(ctx.indexes["agent_index"]):
            try:
                await reconcile_agent(ctx, namespace, name, ctx.indexes)
            except Exception:  # one broken Agent must not stop the resync of the others
                log.exception("resync of Agent %s/%s failed", namespace, name)


# --- indexes: the operator's watch-fed view of the cluster -------------------------

@kopf.index(GROUP, VERSION, "agents", registry=REGISTRY)
def agent_index(namespace: str, name: str, body: kopf.Body, **_: Any) -> dict[Any, Any]:
    return {(namespace, name): dict(body)}


@kopf.index(GROUP, VERSION, "agents", registry=REGISTRY)
def agents_by_version(namespace: str, name: str, spec: kopf.Spec, **_: Any) -> dict[Any, Any] | None:
    version = spec.get("version")
    return {(namespace, version): name} if isinstance(version, str) else None


@kopf.index(GROUP, VERSION, "agentretirements", registry=REGISTRY)
def retirements_by_agent(namespace: str, spec: kopf.Spec, body: kopf.Body, **_: Any) -> dict[Any, Any] | None:
    agent = (spec.get("agentRef") or {}).get("name")
    return {(namespace, agent): dict(body)} if isinstance(agent, str) else None


@kopf.index(GROUP, VERSION, "agentversions", registry=REGISTRY)
def version_index(namespace: str, name: str, body: kopf.Body, **_: Any) -> dict[Any, Any]:
    return {(namespace, name): dict(body)}


@kopf.index("", "v1", "configmaps", registry=REGISTRY,
            labels={naming.VERSION_LABEL: kopf.PRESENT, naming.COMPONENT_LABEL: "config"})
def version_configmaps(namespace: str, labels: kopf.Labels, body: kopf.Body, **_: Any) -> dict[Any, Any]:
    return {(namespace, labels[naming.VERSION_LABEL]): dict(body)}


def _owner(body: Mapping[str, Any], kind: str) -> str | None:
    for ref in body.get("metadata", {}).get("ownerReferences") or []:
        if ref.get("kind") == kind and str(ref.get("apiVersion", "")).startswith(GROUP + "/"):
            return str(ref.get("name"))
    return None


def _register_child_kind(kind: str) -> None:
    res = resources.for_kind(kind)
    labels: dict[str, Any] = {naming.AGENT_LABEL: kopf.PRESENT, naming.MANAGED_BY_LABEL: naming.MANAGED_BY_VALUE}

    def index(namespace: str, body: kopf.Body, **_: Any) -> dict[Any, Any] | None:
        owner = _owner(body, "Agent")
        return {(namespace, owner): dict(body)} if owner else None

    async def on_event(type: str, namespace: str, body: kopf.Body, memo: kopf.Memo, **kwargs: Any) -> None:
        owner = _owner(body, "Agent")
        if owner:
            await reconcile_agent(Context.of(memo), namespace, owner, kwargs)

    kopf.index(res.group, res.version, res.plural, id=CHILD_INDEX[kind], labels=labels,
               registry=REGISTRY)(index)
    kopf.on.event(res.group, res.version, res.plural, id=f"child_event_{res.plural}", labels=labels,
                  registry=REGISTRY)(on_event)


for _kind in resources.AGENT_CHILD_KINDS:
    _register_child_kind(_kind)


def _first(index: Any, key: Any) -> Any:
    for value in index.get(key, ()):
        return value
    return None


# --- Agent ---------------------------------------------------------------------------

@kopf.on.event(GROUP, VERSION, "agents", registry=REGISTRY)
async def agent_event(type: str, namespace: str, name: str, body: kopf.Body, memo: kopf.Memo,
                      **kwargs: Any) -> None:
    if type == "DELETED":
        metrics.PHASES.observe(namespace, name, None)
    elif not finalizer_pending(body):
        await reconcile_agent(Context.of(memo), namespace, name, kwargs)


def finalizer_pending(body: Mapping[str, Any]) -> bool:
    """Will kopf add the Agent finalizer right after this event's ``on.event`` handlers?

    kopf adds it (for :func:`alm.handlers.retirement.agent_deleted`) with a JSON patch guarded by
    a ``test`` of the resourceVersion of the event it is handling. A reconcile in that same cycle
    writes the Agent's status first, so the guard fails (422), and kopf tries again on the next
    event, which the reconcile races again: about three failed PATCHes per new Agent. Leaving
    this event to kopf lets its patch land; the event that patch causes starts the reconcile.
    So no child (no credential) exists before the finalizer that revokes it. Only this trigger
    waits: a resync, a child's or a version's event still reconcile a finalizer-less Agent.
    """
    meta = body.get("metadata") or {}
    return FINALIZER not in (meta.get("finalizers") or ()) and not meta.get("deletionTimestamp")


async def reconcile_agent(ctx: Context, namespace: str, name: str, indexes: Mapping[str, Any]) -> None:
    if not ctx.indexes:
        ctx.indexes.update({key: value for key, value in indexes.items() if isinstance(value, kopf.Index)})
    _start_background(ctx)
    async def work() -> None:
        await _with_retries(ctx, "Agent", f"{namespace}/{name}", lambda: _agent_pass(ctx, namespace, name, indexes))

    await ctx.coalescer.run(("Agent", namespace, name), work)


async def _agent_pass(ctx: Context, namespace: str, name: str, indexes: Mapping[str, Any]) -> shell.Outcome | None:
    body = _first(indexes["agent_index"], (namespace, name))
    if body is None or body.get("metadata", {}).get("deletionTimestamp"):
        return None
    body = {**ctx.freshness.view(body)}
    uid = body.get("metadata", {}).get("uid", "")
    version_name = (body.get("spec") or {}).get("version")
    version = _first(indexes["version_index"], (namespace, version_name)) if version_name else None
    indexed = [child for index_id in CHILD_INDEX.values()
               for child in indexes[index_id].get((namespace, name), ())]
    children = ctx.freshness.merge(indexed, resources.AGENT_CHILD_KINDS, namespace, uid)
    children = [c for c in children if _owned_by(c, uid)]
    # Rollouts: the Agent's AgentRollouts, the stable version (when spec.version names another one)
    # and the running rollout's decisions about replicas and traffic (see agenttraffic.RolloutTraffic).
    rollout_bodies = [ctx.freshness.view(r) for r in indexes.get("rollouts_by_agent", {}).get((namespace, name), ())]
    stable_name = (body.get("status") or {}).get("stableVersion")
    stable = (_first(indexes["version_index"], (namespace, stable_name))
              if stable_name and stable_name != version_name else None)
    refs = list(dict.fromkeys(credentials.referenced_secrets((version or {}).get("spec"))
                              + credentials.referenced_secrets((stable or {}).get("spec"))))
    retiring = _first(indexes["retirements_by_agent"], (namespace, name)) is not None
    sources = await asyncio.to_thread(_read_sources, ctx, namespace, refs) if refs and not retiring else {}
    retirement = _first(indexes["retirements_by_agent"], (namespace, name))
    obs = agenttypes.AgentObservations(body, version, sources, children, retirement, rollout_bodies, stable,
                                      ctx.traffic.get((namespace, name)))
    now = utcnow()
    plan = agentplan.plan_agent(obs, now, random_string)
    # A rollout decides versions, replicas and names of its own: only plain provisioning is settled early.
    simple = not rollout_bodies and obs.traffic is None and (plan.rollout is None or plan.rollout.body is None)
    outcome = await asyncio.to_thread(
        shell.execute, ctx.kube, body, apply=plan.apply, delete=plan.delete,
        status=plan.status, owned_status=AGENT_STATUS_KEYS,
        settle=(lambda written: _settled_status(obs, written, now)) if simple else None,
    )
    _remember(ctx, outcome, uid)
    if plan.rollout is not None and plan.rollout.body is not None:
        await asyncio.to_thread(rollouts.start, ctx, namespace, plan.rollout)
    _post(body, plan.events)
    metrics.PHASES.observe(namespace, name, plan.status.get("phase"))
    if rollout_bodies or (plan.rollout is not None and plan.rollout.body is not None):
        rollouts.after_agent_pass(ctx, namespace, name)
    return outcome


def _settled_status(obs: agenttypes.AgentObservations, written: shell.Outcome, now: str) -> dict[str, Any] | None:
    """The status of the pass after ``written``: the plan again, over the children as the API server returned them.

    That pass (started by the children's watch events) would find nothing to apply and write
    this status; writing it now instead of the plan's ("applying children") saves a status write
    per provisioning. When the plan still has something to do, ``None``: keep the plan's status.
    """
    changed = {agenttypes.child_key(obj) for obj in [*written.applied, *written.deleted]}
    children = [c for c in obs.children if agenttypes.child_key(c) not in changed] + list(written.applied)
    again = agentplan.plan_agent(dataclasses.replace(obs, children=children), now, random_string)
    return again.status if not again.apply and not again.delete else None


def _owned_by(child: Mapping[str, Any], uid: str) -> bool:
    refs = child.get("metadata", {}).get("ownerReferences") or []
    return any(ref.get("uid") == uid for ref in refs)


def _read_sources(ctx: Context, namespace: str, names: list[str]) -> dict[str, Mapping[str, str] | None]:
    found: dict[str, Mapping[str, str] | None] = {}
    now = time.monotonic()
    for secret_name in names:
        cached = ctx.secrets.get((namespace, secret_name))
        if cached is not None and now - cached[0] < ctx.secret_ttl:
            found[secret_name] = cached[1]
            continue
        secret = ctx.kube.get("Secret", namespace, secret_name)
        found[secret_name] = (secret.get("data") or {}) if secret is not None else None
        ctx.secrets[(namespace, secret_name)] = (now, found[secret_name])
    return found


@kopf.on.event(GROUP, VERSION, "agentretirements", id="agent_after_retirement_deleted", registry=REGISTRY)
async def retirement_deleted(type: str, namespace: str, spec: kopf.Spec, memo: kopf.Memo, **kwargs: Any) -> None:
    """A retirement deleted before it finished cancels it: provision the Agent again now, not at the next resync."""
    agent = (spec.get("agentRef") or {}).get("name")
    if type == "DELETED" and isinstance(agent, str):
        await reconcile_agent(Context.of(memo), namespace, agent, kwargs)


# --- AgentVersion --------------------------------------------------------------------

@kopf.on.event(GROUP, VERSION, "agentversions", registry=REGISTRY)
async def version_event(type: str, namespace: str, name: str, memo: kopf.Memo, **kwargs: Any) -> None:
    ctx = Context.of(memo)
    if type != "DELETED":
        await reconcile_version(ctx, namespace, name, kwargs)
    for agent in list(kwargs["agents_by_version"].get((namespace, name), ())):
        await reconcile_agent(ctx, namespace, agent, kwargs)


@kopf.on.event("", "v1", "configmaps", registry=REGISTRY,
               labels={naming.VERSION_LABEL: kopf.PRESENT, naming.COMPONENT_LABEL: "config"})
async def version_config_event(namespace: str, body: kopf.Body, memo: kopf.Memo, **kwargs: Any) -> None:
    owner = _owner(body, "AgentVersion")
    if owner:
        await reconcile_version(Context.of(memo), namespace, owner, kwargs)


async def reconcile_version(ctx: Context, namespace: str, name: str, indexes: Mapping[str, Any]) -> None:
    async def once() -> shell.Outcome | None:
        body = _first(indexes["version_index"], (namespace, name))
        if body is None or body.get("metadata", {}).get("deletionTimestamp"):
            return None
        body = dict(ctx.freshness.view(body))
        live: list[Mapping[str, Any]] = [ctx.freshness.view(cm)
                for cm in indexes["version_configmaps"].get((namespace, naming.label_value(name)), ())]
        plan = versionplan.plan_version(body, live, utcnow())
        outcome = await asyncio.to_thread(
            shell.execute, ctx.kube, body, apply=plan.apply, status=plan.status,
            owned_status=VERSION_STATUS_KEYS,
        )
        _remember(ctx, outcome, body.get("metadata", {}).get("uid", ""))
        _post(body, plan.events)
        return outcome

    async def work() -> None:
        await _with_retries(ctx, "AgentVersion", f"{namespace}/{name}", once)

    await ctx.coalescer.run(("AgentVersion", namespace, name), work)


# --- shared plumbing -------------------------------------------------------------------

def _remember(ctx: Context, outcome: shell.Outcome, owner_uid: str) -> None:
    for obj in outcome.applied:
        ctx.freshness.wrote(obj)
        metrics.WRITES.labels(kind=str(obj.get("kind")), verb="apply").inc()
    for gone in outcome.deleted:
        ctx.freshness.deleted(gone, owner_uid)
        metrics.WRITES.labels(kind=str(gone.get("kind")), verb="delete").inc()
    if outcome.patched:
        ctx.freshness.wrote(outcome.patched)
        metrics.WRITES.labels(kind=str(outcome.patched.get("kind")), verb="status").inc()


_post = posting.post


async def _with_retries(
    ctx: Context, kind: str, name: str, attempt: Callable[[], Awaitable[shell.Outcome | None]]
) -> None:
    """Retry conflicts and server errors a few times; then leave it to the resync timer."""
    delay = ctx.backoff
    for n in range(ctx.retries + 1):
        started = time.monotonic()
        try:
            outcome = await attempt()
        except errors.ApiError as exc:
            metrics.RECONCILES.labels(kind=kind, result="error").inc()
            if not exc.retriable or n == ctx.retries:
                log.error("%s %s: giving up until the next resync: %s", kind, name, exc)
                return
            log.warning("%s %s: %s; retrying in %.1fs", kind, name, exc, delay)
            await asyncio.sleep(delay)
            delay *= 2
        else:
            metrics.RECONCILE_SECONDS.labels(kind=kind).observe(time.monotonic() - started)
            wrote = outcome is not None and outcome.wrote
            metrics.RECONCILES.labels(kind=kind, result="ok" if wrote else "noop").inc()
            return
