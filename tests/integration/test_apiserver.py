"""The emulated API server (alm.sandbox) as seen by real clients: the ``kubernetes`` package and kopf.

Every test talks HTTP to a server on 127.0.0.1 (the ``apiserver`` fixture); nothing here calls the
store directly except to install CRDs or to read what only the server knows.
"""

from __future__ import annotations

import asyncio
import base64
import concurrent.futures
import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any, TypeVar
from urllib.parse import urlencode

import kmock
import kopf
import pytest
from kubernetes import client, dynamic, watch
from kubernetes.client.exceptions import ApiException

from alm.sandbox.apiserver import ApiServerEmulator
from alm.sandbox.apiserverthread import ApiServerThread
from alm.sandbox.workloads import DeploymentController

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


# --------------------------------------------------------------------------------------------------
# Creating, reading, listing.

def test_create_sets_metadata_and_rejects_duplicates(core: client.CoreV1Api, apps: client.AppsV1Api,
                                                     api: client.ApiClient) -> None:
    created = core.create_namespaced_config_map('team-a', {'metadata': {'name': 'cm'}, 'data': {'k': 'v'}})
    meta = created.metadata
    assert len(meta.uid) == 36 and meta.creation_timestamp is not None
    assert meta.resource_version.isdigit() and meta.namespace == 'team-a'
    assert meta.generation is None  # ConfigMaps do not track generation
    assert core.read_namespaced_config_map('cm', 'team-a').metadata.uid == meta.uid
    assert 'team-a' in [ns.metadata.name for ns in core.list_namespace().items]  # auto-created

    status, body = call(api, 'POST', '/api/v1/namespaces/team-a/configmaps', {'metadata': {'name': 'cm'}})
    assert (status, body['reason'], body['kind']) == (409, 'AlreadyExists', 'Status')
    status, body = call(api, 'GET', '/api/v1/namespaces/team-a/configmaps/missing')
    assert (status, body['reason']) == (404, 'NotFound')
    status, body = call(api, 'GET', '/apis/example.dev/v1/namespaces/team-a/widgets')
    assert (status, body['reason']) == (404, 'NotFound')

    generated = core.create_namespaced_config_map('team-a', {'metadata': {'generateName': 'gen-'}})
    assert generated.metadata.name.startswith('gen-') and len(generated.metadata.name) == 9

    dep = apps.create_namespaced_deployment('team-a', deployment('web'))
    assert dep.metadata.generation == 1
    assert int(dep.metadata.resource_version) > int(meta.resource_version)


def test_list_filters_by_label_and_field_selectors(core: client.CoreV1Api, api: client.ApiClient) -> None:
    for ns, name, labels in [('a', 'web', {'tier': 'web', 'env': 'prod'}), ('a', 'db', {'tier': 'db'}),
                             ('a', 'plain', {}), ('b', 'web2', {'tier': 'web', 'env': 'dev'})]:
        core.create_namespaced_config_map(ns, {'metadata': {'name': name, 'labels': labels}})

    def names(selector: str = '', fields: str = '', namespace: str | None = 'a') -> list[str]:
        if namespace is None:
            result = core.list_config_map_for_all_namespaces(label_selector=selector, field_selector=fields)
        else:
            result = core.list_namespaced_config_map(namespace, label_selector=selector, field_selector=fields)
        return sorted(item.metadata.name for item in result.items)

    assert names('tier=web') == names('tier==web') == ['web']
    assert names('tier!=web') == ['db', 'plain']
    assert names('tier in (web, db)') == ['db', 'web']
    assert names('tier notin (web)') == ['db', 'plain']
    assert names('tier') == ['db', 'web']
    assert names('!tier') == ['plain']
    assert names('tier=web,env=prod') == ['web']
    assert names('tier=web', namespace=None) == ['web', 'web2']
    assert names(fields='metadata.name=db') == ['db']
    assert names(fields='metadata.namespace=b', namespace=None) == ['web2']
    assert names(fields='metadata.name!=db') == ['plain', 'web']

    status, body = call(api, 'GET', '/api/v1/namespaces/a/configmaps')
    assert (status, body['kind'], body['apiVersion']) == (200, 'ConfigMapList', 'v1')
    assert int(body['metadata']['resourceVersion']) >= max(
        int(item['metadata']['resourceVersion']) for item in body['items'])
    status, body = call(api, 'GET', '/api/v1/namespaces/a/configmaps', labelSelector='tier in (web')
    assert (status, body['reason']) == (400, 'BadRequest')


