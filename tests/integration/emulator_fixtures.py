"""Fixtures for the emulated API server (``alm.sandbox``); tests/integration/conftest.py imports them.

``apiserver``: an :class:`~alm.sandbox.apiserver.ApiServerThread` on 127.0.0.1 and a free port::

    def test_x(apiserver):
        core = kubernetes.client.CoreV1Api(apiserver.api_client())   # closed at teardown
        apiserver.url                                                 # http://127.0.0.1:<port>
        apiserver.emulator.objects / .count(writes=True) / .mark()    # kmock views + request log
        apiserver.call(lambda: apiserver.emulator.install_crd(crd))   # store access, in its thread

It works in sync and async tests alike (the server has its own loop and thread). At teardown,
watches are closed and the server stopped; an exception the emulator raised internally while
serving (a bug, not a deliberate 4xx) fails the test.

``deployment_controller``: the simulated Deployment controller running on that server
(``delay``/``manage_pods`` can be changed on the yielded object at any time).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from alm.sandbox.apiserverthread import ApiServerThread
from alm.sandbox.workloads import DeploymentController


@pytest.fixture
def apiserver() -> Iterator[ApiServerThread]:
    with ApiServerThread() as server:
        yield server
    unexpected = server.unexpected_errors()
    if unexpected:
        pytest.fail(f"The emulated API server failed internally: {unexpected!r}")


@pytest.fixture
def deployment_controller(apiserver: ApiServerThread) -> Iterator[DeploymentController]:
    controller = DeploymentController(apiserver.emulator.store)
    apiserver.call(controller.start)
    try:
        yield controller
    finally:
        apiserver.call(controller.stop)
