"""End-to-end tests: the shared scenarios against a real API server (see docs/e2e.md)."""
