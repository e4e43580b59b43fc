"""Fixtures of the e2e suite: a real cluster named by ``ALM_E2E_KUBECONFIG`` (see docs/e2e.md).

Session: the kubeconfig is loaded and the server contacted once, alm's CRDs are applied
(server-side) and waited for, and with ``ALM_E2E_SIMULATE_NODES=1`` a fake Node is
registered and kept alive. Per test (``cluster``): a fresh namespace ``alm-e2e-<random>``,
the operator in-process watching only it, and on node-less clusters the pod simulator.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from kubernetes import client as k8s

from alm.kube import errors
from alm.kube.api import Kube
from alm.kube.client import build_configuration
from tests.e2e.cluster import HARNESS_FIELD_MANAGER, E2ECluster, e2e_cluster
from tests.e2e.crds import install_crds
from tests.e2e.nodes import FAKE_NODE, NodeHeartbeat, delete_fake_node, register_fake_node
from tests.e2e.settings import SKIP_REASON, E2ESettings

log = logging.getLogger(__name__)

_HERE = Path(__file__).resolve().parent


def _settings_or_error() -> E2ESettings | str | None:
    try:
        return E2ESettings.from_env()
    except ValueError as exc:
        return str(exc)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Without ``ALM_E2E_KUBECONFIG`` every test of this directory is skipped, before any fixture runs."""
    if _settings_or_error() is not None:
        return
    skip = pytest.mark.skip(reason=SKIP_REASON)
    for item in items:
        if _HERE in Path(str(item.path)).resolve().parents:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def e2e_settings() -> E2ESettings:
    settings = _settings_or_error()
    if settings is None:
        pytest.skip(SKIP_REASON)
    if isinstance(settings, str):
        pytest.fail(f"e2e misconfigured: {settings}", pytrace=False)
    return settings


@pytest.fixture(scope="session")
def e2e_configuration(e2e_settings: E2ESettings) -> k8s.Configuration:
    """The kubeconfig's Configuration, after checking that the server answers."""
    configuration = build_configuration(kubeconfig=e2e_settings.kubeconfig, context=e2e_settings.context)
    with k8s.ApiClient(configuration) as api_client:
        try:
            version = Kube(api_client).request("GET", "/version") or {}
        except errors.ApiError as exc:
            pytest.fail(f"e2e: the API server {configuration.host} does not answer: {exc}", pytrace=False)
    log.info("e2e against %s (%s)", configuration.host, version.get("gitVersion", "unknown version"))
    return configuration


@pytest.fixture(scope="session")
def e2e_kube(e2e_configuration: k8s.Configuration) -> Iterator[Kube]:
    """A sync client for session-level work (CRDs, the fake node); not for use inside tests."""
    with k8s.ApiClient(e2e_configuration) as api_client:
        yield Kube(api_client, field_manager=HARNESS_FIELD_MANAGER)


@pytest.fixture(scope="session")
def e2e_crds(e2e_kube: Kube) -> list[str]:
    """alm's CRDs, installed or upgraded and served. They stay installed after the session."""
    return install_crds(e2e_kube)


@pytest.fixture(scope="session")
def fake_node(e2e_settings: E2ESettings, e2e_configuration: k8s.Configuration) -> Iterator[str | None]:
    """With ``ALM_E2E_SIMULATE_NODES=1``: the fake Node's name, kept Ready all session; else None."""
    if not e2e_settings.simulate_nodes:
        yield None
        return
    with k8s.ApiClient(e2e_configuration) as api_client:
        kube = Kube(api_client, field_manager=HARNESS_FIELD_MANAGER)
        register_fake_node(kube, FAKE_NODE)
        heartbeat = NodeHeartbeat(kube, FAKE_NODE)
        heartbeat.start()
        try:
            yield FAKE_NODE
        finally:
            heartbeat.stop()
            delete_fake_node(kube, FAKE_NODE)
            log.info("deleted fake node %s", FAKE_NODE)


@pytest.fixture
async def cluster(
    e2e_settings: E2ESettings, e2e_configuration: k8s.Configuration, e2e_crds: list[str], fake_node: str | None,
) -> AsyncIterator[E2ECluster]:
    """A ``tests.scenarios.Cluster`` on the real server: fresh namespace, operator running in this loop."""
    async with e2e_cluster(e2e_configuration, e2e_settings, fake_node=fake_node) as c:
        yield c
