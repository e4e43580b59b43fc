"""A small typed REST client over the ``kubernetes`` package's ApiClient.

We use the official client for configuration, authentication, TLS and connection
pooling, but speak plain JSON: server-side apply (one field manager,
``alm-operator``) for children, JSON merge patches for status, and deletes
that treat "already gone" as done. Typed model classes would only be converted
back to dicts.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import urlencode

from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from alm.core import naming
from alm.kube import errors, resources

__all__ = ["Kube"]

log = logging.getLogger(__name__)

Obj = dict[str, Any]

APPLY = "application/apply-patch+yaml"
MERGE = "application/merge-patch+json"
JSON_PATCH = "application/json-patch+json"


class Kube:
    """Sync API access; handlers call it from worker threads (``asyncio.to_thread``)."""

    def __init__(self, api_client: k8s.ApiClient, field_manager: str = naming.FIELD_MANAGER) -> None:
        self.api_client = api_client
        self.field_manager = field_manager

    def request(
        self, method: str, path: str, *, query: Mapping[str, str] | None = None,
        body: Any = None, content_type: str = "application/json",
    ) -> Obj | None:
        if query:
            path = f"{path}?{urlencode(query)}"
        headers = {"Accept": "application/json", "Content-Type": content_type}
        try:
            _, url, headers, body, _ = self.api_client.param_serialize(
                method, path, header_params=headers, body=body, auth_settings=["BearerToken"],
            )
            response = self.api_client.call_api(method, url, header_params=headers, body=body)
            data = response.read()  # type: ignore[no-untyped-call]
        except ApiException as exc:
            raise errors.from_status(exc.status or 0, _server_message(exc.body, exc.reason)) from None
        except Exception as exc:  # connection refused, timeouts, TLS: all retriable
            raise errors.ServerError(f"{method} {path.split('?')[0]}: {type(exc).__name__}: {exc}") from None
        if not 200 <= response.status <= 299:
            raise errors.from_status(response.status, _server_message(data, response.reason))
        if not data:
            return None
        result: Obj = json.loads(data)
        return result

    def get(self, kind: str, namespace: str | None, name: str) -> Obj | None:
        try:
            return self.request("GET", resources.for_kind(kind).path(namespace, name))
        except errors.NotFound:
            return None

    def list(self, kind: str, namespace: str | None = None, labels: Mapping[str, str] | None = None) -> list[Obj]:
        query = {"labelSelector": ",".join(f"{k}={v}" for k, v in labels.items())} if labels else None
        result = self.request("GET", resources.for_kind(kind).path(namespace), query=query) or {}
        items: list[Obj] = result.get("items", [])
        return items

    def apply(self, obj: Mapping[str, Any], *, subresource: str | None = None) -> Obj:
        """Server-side apply: we own exactly the fields in ``obj``, force-taking them back."""
        res = resources.for_object(obj)
        meta = obj["metadata"]
        body = {"apiVersion": res.api_version, **obj}
        query = {"fieldManager": self.field_manager, "force": "true"}
        path = res.path(meta.get("namespace"), meta["name"], subresource)
        result = self.request("PATCH", path, query=query, body=body, content_type=APPLY)
        assert result is not None
        return result

    def merge_patch(
        self, kind: str, namespace: str | None, name: str, patch: Mapping[str, Any],
        *, subresource: str | None = None,
    ) -> Obj | None:
        path = resources.for_kind(kind).path(namespace, name, subresource)
        query = {"fieldManager": self.field_manager}
        return self.request("PATCH", path, query=query, body=dict(patch), content_type=MERGE)

    def json_patch(self, kind: str, namespace: str | None, name: str, ops: Sequence[Mapping[str, Any]]) -> Obj | None:
        """An RFC 6902 patch (for objects others own: only the fields we manage, guarded by ``test`` ops)."""
        path = resources.for_kind(kind).path(namespace, name)
        query = {"fieldManager": self.field_manager}
        return self.request("PATCH", path, query=query, body=[dict(op) for op in ops], content_type=JSON_PATCH)

    def delete(self, kind: str, namespace: str | None, name: str, *, uid: str | None = None) -> bool:
        """Delete (background propagation); False if it was already gone.

        With ``uid`` the delete only hits that exact object, never a namesake created since.
        """
        body: Obj = {"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": "Background"}
        if uid:
            body["preconditions"] = {"uid": uid}
        try:
            self.request("DELETE", resources.for_kind(kind).path(namespace, name), body=body)
        except errors.NotFound:
            return False
        return True


def _server_message(raw: Any, fallback: Any) -> str:
    """The ``message`` of a Kubernetes Status body; never echoes the request."""
    try:
        status = json.loads(raw) if isinstance(raw, (str, bytes)) else None
    except ValueError:
        status = None
    if isinstance(status, dict) and status.get("message"):
        return str(status["message"])
    return str(fallback or "no message from the API server")
