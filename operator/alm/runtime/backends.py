"""Model backends of the reference runtime: one seam, one module per provider.

The reference runtime ships only ``simulated``; a real agent brings its own code and records
its work with ``alm.runtime.sdk``. An unknown provider is refused at start-up with what to do,
never silently replaced by another.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Protocol

from alm.runtime import config, sdk, simulated

__all__ = ["BACKENDS", "Backend", "create"]


class Backend(Protocol):
    """Serves one task inside an open ``sdk.Task``, recording tokens, tools and score on it."""

    async def run(self, text: str, task: sdk.Task) -> str: ...


Factory = Callable[[sdk.Agent, config.RuntimeConfig, Mapping[str, str]], Backend]

BACKENDS: dict[str, Factory] = {
    "simulated": simulated.create,
}


def create(agent: sdk.Agent, cfg: config.RuntimeConfig, environ: Mapping[str, str]) -> Backend:
    factory = BACKENDS.get(cfg.model.provider)
    if factory is None:
        known = ", ".join(sorted(BACKENDS))
        raise config.ConfigError(
            f"model provider {cfg.model.provider!r} is not built into the reference runtime (it has: {known}); "
            "use an image with your own agent code, which records its work with alm.runtime.sdk"
        )
    return factory(agent, cfg, environ)
