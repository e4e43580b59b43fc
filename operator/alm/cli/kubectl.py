"""``kubectl alm``: the kubectl plugin (entry point ``kubectl-alm``).

See docs/cli.md for every command. The parsing lives here; the API calls in
:mod:`alm.cli.kubectl_commands`; what is shown in the ``alm.cli.kubectl_*_view(s)`` modules (pure).

Exit codes: 0 ok, 1 operation failed (or audit verification failed), 2 usage error,
3 not found (agent, object, or the alm CRDs), 4 forbidden (RBAC).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from collections.abc import Sequence
from typing import Any, TextIO

import yaml

from alm import __version__
from alm.cli import kubectl_commands as commands
from alm.cli.kubectl_commands import EXIT_CODES, CliError, Outcome
from alm.cli.kubectl_format import DEFAULT_WIDTH

__all__ = ["main"]

_EPILOG = "exit codes:\n" + "\n".join(f"  {code}  {text}" for code, text in EXIT_CODES.items())


def _globals(*, suppress: bool) -> argparse.ArgumentParser:
    """The global flags, accepted before and after the command (``kubectl alm status bot -n team``)."""
    default: Any = argparse.SUPPRESS if suppress else None
    parent = argparse.ArgumentParser(add_help=False)
    parent.add_argument("--kubeconfig", default=default, help="kubeconfig file (default: $KUBECONFIG, ~/.kube/config)")
    parent.add_argument("--context", default=default, help="kubeconfig context (default: the current context)")
    parent.add_argument("-n", "--namespace", default=default,
                        help="namespace (default: the context's namespace, else 'default')")
    parent.add_argument("-o", "--output", choices=["json", "yaml"], default=default,
                        help="print data for scripts instead of the human view")
    return parent


def _parser() -> argparse.ArgumentParser:
    sub_globals = _globals(suppress=True)
    parser = argparse.ArgumentParser(
        prog="kubectl alm", parents=[_globals(suppress=False)], epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Operate alm agents from the terminal: list, status, promote, abort, retire, audit, ...",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, help_: str) -> argparse.ArgumentParser:
        return sub.add_parser(name, parents=[sub_globals], help=help_, description=help_, epilog=_EPILOG,
                              formatter_class=argparse.RawDescriptionHelpFormatter)

    command("version", "print the plugin version")
    command("list", "agents with version, canary weight, phase, KPIs and today's cost")
    status = command("status", "an agent's phase, conditions and active rollout")
    status.add_argument("agent")
    status.add_argument("-w", "--watch", action="store_true",
                        help="refresh every second until the rollout finishes (Ctrl-C stops)")
    command("history", "the versions an agent went through (status.history)").add_argument("agent")
    promote = command("promote", "skip the current step of the active rollout (--full: every remaining step)")
    promote.add_argument("agent")
    promote.add_argument("--full", action="store_true", help="skip every remaining step")
    abort = command("abort", "send all traffic back to the stable version and stop the rollout")
    abort.add_argument("agent")
    abort.add_argument("--reason", default="", help="why (recorded with the abort)")
    command("pause", "stop the active rollout where it is").add_argument("agent")
    command("resume", "continue a paused rollout").add_argument("agent")
    command("approve", "pass the approval step of the active rollout, as the kubeconfig user").add_argument("agent")
    rollback = command("rollback", "set spec.version back to the previous version (a spec change: see GitOps)")
    rollback.add_argument("agent")
    rollback.add_argument("--to", metavar="VERSION", help="the AgentVersion to go to (default: the previous one)")
    retire = command("retire", "retire an agent: drain, revoke every credential, archive")
    retire.add_argument("agent")
    retire.add_argument("--reason", required=True, help="why the agent retires (kept in the audit log)")
    retire.add_argument("--grace", type=int, metavar="SECONDS", help="drain grace period (default: 30)")
    retire.add_argument("--wait", action="store_true", help="wait for Retired or Failed and show the receipts")
    retire.add_argument("--timeout", type=float, default=600.0, metavar="SECONDS",
                        help="give up waiting after this long (default: 600)")
    audit = command("audit", "the agent's hash-chained audit log")
    audit.add_argument("agent")
    audit.add_argument("--verify", action="store_true",
                       help="check the chain against status.auditHead (exit 1 if broken)")
    command("budget", "today's spending against spec.budget").add_argument("agent")
    return parser


def _emit(outcome: Outcome, fmt: str | None, stream: TextIO) -> None:
    if fmt == "json":
        if outcome.data is not None:
            stream.write(json.dumps(outcome.data, indent=2, sort_keys=True) + "\n")
    elif fmt == "yaml":
        if outcome.data is not None:
            stream.write(yaml.safe_dump(outcome.data, sort_keys=True, explicit_start=True))
    else:
        stream.write(outcome.text)
    stream.flush()


def _width(stream: TextIO) -> int:
    return shutil.get_terminal_size((100, 24)).columns if stream.isatty() else DEFAULT_WIDTH


def _run(args: argparse.Namespace, stream: TextIO) -> int:
    if args.command == "version":
        stream.write(f"kubectl-alm {__version__}\n")
        return 0
    session = commands.connect(args.kubeconfig, args.context, args.namespace)
    width = _width(stream)
    fmt = args.output
    agent = getattr(args, "agent", "")
    if args.command == "status" and args.watch:
        live = stream.isatty() and fmt is None

        def show(outcome: Outcome) -> None:
            if live:
                stream.write("\x1b[2J\x1b[H")  # clear the screen: a refreshing view
            _emit(outcome, fmt, stream)

        return commands.watch_status(session, agent, show, width=width).code
    outcome: Outcome
    if args.command == "list":
        outcome = commands.list_agents(session, width)
    elif args.command == "status":
        outcome = commands.status(session, agent, width)
    elif args.command == "history":
        outcome = commands.history(session, agent, width)
    elif args.command == "budget":
        outcome = commands.budget(session, agent, width)
    elif args.command == "audit":
        outcome = commands.audit_log(session, agent, verify=args.verify, width=width)
    elif args.command in commands.CONTROLS:
        outcome = commands.control(session, agent, args.command, full=getattr(args, "full", False),
                                   reason=getattr(args, "reason", ""))
    elif args.command == "rollback":
        outcome = commands.rollback(session, agent, args.to)
        if fmt is not None:
            sys.stderr.write(commands.GITOPS_HINT + "\n")
    elif args.command == "retire":
        outcome = commands.retire(session, agent, args.reason, grace=args.grace, wait=args.wait,
                                  timeout=args.timeout,
                                  out=lambda o: _emit(o, None, sys.stderr if fmt else stream))
    else:  # pragma: no cover - argparse only lets known commands through
        raise CliError(f"unknown command {args.command}", commands.EXIT_USAGE)
    _emit(outcome, fmt, stream)
    return outcome.code


def main(argv: Sequence[str] | None = None, stream: TextIO | None = None) -> int:
    """Run one command; returns the exit code (argparse exits 2 itself on usage errors)."""
    out = stream if stream is not None else sys.stdout
    args = _parser().parse_args(argv)
    try:
        return _run(args, out)
    except CliError as exc:
        sys.stderr.write(f"error: {exc}\n")
        return exc.code
    except KeyboardInterrupt:
        sys.stderr.write("interrupted\n")
        return 130


if __name__ == "__main__":
    sys.exit(main())
