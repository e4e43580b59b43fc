"""Pure patch algorithms of the emulated API server: merge, JSON, strategic merge, server-side apply.

Everything here works on plain JSON-like data (dicts, lists, scalars), never mutates its inputs,
and knows nothing about HTTP or storage, so it can be reasoned about (and tested) on its own.

List semantics. A real API server knows from the OpenAPI schema whether a list is *atomic*
(replaced as a whole), a *set* of scalars, or a *map* of items keyed by a field. We have no
schemas, so :func:`list_semantics` guesses: ``finalizers`` is a set; a list of dicts is a map when
every item carries the field's known key (``conditions`` by ``type``, ``ownerReferences`` by
``uid``, ``volumeMounts`` by ``mountPath``, ``ports`` by ``containerPort``/``port``/``name``)
or else a ``name``; anything else is atomic. Custom resources get the same guess, which differs
from a real server only for lists of named items without ``x-kubernetes-list-type: map``.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterable, Mapping
from typing import Any, Literal

FieldPath = tuple[str, ...]
"""One owned field in the ``fieldsV1`` vocabulary: ``('f:spec', 'f:template', 'k:{"name":"c"}', '.')``."""

ListKind = Literal['atomic', 'set', 'map']

_KEY_CANDIDATES: dict[str, tuple[str, ...]] = {
    'conditions': ('type',),
    'ownerReferences': ('uid',),
    'volumeMounts': ('mountPath',),
    'volumeDevices': ('devicePath',),
    'ports': ('containerPort', 'port', 'name'),
    'hostAliases': ('ip',),
    'topologySpreadConstraints': ('topologyKey',),
}
_SET_FIELDS = frozenset({'finalizers'})


class PatchError(ValueError):
    """A patch that cannot be applied to the document (the API server answers 422)."""


class PatchTestFailed(PatchError):
    """A JSON-patch ``test`` operation did not match (kopf relies on a 422 for this)."""


# --------------------------------------------------------------------------------------------------
# List semantics shared by strategic merge and server-side apply.

def list_semantics(field: str | None, items: list[Any]) -> tuple[ListKind, str | None]:
    """Guess how a list under ``field`` merges: ``('map', key)``, ``('set', None)``, or atomic."""
    if field in _SET_FIELDS and all(not isinstance(item, (dict, list)) for item in items):
        return 'set', None
    if not items or not all(isinstance(item, dict) for item in items):
        return 'atomic', None
    for key in _KEY_CANDIDATES.get(field or '', ('name',)):
        if all(key in item for item in items):
            return 'map', key
    return 'atomic', None


def _item_segment(key: str, value: Any) -> str:
    return 'k:' + json.dumps({key: value}, separators=(',', ':'), sort_keys=True)


def _value_segment(value: Any) -> str:
    return 'v:' + json.dumps(value, separators=(',', ':'), sort_keys=True)


# --------------------------------------------------------------------------------------------------
# RFC 7386: JSON merge patch.

def merge_patch(target: Any, patch: Any) -> Any:
    """Apply an RFC 7386 merge patch: dicts merge recursively, ``null`` deletes, the rest replaces."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result: dict[str, Any] = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


# --------------------------------------------------------------------------------------------------
# RFC 6902: JSON patch.

def _parse_pointer(pointer: str) -> list[str]:
    if pointer == '':
        return []
    if not pointer.startswith('/'):
        raise PatchError(f"Invalid JSON pointer: {pointer!r}")
    return [part.replace('~1', '/').replace('~0', '~') for part in pointer[1:].split('/')]


def _list_index(container: list[Any], token: str, *, for_add: bool) -> int:
    if token == '-' and for_add:
        return len(container)
    if not token.isdigit() or (token != '0' and token.startswith('0')):
        raise PatchError(f"Invalid list index: {token!r}")
    index = int(token)
    if index > len(container) or (index == len(container) and not for_add):
        raise PatchError(f"List index out of range: {index}")
    return index


