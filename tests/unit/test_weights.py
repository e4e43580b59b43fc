"""Weight arithmetic: the worked examples of the docstrings, then the invariants over every input."""

from __future__ import annotations

import pytest

from alm.core import weights


@pytest.mark.parametrize(("weight", "total", "canary"), [
    (0, 10, 0),
    (5, 10, 1),  # 0.5 rounds half up
    (25, 10, 3),  # 2.5 rounds half up
    (24, 10, 2),
    (10, 4, 1),  # 0.4: never 0 pods while the weight is above 0
    (50, 3, 2),
    (20, 1, 1),
    (1, 100, 1),
    (99, 100, 99),
    (99, 10, 10),
    (100, 4, 4),
    (30, 0, 0),
    (30, -1, 0),
])
def test_canary_replicas(weight: int, total: int, canary: int) -> None:
    assert weights.canary_replicas(weight, total) == canary


@pytest.mark.parametrize(("weight", "total", "replicas", "gateway"), [
    (0, 4, 4, 4),
    (25, 4, 3, 4),
    (50, 4, 2, 4),
    (90, 4, 1, 4),  # the stable version keeps one pod below 100 %
    (20, 1, 1, 1),  # one pod of surge on a one-pod Agent
    (100, 4, 0, 4),  # gatewayAPI keeps the stable version whole until the promotion
    (50, 0, 0, 0),
])
def test_stable_replicas(weight: int, total: int, replicas: int, gateway: int) -> None:
    assert weights.stable_replicas(weight, total, "replicas") == replicas
    assert weights.stable_replicas(weight, total, "gatewayAPI") == gateway


@pytest.mark.parametrize(("canary", "stable", "scope", "weight"), [
    (1, 3, "both", 25),
    (1, 2, "both", 33),
    (2, 1, "both", 67),
    (1, 1, "both", 50),
    (1, 300, "both", 1),  # never 0 while a canary pod is ready
    (299, 1, "both", 99),  # never 100 while a stable pod is ready
    (0, 4, "both", 0),
    (3, 0, "both", 100),  # a broken stable: all traffic reaches the canary
    (0, 0, "both", 0),
    (2, 2, "stable", 0),  # the Service selects the stable version only
    (2, 2, "canary", 100),
    (0, 0, "canary", 100),
])
def test_actual_weight(canary: int, stable: int, scope: weights.Scope, weight: int) -> None:
    assert weights.actual_weight(canary, stable, scope) == weight


@pytest.mark.parametrize(("weight", "scope"), [(0, "stable"), (1, "both"), (50, "both"), (99, "both"),
                                               (100, "canary")])
def test_service_scope(weight: int, scope: str) -> None:
    assert weights.service_scope(weight) == scope


@pytest.mark.parametrize(("weight", "routing", "canary", "stable", "expected"), [
    (20, "gatewayAPI", 0, 0, 20),  # the HTTPRoute reads back what was written
    (20, "replicas", 1, 3, 25),  # the pods decide
    (20, "replicas", 0, 4, 0),  # no canary pod ready yet
    (0, "replicas", 2, 2, 0),
    (100, "replicas", 4, 4, 100),
])
def test_expected_weight(weight: int, routing: weights.Routing, canary: int, stable: int, expected: int) -> None:
    assert weights.expected_weight(weight, routing, canary, stable) == expected


@pytest.mark.parametrize(("weight", "pair"), [(0, (100, 0)), (20, (80, 20)), (100, (0, 100))])
def test_backend_weights(weight: int, pair: tuple[int, int]) -> None:
    assert weights.backend_weights(weight) == pair


@pytest.mark.parametrize("call", [
    lambda: weights.canary_replicas(101, 4),
    lambda: weights.canary_replicas(-1, 4),
    lambda: weights.stable_replicas(120, 4),
    lambda: weights.backend_weights(-5),
    lambda: weights.service_scope(101),
])
def test_a_weight_outside_0_to_100_is_refused(call: object) -> None:
    with pytest.raises(ValueError, match="percentage"):
        call()  # type: ignore[operator]


def test_invariants_over_every_weight_and_size() -> None:
    for total in range(0, 25):
        previous = 0
        for weight in range(0, 101):
            canary = weights.canary_replicas(weight, total)
            stable = weights.stable_replicas(weight, total)
            assert 0 <= canary <= total
            assert (canary > 0) == (weight > 0 and total > 0), (weight, total)
            assert canary >= previous, "more weight never means fewer canary pods"
            previous = canary
            if total:
                if weight == 100:
                    assert (canary, stable) == (total, 0)
                assert canary + stable <= total + 1, "at most one pod of surge"
                assert stable >= (1 if weight < 100 else 0), "the stable version serves until 100 %"
            stable_share, canary_share = weights.backend_weights(weight)
            assert stable_share + canary_share == 100


def test_the_read_back_weight_is_close_to_the_asked_one() -> None:
    """With all pods ready, the replicas router lands within one pod's share of the weight."""
    for total in range(2, 21):
        for weight in range(1, 100):
            canary = weights.canary_replicas(weight, total)
            stable = weights.stable_replicas(weight, total)
            actual = weights.actual_weight(canary, stable)
            assert abs(actual - weight) <= 100 / (canary + stable) + 1, (weight, total, actual)
