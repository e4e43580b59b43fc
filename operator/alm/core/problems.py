"""A reason the operator cannot act yet, phrased for the person who must fix it."""

from __future__ import annotations

import dataclasses

__all__ = ["Problem"]


@dataclasses.dataclass(frozen=True)
class Problem:
    reason: str  # a constant from alm.core.reasons.Reason
    message: str  # says what is wrong and what to do about it
    invalid: bool = False  # True: the spec itself is wrong (an Invalid condition), not just early
    announce: bool = True  # False: a moment's wait the operator resolves itself; no Warning event
