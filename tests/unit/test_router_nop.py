"""The nop router: writes nothing, reads nothing, and says that it cannot tell."""

from __future__ import annotations

import pytest

from alm.routers import NopRouter, Target
from alm.routers.base import Feature, RouterPlan

ROUTER = NopRouter()
TARGET = Target("bot", "team", "uid-bot", stable="v1", canary="v2", replicas=3)


@pytest.mark.parametrize(("weight", "mirror", "features"), [
    (0, 0, [Feature.WEIGHT]),
    (30, 0, [Feature.WEIGHT]),
    (0, 20, [Feature.WEIGHT, Feature.MIRROR]),
])  # fmt: skip
def test_desired_writes_nothing_and_says_why(weight: int, mirror: int, features: list[Feature]) -> None:
    plan = ROUTER.desired(TARGET, weight, mirror)
    assert (plan.apply, plan.patches, plan.delete, plan.replicas) == ((), (), (), {})
    assert (plan.weight, plan.mirror_percent, plan.service_selector, plan.runtime_mirror) == (None, None, None, None)
    assert [u.feature for u in plan.unsupported] == features
    assert all("outside alm" in u.reason for u in plan.unsupported)


def test_read_back_cannot_tell_and_does_not_block() -> None:
    observed = ROUTER.read_back(TARGET, [{"kind": "Service", "metadata": {"name": "bot"}}])
    assert (observed.weight, observed.mirror_percent, observed.ready) == (None, None, True)
    assert observed.confirms(ROUTER.desired(TARGET, 30)) is None
    assert observed.confirms(ROUTER.finalize(TARGET)) is None


def test_finalize_removes_nothing() -> None:
    assert ROUTER.finalize(TARGET, []) == RouterPlan("nop")


def test_everything_is_unsupported() -> None:
    assert set(ROUTER.unsupported) == set(Feature)
