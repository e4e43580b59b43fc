"""Credentials as files, read when used and never shown.

The operator mounts each tool's credential from the Agent's scoped Secret as a file. Reading it
at each use (not once at start-up) picks up a rotation without a restart and fails the tool call
as soon as the credential is revoked. A ``Secret`` prints as ``Secret(****)`` so a stray log line
or repr cannot leak the value; only ``reveal()`` returns it.
"""

from __future__ import annotations

import pathlib

__all__ = ["CredentialUnavailable", "Secret", "read"]


class CredentialUnavailable(Exception):
    """The credential file is missing or unreadable (revoked, or not mounted yet)."""


class Secret:
    """A credential value that never appears in str(), repr() or f-strings."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        """The value, for the one place that sends it to the tool."""
        return self._value

    def __repr__(self) -> str:
        return "Secret(****)"

    __str__ = __repr__

    def __format__(self, spec: str) -> str:
        return repr(self)


def read(path: pathlib.Path) -> Secret:
    """The credential in ``path``, trailing newline stripped (``kubectl create secret`` adds none,
    hand-written files often do)."""
    try:
        return Secret(path.read_text().rstrip("\n"))
    except OSError as e:
        # The path is not secret; the value never reaches this message.
        raise CredentialUnavailable(f"credential file {path} is unavailable ({type(e).__name__})") from None
