"""The emulated API server (alm.sandbox) as seen by the ``kubernetes`` client: watches, discovery,
events, the request log, failure injection.

Every test talks HTTP to a server on 127.0.0.1 (the ``apiserver`` fixture); nothing here calls the
store directly except to install CRDs or to read what only the server knows.
"""

from __future__ import annotations

import concurrent.futures
import json
import time
import urllib.error
import urllib.request

import kmock
import pytest
from kubernetes import client, dynamic
from kubernetes.client.exceptions import ApiException

from alm.sandbox.apiserver import ApiServerEmulator
from alm.sandbox.apiserverthread import ApiServerThread
from tests.integration.apiserver_client import api as api  # fixture
from tests.integration.apiserver_client import apply, call, watch_events
from tests.integration.apiserver_client import core as core  # fixture
from tests.integration.apiserver_client import widgets as widgets  # fixture

# --------------------------------------------------------------------------------------------------
# Watching.

def test_watch_honours_selectors_and_resumes_from_a_resource_version(
        core: client.CoreV1Api, api: client.ApiClient) -> None:
    core.create_namespaced_config_map('w', {'metadata': {'name': 'a', 'labels': {'app': 'x'}}})
    core.create_namespaced_config_map('w', {'metadata': {'name': 'b', 'labels': {'app': 'y'}}})
    listed = core.list_namespaced_config_map('w', label_selector='app=x')

    initial = watch_events(api, core.list_namespaced_config_map, 'w', label_selector='app=x')
    assert [(t, n) for t, n, _ in initial] == [('ADDED', 'a')]

    core.patch_namespaced_config_map('a', 'w', {'data': {'k': 'v'}})
    core.patch_namespaced_config_map('b', 'w', {'metadata': {'labels': {'app': 'x'}}})  # starts matching
    core.patch_namespaced_config_map('a', 'w', {'metadata': {'labels': {'app': 'z'}}})  # stops matching
    core.delete_namespaced_config_map('b', 'w')

    resumed = watch_events(api, core.list_namespaced_config_map, 'w', label_selector='app=x',
                           resource_version=listed.metadata.resource_version)
    assert [(t, n) for t, n, _ in resumed] == [('MODIFIED', 'a'), ('ADDED', 'b'), ('DELETED', 'a'), ('DELETED', 'b')]
    versions = [int(rv) for _, _, rv in resumed]
    assert versions == sorted(versions) and len(set(versions)) == 4  # each event carries its own version

    latest = core.list_namespaced_config_map('w').metadata.resource_version
    assert watch_events(api, core.list_namespaced_config_map, 'w', resource_version=latest) == []


def test_watch_delivers_live_events_and_named_watches(core: client.CoreV1Api, api: client.ApiClient) -> None:
    rv = core.list_namespaced_config_map('live').metadata.resource_version
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        everything = pool.submit(watch_events, api, core.list_namespaced_config_map, 'live',
                                 resource_version=rv, timeout=2)
        named = pool.submit(watch_events, api, core.list_namespaced_config_map, 'live',
                            field_selector='metadata.name=two', resource_version=rv, timeout=2)
        time.sleep(0.3)
        core.create_namespaced_config_map('live', {'metadata': {'name': 'one'}})
        core.create_namespaced_config_map('live', {'metadata': {'name': 'two'}})
        assert [(t, n) for t, n, _ in everything.result()] == [('ADDED', 'one'), ('ADDED', 'two')]
        assert [(t, n) for t, n, _ in named.result()] == [('ADDED', 'two')]


def test_watch_from_a_version_older_than_the_log_is_gone() -> None:
    with ApiServerThread(ApiServerEmulator(event_log_size=3)) as server:
        core = client.CoreV1Api(server.api_client())
        for index in range(6):
            core.create_namespaced_config_map('g', {'metadata': {'name': f'cm-{index}'}})
        url = f'{server.url}/api/v1/namespaces/g/configmaps?watch=true&resourceVersion=2&timeoutSeconds=2'
        with urllib.request.urlopen(url, timeout=10) as response:
            lines = [json.loads(line) for line in response.read().splitlines() if line.strip()]
        assert lines[0]['type'] == 'ERROR' and lines[0]['object']['code'] == 410


def test_watch_sends_bookmarks_and_initial_events_end(apiserver: ApiServerThread, core: client.CoreV1Api) -> None:
    apiserver.emulator.bookmark_interval = 0.2
    core.create_namespaced_config_map('bm', {'metadata': {'name': 'x'}})
    query = 'watch=true&allowWatchBookmarks=true&sendInitialEvents=true&timeoutSeconds=0.5'
    with urllib.request.urlopen(f'{apiserver.url}/api/v1/namespaces/bm/configmaps?{query}', timeout=10) as rsp:
        events = [json.loads(line) for line in rsp.read().splitlines() if line.strip()]
    assert [e['type'] for e in events[:2]] == ['ADDED', 'BOOKMARK']
    assert events[1]['object']['metadata']['annotations'] == {'k8s.io/initial-events-end': 'true'}
    assert all(e['type'] == 'BOOKMARK' for e in events[2:]) and len(events) >= 3


