"""The reference agent runtime and the SDK agents use to honour the metric contract.

Modules, from the outside in (each imports only those below it):

- ``server``: the aiohttp server of ``alm-agent``: tasks, probes, metrics, drain on SIGTERM.
- ``backends``: the model backend seam; ``simulated``: the provider with configurable KPIs.
- ``sdk``: ``Agent`` / ``Task`` / ``@agent.tool``: record tasks, tokens, cost, tools, scores.
- ``instruments``: the contract (``alm.metrics.contract``) as prometheus-client metrics.
- ``config``: the operator's rendered config and env; ``credentials``: credential files.

The server is not imported here, so ``python -m alm.runtime.server`` runs it exactly once.
"""

from __future__ import annotations

from alm.runtime import backends, config, credentials, instruments, sdk, simulated

__all__ = ["backends", "config", "credentials", "instruments", "sdk", "simulated"]