def _resolve_parent(doc: Any, parts: list[str]) -> Any:
    node = doc
    for token in parts[:-1]:
        if isinstance(node, dict):
            if token not in node:
                raise PatchError(f"Path not found: {token!r}")
            node = node[token]
        elif isinstance(node, list):
            node = node[_list_index(node, token, for_add=False)]
        else:
            raise PatchError(f"Cannot traverse into a scalar at {token!r}")
    return node


def _pointer_get(doc: Any, pointer: str) -> Any:
    parts = _parse_pointer(pointer)
    if not parts:
        return doc
    parent = _resolve_parent(doc, parts)
    token = parts[-1]
    if isinstance(parent, dict):
        if token not in parent:
            raise PatchError(f"Path not found: {pointer!r}")
        return parent[token]
    if isinstance(parent, list):
        return parent[_list_index(parent, token, for_add=False)]
    raise PatchError(f"Path not found: {pointer!r}")


def _pointer_add(doc: Any, pointer: str, value: Any) -> Any:
    parts = _parse_pointer(pointer)
    if not parts:
        return value
    parent = _resolve_parent(doc, parts)
    token = parts[-1]
    if isinstance(parent, dict):
        parent[token] = value
    elif isinstance(parent, list):
        parent.insert(_list_index(parent, token, for_add=True), value)
    else:
        raise PatchError(f"Cannot add into a scalar at {pointer!r}")
    return doc


def _pointer_remove(doc: Any, pointer: str) -> Any:
    parts = _parse_pointer(pointer)
    if not parts:
        raise PatchError("Cannot remove the whole document")
    parent = _resolve_parent(doc, parts)
    token = parts[-1]
    if isinstance(parent, dict):
        if token not in parent:
            raise PatchError(f"Path not found: {pointer!r}")
        del parent[token]
    elif isinstance(parent, list):
        del parent[_list_index(parent, token, for_add=False)]
    else:
        raise PatchError(f"Path not found: {pointer!r}")
    return doc


def json_patch(document: Any, operations: Any) -> Any:
    """Apply an RFC 6902 JSON patch (add, remove, replace, move, copy, test) to a copy."""
    if not isinstance(operations, list):
        raise PatchError("A JSON patch must be a list of operations")
    doc = copy.deepcopy(document)
    for operation in operations:
        if not isinstance(operation, dict) or 'op' not in operation or 'path' not in operation:
            raise PatchError(f"Malformed JSON-patch operation: {operation!r}")
        op, path = operation['op'], operation['path']
        if op in ('add', 'replace', 'test') and 'value' not in operation:
            raise PatchError(f"The {op!r} operation requires a value")
        if op == 'add':
            doc = _pointer_add(doc, path, copy.deepcopy(operation['value']))
        elif op == 'remove':
            doc = _pointer_remove(doc, path)
        elif op == 'replace':
            _pointer_get(doc, path)  # must exist
            if _parse_pointer(path):
                doc = _pointer_remove(doc, path)
            doc = _pointer_add(doc, path, copy.deepcopy(operation['value']))
        elif op in ('move', 'copy'):
            source = operation.get('from')
            if not isinstance(source, str):
                raise PatchError(f"The {op!r} operation requires 'from'")
            value = copy.deepcopy(_pointer_get(doc, source))
            if op == 'move':
                doc = _pointer_remove(doc, source)
            doc = _pointer_add(doc, path, value)
        elif op == 'test':
            if _pointer_get(doc, path) != operation['value']:
                raise PatchTestFailed(f"Test operation failed at {path!r}")
        else:
            raise PatchError(f"Unsupported JSON-patch operation: {op!r}")
    return doc


# --------------------------------------------------------------------------------------------------
# Strategic merge patch (an approximation: named lists merge by key, a few directives).

def strategic_merge_patch(target: Any, patch: Any) -> Any:
    """
    Apply a strategic merge patch without schemas.

    Dicts merge as in a merge patch; lists that :func:`list_semantics` calls maps merge item by
    item (an item with ``$patch: delete`` removes its peer), ``finalizers`` merge as a set, other
    lists are replaced. Supported directives: ``$patch: replace|delete`` on maps and items,
    ``$deleteFromPrimitiveList/<field>``; ``$setElementOrder/<field>`` and ``$retainKeys`` are
    accepted and ignored.
    """
    return _smp(target, patch, None)


