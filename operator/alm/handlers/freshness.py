"""What we wrote, remembered until the watch catches up.

Handlers read children and status from kopf's indexes (a watch-fed cache, like a
controller-runtime informer), which lag our own writes by a few milliseconds. A pass
that runs in that gap would see the old object and write the same change again.
Remembering each object the API server returned to us, and preferring it while it
is newer than the indexed copy, removes those redundant writes.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

__all__ = ["Freshness"]

Key = tuple[str, str, str]  # kind, namespace, name


def _key(obj: Mapping[str, Any]) -> Key:
    meta = obj.get("metadata", {})
    return (str(obj.get("kind")), str(meta.get("namespace", "")), str(meta.get("name")))


def _rv(obj: Mapping[str, Any]) -> int:
    try:
        return int(obj.get("metadata", {}).get("resourceVersion", 0))
    except (TypeError, ValueError):
        return 0


class Freshness:
    def __init__(self) -> None:
        self._written: dict[Key, dict[str, Any]] = {}
        self._gone: dict[Key, str] = {}  # deleted by us -> owner uid, until the watch agrees

    def wrote(self, obj: Mapping[str, Any]) -> None:
        self._written[_key(obj)] = dict(obj)
        self._gone.pop(_key(obj), None)

    def deleted(self, obj: Mapping[str, Any], owner_uid: str) -> None:
        self._written.pop(_key(obj), None)
        self._gone[_key(obj)] = owner_uid

    def view(self, obj: Mapping[str, Any]) -> Mapping[str, Any]:
        """The fresher of the indexed ``obj`` and what we last wrote to it."""
        mine = self._written.get(_key(obj))
        if mine is None:
            return obj
        if _rv(obj) >= _rv(mine):
            del self._written[_key(obj)]  # the watch caught up
            return obj
        return mine

    def merge(self, indexed: Iterable[Mapping[str, Any]], kinds: Iterable[str], namespace: str,
              owner_uid: str) -> list[Mapping[str, Any]]:
        """Indexed children, refreshed, plus ones we created that the watch has not shown yet."""
        wanted = set(kinds)
        seen: dict[Key, Mapping[str, Any]] = {}
        present = set()
        for obj in indexed:
            key = _key(obj)
            present.add(key)
            if key in self._gone:
                continue
            seen[key] = self.view(obj)
        for key in [k for k, uid in self._gone.items() if uid == owner_uid and k not in present]:
            del self._gone[key]
        for key, obj in self._written.items():
            if key in seen or key[0] not in wanted or key[1] != namespace:
                continue
            refs = obj.get("metadata", {}).get("ownerReferences") or []
            if any(ref.get("uid") == owner_uid for ref in refs):
                seen[key] = obj
        return list(seen.values())
