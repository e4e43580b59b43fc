"""How ``kubectl alm`` draws: kubectl-like ``rich`` tables and the formatting of numbers in them.

Why a module: every view of :mod:`alm.cli` (status, list, history, budget, audit, retirement)
prints the same way; this is that one way, apart from what each view shows.

Tables are drawn with ``rich`` (no colour, no markup: every cell is literal text), so the output
of one input is the same on every machine; the unit tests keep snapshots of it.
"""

from __future__ import annotations

import io
from collections.abc import Iterable
from typing import Any

from rich.console import Console, RenderableType
from rich.table import Table
from rich.text import Text

__all__ = [
    "DEFAULT_WIDTH",
    "NONE",
    "number",
    "percent",
    "render",
    "row",
    "seconds",
    "table",
    "usd",
]

DEFAULT_WIDTH = 160  # like kubectl, output to a pipe is not wrapped at 80 columns
NONE = "-"


def percent(value: Any, digits: int = 1) -> str:
    return NONE if not isinstance(value, (int, float)) else f"{value * 100:.{digits}f}%"


def seconds(value: Any) -> str:
    return NONE if not isinstance(value, (int, float)) else f"{value:.2f}s"


def usd(value: Any) -> str:
    return NONE if not isinstance(value, (int, float)) else f"${value:,.2f}"


def number(value: Any) -> str:
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return NONE
    return f"{value:,}" if isinstance(value, int) else f"{value:.4g}"


def _text(value: Any) -> Text:
    return Text(NONE if value is None or value == "" else str(value))


def table(*columns: str, wrap: str | None = None) -> Table:
    """A kubectl-like table; only the ``wrap`` column (default: the last) folds when space runs out."""
    table = Table(box=None, show_edge=False, pad_edge=False, header_style="", padding=(0, 2, 0, 0))
    folding = wrap if wrap is not None else columns[-1]
    for column in columns:
        table.add_column(column, overflow="fold", no_wrap=column != folding)
    return table


def row(table: Table, *cells: Any) -> None:
    table.add_row(*(_text(cell) for cell in cells))


def render(parts: Iterable[RenderableType | str], width: int) -> str:
    out = io.StringIO()
    console = Console(file=out, width=width, color_system=None, force_terminal=False, markup=False,
                      highlight=False, emoji=False, legacy_windows=False, soft_wrap=False)
    for part in parts:
        console.print(Text(part) if isinstance(part, str) else part)
    return "\n".join(line.rstrip() for line in out.getvalue().splitlines()) + "\n"
