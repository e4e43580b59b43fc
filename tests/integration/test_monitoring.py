"""Continuous monitoring (tests/live_scenarios.py) against the emulated API server, pods as real processes.

The emulated API server runs each pod as a local ``alm-agent`` process (simulated model with a
known success rate and token counts); the operator scrapes them, writes KPIs into status, raises
Degraded after consecutive breaches, counts today's tokens and suspends the agent over budget.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest

from tests.integration.operator_harness import EmulatedCluster
from tests.live_scenarios import MONITORING_SCENARIOS


@pytest.mark.parametrize("scenario", MONITORING_SCENARIOS, ids=[f.__name__ for f in MONITORING_SCENARIOS])
async def test_monitoring(scenario: Callable[[EmulatedCluster], Awaitable[None]],
                          process_cluster: EmulatedCluster) -> None:
    await scenario(process_cluster)
