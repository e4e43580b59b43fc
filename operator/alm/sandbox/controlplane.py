"""The emulator as a control plane without nodes, for pointing the e2e suite at it.

:class:`NodelessControlPlane` serves the emulated API server on 127.0.0.1 with what a bare
``kube-apiserver`` + ``kube-controller-manager`` would do and nothing a node would
(:mod:`alm.sandbox.nodeless`): the Deployment controller creates Pending, unbound pods and
counts the Ready ones, bound pods are deleted gracefully, Jobs complete. Whoever plays
scheduler and kubelet (the e2e suite's node simulator, ``ALM_E2E_SIMULATE_NODES=1``) does the
rest over HTTP, exactly as against a real control plane. From a shell::

    python -m alm.sandbox.controlplane --kubeconfig /tmp/alm-nodeless.yaml &
    ALM_E2E_KUBECONFIG=/tmp/alm-nodeless.yaml ALM_E2E_SIMULATE_NODES=1 pytest tests/e2e
"""

from __future__ import annotations

import argparse
import os
import pathlib
import signal
import threading
from collections.abc import Sequence
from types import FrameType

import yaml

from alm.sandbox.apiserver import ApiServerEmulator
from alm.sandbox.apiserverthread import ApiServerThread
from alm.sandbox.jobs import JobController
from alm.sandbox.workloads import DeploymentController

__all__ = ["NodelessControlPlane", "main"]


class NodelessControlPlane:
    """The emulator served from a thread, its controllers running node-less; a context manager."""

    def __init__(self, host: str = "127.0.0.1", port: int | None = None) -> None:
        self.server = ApiServerThread(ApiServerEmulator(graceful_pod_deletion=True), host=host, port=port)
        self.deployments: DeploymentController | None = None
        self.jobs: JobController | None = None

    @property
    def url(self) -> str:
        return self.server.url

    def __enter__(self) -> NodelessControlPlane:
        self.server.start()
        try:
            self.deployments = DeploymentController(self.server.emulator.store, nodeless=True)
            self.jobs = JobController(self.server.emulator.store)
            self.server.call(self.deployments.start)
            self.server.call(self.jobs.start)
        except BaseException:
            self.server.stop()
            raise
        return self

    def __exit__(self, *_: object) -> None:
        try:
            for controller in (self.jobs, self.deployments):
                if controller is not None:
                    self.server.call(controller.stop)
        finally:
            self.server.stop()

    def write_kubeconfig(self, path: str | os.PathLike[str]) -> pathlib.Path:
        """A kubeconfig for this server (plain HTTP, no credentials), mode 0600."""
        target = pathlib.Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(yaml.safe_dump(self.server.kubeconfig(), sort_keys=False))
        target.chmod(0o600)
        return target


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m alm.sandbox.controlplane", description=__doc__.split("\n")[0])
    parser.add_argument("--kubeconfig", required=True, help="where to write the kubeconfig of the server")
    parser.add_argument("--port", type=int, default=None, help="port on 127.0.0.1 (default: a free one)")
    args = parser.parse_args(argv)
    done = threading.Event()

    def finish(signum: int, frame: FrameType | None) -> None:
        done.set()

    signal.signal(signal.SIGTERM, finish)
    signal.signal(signal.SIGINT, finish)
    with NodelessControlPlane(port=args.port) as plane:
        path = plane.write_kubeconfig(args.kubeconfig)
        print(f"serving a node-less control plane at {plane.url}; kubeconfig {path}", flush=True)
        done.wait()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
