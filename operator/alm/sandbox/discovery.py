"""Discovery in the emulated API server: ``/api``, ``/apis`` and the group/version documents.

Served from the store's registry rather than from kmock's static resource list, so CRDs appear as
soon as they are stored, preferred versions are deterministic (storage version first, then
Kubernetes' version order) and the subresources listed are the ones really served.
:class:`Discovery` is a base of :class:`alm.sandbox.apiserver.ApiServerEmulator`; its
``_serve_*`` methods replace kmock's fallbacks of the same names.
"""

from __future__ import annotations

import re
from typing import Any

import kmock
from kmock._internal import rendering  # Response: not re-exported by kmock 0.8

from alm.sandbox.apierrors import api_error, status_body
from alm.sandbox.objectstore import ObjectStore
from alm.sandbox.resources import ResourceDef


class Discovery:
    """The discovery endpoints, from :attr:`store`'s definitions."""

    __slots__ = ()
    store: ObjectStore

    def _groups(self) -> dict[str, list[ResourceDef]]:
        groups: dict[str, list[ResourceDef]] = {}
        for rdef in self.store.definitions:
            groups.setdefault(rdef.group, []).append(rdef)
        return groups

    def _group_info(self, group: str, defs: list[ResourceDef]) -> dict[str, Any]:
        versions = sorted({d.version for d in defs}, key=_version_priority)
        storage = [d.storage_version for d in defs if d.storage_version in versions]
        preferred = storage[0] if storage else versions[0]
        return {
            'name': group,
            'versions': [{'groupVersion': f'{group}/{v}', 'version': v} for v in versions],
            'preferredVersion': {'groupVersion': f'{group}/{preferred}', 'version': preferred},
        }

    async def _serve_root(self, request: kmock.Request) -> rendering.Payload:
        paths = {'/api', '/api/v1', '/apis', '/version'}
        for group, defs in self._groups().items():
            if group:
                paths.add(f'/apis/{group}')
                paths.update(f'/apis/{group}/{d.version}' for d in defs)
        return {'paths': sorted(paths)}

    async def _serve_apis(self, request: kmock.Request) -> rendering.Payload:
        return {
            'kind': 'APIGroupList', 'apiVersion': 'v1',
            'groups': [self._group_info(group, defs) for group, defs in sorted(self._groups().items()) if group],
        }

    async def _serve_group(self, request: kmock.Request) -> rendering.Payload:
        group = request.resource.group if request.resource is not None else None
        defs = self._groups().get(group or '')
        if not group or not defs:
            return rendering.Response(status=404, payload=status_body(api_error(
                404, 'NotFound', 'the server could not find the requested resource')))
        return {'kind': 'APIGroup', 'apiVersion': 'v1', **self._group_info(group, defs)}

    async def _serve_version(self, request: kmock.Request) -> rendering.Payload:
        group = request.resource.group if request.resource is not None else None
        version = request.resource.version if request.resource is not None else None
        defs = [d for d in self.store.definitions if d.group == group and d.version == version]
        if not defs:
            return rendering.Response(status=404, payload=status_body(api_error(
                404, 'NotFound', 'the server could not find the requested resource')))
        entries: list[dict[str, Any]] = []
        for rdef in sorted(defs, key=lambda d: d.plural):
            entries.append({
                'name': rdef.plural, 'singularName': rdef.singular, 'namespaced': rdef.namespaced,
                'kind': rdef.kind, 'verbs': list(rdef.verbs), 'shortNames': list(rdef.shortnames),
                'categories': list(rdef.categories),
            })
            for sub in rdef.subresources:
                entry: dict[str, Any] = {
                    'name': f'{rdef.plural}/{sub}', 'singularName': '', 'namespaced': rdef.namespaced,
                    'kind': rdef.kind, 'verbs': ['get', 'patch', 'update'],
                }
                if sub == 'scale':
                    entry.update(group='autoscaling', version='v1', kind='Scale')
                if sub == 'finalize':
                    entry['verbs'] = ['update']
                entries.append(entry)
        return {'kind': 'APIResourceList', 'apiVersion': 'v1', 'groupVersion': defs[0].api_version,
                'resources': entries}


def _version_priority(version: str) -> tuple[int, int, int, str]:
    """Kubernetes' version order: GA > beta > alpha, then higher numbers first."""
    match = re.fullmatch(r'v(\d+)(?:(alpha|beta)(\d+))?', version)
    if not match:
        return (3, 0, 0, version)
    major, stage, minor = int(match.group(1)), match.group(2), int(match.group(3) or 0)
    return ({None: 0, 'beta': 1, 'alpha': 2}[stage], -major, -minor, version)
