"""The emulated API server (alm.sandbox) as seen by real clients: deletion and garbage collection,
the simulated Deployment controller, a kopf operator.

Every test talks HTTP to a server on 127.0.0.1 (the ``apiserver`` fixture); nothing here calls the
store directly except to install CRDs or to read what only the server knows.
"""

from __future__ import annotations

import asyncio
import base64
import time
from typing import Any

import kopf
import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from alm.sandbox.apiserverthread import ApiServerThread
from alm.sandbox.workloads import DeploymentController
from tests.integration.apiserver_client import (
    MERGE,
    WIDGETS,
    WIDGETS_CRD,
    call,
    deployment,
    wait_until,
    watch_events,
)
from tests.integration.apiserver_client import api as api  # fixture
from tests.integration.apiserver_client import apps as apps  # fixture
from tests.integration.apiserver_client import core as core  # fixture
from tests.integration.apiserver_client import widgets as widgets  # fixture

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
