"""Human controls of an AgentRollout: the annotations a person (or ``kubectl alm``) sets.

The operator never writes a user-owned spec (DESIGN.md, GitOps rules): commands arrive as
annotations on the AgentRollout, the planner carries them out, records the result in status and
the audit log, and asks the shell to remove the annotation (``ConsumeControl``). Every command
is consumed, also one that does not apply right now (it then says why in an Event), so a stale
annotation never fires later by surprise.

==========================  ==========================  ==============================================
annotation                  value                       effect
==========================  ==========================  ==============================================
``alm.dev/promote``         ``""``                      skip the current step (``kubectl alm promote``)
``alm.dev/promote``         ``full``                    skip every remaining step (``--full``)
``alm.dev/abort``           free text (why)             all traffic back to stable, phase Aborted
``alm.dev/pause``           anything                    stop advancing (traffic stays as it is)
``alm.dev/resume``          anything                    end a pause (pause step, pause, inconclusive)
``alm.dev/approve``         ``""`` or a step index      pass the approval step (that one, if given)
``alm.dev/approved-by``     who approves                recorded with the approval and as audit actor
==========================  ==========================  ==============================================

This module only reads annotations into a :class:`Controls` value; what each one does is
decided in :mod:`alm.core.rollout` and the strategy modules.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

__all__ = [
    "ABORT",
    "ANNOTATIONS",
    "APPROVE",
    "APPROVED_BY",
    "PAUSE",
    "PROMOTE",
    "RESUME",
    "Controls",
    "from_annotations",
]

PROMOTE = "alm.dev/promote"
ABORT = "alm.dev/abort"
PAUSE = "alm.dev/pause"
RESUME = "alm.dev/resume"
APPROVE = "alm.dev/approve"
APPROVED_BY = "alm.dev/approved-by"
ANNOTATIONS = (PROMOTE, ABORT, PAUSE, RESUME, APPROVE, APPROVED_BY)
PROMOTE_FULL = "full"


@dataclasses.dataclass(frozen=True)
class Controls:
    """The commands present on the AgentRollout, as plain values (absent: False / None)."""

    promote: bool = False
    promote_full: bool = False
    abort: str | None = None  # the annotation's value (why), "" when none was given
    pause: bool = False
    resume: bool = False
    approve: bool = False
    approve_step: int | None = None  # the step the approval is meant for, when the value names one
    approved_by: str | None = None  # "" when the annotation is there but empty

    @property
    def present(self) -> tuple[str, ...]:
        """The annotations these controls came from, in the order the shell removes them."""
        found = {PROMOTE: self.promote or self.promote_full, ABORT: self.abort is not None, PAUSE: self.pause,
                 RESUME: self.resume, APPROVE: self.approve, APPROVED_BY: self.approved_by is not None}
        return tuple(name for name in ANNOTATIONS if found[name])


def _step(value: str) -> int | None:
    value = value.strip()
    return int(value) if value.isdigit() else None


def from_annotations(annotations: Mapping[str, str] | None) -> Controls:
    """The controls in ``metadata.annotations`` (other annotations are ignored).

    ``alm.dev/promote: full`` (any case) promotes fully; any other value promotes one step.
    ``alm.dev/approve: "3"`` approves only step 3, so a repeated or late command cannot pass a
    later approval step; an empty value approves the step the rollout waits at.
    """
    found = dict(annotations or {})
    promote = found.get(PROMOTE)
    full = promote is not None and promote.strip().lower() == PROMOTE_FULL
    approve = found.get(APPROVE)
    approved_by = found.get(APPROVED_BY)
    return Controls(
        promote=promote is not None and not full,
        promote_full=full,
        abort=found.get(ABORT),
        pause=PAUSE in found,
        resume=RESUME in found,
        approve=approve is not None,
        approve_step=_step(approve) if approve is not None else None,
        approved_by=approved_by.strip() if approved_by is not None else None,
    )
