"""A simulated Job controller for the emulated API server (no kubelet, no pods, no volumes).

It runs as an asyncio task in the emulator's loop, like :class:`alm.sandbox.workloads.DeploymentController`,
and works on the object store directly. For every new ``batch/v1`` Job it "runs" it: after
``delay`` seconds it sets ``status`` as kube-controller-manager would for a finished Job,
``Complete=True`` (with ``succeeded: 1``) or, when told to, ``Failed=True`` (``failed: 1``,
reason ``BackoffLimitExceeded``). A Job told to stall (``stall_next(n)``, a pod that never
starts) stays active until its ``activeDeadlineSeconds`` and then fails with reason
``DeadlineExceeded``, as the real controller does.

Nothing is executed. For the archive Jobs of :func:`alm.core.archive.pvc_job` (those with a
``persistentVolumeClaim`` volume and ``configMap`` volumes) it does what the container's script
would: it reads the mounted ConfigMaps from the store, checks them with
:func:`alm.core.archive.reassemble` and the Job's ``ALM_SHA256``, and keeps the bytes it would
have written in :attr:`claims` (``(namespace, claim) -> {path: bytes}``). A missing ConfigMap or
a checksum that does not match fails the Job, as ``sha256sum -c`` would.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from typing import Any

from alm.core import archive
from alm.sandbox.defaulting import now_rfc3339
from alm.sandbox.objectstore import ObjectStore
from alm.sandbox.watches import StoreEvent

__all__ = ["JOBS", "JobController"]

log = logging.getLogger(__name__)

JOBS = 'batch/v1/jobs'
CONFIGMAPS = 'v1/configmaps'


class JobController:
    """Marks Jobs Complete (or Failed, for the next ``fail_next(n)`` Jobs; or never, for the next
    ``stall_next(n)``, until their deadline)."""

    def __init__(self, store: ObjectStore, *, delay: float = 0.0) -> None:
        self.store = store
        self.delay = delay
        self.claims: dict[tuple[str, str], dict[str, bytes]] = {}
        self.runs: list[dict[str, Any]] = []  # every Job run, as it was when it ran
        self._failures = 0
        self._stalls = 0
        self._failure_message = 'simulated failure'
        self._task: asyncio.Task[None] | None = None
        self._workers: set[asyncio.Task[None]] = set()

    def fail_next(self, count: int, message: str = 'simulated failure') -> None:
        """The next ``count`` Jobs fail (thread-safe enough: read once per Job in the loop)."""
        self._failures = count
        self._failure_message = message

    def stall_next(self, count: int) -> None:
        """The next ``count`` Jobs never finish by themselves: their pod never starts."""
        self._stalls = count

    async def __aenter__(self) -> JobController:
        await self.start()
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.stop()

    async def start(self) -> None:
        if self._task is None:
            _, queue = self.store.open_watch(None)
            for job in self.store.list_objects(JOBS):
                self._schedule(job)
            self._task = asyncio.create_task(self._run(queue), name='job-controller')

    async def stop(self) -> None:
        tasks = [t for t in [self._task, *self._workers] if t is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._task = None
        self._workers.clear()

    async def _run(self, queue: asyncio.Queue[StoreEvent | None]) -> None:
        jobs = self.store.resolve(JOBS).storage_key
        try:
            while (event := await queue.get()) is not None:
                if event.resource == jobs and event.type == 'ADDED':
                    self._schedule(event.object)
        finally:
            self.store.close_watch(queue)

    def _schedule(self, job: dict[str, Any]) -> None:
        if _finished(job):
            return
        meta = job.get('metadata') or {}
        worker = asyncio.create_task(self._work(meta.get('namespace') or '', meta.get('name') or '',
                                                meta.get('uid')))
        self._workers.add(worker)
        worker.add_done_callback(self._workers.discard)

    async def _work(self, namespace: str, name: str, uid: str | None) -> None:
        try:
            if self._stalls > 0:
                self._stalls -= 1
                await self._stall(namespace, name, uid)
                return
            if self.delay:
                await asyncio.sleep(self.delay)
            self.reconcile(namespace, name, uid)
        except Exception:
            log.exception("Running the simulated Job %s/%s failed.", namespace, name)

    async def _stall(self, namespace: str, name: str, uid: str | None) -> None:
        """Active with a pod that never starts; Failed ``DeadlineExceeded`` once the deadline passes
        (no deadline: active for as long as the controller runs)."""
        job = self._live(namespace, name, uid)
        if job is None:
            return
        self.runs.append(job)
        started = now_rfc3339()
        self.store.replace(JOBS, namespace, name, {**job, 'status': {'startTime': started, 'active': 1}},
                           subresource='status')
        deadline = (job.get('spec') or {}).get('activeDeadlineSeconds')
        if deadline is None:
            return
        await asyncio.sleep(float(deadline))
        job = self._live(namespace, name, uid)
        if job is None:
            return
        status = {'startTime': started, 'active': 0,
                  **_failed('DeadlineExceeded', 'Job was active longer than specified deadline', now_rfc3339())}
        self.store.replace(JOBS, namespace, name, {**job, 'status': status}, subresource='status')

    def _live(self, namespace: str, name: str, uid: str | None) -> dict[str, Any] | None:
        """The Job still to run: there, not being deleted, not finished, the same object."""
        job = self.store.find(JOBS, namespace, name)
        if job is None or job['metadata'].get('deletionTimestamp') or _finished(job):
            return None
        if uid is not None and job['metadata'].get('uid') != uid:
            return None
        return job

    def reconcile(self, namespace: str, name: str, uid: str | None = None) -> None:
        job = self._live(namespace, name, uid)
        if job is None:
            return
        self.runs.append(job)
        if self._failures > 0:
            self._failures -= 1
            ok, message = False, self._failure_message
        else:
            ok, message = self._execute(namespace, job)
        now = now_rfc3339()
        status: dict[str, Any] = {'startTime': now, 'active': 0}
        if ok:
            status |= {'succeeded': 1, 'completionTime': now, 'conditions': [
                _condition('SuccessCriteriaMet', 'CompletionsReached', 'Reached expected number of succeeded pods',
                           now),
                _condition('Complete', 'CompletionsReached', 'Reached expected number of succeeded pods', now)]}
        else:
            status |= _failed('BackoffLimitExceeded', message, now)
        self.store.replace(JOBS, namespace, name, {**job, 'status': status}, subresource='status')

    def _execute(self, namespace: str, job: dict[str, Any]) -> tuple[bool, str]:
        """What the archive Job's script would do; any other Job simply succeeds."""
        pod = ((job.get('spec') or {}).get('template') or {}).get('spec') or {}
        volumes = pod.get('volumes') or []
        claims = [v['persistentVolumeClaim']['claimName'] for v in volumes if v.get('persistentVolumeClaim')]
        maps = [v['configMap']['name'] for v in volumes if v.get('configMap')]
        if not claims or not maps:
            return True, ''
        objects = []
        for cm in maps:
            found = self.store.find(CONFIGMAPS, namespace, cm)
            if found is None:
                return False, f'configmap "{cm}" not found'
            objects.append(found)
        env = {e.get('name'): e.get('value') for c in pod.get('containers') or [] for e in c.get('env') or []}
        try:
            data = archive.reassemble(objects)
        except ValueError as exc:
            return False, f'sha256sum: {exc}'
        digest = hashlib.sha256(data).hexdigest()
        if digest != env.get('ALM_SHA256'):
            return False, 'sha256sum: WARNING: 1 computed checksum did NOT match'
        directory = f"{env.get('ALM_AGENT')}/{digest}"
        manifest = next(o for o in objects if 'manifest.json' in (o.get('data') or {}))
        self.claims.setdefault((namespace, claims[0]), {}).update({
            f'{directory}/archive.json': data,
            f'{directory}/manifest.json': str(manifest['data']['manifest.json']).encode(),
            f'{directory}/archive.json.sha256': f'{digest}  archive.json\n'.encode(),
        })
        return True, ''


def _finished(job: dict[str, Any]) -> bool:
    return any(c.get('type') in ('Complete', 'Failed') and c.get('status') == 'True'
               for c in (job.get('status') or {}).get('conditions') or [])


def _failed(reason: str, message: str, now: str) -> dict[str, Any]:
    """The status fields kube-controller-manager sets on a failed Job."""
    return {'failed': 1, 'conditions': [_condition('FailureTarget', reason, message, now),
                                        _condition('Failed', reason, message, now)]}


def _condition(type_: str, reason: str, message: str, now: str) -> dict[str, Any]:
    return {'type': type_, 'status': 'True', 'reason': reason, 'message': message,
            'lastProbeTime': now, 'lastTransitionTime': now}