def test_list_paginates_with_limit_and_continue(core: client.CoreV1Api) -> None:
    for index in range(5):
        core.create_namespaced_config_map('p', {'metadata': {'name': f'cm-{index}'}})
    first = core.list_namespaced_config_map('p', limit=2)
    second = core.list_namespaced_config_map('p', limit=2, _continue=first.metadata._continue)
    third = core.list_namespaced_config_map('p', limit=2, _continue=second.metadata._continue)
    pages = [[item.metadata.name for item in page.items] for page in (first, second, third)]
    assert pages == [['cm-0', 'cm-1'], ['cm-2', 'cm-3'], ['cm-4']]
    assert third.metadata._continue is None


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
# Updating.

def test_stale_resource_version_is_a_conflict(core: client.CoreV1Api, api: client.ApiClient) -> None:
    created = core.create_namespaced_config_map('c', {'metadata': {'name': 'cm'}, 'data': {'a': '1'}})
    old_rv = created.metadata.resource_version
    replaced = core.replace_namespaced_config_map('cm', 'c', {'metadata': {'name': 'cm', 'resourceVersion': old_rv},
                                                              'data': {'a': '2'}})
    assert replaced.metadata.resource_version != old_rv and replaced.data == {'a': '2'}
    assert replaced.metadata.uid == created.metadata.uid  # PUT keeps the identity

    status, body = call(api, 'PUT', '/api/v1/namespaces/c/configmaps/cm',
                        {'metadata': {'name': 'cm', 'resourceVersion': old_rv}, 'data': {'a': '3'}})
    assert (status, body['reason']) == (409, 'Conflict')
    status, body = call(api, 'PATCH', '/api/v1/namespaces/c/configmaps/cm',
                        {'metadata': {'resourceVersion': old_rv}, 'data': {'a': '4'}}, content_type=MERGE)
    assert (status, body['reason']) == (409, 'Conflict')
    assert core.read_namespaced_config_map('cm', 'c').data == {'a': '2'}

    fresh = replaced.metadata.resource_version
    status, body = call(api, 'PATCH', '/api/v1/namespaces/c/configmaps/cm',
                        {'metadata': {'resourceVersion': fresh}, 'data': {'a': '5'}}, content_type=MERGE)
    assert (status, body['data']) == (200, {'a': '5'})
    unconditional = core.replace_namespaced_config_map('cm', 'c', {'metadata': {'name': 'cm'}, 'data': {'a': '6'}})
    assert unconditional.data == {'a': '6'}


def test_generation_changes_only_with_the_spec(apps: client.AppsV1Api) -> None:
    apps.create_namespaced_deployment('g', deployment('web'))
    labelled = apps.patch_namespaced_deployment('web', 'g', {'metadata': {'labels': {'team': 'x'}}})
    assert labelled.metadata.generation == 1
    scaled = apps.patch_namespaced_deployment('web', 'g', {'spec': {'replicas': 3}})
    assert scaled.metadata.generation == 2
    statused = apps.patch_namespaced_deployment_status('web', 'g', {'status': {'replicas': 3}})
    assert statused.metadata.generation == 2 and statused.status.replicas == 3
    same = apps.patch_namespaced_deployment('web', 'g', {'spec': {'replicas': 3}})
    assert same.metadata.generation == 2
    assert same.metadata.resource_version == statused.metadata.resource_version  # a no-op write


