"""Fixtures for the integration tests."""

# --- emulated API server fixtures (owned by alm.sandbox; see emulator_fixtures.py) -------------
# --- end of emulated API server fixtures ---------------------------------------------------------
# --- the real operator against the emulated API server -----------------------------------------
import contextlib
from collections.abc import AsyncIterator, Iterator

import pytest

from alm.api import build_crds
from alm.sandbox.apiserverthread import ApiServerThread
from alm.sandbox.jobs import JobController
from alm.sandbox.processes import ProcessDeploymentController
from alm.sandbox.workloads import DeploymentController
from tests import scenarios
from tests.integration.emulator_fixtures import apiserver, deployment_controller  # noqa: F401
from tests.integration.operator_harness import EmulatedCluster


def _with_crds(srv: ApiServerThread) -> ApiServerThread:
    for crd in build_crds():
        srv.call(lambda crd=crd: srv.emulator.install_crd(crd))
    return srv


@pytest.fixture
def server_with_jobs() -> Iterator[tuple[ApiServerThread, JobController]]:
    """The emulated API server with the alm CRDs, a Deployment controller (pods are not real) and a
    Job controller (Jobs complete at once unless told to fail; see alm.sandbox.jobs)."""
    with ApiServerThread() as srv:
        controller = DeploymentController(_with_crds(srv).emulator.store)
        jobs = JobController(srv.emulator.store)
        srv.call(controller.start)
        srv.call(jobs.start)
        try:
            yield srv, jobs
        finally:
            srv.call(jobs.stop)
            srv.call(controller.stop)


@pytest.fixture
def server(server_with_jobs: tuple[ApiServerThread, JobController]) -> ApiServerThread:
    return server_with_jobs[0]


@pytest.fixture
def jobs(server_with_jobs: tuple[ApiServerThread, JobController]) -> JobController:
    return server_with_jobs[1]


@pytest.fixture
def process_server() -> Iterator[tuple[ApiServerThread, ProcessDeploymentController]]:
    """The same, but every pod is a real local alm-agent process (seeded, fast simulated model)."""
    with ApiServerThread() as srv:
        controller = ProcessDeploymentController(_with_crds(srv).emulator.store,
                                                 env={"ALM_SIM_SEED": "7", "ALM_SIM_LATENCY_MS": "5"})
        srv.call(controller.start)
        try:
            yield srv, controller
        finally:
            srv.call(controller.stop)
        assert all(p.poll() is not None for p in controller.processes.values()), "an agent process outlived its pod"


@contextlib.asynccontextmanager
async def operator_in_fresh_namespace(srv: ApiServerThread, prefix: str) -> AsyncIterator[EmulatedCluster]:
    cluster = EmulatedCluster(srv, scenarios.unique(prefix))
    await cluster.start_operator()
    try:
        yield cluster
    finally:
        try:
            await cluster.stop_operator()
        finally:
            cluster.close()


@pytest.fixture
async def cluster(server: ApiServerThread) -> AsyncIterator[EmulatedCluster]:
    async with operator_in_fresh_namespace(server, "alm-it") as cluster:
        yield cluster


@pytest.fixture
async def process_cluster(process_server: tuple[ApiServerThread, ProcessDeploymentController]
                          ) -> AsyncIterator[EmulatedCluster]:
    async with operator_in_fresh_namespace(process_server[0], "alm-proc") as cluster:
        yield cluster
