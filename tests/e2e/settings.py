"""What the e2e suite is pointed at, read once from the environment.

``ALM_E2E_KUBECONFIG``       kubeconfig file of the cluster; unset = every e2e test is skipped
``ALM_E2E_CONTEXT``          context in that file (default: its current-context)
``ALM_E2E_SIMULATE_NODES``   ``1``: the cluster has no nodes; register a fake Node and play kubelet
``ALM_E2E_TIMEOUT_FACTOR``   multiplies every scenario wait (default 3: real clusters are slower)
``ALM_E2E_POD_NETWORK``      ``1``: this machine reaches the cluster's pod IPs (the live scenarios need
                           that; with simulated nodes the pods are local processes, so it holds)
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping

__all__ = ["SKIP_REASON", "E2ESettings"]

SKIP_REASON = "ALM_E2E_KUBECONFIG is not set: e2e tests need a real cluster (see docs/e2e.md)"

_TRUE = {"1", "true", "yes", "on"}


@dataclasses.dataclass(frozen=True)
class E2ESettings:
    kubeconfig: str
    context: str | None = None
    simulate_nodes: bool = False
    timeout_factor: float = 3.0
    pod_network: bool = False

    @property
    def pods_reachable(self) -> bool:
        """Whether the operator and the tests, running here, can reach the agents' pods."""
        return self.simulate_nodes or self.pod_network

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> E2ESettings | None:
        """None when ``ALM_E2E_KUBECONFIG`` is unset or empty (the suite is skipped).

        A variable that is set but wrong (no such file, a factor that is not a positive
        number) raises ``ValueError``: a typo must not turn the suite into a silent skip.
        """
        env = os.environ if env is None else env
        kubeconfig = env.get("ALM_E2E_KUBECONFIG", "").strip()
        if not kubeconfig:
            return None
        if not os.path.isfile(kubeconfig):
            raise ValueError(f"ALM_E2E_KUBECONFIG={kubeconfig!r} is not a file")
        raw_factor = env.get("ALM_E2E_TIMEOUT_FACTOR", "").strip() or "3"
        try:
            factor = float(raw_factor)
        except ValueError:
            factor = -1.0
        if not factor > 0:
            raise ValueError(f"ALM_E2E_TIMEOUT_FACTOR={raw_factor!r} is not a positive number")
        return cls(
            kubeconfig=kubeconfig,
            context=env.get("ALM_E2E_CONTEXT", "").strip() or None,
            simulate_nodes=env.get("ALM_E2E_SIMULATE_NODES", "").strip().lower() in _TRUE,
            timeout_factor=factor,
            pod_network=env.get("ALM_E2E_POD_NETWORK", "").strip().lower() in _TRUE,
        )
