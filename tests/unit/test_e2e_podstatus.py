"""The node simulator's pod statuses and its report of a rejected status write (no cluster needed)."""

from __future__ import annotations

from typing import Any

import pytest

from alm.kube import errors
from tests.e2e.nodes import PodSimulator
from tests.e2e.podstatus import needs_status, not_ready_status, running_status

POD: dict[str, Any] = {"metadata": {"name": "p", "uid": "u1", "labels": {"alm.dev/agent": "bot"}},
                       "spec": {"nodeName": "n", "containers": [{"name": "agent", "image": "x"}]}}


def test_a_crash_is_running_but_not_ready_with_the_exit_code() -> None:
    status = not_ready_status(POD, "127.0.0.5", "2024-01-01T00:00:00Z", "exited with code 1", exit_code=1)["status"]
    conditions = {c["type"]: c for c in status["conditions"]}
    assert status["phase"] == "Running" and status["podIP"] == "127.0.0.5"
    assert conditions["Ready"]["status"] == conditions["ContainersReady"]["status"] == "False"
    assert conditions["Ready"]["message"] == "exited with code 1"
    (container,) = status["containerStatuses"]
    assert not container["ready"] and container["state"]["terminated"]["exitCode"] == 1
    assert needs_status({**POD, "status": status})  # not what a started pod reports


def test_not_ready_without_an_address_has_no_pod_ip() -> None:
    status = not_ready_status(POD, None, "2024-01-01T00:00:00Z", "could not start")["status"]
    assert "podIP" not in status and "running" in status["containerStatuses"][0]["state"]
    assert not needs_status({**POD, "status": running_status(POD, "127.0.0.5", "2024-01-01T00:00:00Z")["status"]})


class RejectingKube:
    def merge_patch(self, *args: Any, **kwargs: Any) -> None:
        raise errors.Invalid("status.podIP: Invalid value: \"127.0.0.5\": may not be in the loopback range", 422)


def test_a_rejected_loopback_pod_ip_is_reported_clearly() -> None:
    simulator = PodSimulator(RejectingKube(), "ns", processes=False)  # type: ignore[arg-type]
    with pytest.raises(errors.Invalid):
        simulator._write_status(POD, running_status(POD, "127.0.0.5", "2024-01-01T00:00:00Z"), "127.0.0.5")
    (message,) = simulator.errors
    assert "rejected its status with podIP 127.0.0.5 as Invalid" in message and "docs/e2e.md" in message
    assert simulator.kubelet is None and simulator.pids == []
