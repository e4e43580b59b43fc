"""``alm``: run the operator, generate the CRDs, or start the sandbox."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import pathlib
import sys
from collections.abc import Sequence

from alm import __version__

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="alm", description="alm: the lifecycle operator for AI agents")
    parser.add_argument("--version", action="version", version=f"alm {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run the operator against a cluster")
    run.add_argument("-n", "--namespace", action="append", default=[],
                     help="watch only this namespace (repeatable; default: all namespaces)")
    peering = run.add_mutually_exclusive_group()
    peering.add_argument("--standalone", dest="standalone", action="store_true", default=True,
                         help="run without kopf peering (default; run one replica)")
    peering.add_argument("--peering", dest="standalone", action="store_false",
                         help="coordinate replicas through kopf peering objects")
    run.add_argument("--liveness", default="http://0.0.0.0:8080/healthz",
                     help="liveness endpoint URL to serve ('' to disable)")
    run.add_argument("--metrics-port", type=int, default=9090,
                     help="serve the operator's Prometheus metrics on this port (0 to disable)")
    run.add_argument("--archive-image", default=None,
                     help="image of the Job that writes archives to a PVC (default: $ALM_ARCHIVE_IMAGE, "
                          "else busybox:1.36)")
    run.add_argument("--log-format", choices=["plain", "json"], default="plain")
    run.add_argument("--verbose", action="store_true")
    run.add_argument("--kubeconfig", help="kubeconfig file (default: in-cluster, then ~/.kube/config)")
    run.add_argument("--context", help="kubeconfig context")
    run.add_argument("--server", help="API server URL without authentication (sandbox, tests)")

    crds = sub.add_parser("crds", help="write the CRD YAML generated from the API models")
    crds.add_argument("-o", "--output", default="crds", help="directory to write into (default: crds)")
    crds.add_argument("--stdout", action="store_true", help="print a multi-document YAML instead")

    sandbox = sub.add_parser("sandbox", help="the whole operator on an emulated API server, no cluster")
    sandbox.add_argument("--keep", action="store_true", help="keep running after the story and print a kubeconfig")
    sandbox.add_argument("--timeout", type=float, default=120.0, help="give up after this many seconds")
    sandbox.add_argument("-o", "--output", choices=["text", "json"], default="text")
    return parser


def _setup_logging(fmt: str, verbose: bool) -> None:
    level = logging.DEBUG if verbose else logging.INFO
    if fmt == "json":
        handler = logging.StreamHandler()
        handler.setFormatter(_JsonFormatter())
        logging.basicConfig(level=level, handlers=[handler], force=True)
    else:
        logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", force=True)


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        doc = {"time": self.formatTime(record), "level": record.levelname, "logger": record.name,
               "message": record.getMessage()}
        if record.exc_info:
            doc["exception"] = self.formatException(record.exc_info)
        return json.dumps(doc)


def _cmd_run(args: argparse.Namespace) -> int:
    from alm.handlers.runner import run_operator
    from alm.kube.client import build_configuration

    _setup_logging(args.log_format, args.verbose)
    if args.archive_image:
        os.environ["ALM_ARCHIVE_IMAGE"] = args.archive_image  # read by alm.handlers.context.Context
    if args.metrics_port:
        from prometheus_client import start_http_server

        from alm.metrics.operator import REGISTRY

        start_http_server(args.metrics_port, registry=REGISTRY)
    configuration = build_configuration(args.server, args.kubeconfig, args.context)
    asyncio.run(run_operator(configuration, namespaces=args.namespace, standalone=args.standalone,
                             liveness=args.liveness or None))
    return 0


def _cmd_crds(args: argparse.Namespace) -> int:
    from alm.api import crdgen

    crds = crdgen.build_crds()
    if args.stdout:
        sys.stdout.write("".join(crdgen.render_crd_yaml(crd) for crd in crds))
        return 0
    out = pathlib.Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    for crd in crds:
        path = out / crdgen.crd_filename(crd)
        path.write_text(crdgen.render_crd_yaml(crd))
        print(f"wrote {path}")
    return 0


def _cmd_sandbox(args: argparse.Namespace) -> int:
    from alm.sandbox import story

    code: int = story.main(keep=args.keep, timeout=args.timeout, output=args.output)
    return code


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    commands = {"run": _cmd_run, "crds": _cmd_crds, "sandbox": _cmd_sandbox}
    return commands[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