def test_status_subresource_is_isolated_both_ways(widgets: None, api: client.ApiClient) -> None:
    path = WIDGETS.format(ns='s')
    status, created = call(api, 'POST', path, {'apiVersion': 'example.dev/v1', 'kind': 'Widget',
                                               'metadata': {'name': 'w'}, 'spec': {'size': 1},
                                               'status': {'phase': 'ignored'}})
    assert status == 201 and 'status' not in created and created['metadata']['generation'] == 1

    _, main = call(api, 'PATCH', f'{path}/w', {'spec': {'size': 2}, 'status': {'phase': 'nope'}}, content_type=MERGE)
    assert main['spec'] == {'size': 2} and 'status' not in main and main['metadata']['generation'] == 2

    _, sub = call(api, 'PATCH', f'{path}/w/status', {'spec': {'size': 99}, 'status': {'phase': 'Ready'}},
                  content_type=MERGE)
    assert sub['spec'] == {'size': 2} and sub['status'] == {'phase': 'Ready'}
    assert sub['metadata']['generation'] == 2

    sub['status'] = {'phase': 'Done'}
    sub['spec'] = {'size': 100}
    _, put = call(api, 'PUT', f'{path}/w/status', sub)
    assert put['spec'] == {'size': 2} and put['status'] == {'phase': 'Done'}

    put['spec'] = {'size': 3}
    put['status'] = {'phase': 'Overwritten?'}
    _, main_put = call(api, 'PUT', f'{path}/w', put)
    assert main_put['spec'] == {'size': 3} and main_put['status'] == {'phase': 'Done'}

    status, _ = call(api, 'PATCH', '/api/v1/namespaces/s/configmaps/x/status', {}, content_type=MERGE)
    assert status == 404


def test_server_side_apply_creates_updates_and_prunes(core: client.CoreV1Api, api: client.ApiClient) -> None:
    path = '/api/v1/namespaces/ssa/configmaps/cm'
    config = {'apiVersion': 'v1', 'kind': 'ConfigMap',
              'metadata': {'name': 'cm', 'labels': {'owner': 'a'}}, 'data': {'x': '1', 'y': '2'}}
    status, created = apply(api, path, config, 'a')
    assert status == 201 and created['data'] == {'x': '1', 'y': '2'}
    (entry,) = created['metadata']['managedFields']
    assert (entry['manager'], entry['operation'], entry['fieldsType']) == ('a', 'Apply', 'FieldsV1')
    assert entry['fieldsV1'] == {'f:data': {'f:x': {}, 'f:y': {}}, 'f:metadata': {'f:labels': {'f:owner': {}}}}

    _, again = apply(api, path, config, 'a')
    assert again['metadata']['resourceVersion'] == created['metadata']['resourceVersion']

    _, pruned = apply(api, path, {'apiVersion': 'v1', 'kind': 'ConfigMap', 'metadata': {'name': 'cm'},
                                  'data': {'x': '1', 'z': '3'}}, 'a')
    assert pruned['data'] == {'x': '1', 'z': '3'} and 'labels' not in pruned['metadata']

    _, shared = apply(api, path, {'apiVersion': 'v1', 'kind': 'ConfigMap', 'metadata': {'name': 'cm'},
                                  'data': {'w': '4'}}, 'b')
    assert shared['data'] == {'x': '1', 'z': '3', 'w': '4'}
    _, kept = apply(api, path, {'apiVersion': 'v1', 'kind': 'ConfigMap', 'metadata': {'name': 'cm'},
                                'data': {'x': '1'}}, 'a')
    assert kept['data'] == {'x': '1', 'w': '4'}  # b's field stays; a's z goes
    assert sorted(e['manager'] for e in kept['metadata']['managedFields']) == ['a', 'b']

    status, body = call(api, 'PATCH', path, config, content_type=APPLY)  # no fieldManager
    assert (status, body['reason']) == (400, 'BadRequest')
    status, body = apply(api, path, {**config, 'metadata': {'name': 'cm', 'resourceVersion': '1'}}, 'a')
    assert (status, body['reason']) == (409, 'Conflict')


