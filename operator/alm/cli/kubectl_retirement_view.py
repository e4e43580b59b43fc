"""``kubectl alm retire``: an AgentRetirement's phase, revocation receipts and archive.

Why a module: the retirement is its own kind with its own outcome (what was revoked, where the
archive went and its checksum); :func:`retirement_data` is the ``-o json|yaml`` twin of
:func:`render_retirement`, and the command polls its phase. Pure.
"""

from __future__ import annotations

from typing import Any

from rich.console import RenderableType

from alm.cli import kubectl_format as fmt
from alm.cli.kubectl_format import DEFAULT_WIDTH
from alm.cli.kubectl_objects import Obj, get, name_of

__all__ = [
    "render_retirement",
    "retirement_data",
]


# --- retirement -------------------------------------------------------------------------------

def retirement_data(retirement: Obj) -> dict[str, Any]:
    status = get(retirement, "status") or {}
    return {
        "name": name_of(retirement),
        "agent": get(retirement, "spec", "agentRef", "name"),
        "reason": get(retirement, "spec", "reason"),
        "phase": status.get("phase") or "Pending",
        "message": status.get("message"),
        "revoked": list(status.get("revoked") or []),
        "archive": status.get("archive"),
    }


def render_retirement(retirement: Obj, *, width: int = DEFAULT_WIDTH) -> str:
    data = retirement_data(retirement)
    parts: list[RenderableType | str] = [
        f"Retirement: {data['name']} (agent {data['agent']})",
        f"Reason:     {data['reason']}",
        f"Phase:      {data['phase']}",
    ]
    if data["message"]:
        parts.append(f"Message:    {data['message']}")
    if data["revoked"]:
        table = fmt.table("KIND", "NAME", "RESULT", "REVOKED AT")
        for r in data["revoked"]:
            fmt.row(table, r.get("kind"), r.get("name"), r.get("result"), r.get("revokedAt"))
        parts += ["", "Revocation receipts:", table]
    archive = data["archive"]
    if archive:
        parts += ["", f"Archive:    {archive.get('location')} ({archive.get('sizeBytes')} bytes, "
                      f"{archive.get('parts', 1)} part(s))",
                  f"SHA-256:    {archive.get('sha256')}"]
    return fmt.render(parts, width)
