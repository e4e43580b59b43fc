"""The live scenarios (tests/live_scenarios.py) on a real cluster: agents that really run.

The operator and the scenarios run on this machine and reach the agents' pods at their pod
IPs: they need ``ALM_E2E_SIMULATE_NODES=1`` (the node simulator runs each agent pod as a local
``alm-agent`` process at its own loopback address) or ``ALM_E2E_POD_NETWORK=1`` (this machine
routes to the cluster's pod network). Otherwise they are skipped, saying so.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest

from alm.kube.api import Kube
from tests.e2e.cluster import E2ECluster
from tests.e2e.gatewayapi import ensure_httproute_kind
from tests.e2e.settings import E2ESettings
from tests.live_scenarios import LIVE_SCENARIOS

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]


@pytest.fixture(scope="module")
def live(e2e_settings: E2ESettings, e2e_kube: Kube) -> str:
    """The cluster can run live scenarios; the HTTPRoute kind is served (a stand-in where missing)."""
    if not e2e_settings.pods_reachable:
        pytest.skip("live scenarios reach the agents' pods from this machine: set ALM_E2E_SIMULATE_NODES=1 "
                    "(node-less control plane) or ALM_E2E_POD_NETWORK=1 (pod IPs routed here); see docs/e2e.md")
    return ensure_httproute_kind(e2e_kube)


@pytest.mark.parametrize("scenario", LIVE_SCENARIOS, ids=[f.__name__ for f in LIVE_SCENARIOS])
async def test_live_scenario(scenario: Callable[[E2ECluster], Awaitable[None]], live: str,
                             cluster: E2ECluster) -> None:
    await scenario(cluster)
