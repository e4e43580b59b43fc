"""``kubectl alm``: the kubectl plugin. Its commands arrive with the rollout and
retirement controllers; for now it answers ``--help`` and ``version`` honestly."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from alm import __version__

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="kubectl alm",
        description="Operate alm agents from the terminal (list, status, promote, abort, retire, audit…). "
                    "Only 'version' is available in this release.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("version", help="print the plugin version")
    args = parser.parse_args(argv)
    if args.command == "version":
        print(f"kubectl-alm {__version__}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
