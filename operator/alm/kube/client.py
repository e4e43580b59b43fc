"""Building a configured ``kubernetes`` ApiClient: in-cluster, from a kubeconfig, or
for a plain URL (the sandbox and the tests' emulated API server)."""

from __future__ import annotations

from kubernetes import client as k8s
from kubernetes import config as k8s_config

__all__ = ["build_configuration"]


def build_configuration(
    server: str | None = None, kubeconfig: str | None = None, context: str | None = None
) -> k8s.Configuration:
    """``server`` wins; else an explicit kubeconfig; else in-cluster; else ``~/.kube/config``."""
    configuration = k8s.Configuration()
    if server:
        configuration.host = server.rstrip("/")
        configuration.verify_ssl = False
        return configuration
    if kubeconfig or context:
        k8s_config.load_kube_config(  # type: ignore[no-untyped-call]
            config_file=kubeconfig, context=context, client_configuration=configuration)
        return configuration
    try:
        k8s_config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
    except k8s_config.ConfigException:
        k8s_config.load_kube_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
    return configuration
