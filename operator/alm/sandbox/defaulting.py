"""What the emulated API server fills in or owns by itself, whatever the client sent.

The system metadata fields (and which of them a write can never change), the timestamps, the
defaults real defaulters and controllers set at creation, the write-only ``stringData`` of
Secrets, the kind/apiVersion check and the view of an object that ``metadata.generation`` tracks.
Pure functions on plain dicts, apart from the store, so the rules can be read in one place.
"""

from __future__ import annotations

import base64
import copy
import datetime
from collections.abc import Iterator, Mapping
from typing import Any

from alm.sandbox.apierrors import api_error
from alm.sandbox.resources import CRD_KEY, NAMESPACES_KEY, ResourceDef

SYSTEM_META = ('uid', 'resourceVersion', 'creationTimestamp', 'deletionTimestamp',
               'deletionGracePeriodSeconds', 'generation', 'managedFields', 'selfLink')
IMMUTABLE_META = ('name', 'namespace', 'uid', 'creationTimestamp', 'deletionTimestamp',
                  'deletionGracePeriodSeconds')
NAME_ALPHABET = 'bcdfghjklmnpqrstvwxz2456789'


def now_rfc3339() -> str:
    return datetime.datetime.now(datetime.UTC).strftime('%Y-%m-%dT%H:%M:%SZ')


def fold_string_data(rdef: ResourceDef, obj: dict[str, Any]) -> None:
    """Secrets' ``stringData`` is write-only: the server merges it into ``data`` (base64) and drops it."""
    if rdef.group == '' and rdef.plural == 'secrets' and isinstance(obj.get('stringData'), dict):
        data = obj.setdefault('data', {}) or {}
        for key, value in obj.pop('stringData').items():
            data[key] = base64.b64encode(str(value).encode()).decode()
        obj['data'] = data


def check_kind(rdef: ResourceDef, obj: dict[str, Any]) -> None:
    if obj.get('kind') not in (None, '', rdef.kind):
        raise api_error(400, 'BadRequest', f"the kind {obj['kind']!r} does not match {rdef.kind!r}")
    obj['kind'] = rdef.kind
    obj['apiVersion'] = rdef.api_version


def defaults_on_create(rdef: ResourceDef, obj: dict[str, Any], cluster_ips: Iterator[int]) -> None:
    """What real controllers/defaulters set at once and clients commonly rely on."""
    spec = obj.get('spec') if isinstance(obj.get('spec'), dict) else None
    if rdef.key == NAMESPACES_KEY:
        obj['status'] = {'phase': 'Active'}
    elif rdef.group == '' and rdef.plural == 'pods':
        obj['status'] = {'phase': 'Pending'}
    elif rdef.group == '' and rdef.plural == 'services' and spec is not None:
        spec.setdefault('type', 'ClusterIP')
        if spec['type'] != 'ExternalName' and 'clusterIP' not in spec:
            number = next(cluster_ips)
            spec['clusterIP'] = f'10.96.{number // 250}.{number % 250 + 1}'
            spec['clusterIPs'] = [spec['clusterIP']]
    elif rdef.group == 'apps' and rdef.plural in ('deployments', 'replicasets') and spec is not None:
        spec.setdefault('replicas', 1)
    elif rdef.storage_key == CRD_KEY:
        crd_spec = obj.get('spec') or {}
        versions = crd_spec.get('versions') or []
        storage = [v.get('name') for v in versions if v.get('storage')] or [crd_spec.get('version')]
        now = now_rfc3339()
        obj['status'] = {
            'acceptedNames': copy.deepcopy(crd_spec.get('names') or {}),
            'storedVersions': [v for v in storage if v],
            'conditions': [
                {'type': 'NamesAccepted', 'status': 'True', 'reason': 'NoConflicts',
                 'message': 'no conflicts found', 'lastTransitionTime': now},
                {'type': 'Established', 'status': 'True', 'reason': 'InitialNamesAccepted',
                 'message': 'the initial names have been accepted', 'lastTransitionTime': now},
            ],
        }


def spec_view(obj: Mapping[str, Any]) -> dict[str, Any]:
    """What generation tracks: everything except metadata, status and the type identifiers."""
    return {k: v for k, v in obj.items() if k not in ('metadata', 'status', 'apiVersion', 'kind')}