def test_server_side_apply_merges_named_lists_per_manager(apps: client.AppsV1Api, api: client.ApiClient) -> None:
    path = '/apis/apps/v1/namespaces/ssa/deployments/web'
    config = deployment('web')
    config['spec']['template']['spec']['containers'] = [
        {'name': 'agent', 'image': 'agent:1', 'env': [{'name': 'A', 'value': '1'}, {'name': 'B', 'value': '2'}]}]
    apply(api, path, config, 'alm-operator', force='true')
    # Someone else adds a sidecar (a strategic merge patch owns nothing as an Apply manager).
    apps.patch_namespaced_deployment('web', 'ssa', {'spec': {'template': {'spec': {'containers': [
        {'name': 'sidecar', 'image': 'proxy:1'}]}}}})
    config['spec']['template']['spec']['containers'][0]['env'] = [{'name': 'A', 'value': '1'}]
    _, result = apply(api, path, config, 'alm-operator', force='true')
    containers = result['spec']['template']['spec']['containers']
    assert [c['name'] for c in containers] == ['agent', 'sidecar']
    assert containers[0]['env'] == [{'name': 'A', 'value': '1'}]
    assert result['metadata']['generation'] == 3


def test_server_side_apply_accepts_yaml_and_the_status_subresource(widgets: None, apiserver: ApiServerThread,
                                                                   api: client.ApiClient) -> None:
    path = WIDGETS.format(ns='y') + '/w'
    yaml_body = b'apiVersion: example.dev/v1\nkind: Widget\nmetadata:\n  name: w\nspec:\n  size: 7\n'
    request = urllib.request.Request(f'{apiserver.url}{path}?fieldManager=me', data=yaml_body, method='PATCH',
                                     headers={'Content-Type': APPLY})
    with urllib.request.urlopen(request, timeout=10) as response:
        assert json.loads(response.read())['spec'] == {'size': 7}
    status, body = apply(api, f'{path}/status', {'apiVersion': 'example.dev/v1', 'kind': 'Widget',
                                                 'metadata': {'name': 'w'}, 'status': {'phase': 'Ok'},
                                                 'spec': {'size': 0}}, 'me')
    assert status == 200 and body['status'] == {'phase': 'Ok'} and body['spec'] == {'size': 7}
    assert {e.get('subresource') for e in body['metadata']['managedFields']} == {None, 'status'}


def test_no_op_apply_keeps_the_version_and_emits_no_event(core: client.CoreV1Api, api: client.ApiClient) -> None:
    path = '/api/v1/namespaces/noop/configmaps/cm'
    config = {'apiVersion': 'v1', 'kind': 'ConfigMap', 'metadata': {'name': 'cm'}, 'data': {'k': 'v'}}
    _, first = apply(api, path, config)
    rv = first['metadata']['resourceVersion']
    for _ in range(3):
        _, again = apply(api, path, config)
        assert again['metadata']['resourceVersion'] == rv
    core.patch_namespaced_config_map('cm', 'noop', {'data': {'k': 'v'}})  # a no-op merge patch, too
    assert watch_events(api, core.list_namespaced_config_map, 'noop', resource_version=rv) == []


def test_merge_patch(core: client.CoreV1Api, api: client.ApiClient) -> None:
    core.create_namespaced_config_map('m', {'metadata': {'name': 'cm', 'annotations': {'a': '1', 'b': '2'}},
                                            'data': {'keep': 'x', 'drop': 'y'}})
    status, body = call(api, 'PATCH', '/api/v1/namespaces/m/configmaps/cm',
                        {'metadata': {'annotations': {'a': None, 'c': '3'}}, 'data': {'drop': None, 'new': 'z'}},
                        content_type=MERGE)
    assert status == 200
    assert body['metadata']['annotations'] == {'b': '2', 'c': '3'}
    assert body['data'] == {'keep': 'x', 'new': 'z'}


