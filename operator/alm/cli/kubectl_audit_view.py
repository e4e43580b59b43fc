"""``kubectl alm audit``: an Agent's audit log as a table, with the verdict of the chain check.

Why a module: the audit log is not read from the Agent but from its ConfigMaps (entries and,
with ``--verify``, the :func:`alm.core.auditchain.verify` verdict as a dict); this view only shows
them. :func:`audit_data` is the ``-o json|yaml`` twin of :func:`render_audit`. Pure.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from rich.console import RenderableType

from alm.cli import kubectl_format as fmt
from alm.cli.kubectl_format import DEFAULT_WIDTH
from alm.cli.kubectl_objects import Obj

__all__ = [
    "audit_data",
    "render_audit",
]


# --- audit ------------------------------------------------------------------------------------

def audit_data(entries: Sequence[Obj], verdict: Mapping[str, Any] | None) -> dict[str, Any]:
    return {"entries": [dict(e) for e in entries], "verdict": dict(verdict) if verdict is not None else None}


def _details(details: Any, limit: int = 80) -> str:
    text = json.dumps(details, sort_keys=True, separators=(",", ":")) if details else ""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def render_audit(agent: str, entries: Sequence[Obj], verdict: Mapping[str, Any] | None, *,
                 width: int = DEFAULT_WIDTH) -> str:
    parts: list[RenderableType | str] = []
    if not entries:
        parts.append(f"Agent {agent} has no audit entries.")
    else:
        table = fmt.table("SEQ", "AT", "ACTOR", "ACTION", "SUBJECT", "DETAILS")
        for e in entries:
            if "malformed" in e:
                fmt.row(table, "?", None, None, "(malformed)", None, e["malformed"])
            else:
                fmt.row(table, e.get("seq"), e.get("at"), e.get("actor"), e.get("action"), e.get("subject"),
                     _details(e.get("details")))
        parts.append(table)
    if verdict is not None:
        if verdict.get("ok"):
            parts += ["", f"Verified: {verdict.get('message')}"]
        else:
            parts += ["", f"TAMPERED ({verdict.get('kind')}, seq {verdict.get('seq')}): {verdict.get('message')}"]
    return fmt.render(parts, width)
