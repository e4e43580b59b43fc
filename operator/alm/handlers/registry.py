"""The operator's kopf registry and the settings that make it GitOps-friendly."""

from __future__ import annotations

import logging
import os
from typing import Any

import kopf

__all__ = ["FINALIZER", "REGISTRY", "RESYNC_SECONDS", "configure"]

REGISTRY = kopf.OperatorRegistry()

FINALIZER = "alm.dev/finalizer"

# How often every Agent is reconciled even when nothing was observed to change: the
# safety net for changes we do not watch (a user's Secret created later) and for
# writes that failed. Read once at import because kopf fixes timer intervals then.
RESYNC_SECONDS = float(os.environ.get("ALM_RESYNC_SECONDS", "60"))


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
