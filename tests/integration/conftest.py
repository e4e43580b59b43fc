"""Fixtures for the integration tests."""

# --- emulated API server fixtures (owned by alm.sandbox; see emulator_fixtures.py) -------------
from tests.integration.emulator_fixtures import apiserver, deployment_controller  # noqa: F401
# --- end of emulated API server fixtures ---------------------------------------------------------