def test_json_patch(core: client.CoreV1Api, api: client.ApiClient) -> None:
    created = core.create_namespaced_config_map('j', {'metadata': {'name': 'cm', 'finalizers': ['a/one']},
                                                      'data': {'k': 'v'}})
    path = '/api/v1/namespaces/j/configmaps/cm'
    rv = created.metadata.resource_version
    status, body = call(api, 'PATCH', path, [
        {'op': 'test', 'path': '/metadata/resourceVersion', 'value': rv},
        {'op': 'add', 'path': '/metadata/finalizers/-', 'value': 'b/two'},
        {'op': 'add', 'path': '/metadata/annotations', 'value': {}},
        {'op': 'add', 'path': '/metadata/annotations/example.dev~1note', 'value': 'hi'},
        {'op': 'replace', 'path': '/data/k', 'value': 'w'},
        {'op': 'remove', 'path': '/metadata/finalizers/0'},
    ], content_type=JSON_PATCH)
    assert status == 200
    assert body['metadata']['finalizers'] == ['b/two']
    assert body['metadata']['annotations'] == {'example.dev/note': 'hi'}
    assert body['data'] == {'k': 'w'}

    status, failed = call(api, 'PATCH', path, [{'op': 'test', 'path': '/metadata/resourceVersion', 'value': rv},
                                               {'op': 'replace', 'path': '/data/k', 'value': 'lost'}],
                          content_type=JSON_PATCH)
    assert status == 422 and failed['kind'] == 'Status'
    status, _ = call(api, 'PATCH', path, [{'op': 'remove', 'path': '/data/missing'}], content_type=JSON_PATCH)
    assert status == 422
    assert core.read_namespaced_config_map('cm', 'j').data == {'k': 'w'}


def test_strategic_merge_patch(apps: client.AppsV1Api, api: client.ApiClient, widgets: None) -> None:
    dep = deployment('web')
    dep['spec']['template']['spec']['containers'][0]['env'] = [{'name': 'A', 'value': '1'}]
    apps.create_namespaced_deployment('smp', dep)
    patched = apps.patch_namespaced_deployment('web', 'smp', {'spec': {'template': {'spec': {'containers': [
        {'name': 'agent', 'env': [{'name': 'B', 'value': '2'}]},
        {'name': 'sidecar', 'image': 'proxy:1'},
    ]}}}})
    containers = patched.spec.template.spec.containers
    assert [(c.name, c.image) for c in containers] == [('agent', 'agent:1'), ('sidecar', 'proxy:1')]
    assert [(e.name, e.value) for e in containers[0].env] == [('A', '1'), ('B', '2')]
    deleted = apps.patch_namespaced_deployment('web', 'smp', {'spec': {'template': {'spec': {'containers': [
        {'name': 'sidecar', '$patch': 'delete'}]}}}})
    assert [c.name for c in deleted.spec.template.spec.containers] == ['agent']

    call(api, 'POST', WIDGETS.format(ns='smp'), {'apiVersion': 'example.dev/v1', 'kind': 'Widget',
                                                 'metadata': {'name': 'w'}})
    status, body = call(api, 'PATCH', WIDGETS.format(ns='smp') + '/w', {'spec': {}}, content_type=STRATEGIC)
    assert (status, body['reason']) == (415, 'UnsupportedMediaType')  # as real servers do for CRs


def test_scale_subresource(apps: client.AppsV1Api) -> None:
    apps.create_namespaced_deployment('sc', deployment('web', replicas=1))
    scale = apps.patch_namespaced_deployment_scale('web', 'sc', {'spec': {'replicas': 4}})
    assert scale.spec.replicas == 4 and scale.status.selector == 'app=web'
    dep = apps.read_namespaced_deployment('web', 'sc')
    assert dep.spec.replicas == 4 and dep.metadata.generation == 2


def test_dry_run_changes_nothing(core: client.CoreV1Api) -> None:
    core.create_namespaced_config_map('dry', {'metadata': {'name': 'cm'}}, dry_run='All')
    assert core.list_namespaced_config_map('dry').items == []


# --------------------------------------------------------------------------------------------------
# Deleting: finalizers, garbage collection, namespaces, CRDs.

def owner_ref(obj: Any, kind: str) -> dict[str, Any]:
    return {'apiVersion': 'v1', 'kind': kind, 'name': obj.metadata.name, 'uid': obj.metadata.uid}


