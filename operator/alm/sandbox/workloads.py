"""Simulated workload controllers for the emulated API server (no kubelet, no scheduler).

They run as asyncio tasks in the emulator's event loop and work on the object store directly
(not over HTTP), so their writes do not show up in the request log the operator's tests count.
They react to the store's change events rather than polling, and write only when the computed
state differs from the stored one: an idle cluster stays idle (no watch-event storms).
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import hashlib
import json
import logging
from typing import Any

import kmock

from alm.sandbox import nodeless
from alm.sandbox.defaulting import now_rfc3339
from alm.sandbox.objectstore import ObjectStore
from alm.sandbox.watches import StoreEvent

log = logging.getLogger(__name__)

DEPLOYMENTS = 'apps/v1/deployments'
PODS = 'v1/pods'


class DeploymentController:
    """
    Makes Deployments look rolled out, like kube-controller-manager plus healthy pods would.

    For each Deployment, after ``delay`` seconds, it sets ``status.observedGeneration``,
    ``replicas``/``updatedReplicas``/``readyReplicas``/``availableReplicas`` and the conditions
    ``Available=True`` (MinimumReplicasAvailable) and ``Progressing=True`` (NewReplicaSetAvailable).

    With ``manage_pods=True`` it also keeps one Pod per replica, named
    ``<deployment>-<template hash>-<index>``, labelled from the pod template, owned by the
    Deployment (so garbage collection removes them), Running and Ready; a template change
    replaces them. The ready count then comes from the pods. Subclasses make pods real by
    overriding :meth:`spawn_pod` (build the Pod, e.g. after starting a local process) and
    :meth:`terminate_pod` (called when such a pod is gone). No ReplicaSets are simulated.

    With ``nodeless=True`` it behaves like kube-controller-manager on a control plane without
    nodes (:mod:`alm.sandbox.nodeless`): pods are created Pending, unbound and without status,
    named ``<deployment>-<template hash>-<random>``; the ready count comes from their ``Ready``
    condition, written by whoever plays kubelet; surplus and outdated pods are deleted gracefully
    (they stay, terminating, until that kubelet finishes them) and replaced at once.
    """

    def __init__(self, store: ObjectStore, *, delay: float = 0.0, manage_pods: bool = False,
                 pod_ip: str = '127.0.0.1', node_name: str = 'alm-sandbox', nodeless: bool = False) -> None:
        self.store = store
        self.delay = delay
        self.nodeless = nodeless
        self.manage_pods = manage_pods or nodeless
        self.pod_ip = pod_ip
        self.node_name = node_name
        self._task: asyncio.Task[None] | None = None
        self._workers: dict[tuple[str, str], asyncio.Task[None]] = {}
        self._dirty: set[tuple[str, str]] = set()
        self._spawned: set[tuple[str, str]] = set()
        self._chores: set[asyncio.Task[None]] = set()

    async def __aenter__(self) -> DeploymentController:
        await self.start()
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.stop()

    async def start(self) -> None:
        """Begin reconciling (all existing Deployments at once, then on every change)."""
        if self._task is None:
            _, queue = self.store.open_watch(None)
            for deployment in self.store.list_objects(DEPLOYMENTS):
                self._schedule(deployment)
            self._task = asyncio.create_task(self._run(queue), name='deployment-controller')

    async def stop(self) -> None:
        tasks = [t for t in [self._task, *self._workers.values(), *self._chores] if t is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._task = None
        self._workers.clear()
        self._chores.clear()

    async def _run(self, queue: asyncio.Queue[StoreEvent | None]) -> None:
        deployments = self.store.resolve(DEPLOYMENTS).storage_key
        pods = self.store.resolve(PODS).storage_key
        try:
            while (event := await queue.get()) is not None:
                if event.resource == deployments and event.type != 'DELETED':
                    self._schedule(event.object)
                elif event.resource == pods:
                    self._on_pod_event(event)
        finally:
            self.store.close_watch(queue)

    def _on_pod_event(self, event: StoreEvent) -> None:
        meta = event.object.get('metadata') or {}
        key = (meta.get('namespace') or '', meta.get('name') or '')
        if event.type == 'DELETED' and key in self._spawned:
            self._spawned.discard(key)
            chore = asyncio.create_task(self._terminate(event.object))
            self._chores.add(chore)
            chore.add_done_callback(self._chores.discard)
        for ref in meta.get('ownerReferences') or []:
            if ref.get('kind') == 'Deployment' and self.manage_pods:
                owner = self.store.find(DEPLOYMENTS, meta.get('namespace'), ref.get('name', ''))
                if owner is not None:
                    self._schedule(owner)

    async def _terminate(self, pod: dict[str, Any]) -> None:
        try:
            await self.terminate_pod(pod)
        except Exception:
            log.exception("Terminating a simulated pod failed.")

    def _schedule(self, deployment: dict[str, Any]) -> None:
        meta = deployment.get('metadata') or {}
        key = (meta.get('namespace') or '', meta.get('name') or '')
        self._dirty.add(key)
        worker = self._workers.get(key)
        if worker is None or worker.done():
            self._workers[key] = asyncio.create_task(self._work(key))

    async def _work(self, key: tuple[str, str]) -> None:
        # Changes that arrive while we sleep or reconcile are coalesced into one more round.
        while key in self._dirty:
            if self.delay:
                await asyncio.sleep(self.delay)
            self._dirty.discard(key)
            try:
                await self.reconcile(*key)
            except Exception:
                log.exception("Reconciling the simulated Deployment %s/%s failed.", *key)

    async def reconcile(self, namespace: str, name: str) -> None:
        """Bring one Deployment's pods (if managed) and status to the simulated truth."""
        deployment = self.store.find(DEPLOYMENTS, namespace, name)
        if deployment is None or deployment['metadata'].get('deletionTimestamp'):
            return
        replicas = int((deployment.get('spec') or {}).get('replicas', 1))
        ready = await self._sync_pods(deployment, replicas) if self.manage_pods else replicas
        deployment = self.store.find(DEPLOYMENTS, namespace, name)  # fresh, after the awaits
        if deployment is None:
            return
        status = self.desired_status(deployment, replicas, ready)
        if status != deployment.get('status'):
            self.store.replace(DEPLOYMENTS, namespace, name, {**deployment, 'status': status},
                               subresource='status')

    def desired_status(self, deployment: dict[str, Any], replicas: int, ready: int) -> dict[str, Any]:
        """The status a healthy cluster would report; unchanged conditions keep their timestamps."""
        meta = deployment['metadata']
        conditions = (deployment.get('status') or {}).get('conditions') or []
        old_conditions: dict[str, dict[str, Any]] = {c.get('type'): c for c in conditions}
        now = now_rfc3339()

        def condition(type_: str, status: str, reason: str, message: str) -> dict[str, Any]:
            old = old_conditions.get(type_)
            if old and (old.get('status'), old.get('reason'), old.get('message')) == (status, reason, message):
                return old
            since = old.get('lastTransitionTime') if old and old.get('status') == status else now
            return {'type': type_, 'status': status, 'lastUpdateTime': now, 'lastTransitionTime': since,
                    'reason': reason, 'message': message}

        available = ready >= replicas
        status: dict[str, Any] = {'observedGeneration': meta.get('generation', 1)}
        if replicas:
            status['replicas'] = replicas
            status['updatedReplicas'] = replicas
        if ready:
            status['readyReplicas'] = ready
            status['availableReplicas'] = ready
        if replicas > ready:
            status['unavailableReplicas'] = replicas - ready
        status['conditions'] = [
            condition('Available', 'True', 'MinimumReplicasAvailable', 'Deployment has minimum availability.')
            if available else
            condition('Available', 'False', 'MinimumReplicasUnavailable',
                      'Deployment does not have minimum availability.'),
            condition('Progressing', 'True', 'NewReplicaSetAvailable',
                      f'ReplicaSet "{meta["name"]}-{template_hash(deployment)}" has successfully progressed.')
            if available else
            condition('Progressing', 'True', 'ReplicaSetUpdated',
                      f'ReplicaSet "{meta["name"]}-{template_hash(deployment)}" is progressing.'),
        ]
        return status

    # ----------------------------------------------------------------------------------------------
    # Pods (only with manage_pods=True).

    def pod_name(self, deployment: dict[str, Any], index: int) -> str:
        return f"{deployment['metadata']['name']}-{template_hash(deployment)}-{index}"

    async def spawn_pod(self, deployment: dict[str, Any], index: int) -> dict[str, Any]:
        """
        Build the Pod for one replica, with its status (Running, Ready, ``podIP``).

        Override to make pods real (e.g. start a local process and report its address); the
        controller creates the object and writes the returned status through ``pods/status``.
        """
        meta = deployment['metadata']
        template = copy.deepcopy((deployment.get('spec') or {}).get('template') or {})
        template_meta = template.get('metadata') or {}
        spec = template.get('spec') or {}
        spec['nodeName'] = self.node_name
        now = now_rfc3339()
        return {
            'apiVersion': 'v1',
            'kind': 'Pod',
            'metadata': {
                'name': self.pod_name(deployment, index),
                'namespace': meta.get('namespace'),
                'labels': {**(template_meta.get('labels') or {}), 'pod-template-hash': template_hash(deployment)},
                'annotations': dict(template_meta.get('annotations') or {}),
                'ownerReferences': [{
                    'apiVersion': 'apps/v1', 'kind': 'Deployment', 'name': meta['name'],
                    'uid': meta['uid'], 'controller': True, 'blockOwnerDeletion': True,
                }],
            },
            'spec': spec,
            'status': {
                'phase': 'Running',
                'hostIP': self.pod_ip,
                'podIP': self.pod_ip,
                'podIPs': [{'ip': self.pod_ip}],
                'startTime': now,
                'conditions': [{'type': t, 'status': 'True', 'lastTransitionTime': now}
                               for t in ('PodScheduled', 'Initialized', 'ContainersReady', 'Ready')],
                'containerStatuses': [
                    {'name': c.get('name', ''), 'image': c.get('image', ''), 'imageID': '', 'ready': True,
                     'started': True, 'restartCount': 0, 'state': {'running': {'startedAt': now}}}
                    for c in spec.get('containers') or []
                ],
            },
        }

    async def terminate_pod(self, pod: dict[str, Any]) -> None:
        """Called after a pod this controller spawned is gone (deleted, replaced, or collected)."""

    def pending_pod(self, deployment: dict[str, Any]) -> dict[str, Any]:
        """A new replica as a ReplicaSet controller creates it: unbound, no status (``nodeless`` mode)."""
        meta = deployment['metadata']
        template = copy.deepcopy((deployment.get('spec') or {}).get('template') or {})
        template_meta = template.get('metadata') or {}
        spec = template.get('spec') or {}
        spec.pop('nodeName', None)
        return {
            'apiVersion': 'v1',
            'kind': 'Pod',
            'metadata': {
                'generateName': f"{meta['name']}-{template_hash(deployment)}-",
                'namespace': meta.get('namespace'),
                'labels': {**(template_meta.get('labels') or {}), 'pod-template-hash': template_hash(deployment)},
                'annotations': dict(template_meta.get('annotations') or {}),
                'ownerReferences': [{
                    'apiVersion': 'apps/v1', 'kind': 'Deployment', 'name': meta['name'],
                    'uid': meta['uid'], 'controller': True, 'blockOwnerDeletion': True,
                }],
            },
            'spec': spec,
        }

    def _sync_pending_pods(self, deployment: dict[str, Any], replicas: int) -> int:
        meta = deployment['metadata']
        namespace = meta.get('namespace') or ''
        current_hash = template_hash(deployment)
        active = [
            pod for pod in self.store.list_objects(PODS, namespace)
            if any(ref.get('uid') == meta.get('uid') for ref in pod['metadata'].get('ownerReferences') or [])
            and not pod['metadata'].get('deletionTimestamp')
        ]
        current = [p for p in active if (p['metadata'].get('labels') or {}).get('pod-template-hash') == current_hash]
        # Outdated pods go; of the surplus, unready and unbound ones first (as the ReplicaSet controller).
        current.sort(key=lambda p: (_is_ready(p), bool(p['spec'].get('nodeName')), p['metadata']['name']),
                     reverse=True)
        doomed = [p for p in active if p not in current] + current[replicas:]
        for pod in doomed:
            with contextlib.suppress(kmock.KubernetesError):
                nodeless.delete_pod(self.store, namespace, pod['metadata']['name'])
        for _ in range(replicas - len(current)):
            self.store.create(PODS, self.pending_pod(deployment), namespace=namespace)
        return sum(1 for pod in current[:replicas] if _is_ready(pod))

    async def _sync_pods(self, deployment: dict[str, Any], replicas: int) -> int:
        if self.nodeless:
            return self._sync_pending_pods(deployment, replicas)
        meta = deployment['metadata']
        namespace = meta.get('namespace')
        owned = {
            pod['metadata']['name']: pod
            for pod in self.store.list_objects(PODS, namespace)
            if any(ref.get('uid') == meta.get('uid') for ref in pod['metadata'].get('ownerReferences') or [])
        }
        wanted = {self.pod_name(deployment, index): index for index in range(replicas)}
        for name in sorted(set(owned) - set(wanted)):
            if self.store.find(PODS, namespace, name) is not None:
                self.store.delete(PODS, namespace, name)
        for name, index in sorted(wanted.items(), key=lambda item: item[1]):
            if name in owned:
                continue
            pod = await self.spawn_pod(deployment, index)
            if self.store.find(DEPLOYMENTS, namespace, meta['name']) is None:
                return 0  # deleted while we were spawning
            status = pod.pop('status', None)
            created = self.store.create(PODS, pod, namespace=namespace)
            self._spawned.add((namespace or '', created['metadata']['name']))
            if status is not None:
                self.store.replace(PODS, namespace, created['metadata']['name'],
                                   {**created, 'status': status}, subresource='status')
        return sum(
            1 for pod in self.store.list_objects(PODS, namespace)
            if pod['metadata']['name'] in wanted and _is_ready(pod)
        )


def template_hash(deployment: dict[str, Any]) -> str:
    """A short stable hash of the pod template (what ``pod-template-hash`` is for)."""
    template = (deployment.get('spec') or {}).get('template') or {}
    digest = hashlib.sha256(json.dumps(template, sort_keys=True).encode()).hexdigest()
    return digest[:10]


def _is_ready(pod: dict[str, Any]) -> bool:
    conditions = (pod.get('status') or {}).get('conditions') or []
    return any(c.get('type') == 'Ready' and c.get('status') == 'True' for c in conditions)
