"""The shared scenarios (tests/scenarios.py) against a real cluster; skipped without ALM_E2E_KUBECONFIG."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest

from tests.e2e.cluster import E2ECluster
from tests.scenarios import SCENARIOS

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]


@pytest.mark.parametrize("scenario", SCENARIOS, ids=[f.__name__ for f in SCENARIOS])
async def test_scenario(scenario: Callable[[E2ECluster], Awaitable[None]], cluster: E2ECluster) -> None:
    await scenario(cluster)
