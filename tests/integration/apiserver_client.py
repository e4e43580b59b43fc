"""Talking to the emulated API server (alm.sandbox) through the ``kubernetes`` client: raw calls,
server-side apply, watches, and the ``api``/``core``/``apps``/``widgets`` fixtures its tests share.

A test module imports each fixture it uses as itself (``from ... import api as api``), so that
pytest finds it there and ruff sees the import as intended.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any, TypeVar
from urllib.parse import urlencode

import pytest
from kubernetes import client, watch
from kubernetes.client.exceptions import ApiException

from alm.sandbox.apiserverthread import ApiServerThread

T = TypeVar('T')

APPLY = 'application/apply-patch+yaml'
MERGE = 'application/merge-patch+json'
JSON_PATCH = 'application/json-patch+json'
STRATEGIC = 'application/strategic-merge-patch+json'

WIDGETS_CRD: dict[str, Any] = {
    'apiVersion': 'apiextensions.k8s.io/v1',
    'kind': 'CustomResourceDefinition',
    'metadata': {'name': 'widgets.example.dev'},
    'spec': {
        'group': 'example.dev',
        'scope': 'Namespaced',
        'names': {'plural': 'widgets', 'singular': 'widget', 'kind': 'Widget',
                  'shortNames': ['wg'], 'categories': ['all']},
        'versions': [
            {'name': 'v1alpha1', 'served': True, 'storage': False,
             'schema': {'openAPIV3Schema': {'type': 'object', 'x-kubernetes-preserve-unknown-fields': True}},
             'subresources': {'status': {}}},
            {'name': 'v1', 'served': True, 'storage': True,
             'schema': {'openAPIV3Schema': {'type': 'object', 'x-kubernetes-preserve-unknown-fields': True}},
             'subresources': {'status': {}}},
        ],
    },
}
WIDGETS = '/apis/example.dev/v1/namespaces/{ns}/widgets'


def call(api: client.ApiClient, method: str, path: str, body: Any = None, *,
         content_type: str = 'application/json', **query: str) -> tuple[int, Any]:
    """A raw request through the kubernetes client's ApiClient: (status, parsed JSON body)."""
    if query:
        path = f'{path}?{urlencode(query)}'
    headers = {'Accept': 'application/json', 'Content-Type': content_type}
    _, url, headers, body, _ = api.param_serialize(method, path, header_params=headers, body=body)
    try:
        response = api.call_api(method, url, header_params=headers, body=body)
        data, status = response.read(), response.status
    except ApiException as e:
        return int(e.status or 0), json.loads(e.body) if e.body else None
    return status, json.loads(data) if data else None


def apply(api: client.ApiClient, path: str, body: Any, manager: str = 'tester', **query: str) -> tuple[int, Any]:
    return call(api, 'PATCH', path, body, content_type=APPLY, fieldManager=manager, **query)


def deployment(name: str, *, replicas: int = 1, image: str = 'agent:1', **labels: str) -> dict[str, Any]:
    labels = labels or {'app': name}
    return {
        'apiVersion': 'apps/v1', 'kind': 'Deployment', 'metadata': {'name': name},
        'spec': {
            'replicas': replicas,
            'selector': {'matchLabels': labels},
            'template': {'metadata': {'labels': labels},
                         'spec': {'containers': [{'name': 'agent', 'image': image}]}},
        },
    }


def watch_events(api: client.ApiClient, list_fn: Callable[..., Any], *args: Any, timeout: int = 1,
                 **kwargs: Any) -> list[tuple[str, str, str]]:
    """(type, name, resourceVersion) of events until the server-side timeout ends the stream."""
    events = watch.Watch().stream(list_fn, *args, timeout_seconds=timeout, _request_timeout=timeout + 10, **kwargs)
    return [(e['type'], e['raw_object']['metadata']['name'], e['raw_object']['metadata']['resourceVersion'])
            for e in events]


def wait_until(probe: Callable[[], T], timeout: float = 10.0) -> T:
    deadline = time.monotonic() + timeout
    while True:
        result = probe()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting; last result: {result!r}")
        time.sleep(0.02)


@pytest.fixture
def api(apiserver: ApiServerThread) -> client.ApiClient:
    return apiserver.api_client()


@pytest.fixture
def core(api: client.ApiClient) -> client.CoreV1Api:
    return client.CoreV1Api(api)


@pytest.fixture
def apps(api: client.ApiClient) -> client.AppsV1Api:
    return client.AppsV1Api(api)


@pytest.fixture
def widgets(apiserver: ApiServerThread) -> None:
    apiserver.call(lambda: apiserver.emulator.install_crd(WIDGETS_CRD))
