"""Writing a kubeconfig for a bare API server URL.

Real clusters come with their own kubeconfig (``kind get kubeconfig``). This helper is for
pointing the e2e suite at something that has none, above all the emulated API server of
the integration tests, which listens on plain ``http://127.0.0.1:PORT`` without auth::

    path = write_kubeconfig(tmp_path / "kubeconfig", f"http://127.0.0.1:{port}")
    # ALM_E2E_KUBECONFIG=<path> pytest tests/e2e
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml

__all__ = ["kubeconfig_document", "write_kubeconfig"]


def kubeconfig_document(
    server: str, *, name: str = "alm-e2e", namespace: str | None = None,
    token: str | None = None, insecure_skip_tls_verify: bool = False,
) -> dict[str, Any]:
    """A one-cluster, one-user, one-context kubeconfig; no credentials unless ``token``."""
    cluster: dict[str, Any] = {"server": server.rstrip("/")}
    if insecure_skip_tls_verify:
        cluster["insecure-skip-tls-verify"] = True
    user: dict[str, Any] = {"token": token} if token else {}
    context: dict[str, Any] = {"cluster": name, "user": name}
    if namespace:
        context["namespace"] = namespace
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "preferences": {},
        "clusters": [{"name": name, "cluster": cluster}],
        "users": [{"name": name, "user": user}],
        "contexts": [{"name": name, "context": context}],
        "current-context": name,
    }


def write_kubeconfig(
    path: str | os.PathLike[str], server: str, *, name: str = "alm-e2e", namespace: str | None = None,
    token: str | None = None, insecure_skip_tls_verify: bool = False,
) -> Path:
    """Write :func:`kubeconfig_document` to ``path`` (mode 0600, it may hold a token); return the path."""
    target = Path(path)
    document = kubeconfig_document(
        server, name=name, namespace=namespace, token=token, insecure_skip_tls_verify=insecure_skip_tls_verify)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(yaml.safe_dump(document, sort_keys=False))
    target.chmod(0o600)
    return target
