"""How the emulated API server reads an HTTP request: the Kubernetes path, the body, the query.

kmock parses requests too, but cannot parse the bare ``/api/v1/namespaces`` and takes
``/api/v1/namespaces/x`` for a namespace, not an object; :func:`parse_request` is kmock's parsing
with a correct path parser and tolerant (YAML, empty) bodies. The rest turns parts of a parsed
request (headers, the body, selectors, the patch content type) into what the store takes, with
400/415-style errors for what a real server rejects.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import aiohttp.web
import kmock
import yaml

from alm.sandbox.apierrors import api_error
from alm.sandbox.objectstore import PatchType
from alm.sandbox.resources import Requirement, parse_field_selector, parse_label_selector

PATCH_TYPES: dict[str, PatchType] = {
    'application/merge-patch+json': 'merge',
    'application/json-patch+json': 'json',
    'application/strategic-merge-patch+json': 'strategic',
    'application/apply-patch+yaml': 'apply',
}


def parse_k8s_path(path: str) -> tuple[str | None, str | None, str | None, str | None, str | None, str | None]:
    """``(group, version, namespace, plural, name, subresource)`` of an API path (``None`` if not one)."""
    parts = [part for part in path.strip('/').split('/') if part]
    if len(parts) >= 2 and parts[0] == 'api':
        group, version, rest = '', parts[1], parts[2:]
    elif len(parts) >= 3 and parts[0] == 'apis':
        group, version, rest = parts[1], parts[2], parts[3:]
    elif len(parts) == 2 and parts[0] == 'apis':
        return parts[1], None, None, None, None, None
    else:
        return None, None, None, None, None, None
    namespace = None
    # The namespaces resource itself has subresources (status, finalize): not a namespace scope.
    if rest[:1] == ['namespaces'] and len(rest) >= 3 and not (len(rest) == 3 and rest[2] in ('status', 'finalize')):
        namespace, rest = rest[1], rest[2:]
    plural = rest[0] if rest else None
    name = rest[1] if len(rest) > 1 else None
    subresource = '/'.join(rest[2:]) or None
    return group, version, namespace, plural, name, subresource


def _guess_action(method: str, name: str | None, params: Mapping[str, str]) -> kmock.action | None:
    if method == 'GET' and params.get('watch') in ('true', '1'):
        return kmock.action.WATCH
    if method == 'GET':
        return kmock.action.FETCH if name else kmock.action.LIST
    if method == 'POST':
        return kmock.action.CREATE
    if method in ('PUT', 'PATCH'):
        return kmock.action.UPDATE
    if method == 'DELETE':
        return kmock.action.DELETE
    return None


async def parse_request(raw_request: aiohttp.web.BaseRequest, *, id: int) -> kmock.Request:
    """kmock's request parsing, with correct K8s paths and tolerant (YAML, empty) bodies."""
    body = await raw_request.read()
    text = body.decode('utf-8', errors='replace')
    try:
        data = json.loads(body) if body else None
    except ValueError:
        data = None
    group, version, namespace, plural, name, subresource = parse_k8s_path(raw_request.path)
    params = dict(raw_request.query)
    resource = None if group is None else kmock.resource(group=group, version=version, plural=plural)
    return kmock.Request(
        id=id,
        raw_request=raw_request,
        url=raw_request.url,
        method=raw_request.method,
        params=params,
        headers=dict(raw_request.headers),
        cookies=dict(raw_request.cookies),
        body=body,
        text=text,
        data=data,
        action=_guess_action(raw_request.method.upper(), name, params) if group is not None else None,
        resource=resource,
        namespace=namespace,
        name=name,
        subresource=subresource,
    )


def header(request: kmock.Request, name: str) -> str:
    for key, value in request.headers.items():
        if key.lower() == name.lower():
            return str(value)
    return ''


def request_body(request: kmock.Request, *, yaml_ok: bool = False) -> Any:
    if request.data is not None:
        return request.data
    if request.body and yaml_ok:
        try:
            return yaml.safe_load(request.text)
        except yaml.YAMLError as e:
            raise api_error(400, 'BadRequest', f'the body is not valid YAML: {e}') from e
    raise api_error(400, 'BadRequest', 'the body of the request is missing or is not valid JSON')


def parse_selectors(params: Mapping[str, str]) -> tuple[list[Requirement], list[tuple[str, str, str]]]:
    try:
        return (parse_label_selector(params.get('labelSelector', '')),
                parse_field_selector(params.get('fieldSelector', '')))
    except ValueError as e:
        raise api_error(400, 'BadRequest', str(e)) from e