def _smp(target: Any, patch: Any, field: str | None) -> Any:
    if isinstance(patch, dict):
        directive = patch.get('$patch')
        clean = {k: v for k, v in patch.items() if not k.startswith('$')}
        if directive == 'replace':
            return copy.deepcopy(clean)
        if directive == 'delete':
            return None
        result: dict[str, Any] = dict(target) if isinstance(target, dict) else {}
        for key, value in patch.items():
            if key.startswith('$deleteFromPrimitiveList/'):
                name = key.split('/', 1)[1]
                if isinstance(result.get(name), list) and isinstance(value, list):
                    result[name] = [item for item in result[name] if item not in value]
        for key, value in clean.items():
            if value is None:
                result.pop(key, None)
            else:
                merged = _smp(result.get(key), value, key)
                if merged is None:
                    result.pop(key, None)
                else:
                    result[key] = merged
        return result
    if isinstance(patch, list) and isinstance(target, list):
        kind, key = list_semantics(field, patch)
        if kind == 'map' and key is not None and list_semantics(field, target) == ('map', key):
            merged_items = [copy.deepcopy(item) for item in target]
            for item in patch:
                positions = [i for i, live in enumerate(merged_items) if live.get(key) == item.get(key)]
                if _is_delete_directive(item):
                    merged_items = [live for i, live in enumerate(merged_items) if i not in positions]
                elif positions:
                    merged_items[positions[0]] = _smp(merged_items[positions[0]], item, None)
                else:
                    merged_items.append(_smp(None, item, None))
            return merged_items
        if kind == 'set':
            return list(target) + [item for item in patch if item not in target]
    if isinstance(patch, list):
        return [_smp(None, item, None) for item in patch if not _is_delete_directive(item)]
    return copy.deepcopy(patch)


def _is_delete_directive(item: Any) -> bool:
    return isinstance(item, dict) and item.get('$patch') == 'delete'


# --------------------------------------------------------------------------------------------------
# Server-side apply: field sets, merging, removal of fields a manager stopped applying.

def field_set(config: Mapping[str, Any]) -> set[FieldPath]:
    """All fields an applied configuration names (leaves, atomic lists, set values, map items)."""
    paths: set[FieldPath] = set()
    for key, value in config.items():
        _collect_fields(value, key, ('f:' + key,), paths)
    return paths


def _collect_fields(value: Any, field: str | None, path: FieldPath, out: set[FieldPath]) -> None:
    if value is None:
        return
    if isinstance(value, dict):
        if not value:
            out.add(path)
        for key, sub in value.items():
            _collect_fields(sub, key, (*path, 'f:' + key), out)
    elif isinstance(value, list):
        kind, key = list_semantics(field, value)
        if kind == 'map' and key is not None:
            for item in value:
                item_path = (*path, _item_segment(key, item[key]))
                out.add((*item_path, '.'))
                for sub_key, sub in item.items():
                    _collect_fields(sub, sub_key, (*item_path, 'f:' + sub_key), out)
        elif kind == 'set':
            out.update((*path, _value_segment(item)) for item in value)
        else:
            out.add(path)
    else:
        out.add(path)


def apply_merge(live: Any, applied: Any, field: str | None = None) -> Any:
    """Merge an applied configuration into the live value (maps and map-lists merge, rest replaces)."""
    if isinstance(applied, dict) and isinstance(live, dict):
        result = dict(live)
        for key, value in applied.items():
            if value is None:
                result.pop(key, None)
            elif key in result:
                result[key] = apply_merge(result[key], value, key)
            else:
                result[key] = _without_nulls(value)
        return result
    if isinstance(applied, list) and isinstance(live, list) and applied:
        kind, key = list_semantics(field, applied)
        if kind == 'map' and key is not None and all(isinstance(item, dict) and key in item for item in live):
            merged = list(live)
            for item in applied:
                positions = [i for i, old in enumerate(merged) if old.get(key) == item[key]]
                if positions:
                    merged[positions[0]] = apply_merge(merged[positions[0]], item, None)
                else:
                    merged.append(_without_nulls(item))
            return merged
        if kind == 'set':
            return list(live) + [item for item in applied if item not in live]
    return _without_nulls(applied)