def test_owner_references_cascade_through_two_levels(core: client.CoreV1Api) -> None:
    ns = 'gc'
    root = core.create_namespaced_config_map(ns, {'metadata': {'name': 'root'}})
    other = core.create_namespaced_config_map(ns, {'metadata': {'name': 'other'}})
    child = core.create_namespaced_secret(ns, {'metadata': {'name': 'child',
                                                            'ownerReferences': [owner_ref(root, 'ConfigMap')]}})
    core.create_namespaced_config_map(ns, {'metadata': {'name': 'grandchild',
                                                        'ownerReferences': [owner_ref(child, 'Secret')]}})
    core.create_namespaced_config_map(ns, {'metadata': {'name': 'shared', 'ownerReferences': [
        owner_ref(root, 'ConfigMap'), owner_ref(other, 'ConfigMap')]}})

    core.delete_namespaced_config_map('root', ns)
    assert [s.metadata.name for s in core.list_namespaced_secret(ns).items] == []
    remaining = {cm.metadata.name: cm for cm in core.list_namespaced_config_map(ns).items}
    assert sorted(remaining) == ['other', 'shared']
    assert [ref.name for ref in remaining['shared'].metadata.owner_references] == ['other']


def test_orphan_propagation_keeps_dependents(core: client.CoreV1Api) -> None:
    owner = core.create_namespaced_config_map('orphan', {'metadata': {'name': 'owner'}})
    core.create_namespaced_config_map('orphan', {'metadata': {'name': 'dep',
                                                              'ownerReferences': [owner_ref(owner, 'ConfigMap')]}})
    core.delete_namespaced_config_map('owner', 'orphan', propagation_policy='Orphan')
    dep = core.read_namespaced_config_map('dep', 'orphan')
    assert dep.metadata.owner_references is None


def test_finalizers_block_deletion_until_removed(core: client.CoreV1Api, api: client.ApiClient) -> None:
    ns = 'fin'
    owner = core.create_namespaced_config_map(ns, {'metadata': {'name': 'cm', 'finalizers': ['example.dev/hold']}})
    core.create_namespaced_secret(ns, {'metadata': {'name': 'child', 'ownerReferences': [
        owner_ref(owner, 'ConfigMap')]}})
    core.delete_namespaced_config_map('cm', ns)
    marked = core.read_namespaced_config_map('cm', ns)
    assert marked.metadata.deletion_timestamp is not None and marked.metadata.deletion_grace_period_seconds == 0
    assert core.read_namespaced_secret('child', ns)  # still there: the owner is not gone yet

    status, _ = call(api, 'PATCH', f'/api/v1/namespaces/{ns}/configmaps/cm',
                     {'metadata': {'finalizers': ['example.dev/hold', 'example.dev/new']}}, content_type=MERGE)
    assert status == 422  # no new finalizers on a deleted object
    rv = marked.metadata.resource_version
    core.patch_namespaced_config_map('cm', ns, {'metadata': {'finalizers': None}})
    status, _ = call(api, 'GET', f'/api/v1/namespaces/{ns}/configmaps/cm')
    assert status == 404
    assert core.list_namespaced_secret(ns).items == []
    events = watch_events(api, core.list_namespaced_config_map, ns, resource_version=rv)
    assert [(t, n) for t, n, _ in events] == [('DELETED', 'cm')]


def test_deleting_a_namespace_deletes_its_contents(core: client.CoreV1Api) -> None:
    core.create_namespaced_config_map('doomed', {'metadata': {'name': 'cm'}})
    core.create_namespaced_config_map('kept', {'metadata': {'name': 'cm'}})
    core.delete_namespace('doomed')
    assert core.list_config_map_for_all_namespaces().items[0].metadata.namespace == 'kept'
    assert len(core.list_config_map_for_all_namespaces().items) == 1


