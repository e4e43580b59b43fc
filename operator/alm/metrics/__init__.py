"""Metrics: the contract every agent exposes (``alm.metrics.contract``) and the operator's own
(``alm.metrics.operator``).

The contract module is pure data; the runtime registers it and the KPI providers query it.
"""

from __future__ import annotations

from alm.metrics import contract

__all__ = ["contract"]
