"""How the e2e suite reads its settings: a typo fails loudly, live scenarios know when pods are reachable."""

from __future__ import annotations

import pathlib

import pytest

from tests.e2e.settings import E2ESettings


@pytest.fixture
def kubeconfig(tmp_path: pathlib.Path) -> str:
    path = tmp_path / "kubeconfig"
    path.write_text("apiVersion: v1\nkind: Config\n")
    return str(path)


def test_unset_means_skipped() -> None:
    assert E2ESettings.from_env({}) is None
    assert E2ESettings.from_env({"ALM_E2E_KUBECONFIG": "  "}) is None


def test_a_missing_file_or_a_bad_factor_is_an_error(kubeconfig: str) -> None:
    with pytest.raises(ValueError, match="is not a file"):
        E2ESettings.from_env({"ALM_E2E_KUBECONFIG": kubeconfig + ".typo"})
    with pytest.raises(ValueError, match="not a positive number"):
        E2ESettings.from_env({"ALM_E2E_KUBECONFIG": kubeconfig, "ALM_E2E_TIMEOUT_FACTOR": "0"})


@pytest.mark.parametrize(("simulate", "network", "reachable"), [
    ("", "", False), ("1", "", True), ("", "true", True), ("0", "no", False),
])
def test_pods_are_reachable_with_simulated_nodes_or_a_routed_pod_network(
        kubeconfig: str, simulate: str, network: str, reachable: bool) -> None:
    settings = E2ESettings.from_env({"ALM_E2E_KUBECONFIG": kubeconfig, "ALM_E2E_SIMULATE_NODES": simulate,
                                     "ALM_E2E_POD_NETWORK": network})
    assert settings is not None and settings.pods_reachable is reachable
    assert settings.timeout_factor == 3.0
