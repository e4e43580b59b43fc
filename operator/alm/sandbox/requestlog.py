"""The emulated API server's request log, queried: which requests came, and how many.

Tests assert on traffic ("no writes since the resync began", "one PATCH by this field manager");
kmock logs every request, and :class:`RequestLog` (a base of
:class:`alm.sandbox.apiserver.ApiServerEmulator`) filters that log in the store's vocabulary.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import kmock

from alm.sandbox.objectstore import ObjectStore
from alm.sandbox.requestparsing import header

WRITE_METHODS = frozenset({'POST', 'PUT', 'PATCH', 'DELETE'})


class RequestLog:
    """Queries over kmock's request log (``_requests``), resolving resources through the store."""

    __slots__ = ()
    store: ObjectStore
    _requests: list[kmock.Request]

    def requests_matching(
            self,
            *,
            method: str | Iterable[str] | None = None,
            resource: str | kmock.resource | None = None,
            namespace: str | None = None,
            name: str | None = None,
            subresource: str | None = None,
            writes: bool = False,
            since: int = 0,
            field_manager: str | None = None,
            user_agent: str | None = None,
    ) -> list[kmock.Request]:
        """
        The logged requests that match all the given filters, in arrival order.

        ``writes=True`` keeps POST/PUT/PATCH/DELETE only; ``resource`` takes anything
        :meth:`ObjectStore.resolve` does (``'deployments'``, ``'apps/v1/deployments'``, ``'deploy'``)
        and matches any version; ``since`` is a value of :meth:`mark`; ``user_agent`` is a substring
        (kopf sends ``kopf/<version>``, the kubernetes client ``OpenAPI-Generator/...``).
        """
        methods = {method.upper()} if isinstance(method, str) else (
            {m.upper() for m in method} if method is not None else None)
        target: tuple[str | None, str | None] | None = None
        if resource is not None:
            try:
                rdef = self.store.resolve(resource)
                target = (rdef.group, rdef.plural)
            except LookupError:  # not served (any more): match what the request said
                spec = resource if isinstance(resource, kmock.resource) else kmock.resource(resource)
                target = (spec.group, spec.plural)
        result = []
        for request in self._requests[since:]:
            verb = str(request.method.value).upper()
            if methods is not None and verb not in methods:
                continue
            if writes and verb not in WRITE_METHODS:
                continue
            if target is not None and (request.resource is None or not (
                    target[0] in (None, request.resource.group) and target[1] == request.resource.plural)):
                continue
            if namespace is not None and request.namespace != namespace:
                continue
            if name is not None and request.name != name:
                continue
            if subresource is not None and request.subresource != subresource:
                continue
            if field_manager is not None and request.params.get('fieldManager') != field_manager:
                continue
            if user_agent is not None and user_agent not in header(request, 'User-Agent'):
                continue
            result.append(request)
        return result

    def count(self, **filters: Any) -> int:
        """How many logged requests match; takes the filters of :meth:`requests_matching`."""
        return len(self.requests_matching(**filters))

    def mark(self) -> int:
        """A position in the request log, for ``since=`` (e.g. "no writes since the resync began")."""
        return len(self._requests)
