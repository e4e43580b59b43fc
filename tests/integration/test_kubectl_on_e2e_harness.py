"""The ``kubectl alm`` scenario through the e2e harness (``e2e_cluster``), against the emulator as a
node-less control plane with simulated nodes: what tests/e2e runs on a real cluster, here without one.

It checks the harness's side of the scenario: ``E2ECluster.kubeconfig()`` is a 0600 copy of the
suite's kubeconfig (credentials kept) with the test namespace as its context's namespace, the CLI
works with it, and the copy is gone after teardown.
"""

from __future__ import annotations

import asyncio
import pathlib
import stat

import pytest
import yaml
from kubernetes import client as k8s

from alm.kube.api import Kube
from alm.kube.client import build_configuration
from alm.sandbox.controlplane import NodelessControlPlane
from tests import scenarios
from tests.e2e.cluster import HARNESS_FIELD_MANAGER, e2e_cluster
from tests.e2e.crds import install_crds
from tests.e2e.kubeconfig import write_kubeconfig
from tests.e2e.nodes import FAKE_NODE, register_fake_node
from tests.e2e.settings import E2ESettings

pytestmark = pytest.mark.timeout(120)

TOKEN = "e2e-token-kept-as-it-is"  # the emulator does not check it; the copy must carry it


async def test_kubectl_alm_scenario_through_the_e2e_harness(tmp_path: pathlib.Path) -> None:
    with NodelessControlPlane() as plane:
        source = write_kubeconfig(tmp_path / "kubeconfig", plane.url, name="e2e-admin", token=TOKEN)
        settings = E2ESettings(kubeconfig=str(source), simulate_nodes=True, timeout_factor=1.0)
        configuration = build_configuration(kubeconfig=str(source))
        with k8s.ApiClient(configuration) as api_client:
            kube = Kube(api_client, field_manager=HARNESS_FIELD_MANAGER)
            await asyncio.to_thread(install_crds, kube)
            await asyncio.to_thread(register_fake_node, kube)
        async with e2e_cluster(configuration, settings, fake_node=FAKE_NODE) as cluster:
            copy = cluster.kubeconfig()
            assert copy != source and stat.S_IMODE(copy.stat().st_mode) == 0o600
            document = yaml.safe_load(copy.read_text())
            (context,) = document["contexts"]
            assert context["context"] == {"cluster": "e2e-admin", "user": "e2e-admin",
                                          "namespace": cluster.namespace}
            assert document["users"] == [{"name": "e2e-admin", "user": {"token": TOKEN}}]
            assert document["clusters"] == yaml.safe_load(source.read_text())["clusters"]
            assert yaml.safe_load(source.read_text())["contexts"][0]["context"].get("namespace") is None
            await scenarios.scenario_kubectl_alm_drives_a_rollout_and_a_retirement(cluster)
        assert not copy.exists() and not copy.parent.exists(), "the kubeconfig copy outlived the test"
        assert plane.server.unexpected_errors() == []
