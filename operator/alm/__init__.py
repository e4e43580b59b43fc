"""alm: a Kubernetes operator that runs AI agents through their whole life.

The package is laid out in layers (checked by import-linter, see pyproject.toml):
``alm.api`` (pydantic models, the source of the CRDs) < ``alm.core`` (pure decisions)
< ``alm.kube`` (the only code that talks to the API server) < ``alm.handlers`` (kopf wiring)
< ``alm.cli``.
"""

__version__ = "0.1.0"
