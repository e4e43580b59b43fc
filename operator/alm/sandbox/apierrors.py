"""The emulated API server's errors: how the store raises them and how the HTTP layer renders them.

Kept apart so that the store, the simulated controllers and the HTTP layer raise the same
``kmock.KubernetesError`` values without importing each other.
"""

from __future__ import annotations

from typing import Any

import kmock

from alm.sandbox.resources import ResourceDef


def api_error(status: int, reason: str, message: str, **details: Any) -> kmock.KubernetesError:
    """An error the HTTP layer renders as a Kubernetes ``Status`` with this code and reason."""
    return kmock.KubernetesError(status=status, reason=reason, message=message, details=details or {})


def not_found(rdef: ResourceDef, name: str) -> kmock.KubernetesError:
    what = f'{rdef.plural}.{rdef.group}' if rdef.group else rdef.plural
    return api_error(404, 'NotFound', f'{what} "{name}" not found', name=name, group=rdef.group, kind=rdef.plural)


def status_body(error: kmock.KubernetesError) -> dict[str, Any]:
    """A ``Status`` object, as real servers answer errors (the kubernetes client parses these)."""
    return {
        'kind': 'Status', 'apiVersion': 'v1', 'metadata': {}, 'status': 'Failure',
        'message': error.message or '', 'reason': error.reason or '', 'details': error.details or {},
        'code': error.status,
    }