def test_crds_posted_over_http_are_served_and_removed(api: client.ApiClient) -> None:
    extensions = client.ApiextensionsV1Api(api)
    extensions.create_custom_resource_definition(WIDGETS_CRD)
    crd = extensions.read_custom_resource_definition('widgets.example.dev')
    assert {c.type: c.status for c in crd.status.conditions} == {'NamesAccepted': 'True', 'Established': 'True'}
    custom = client.CustomObjectsApi(api)
    custom.create_namespaced_custom_object('example.dev', 'v1', 'crd', 'widgets',
                                           {'apiVersion': 'example.dev/v1', 'kind': 'Widget',
                                            'metadata': {'name': 'w'}, 'spec': {'size': 1}})
    old = custom.get_namespaced_custom_object('example.dev', 'v1alpha1', 'crd', 'widgets', 'w')
    assert old['apiVersion'] == 'example.dev/v1alpha1' and old['spec'] == {'size': 1}  # one object, two versions
    extensions.delete_custom_resource_definition('widgets.example.dev')
    status, _ = call(api, 'GET', '/apis/example.dev/v1/namespaces/crd/widgets')
    assert status == 404


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


# --------------------------------------------------------------------------------------------------
# The simulated Deployment controller.

def available(apps: client.AppsV1Api, ns: str, name: str) -> Any:
    dep = apps.read_namespaced_deployment(name, ns)
    conditions = {c.type: c.status for c in dep.status.conditions or []} if dep.status else {}
    return dep if conditions.get('Available') == 'True' and dep.status.ready_replicas else None


def test_deployment_controller_makes_a_deployment_available(
        deployment_controller: DeploymentController, apps: client.AppsV1Api,
        apiserver: ApiServerThread) -> None:
    apps.create_namespaced_deployment('dc', deployment('web', replicas=2))
    dep = wait_until(lambda: available(apps, 'dc', 'web'))
    assert (dep.status.replicas, dep.status.ready_replicas, dep.status.available_replicas,
            dep.status.updated_replicas, dep.status.observed_generation) == (2, 2, 2, 2, 1)
    conditions = {c.type: c.reason for c in dep.status.conditions}
    assert conditions == {'Available': 'MinimumReplicasAvailable', 'Progressing': 'NewReplicaSetAvailable'}

    settled = dep.metadata.resource_version
    time.sleep(0.3)
    assert apps.read_namespaced_deployment('web', 'dc').metadata.resource_version == settled  # no write loops

    apps.patch_namespaced_deployment('web', 'dc', {'spec': {'replicas': 3}})
    dep = wait_until(lambda: (d := available(apps, 'dc', 'web')) and d.status.observed_generation == 2 and d)
    assert dep.status.ready_replicas == 3
    assert apiserver.emulator.count(writes=True, resource='deployments', subresource='status') == 0  # not HTTP


def test_deployment_controller_honours_its_delay(deployment_controller: DeploymentController,
                                                 apps: client.AppsV1Api) -> None:
    # Timed from before the create (the delay cannot start earlier), and long enough that the first
    # read comes before it even on a loaded machine.
    deployment_controller.delay = 1.0
    started = time.monotonic()
    apps.create_namespaced_deployment('delay', deployment('web'))
    assert available(apps, 'delay', 'web') is None
    wait_until(lambda: available(apps, 'delay', 'web'))
    assert time.monotonic() - started >= 0.95


def test_deployment_controller_can_run_pods(deployment_controller: DeploymentController,
                                           apps: client.AppsV1Api, core: client.CoreV1Api) -> None:
    deployment_controller.manage_pods = True
    apps.create_namespaced_deployment('pods', deployment('web', replicas=2, app='web', tier='agent'))
    wait_until(lambda: available(apps, 'pods', 'web'))
    pods = core.list_namespaced_pod('pods', label_selector='app=web,tier=agent').items
    assert len(pods) == 2
    assert all(p.status.phase == 'Running' and p.status.pod_ip == '127.0.0.1' for p in pods)
    assert all(p.metadata.owner_references[0].kind == 'Deployment' for p in pods)

    core.delete_namespaced_pod(pods[0].metadata.name, 'pods')  # a lost pod comes back
    wait_until(lambda: len(core.list_namespaced_pod('pods').items) == 2)
    apps.patch_namespaced_deployment('web', 'pods', {'spec': {'template': {'spec': {'containers': [
        {'name': 'agent', 'image': 'agent:2'}]}}}})
    wait_until(lambda: {p.spec.containers[0].image for p in core.list_namespaced_pod('pods').items} == {'agent:2'})
    apps.delete_namespaced_deployment('web', 'pods')
    assert core.list_namespaced_pod('pods').items == []  # garbage-collected with their owner


