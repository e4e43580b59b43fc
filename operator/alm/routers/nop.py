"""The ``nop`` router: for setups where something else (a mesh, a CDN, a human) splits traffic.

It writes nothing and reads nothing: weights and mirroring are reported as unknown, so
:meth:`~alm.routers.base.ObservedTraffic.confirms` answers None and the rollout goes by its
steps and analysis alone. Replicas are left to the rollout.
"""

from __future__ import annotations

from collections.abc import Mapping

from alm.routers.base import Feature, Observed, ObservedTraffic, RouterPlan, Target, Unsupported

__all__ = ["NopRouter"]

_ELSEWHERE = "the nop router leaves traffic to whatever manages it outside alm; alm neither sets nor verifies it"


class NopRouter:
    """Does nothing; says so."""

    type = "nop"
    unsupported: Mapping[Feature, str] = {feature: _ELSEWHERE for feature in Feature}

    def desired(self, target: Target, weight: int, mirror_percent: int = 0, observed: Observed = ()) -> RouterPlan:
        target.check(weight, mirror_percent)
        asked = [Feature.WEIGHT] + ([Feature.MIRROR] if mirror_percent else [])
        return RouterPlan(self.type, unsupported=tuple(Unsupported(f, self.unsupported[f]) for f in asked))

    def read_back(self, target: Target, observed: Observed) -> ObservedTraffic:
        return ObservedTraffic(self.type, None, None, ready=True, message=_ELSEWHERE)

    def finalize(self, target: Target, observed: Observed = ()) -> RouterPlan:
        return RouterPlan(self.type)
