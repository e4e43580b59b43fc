"""One pass of the AgentRetirement planner: what it accumulates while it steps through phases.

:func:`alm.core.retirement.plan` starts a :class:`Pass` from the spec, the previous status and
the observations, runs the step of each phase it enters, then freezes the pass into a
:class:`~alm.core.retirementtypes.RetirementPlan`. The phase steps live in two modules
(:mod:`alm.core.retirement`, :mod:`alm.core.retirementrevoking`) and share this accumulator, the
waits they ask for, and :func:`fail`; nothing here does I/O or reads a clock.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from alm.api import AgentRetirementPhase as Phase
from alm.api import AgentRetirementSpec
from alm.core.auditactions import AuditAction, AuditIntent
from alm.core.events import EventIntent
from alm.core.retirementtypes import Action, RetirementObservations

__all__ = ["AT_ONCE", "CONFIRM", "POLL", "Pass", "fail"]

Obj = dict[str, Any]

AT_ONCE = 0.0  # the status changed and the next step needs no wait
CONFIRM = 1.0  # actions were issued: look again soon to see them done
POLL = 5.0  # waiting for pods or deletions to finish


@dataclasses.dataclass
class Pass:
    """The decisions of one pass, accumulated (short-lived and internal to the planner; the plan is frozen)."""

    spec: AgentRetirementSpec
    obs: RetirementObservations
    now: str
    phase: str
    transitions: list[Obj]
    revoked: list[Obj]
    attempts: dict[str, Obj]
    archived: Obj | None  # status.archive, once written
    message: str
    reason: str
    actions: list[Action] = dataclasses.field(default_factory=list)
    events: list[EventIntent] = dataclasses.field(default_factory=list)
    audit: list[AuditIntent] = dataclasses.field(default_factory=list)
    waits: list[float] = dataclasses.field(default_factory=list)

    @property
    def agent(self) -> str:
        return self.spec.agent_ref.name

    @property
    def subject(self) -> str:
        return f"AgentRetirement/{self.obs.name}"

    def record(self, action: str, **details: Any) -> None:
        self.audit.append(AuditIntent(action, self.subject, {"agent": self.agent, **details}))

    def tell(self, reason: str, message: str, *, warning: bool = False) -> None:
        self.events.append(EventIntent(reason, message, warning=warning))

    def wait(self, seconds: float) -> None:
        self.waits.append(max(0.0, seconds))

    def entered(self, phase: str) -> str:
        """When ``phase`` was last entered (now if it never was)."""
        return next((str(t["at"]) for t in reversed(self.transitions) if t.get("phase") == phase), self.now)

    def enter(self, phase: str, reason: str, message: str) -> None:
        self.phase, self.reason, self.message = str(phase), reason, message
        self.transitions.append({"phase": str(phase), "at": self.now})


def fail(p: Pass, reason: str, message: str) -> None:
    p.enter(Phase.FAILED, reason, message)
    p.record(AuditAction.RETIREMENT_FAILED, reason=reason, message=message)
    p.tell(reason, message, warning=True)

