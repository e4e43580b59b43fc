"""Does a live object already hold everything we want? The "nothing to do" test.

A server fills in defaults (``terminationMessagePath``, ``clusterIP``, ``strategy``…)
and other controllers add fields, so equality would always fail. What matters is
that every field we set is present with our value: ``desired`` must be a subset of
``live``. Lists are compared item by item, with the same length, because the API
server replaces or merges them as a whole and an extra item is a real difference.

Examples::

    >>> covers({"a": 1, "b": {"c": 2, "x": 0}}, {"b": {"c": 2}})
    True
    >>> covers({"a": [1, 2]}, {"a": [1]})
    False
"""

from __future__ import annotations

from typing import Any

__all__ = ["covers"]


def covers(live: Any, desired: Any) -> bool:
    """True when ``live`` holds every field and value of ``desired``."""
    if isinstance(desired, dict):
        if not isinstance(live, dict):
            return False
        return all(key in live and covers(live[key], value) for key, value in desired.items())
    if isinstance(desired, list):
        if not isinstance(live, list) or len(live) != len(desired):
            return False
        return all(covers(have, want) for have, want in zip(live, desired, strict=True))
    if isinstance(desired, bool) or isinstance(live, bool):
        return desired is live
    if isinstance(desired, int | float) and isinstance(live, int | float):
        return float(desired) == float(live)
    return bool(live == desired)
