"""AgentRollouts (tests/live_scenarios.py) against the emulated API server, pods as real ``alm-agent`` processes."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest

from tests.integration.operator_harness import EmulatedCluster
from tests.live_scenarios import ROLLOUT_SCENARIOS


@pytest.mark.parametrize("scenario", ROLLOUT_SCENARIOS, ids=[f.__name__ for f in ROLLOUT_SCENARIOS])
async def test_rollout(scenario: Callable[[EmulatedCluster], Awaitable[None]], process_cluster: EmulatedCluster,
                       ) -> None:
    await scenario(process_cluster)
