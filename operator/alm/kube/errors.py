"""API failures, typed once by status code so callers decide retry vs. give up.

    ApiError
    ├── NotFound        404: the object is gone (deletes treat it as success)
    ├── Conflict        409: stale resourceVersion or a field-manager conflict: retry soon
    ├── Invalid         422/400: the server rejected our object: a bug or bad input, not retried fast
    ├── Forbidden       403/401: RBAC is missing; the message names the verb and resource
    └── ServerError     5xx, timeouts, connection errors: retry with backoff

Messages carry the server's own ``message`` (never the request body, which may hold
credential values).
"""

from __future__ import annotations

__all__ = ["ApiError", "Conflict", "Forbidden", "Invalid", "NotFound", "ServerError", "from_status"]


class ApiError(Exception):
    status: int = 0
    retriable: bool = True

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        if status is not None:
            self.status = status


class NotFound(ApiError):
    status = 404


class Conflict(ApiError):
    status = 409


class Invalid(ApiError):
    status = 422
    retriable = False


class Forbidden(ApiError):
    status = 403
    retriable = False


class ServerError(ApiError):
    status = 500


def from_status(status: int, message: str) -> ApiError:
    if status == 404:
        return NotFound(message, status)
    if status == 409:
        return Conflict(message, status)
    if status in (400, 422):
        return Invalid(message, status)
    if status in (401, 403):
        return Forbidden(message, status)
    return ServerError(message, status)
