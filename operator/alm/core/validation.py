"""Pydantic errors turned into one line a user can act on."""

from __future__ import annotations

import pydantic

__all__ = ["describe"]


def describe(exc: pydantic.ValidationError, prefix: str) -> str:
    """E.g. ``spec.replicas: Input should be greater than or equal to 0``."""
    parts = []
    for error in exc.errors(include_url=False)[:5]:
        loc = ".".join(str(p) for p in (prefix, *error["loc"]))
        parts.append(f"{loc}: {error['msg']}")
    more = len(exc.errors()) - 5
    if more > 0:
        parts.append(f"and {more} more")
    return "; ".join(parts)
