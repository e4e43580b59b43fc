"""The operator's kopf registry and the settings that make it GitOps-friendly."""

from __future__ import annotations

import logging
from typing import Any

import kopf

__all__ = ["FINALIZER", "REGISTRY", "configure"]

REGISTRY = kopf.OperatorRegistry()

FINALIZER = "alm.dev/finalizer"



def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
    # kopf keeps its bookkeeping in annotations by default; ArgoCD then sees drift on
    # every object. Keep it in status instead (the CRDs preserve status.kopf).
    settings.persistence.progress_storage = kopf.StatusProgressStorage(field="status.kopf.progress")
    settings.persistence.diffbase_storage = kopf.StatusDiffBaseStorage(field="status.kopf.diffbase")
    settings.persistence.finalizer = FINALIZER
    # Only our explicit events and real warnings become Kubernetes Events: kopf would
    # otherwise post "Timer succeeded" on every resync (a write per agent per minute).
    settings.posting.level = logging.WARNING
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    settings.networking.request_timeout = 30
    settings.queueing.worker_limit = 64
