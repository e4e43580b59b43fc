"""Running the operator: in-process (tests, sandbox) or as ``alm run``.

kopf and our REST layer authenticate from the same ``kubernetes`` Configuration, so
whatever the user points ``alm run`` at (in-cluster, a kubeconfig and context, or
a bare URL) both talk to the same API server with the same identity.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any

import kopf
from kubernetes import client as k8s

from alm.handlers import retirement, wiring
from alm.handlers.context import Context
from alm.handlers.registry import REGISTRY
from alm.kube.api import Kube

__all__ = ["run_operator"]

log = logging.getLogger(__name__)

assert wiring and retirement  # imported for their side effect: every handler registers in REGISTRY


@kopf.on.login(registry=REGISTRY)
def login(memo: kopf.Memo, **_: Any) -> kopf.ConnectionInfo:
    config: k8s.Configuration = Context.of(memo).kube.api_client.configuration
    header = config.get_api_key_with_prefix("BearerToken") or config.get_api_key_with_prefix("authorization")
    parts = header.split(" ", 1) if header else []
    scheme, token = (parts[0], parts[1]) if len(parts) == 2 else (None, parts[0] if parts else None)
    return kopf.ConnectionInfo(
        server=config.host,
        ca_path=config.ssl_ca_cert,
        insecure=not config.verify_ssl,
        scheme=scheme,
        token=token,
        certificate_path=config.cert_file,
        private_key_path=config.key_file,
    )


async def run_operator(
    configuration: k8s.Configuration,
    *,
    namespaces: Sequence[str] = (),
    standalone: bool = True,
    liveness: str | None = None,
    stop_flag: asyncio.Event | None = None,
    ready_flag: asyncio.Event | None = None,
    context: Context | None = None,
) -> None:
    """Run until ``stop_flag`` is set (or forever). ``namespaces`` empty = cluster-wide."""
    ctx = context or Context(Kube(k8s.ApiClient(configuration)))
    await kopf.operator(
        registry=REGISTRY,
        standalone=standalone,
        clusterwide=not namespaces,
        namespaces=list(namespaces),
        liveness_endpoint=liveness,
        stop_flag=stop_flag,
        ready_flag=ready_flag,
        memo=kopf.Memo(alm=ctx),
    )
