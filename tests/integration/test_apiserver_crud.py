"""The emulated API server (alm.sandbox) as seen by the ``kubernetes`` client: creating, reading,
listing, updating, patching, server-side apply.

Every test talks HTTP to a server on 127.0.0.1 (the ``apiserver`` fixture); nothing here calls the
store directly except to install CRDs or to read what only the server knows.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request

from kubernetes import client

from alm.sandbox.apiserverthread import ApiServerThread
from tests.integration.apiserver_client import (
    APPLY,
    JSON_PATCH,
    MERGE,
    STRATEGIC,
    WIDGETS,
    apply,
    call,
    deployment,
    watch_events,
)
from tests.integration.apiserver_client import api as api  # fixture
from tests.integration.apiserver_client import apps as apps  # fixture
from tests.integration.apiserver_client import core as core  # fixture
from tests.integration.apiserver_client import widgets as widgets  # fixture

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
