"""How many writes provisioning an Agent costs, on the emulated API server.

Two redundancies are kept out (see ``benchmarks/provision.py --describe``):

* kopf adds the Agent finalizer with a JSON patch guarded by the resourceVersion of the event it
  handles; a status write in that same cycle made it fail (422) and be retried on every later event
  (about four finalizer patches per Agent instead of one);
* the first pass wrote a status saying "applying children", and the next pass, a moment later,
  one saying they are applied (three status writes to Available instead of two).

Bounds, not exact counts: a resync may race a new Agent on a loaded machine and cost a retry.
"""

from __future__ import annotations

import asyncio

from alm.handlers.registry import FINALIZER
from tests import scenarios
from tests.integration.operator_harness import EmulatedCluster

AGENTS = 4


async def test_provisioning_writes_per_agent(cluster: EmulatedCluster) -> None:
    ns = cluster.namespace
    emulator = cluster.server.emulator
    scenarios.create(cluster, scenarios.tool_secret(ns))
    scenarios.create(cluster, scenarios.agent_version(ns))
    await cluster.wait_for(lambda: ((scenarios.get(cluster, "AgentVersion", "bot-v1") or {}).get("status") or {})
                           .get("phase") == "Ready" or None, what="the AgentVersion to be Ready")
    mark = emulator.mark()
    names = [f"bot-{i}" for i in range(AGENTS)]
    for name in names:
        scenarios.create(cluster, scenarios.agent(ns, name=name, replicas=1))
    for name in names:
        await scenarios.wait_phase(cluster, name, "Available")
    await scenarios.settled_writes(cluster)
    await asyncio.sleep(0.2)

    def agent_writes(**filters: object) -> int:
        return sum(emulator.count(since=mark, writes=True, namespace=ns, resource="agents", name=name,
                                  **filters) for name in names)

    log = cluster.describe_writes(mark)
    finalizer_patches = sum(
        1 for name in names
        for r in emulator.requests_matching(since=mark, method="PATCH", namespace=ns, resource="agents",
                                            name=name, user_agent="kopf")
        if r.subresource is None and isinstance(r.data, list))
    assert AGENTS <= finalizer_patches <= AGENTS + 1, f"kopf's finalizer patches retried:\n{log}"
    status_writes = agent_writes(subresource="status", field_manager="alm-operator")
    assert AGENTS <= status_writes <= 2 * AGENTS + 1, f"repeated status writes:\n{log}"
    # Per Agent: the finalizer, kopf's diff-base, two status writes, and one apply per child.
    for name in names:
        agent = scenarios.get(cluster, "Agent", name)
        assert agent is not None and FINALIZER in agent["metadata"].get("finalizers", [])
        assert scenarios.children(cluster, "Deployment", name), name