# --------------------------------------------------------------------------------------------------
# Discovery, events, request log, failure injection.

def test_discovery_works_for_the_dynamic_client(widgets: None, api: client.ApiClient) -> None:
    dyn = dynamic.DynamicClient(api)
    widget = dyn.resources.get(api_version='example.dev/v1', kind='Widget')
    assert widget.namespaced and widget.short_names == ['wg'] and 'status' in widget.subresources
    widget.create(body={'apiVersion': 'example.dev/v1', 'kind': 'Widget', 'metadata': {'name': 'dyn'}},
                  namespace='d')
    assert [item.metadata.name for item in widget.get(namespace='d').items] == ['dyn']

    deployments = dyn.resources.get(api_version='apps/v1', kind='Deployment')
    assert set(deployments.subresources) == {'status', 'scale'}
    for api_version, kind in [('v1', 'Pod'), ('v1', 'Namespace'), ('rbac.authorization.k8s.io/v1', 'ClusterRole'),
                              ('networking.k8s.io/v1', 'NetworkPolicy'), ('policy/v1', 'PodDisruptionBudget'),
                              ('events.k8s.io/v1', 'Event'), ('coordination.k8s.io/v1', 'Lease'),
                              ('gateway.networking.k8s.io/v1', 'HTTPRoute'),
                              ('apiextensions.k8s.io/v1', 'CustomResourceDefinition')]:
        assert dyn.resources.get(api_version=api_version, kind=kind)

    _, groups = call(api, 'GET', '/apis')
    example = next(g for g in groups['groups'] if g['name'] == 'example.dev')
    assert example['preferredVersion']['version'] == 'v1'
    assert [v['version'] for v in example['versions']] == ['v1', 'v1alpha1']


def test_events_are_accepted(core: client.CoreV1Api, api: client.ApiClient) -> None:
    ref = {'apiVersion': 'v1', 'kind': 'ConfigMap', 'name': 'x', 'namespace': 'ev'}
    core.create_namespaced_event('ev', {'metadata': {'generateName': 'x-'}, 'involvedObject': ref,
                                        'reason': 'Test', 'message': 'hello', 'type': 'Normal'})
    status, _ = call(api, 'POST', '/apis/events.k8s.io/v1/namespaces/ev/events',
                     {'metadata': {'name': 'e2'}, 'regarding': ref, 'reason': 'Test', 'note': 'hi',
                      'action': 'Testing', 'eventTime': '2024-01-01T00:00:00.000000Z'})
    assert status == 201
    assert [e.message for e in core.list_namespaced_event('ev').items] == ['hello']


def test_requests_can_be_counted(apiserver: ApiServerThread, core: client.CoreV1Api, api: client.ApiClient) -> None:
    emulator = apiserver.emulator
    core.create_namespaced_config_map('n', {'metadata': {'name': 'cm'}})
    mark = emulator.mark()
    core.read_namespaced_config_map('cm', 'n')
    core.patch_namespaced_config_map('cm', 'n', {'data': {'a': '1'}}, field_manager='me')
    apply(api, '/api/v1/namespaces/n/configmaps/cm', {'apiVersion': 'v1', 'kind': 'ConfigMap',
                                                      'metadata': {'name': 'cm'}}, 'op')
    assert emulator.count(since=mark) == 3
    assert emulator.count(since=mark, writes=True) == 2
    assert emulator.count(since=mark, method='GET', resource='configmaps', namespace='n', name='cm') == 1
    assert emulator.count(since=mark, field_manager='op') == 1
    assert emulator.count(since=mark, user_agent='OpenAPI-Generator') == 3
    assert emulator.count(since=mark, resource='cm', method=['PATCH', 'PUT']) == 2
    assert emulator.count(writes=True) == 3
    # kmock's own views still work on the same log.
    assert len(list(emulator[kmock.method.PATCH])) == 2
    assert emulator.objects[kmock.resource('', 'v1', 'configmaps'), 'n', 'cm'] >= {'data': {'a': '1'}}


def test_a_user_reaction_intercepts_without_writing(apiserver: ApiServerThread, core: client.CoreV1Api) -> None:
    core.create_namespaced_config_map('inj', {'metadata': {'name': 'cm'}, 'data': {'a': '1'}})
    apiserver.emulator[kmock.method.PATCH, kmock.resource('', 'v1', 'configmaps')] << 503
    with pytest.raises(ApiException) as failure:
        core.patch_namespaced_config_map('cm', 'inj', {'data': {'a': '2'}})
    assert failure.value.status == 503
    assert core.read_namespaced_config_map('cm', 'inj').data == {'a': '1'}