# --------------------------------------------------------------------------------------------------
# kopf against the emulator.

async def test_a_kopf_operator_handles_objects_and_patches_status(widgets: None, apiserver: ApiServerThread,
                                                                  api: client.ApiClient) -> None:
    registry = kopf.OperatorRegistry()

    @kopf.on.login(registry=registry)
    def login(**_: Any) -> kopf.ConnectionInfo:
        return kopf.ConnectionInfo(server=apiserver.url, insecure=True)

    @kopf.on.create('example.dev', 'v1', 'widgets', registry=registry)
    def created(body: kopf.Body, spec: kopf.Spec, patch: kopf.Patch, **_: Any) -> None:
        patch.status['seenSize'] = spec.get('size')
        kopf.info(body, reason='Seen', message='the size is seen')  # posted as a k8s Event

    stop, ready = asyncio.Event(), asyncio.Event()
    operator = asyncio.create_task(kopf.operator(registry=registry, standalone=True, clusterwide=True,
                                                 stop_flag=stop, ready_flag=ready))
    try:
        await asyncio.wait_for(ready.wait(), timeout=30)
        await asyncio.to_thread(call, api, 'POST', WIDGETS.format(ns='kopf'), {
            'apiVersion': 'example.dev/v1', 'kind': 'Widget', 'metadata': {'name': 'w'}, 'spec': {'size': 5}})

        async def handled() -> dict[str, Any]:
            while True:
                _, body = await asyncio.to_thread(call, api, 'GET', WIDGETS.format(ns='kopf') + '/w')
                if (body.get('status') or {}).get('seenSize') == 5:
                    return dict(body)
                await asyncio.sleep(0.05)

        body = await asyncio.wait_for(handled(), timeout=30)
        assert body['metadata']['generation'] == 1  # status went through /status, not the spec
        emulator = apiserver.emulator
        assert emulator.count(user_agent='kopf', method='PATCH', resource='widgets', subresource='status') >= 1


        async def posted_event() -> dict[str, Any]:  # kopf posts k8s Events in the background
            while True:
                _, events = await asyncio.to_thread(call, api, 'GET', '/api/v1/namespaces/kopf/events')
                if events['items']:
                    return dict(events['items'][0])
                await asyncio.sleep(0.05)

        event = await asyncio.wait_for(posted_event(), timeout=10)
        assert (event['reason'], event['involvedObject']['name']) == ('Seen', 'w')
    finally:
        stop.set()
        await asyncio.wait_for(operator, timeout=30)


def test_secret_string_data_is_folded_into_data(apiserver: Any) -> None:
    """Like a real server: stringData is write-only, stored base64 in data (kubectl apply of examples uses it)."""
    core = client.CoreV1Api(apiserver.api_client())
    body = {"metadata": {"name": "s", "namespace": "default"}, "stringData": {"k": "v"}, "data": {"a": "Yg=="}}
    created = core.create_namespaced_secret("default", body)
    assert created.data == {"a": "Yg==", "k": base64.b64encode(b"v").decode()}
    assert created.string_data is None


def test_an_object_created_for_a_gone_owner_is_collected(apiserver: Any) -> None:
    """A late write after the owner's deletion must not leave an orphan (the real GC collects it)."""
    core = client.CoreV1Api(apiserver.api_client())
    owner = core.create_namespaced_config_map("default", {"metadata": {"name": "owner"}})
    core.delete_namespaced_config_map("owner", "default")
    ref = {"apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": owner.metadata.uid}
    core.create_namespaced_config_map("default", {"metadata": {"name": "late", "ownerReferences": [ref]}})
    with pytest.raises(ApiException) as exc:
        core.read_namespaced_config_map("late", "default")
    assert exc.value.status == 404
