"""The operator's scenarios against the emulated API server (see tests/scenarios.py)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest

from alm.sandbox.apiserverthread import ApiServerThread
from tests import scenarios
from tests.integration.operator_harness import EmulatedCluster

Scenario = Callable[[EmulatedCluster], Awaitable[None]]






@pytest.mark.parametrize("scenario", scenarios.SCENARIOS, ids=[f.__name__ for f in scenarios.SCENARIOS])
async def test_scenario(scenario: Scenario, cluster: EmulatedCluster) -> None:
    await scenario(cluster)


async def test_nothing_happens_without_the_operator(server: ApiServerThread) -> None:
    """The scenarios' assertions cannot pass by themselves: with the operator off, no children."""
    cluster = EmulatedCluster(server, scenarios.unique("alm-off"))
    ns = cluster.namespace
    scenarios.create(cluster, scenarios.tool_secret(ns))
    scenarios.create(cluster, scenarios.agent_version(ns))
    scenarios.create(cluster, scenarios.agent(ns))
    await asyncio.sleep(2)
    assert scenarios.children(cluster, "Deployment") == []
    with pytest.raises(AssertionError, match="timed out"):
        await scenarios.wait_phase(cluster, "bot", "Available", timeout=1)
