"""One reconcile at a time per object, with bursts of triggers folded into one rerun.

Creating an Agent produces a dozen watch events (its own, then each child's); each
asks for a reconcile. While one runs, further requests only mark the key dirty and
the running pass goes once more when it ends: never two passes of the same Agent
at once, never a queue of redundant ones.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Hashable

__all__ = ["Coalescer"]


class Coalescer:
    def __init__(self) -> None:
        self._dirty: dict[Hashable, bool] = {}

    def busy(self, key: Hashable) -> bool:
        return key in self._dirty

    async def run(self, key: Hashable, work: Callable[[], Awaitable[None]]) -> None:
        if key in self._dirty:
            self._dirty[key] = True
            return
        self._dirty[key] = False
        try:
            while True:
                await work()
                if not self._dirty[key]:
                    break
                self._dirty[key] = False
        finally:
            del self._dirty[key]