def _without_nulls(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _without_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_without_nulls(item) for item in value]
    return value


def remove_fields(obj: dict[str, Any], paths: Iterable[FieldPath], keep: set[FieldPath]) -> dict[str, Any]:
    """
    Remove the given fields from a copy of ``obj`` unless another manager still owns them.

    A map-list item (path ending in ``.``) goes away as a whole when no field inside it is kept;
    the key field of a surviving item is never removed on its own. Dicts emptied by the removal
    are pruned, except the top-level ones (``spec``, ``metadata``).
    """
    result = copy.deepcopy(obj)
    doomed = [path for path in paths if path not in keep]
    items = sorted({
        path[:-1] for path in doomed
        if path[-1] == '.' and not any(other[:len(path) - 1] == path[:-1] for other in keep)
    }, key=len)
    for item in items:
        _remove_path(result, item)
    for path in sorted(doomed, key=len, reverse=True):
        if path[-1] == '.' or _is_item_key(path) or any(path[:len(item)] == item for item in items):
            continue
        _remove_path(result, path)
    return result


def _is_item_key(path: FieldPath) -> bool:
    """Whether the path is the key field of a map-list item, e.g. ``(..., 'k:{"name":"a"}', 'f:name')``."""
    if len(path) < 2 or not path[-2].startswith('k:') or not path[-1].startswith('f:'):
        return False
    return path[-1][2:] in json.loads(path[-2][2:])


def _match_segment(container: Any, segment: str) -> tuple[Any, Any] | None:
    """Find what a segment points to inside a container: ``(accessor, child)`` or ``None``."""
    if segment.startswith('f:') and isinstance(container, dict):
        key = segment[2:]
        return (key, container[key]) if key in container else None
    if segment.startswith('k:') and isinstance(container, list):
        wanted = json.loads(segment[2:])
        for index, item in enumerate(container):
            if isinstance(item, dict) and all(item.get(k) == v for k, v in wanted.items()):
                return index, item
        return None
    if segment.startswith('v:') and isinstance(container, list):
        wanted = json.loads(segment[2:])
        for index, item in enumerate(container):
            if item == wanted:
                return index, item
        return None
    return None


def _remove_path(obj: dict[str, Any], path: FieldPath) -> None:
    trail: list[tuple[Any, Any]] = []  # (container, accessor) from the root down
    node: Any = obj
    for segment in path:
        found = _match_segment(node, segment)
        if found is None:
            return  # already absent
        trail.append((node, found[0]))
        node = found[1]
    container, accessor = trail.pop()
    del container[accessor]
    # Prune dicts that became empty because of this removal (but not the top-level sections).
    while len(trail) >= 2 and isinstance(container, dict) and not container:
        container, accessor = trail.pop()
        del container[accessor]


def fields_v1(paths: Iterable[FieldPath]) -> dict[str, Any]:
    """Render a field set in the real ``fieldsV1`` nested-dict format."""
    root: dict[str, Any] = {}
    for path in sorted(paths):
        node = root
        for segment in path:
            node = node.setdefault(segment, {})
    return root


def paths_from_fields_v1(fields: Mapping[str, Any]) -> set[FieldPath]:
    """Parse a ``fieldsV1`` nested dict back into a set of field paths (leaves only)."""
    paths: set[FieldPath] = set()

    def walk(node: Mapping[str, Any], prefix: FieldPath) -> None:
        for segment, sub in node.items():
            path = (*prefix, segment)
            if isinstance(sub, Mapping) and sub:
                walk(sub, path)
            else:
                paths.add(path)

    walk(fields, ())
    return paths
