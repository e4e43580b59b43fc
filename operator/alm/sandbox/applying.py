"""Server-side apply in the emulated API server: the applied configuration and its managedFields.

What an apply request means, apart from storing it: which part of the body is the configuration
(system metadata, the type identifiers and, outside the status subresource, the status are not),
the ``Apply`` entry of the field manager in ``managedFields``, and how the configuration merges
into the live object, dropping the fields this manager stopped applying unless another manager
owns them. Pure functions on plain dicts; the store (:mod:`alm.sandbox.objectstore`) reads the
live object, checks the precondition and commits.

Only ``Apply`` managers are tracked; conflicts between managers are not detected, so ``force``
changes nothing. Fields written by PUT/PATCH are not attributed to any manager.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from alm.sandbox import patching
from alm.sandbox.apierrors import api_error
from alm.sandbox.defaulting import SYSTEM_META, check_kind, now_rfc3339
from alm.sandbox.resources import ResourceDef


def applied_configuration(
        rdef: ResourceDef,
        name: str,
        body: Any,
        *,
        subresource: str | None,
        field_manager: str | None,
) -> tuple[dict[str, Any], dict[str, Any], set[patching.FieldPath], dict[str, Any]]:
    """
    The configuration an apply request carries, the precondition it sets (its resourceVersion),
    the fields it owns and the manager's new ``managedFields`` entry; 400 errors for a bad request.
    """
    if not field_manager:
        raise api_error(400, 'BadRequest', 'PATCH /apply: fieldManager is required for apply requests')
    if not isinstance(body, Mapping):
        raise api_error(400, 'BadRequest', 'the applied configuration must be an object')
    config = copy.deepcopy(dict(body))
    body_meta = config.get('metadata') or {}
    if body_meta.get('name') not in (None, name):
        raise api_error(400, 'BadRequest', 'the name of the object does not match the name on the URL')
    check_kind(rdef, config)
    precondition = {'metadata': {'resourceVersion': body_meta.get('resourceVersion')}}
    for field in ('apiVersion', 'kind'):
        config.pop(field, None)
    config_meta = config.get('metadata') or {}
    for field in (*SYSTEM_META, 'name', 'namespace'):
        config_meta.pop(field, None)
    if config_meta:
        config['metadata'] = config_meta
    else:
        config.pop('metadata', None)
    if subresource == 'status':
        config = {'status': config['status']} if 'status' in config else {}
    elif rdef.has_status:
        config.pop('status', None)
    new_paths = patching.field_set(config)
    entry = {
        'manager': field_manager, 'operation': 'Apply', 'apiVersion': rdef.api_version,
        'time': now_rfc3339(), 'fieldsType': 'FieldsV1', 'fieldsV1': patching.fields_v1(new_paths),
    }
    if subresource:
        entry['subresource'] = subresource
    return config, precondition, new_paths, entry


def merge_applied(
        served: Mapping[str, Any],
        managed_fields: list[dict[str, Any]],
        config: dict[str, Any],
        new_paths: set[patching.FieldPath],
        entry: dict[str, Any],
        *,
        field_manager: str | None,
        subresource: str | None,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """
    The live object (as served) with the configuration applied, and its new ``managedFields``:
    the manager's entry replaced by ``entry`` (or kept as it was if the apply changes nothing).
    """
    entries: list[dict[str, Any]] = copy.deepcopy(managed_fields)
    mine = next((e for e in entries
                 if e.get('manager') == field_manager and e.get('operation') == 'Apply'
                 and (e.get('subresource') or None) == (subresource or None)), None)
    old_paths = patching.paths_from_fields_v1(mine.get('fieldsV1') or {}) if mine else set()
    others: set[patching.FieldPath] = set()
    for other in entries:
        if other is not mine:
            others |= patching.paths_from_fields_v1(other.get('fieldsV1') or {})
    merged = patching.apply_merge(served, config)
    merged = patching.remove_fields(merged, old_paths - new_paths, keep=others | new_paths)
    unchanged = _without_managed_fields(merged) == _without_managed_fields(served)
    if mine is not None and old_paths == new_paths and unchanged:
        entry = mine  # a no-op apply keeps the entry's timestamp, so it stays a no-op
    entries = [e for e in entries if e is not mine]
    if new_paths:
        entries.append(entry)
    return merged, entries


def _without_managed_fields(obj: Mapping[str, Any]) -> dict[str, Any]:
    meta = {k: v for k, v in (obj.get('metadata') or {}).items() if k != 'managedFields'}
    return {**obj, 'metadata': meta}
