"""Traffic weight arithmetic: how a percentage becomes pods, Service scopes and backend weights.

Pure helpers the rollout planner and the traffic routers share, so the two never disagree about
what "20 %" means. Two routers exist (see DESIGN.md, Traffic):

- ``replicas`` (no mesh): one Service in front of the Agent's pods. The canary's weight *is* its
  share of the ready pods the Service selects, so a weight is turned into pod counts
  (:func:`canary_replicas`, :func:`stable_replicas`) and read back from ready pods
  (:func:`actual_weight`). At 0 % and 100 % the Service selects one version only
  (:func:`service_scope`): traffic leaves a version at once, before its pods stop, which is what
  makes an abort instant and a blue-green preview invisible.
- ``gatewayAPI``: weighted ``backendRefs`` on an HTTPRoute (:func:`backend_weights`); pods only
  provide capacity, and the stable version keeps all of its pods until the promotion.

Weights are integer percentages (0..100), like ``setWeight`` and ``AgentRollout.status.weight``.
"""

from __future__ import annotations

from typing import Literal

__all__ = [
    "FULL",
    "Routing",
    "Scope",
    "actual_weight",
    "backend_weights",
    "canary_replicas",
    "expected_weight",
    "service_scope",
    "stable_replicas",
]

FULL = 100

Routing = Literal["replicas", "gatewayAPI"]
Scope = Literal["stable", "both", "canary"]


def _check(percent: int) -> int:
    if not 0 <= percent <= FULL:
        raise ValueError(f"a weight is a percentage from 0 to 100, not {percent}")
    return percent


def _round_half_up(numerator: int, denominator: int) -> int:
    """``numerator / denominator`` rounded half up, in integers (no float, no banker's rounding)."""
    return (2 * numerator + denominator) // (2 * denominator)


def canary_replicas(weight: int, total: int) -> int:
    """Canary pods for ``weight`` % of an Agent of ``total`` pods.

    The exact share is rounded half up, then kept within 1..total while the weight is above 0,
    so a canary that should get traffic always has a pod to get it (Argo Rollouts does the same):

    ======  =====  ===========  ======  ===============================================
    weight  total  exact share  canary  why
    ======  =====  ===========  ======  ===============================================
    0       10     0            0       no traffic, no pods
    5       10     0.5          1       half rounds up
    25      10     2.5          3       half rounds up
    24      10     2.4          2       rounds down
    10      4      0.4          1       never 0 pods while the weight is above 0
    50      3      1.5          2       half up: the canary gets 2 of 3 (67 % actual)
    20      1      0.2          1       a one-pod Agent runs one canary pod (see below)
    100     4      4            4       everything
    30      0      0            0       an Agent scaled to zero has nothing to split
    ======  =====  ===========  ======  ===============================================
    """
    _check(weight)
    if weight == 0 or total <= 0:
        return 0
    return min(total, max(1, _round_half_up(total * weight, FULL)))


def stable_replicas(weight: int, total: int, routing: Routing = "replicas") -> int:
    """Stable pods while the canary has ``weight`` %.

    ``replicas``: the rest of ``total``, but never fewer than one pod below 100 %, so the stable
    version keeps serving: a one-pod Agent at 20 % runs 1 canary + 1 stable pod (50 % actual,
    one pod of surge, as Argo Rollouts allows), 4 pods at 90 % run 4 + 1. ``gatewayAPI``: all
    ``total`` pods until the promotion, because the HTTPRoute moves the traffic and an abort must
    find the stable version at full strength.

    ======  =====  ========  ==========
    weight  total  replicas  gatewayAPI
    ======  =====  ========  ==========
    0       4      4         4
    25      4      3         4
    90      4      1         4
    20      1      1         1
    100     4      0         4
    ======  =====  ========  ==========
    """
    _check(weight)
    if total <= 0:
        return 0
    if routing == "gatewayAPI":
        return total
    if weight == FULL:
        return 0
    return max(1, total - canary_replicas(weight, total))


def service_scope(weight: int) -> Scope:
    """Which versions the ``replicas`` router's Service selects for ``weight``.

    0 % selects the stable version only and 100 % the canary only, so those two weights hold
    regardless of which pods are still running; anything between selects both.
    """
    _check(weight)
    if weight == 0:
        return "stable"
    return "canary" if weight == FULL else "both"


def actual_weight(canary_ready: int, stable_ready: int, scope: Scope = "both") -> int:
    """The canary's real share of new sessions behind the ``replicas`` router, in %.

    Rounded half up, except that it reads 0 only when no canary pod is ready and 100 only when
    no stable pod is: 1 canary pod of 300 reads 1 %, not 0, so "back at 0" is never a rounding
    artefact.

    =============  ============  =====  ======
    canary ready   stable ready  scope  weight
    =============  ============  =====  ======
    1              3             both   25
    1              2             both   33
    2              1             both   67
    1              300           both   1
    299            1             both   99
    0              4             both   0
    3              0             both   100
    0              0             both   0
    2              2             stable 0
    2              2             canary 100
    =============  ============  =====  ======
    """
    if scope == "stable":
        return 0
    if scope == "canary":
        return FULL
    ready = canary_ready + stable_ready
    if canary_ready <= 0:
        return 0
    if stable_ready <= 0:
        return FULL
    return min(FULL - 1, max(1, _round_half_up(canary_ready * FULL, ready)))


def expected_weight(weight: int, routing: Routing, canary_ready: int, stable_ready: int) -> int:
    """What the router should read back once ``weight`` is applied, given the ready pods now.

    ``gatewayAPI`` reads back exactly the weight on the HTTPRoute. ``replicas`` reads back the
    ready-pod share in the Service's scope, which depends on pods, not on a number we write:
    with 1 canary and 3 stable pods ready, 20 % reads back as 25 %.
    """
    _check(weight)
    if routing == "gatewayAPI":
        return weight
    return actual_weight(canary_ready, stable_ready, service_scope(weight))


def backend_weights(weight: int) -> tuple[int, int]:
    """``(stable, canary)`` weights of the HTTPRoute's two backendRefs; they always sum to 100."""
    _check(weight)
    return FULL - weight, weight
