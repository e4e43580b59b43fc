"""What the emulated API server serves: resource definitions, CRD parsing, selectors.

Kept apart from the store so that discovery, the store and the workload controllers share one
vocabulary (:class:`ResourceDef`) and so that the selector grammar can be read on its own.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Mapping
from typing import Any

import kmock

DEFAULT_VERBS: tuple[str, ...] = (
    'create', 'delete', 'deletecollection', 'get', 'list', 'patch', 'update', 'watch',
)


@dataclasses.dataclass(frozen=True)
class ResourceDef:
    """
    One served group/version/plural and the semantics the store applies to it.

    ``generation`` says whether ``metadata.generation`` is tracked (bumped when anything outside
    ``metadata``/``status`` changes). ``custom`` marks resources that come from CRDs (in a real
    cluster they reject strategic-merge patches). ``storage_version`` names the version whose
    key the objects are stored under, so that all served versions of a CRD share one object.
    """

    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool
    singular: str = ''
    shortnames: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    subresources: tuple[str, ...] = ()
    verbs: tuple[str, ...] = DEFAULT_VERBS
    generation: bool = False
    custom: bool = False
    storage_version: str = ''

    @property
    def api_version(self) -> str:
        return f'{self.group}/{self.version}' if self.group else self.version

    @property
    def storage_api_version(self) -> str:
        version = self.storage_version or self.version
        return f'{self.group}/{version}' if self.group else version

    @property
    def key(self) -> kmock.resource:
        return kmock.resource(self.group, self.version, self.plural)

    @property
    def storage_key(self) -> kmock.resource:
        return kmock.resource(self.group, self.storage_version or self.version, self.plural)

    @property
    def has_status(self) -> bool:
        return 'status' in self.subresources

    @property
    def has_scale(self) -> bool:
        return 'scale' in self.subresources

    @property
    def names(self) -> frozenset[str]:
        """All the names a user may call it by: plural, singular, kind, short names."""
        return frozenset({self.plural, self.singular or self.kind.lower(), self.kind, self.kind.lower(),
                          *self.shortnames})


def _builtin(
        group: str, version: str, plural: str, kind: str, namespaced: bool = True, *,
        short: Iterable[str] = (), cats: Iterable[str] = (), sub: Iterable[str] = (),
        generation: bool = False, custom: bool = False,
) -> ResourceDef:
    return ResourceDef(
        group=group, version=version, plural=plural, kind=kind, namespaced=namespaced,
        singular=kind.lower(), shortnames=tuple(short), categories=tuple(cats),
        subresources=tuple(sub), generation=generation, custom=custom,
    )


BUILTIN_RESOURCES: tuple[ResourceDef, ...] = (
    _builtin('', 'v1', 'namespaces', 'Namespace', False, short=['ns'], sub=['status', 'finalize']),
    _builtin('', 'v1', 'configmaps', 'ConfigMap', short=['cm']),
    _builtin('', 'v1', 'secrets', 'Secret'),
    _builtin('', 'v1', 'serviceaccounts', 'ServiceAccount', short=['sa']),
    _builtin('', 'v1', 'services', 'Service', short=['svc'], cats=['all'], sub=['status']),
    _builtin('', 'v1', 'pods', 'Pod', short=['po'], cats=['all'], sub=['status', 'binding']),
    _builtin('', 'v1', 'events', 'Event', short=['ev']),
    _builtin('', 'v1', 'nodes', 'Node', False, short=['no'], sub=['status']),
    _builtin('apps', 'v1', 'deployments', 'Deployment', short=['deploy'], cats=['all'],
             sub=['status', 'scale'], generation=True),
    _builtin('apps', 'v1', 'replicasets', 'ReplicaSet', short=['rs'], cats=['all'],
             sub=['status', 'scale'], generation=True),
    _builtin('batch', 'v1', 'jobs', 'Job', cats=['all'], sub=['status'], generation=True),
    _builtin('rbac.authorization.k8s.io', 'v1', 'roles', 'Role'),
    _builtin('rbac.authorization.k8s.io', 'v1', 'rolebindings', 'RoleBinding'),
    _builtin('rbac.authorization.k8s.io', 'v1', 'clusterroles', 'ClusterRole', False),
    _builtin('rbac.authorization.k8s.io', 'v1', 'clusterrolebindings', 'ClusterRoleBinding', False),
    _builtin('networking.k8s.io', 'v1', 'networkpolicies', 'NetworkPolicy', short=['netpol'],
             generation=True),
    _builtin('policy', 'v1', 'poddisruptionbudgets', 'PodDisruptionBudget', short=['pdb'],
             sub=['status'], generation=True),
    _builtin('events.k8s.io', 'v1', 'events', 'Event', short=['ev']),
    _builtin('coordination.k8s.io', 'v1', 'leases', 'Lease'),
    # A CRD in real clusters (Gateway API), hence generation tracking and "custom" patch rules.
    _builtin('gateway.networking.k8s.io', 'v1', 'httproutes', 'HTTPRoute', cats=['gateway-api'],
             sub=['status'], generation=True, custom=True),
    _builtin('apiextensions.k8s.io', 'v1', 'customresourcedefinitions', 'CustomResourceDefinition', False,
             short=['crd', 'crds'], cats=['api-extensions'], sub=['status'], generation=True),
)

CRD_KEY = kmock.resource('apiextensions.k8s.io', 'v1', 'customresourcedefinitions')
NAMESPACES_KEY = kmock.resource('', 'v1', 'namespaces')


def resources_from_crd(crd: Mapping[str, Any]) -> list[ResourceDef]:
    """Parse an ``apiextensions.k8s.io/v1`` CRD manifest into one definition per served version."""
    spec = crd.get('spec')
    if not isinstance(spec, Mapping):
        raise ValueError("A CRD must have a spec")
    group = spec.get('group')
    names = spec.get('names') or {}
    plural, kind = names.get('plural'), names.get('kind')
    if not group or not plural or not kind:
        raise ValueError("A CRD must name its group, names.plural and names.kind")
    versions: list[Mapping[str, Any]] = list(spec.get('versions') or [])
    if not versions and spec.get('version'):  # the old v1beta1 shape, tolerated
        versions = [{'name': spec['version'], 'served': True, 'storage': True,
                     'subresources': spec.get('subresources') or {}}]
    if not versions:
        raise ValueError("A CRD must declare at least one version")
    storage = next((v['name'] for v in versions if v.get('storage')), versions[0]['name'])
    return [
        ResourceDef(
            group=group, version=version['name'], plural=plural, kind=kind,
            namespaced=spec.get('scope', 'Namespaced') == 'Namespaced',
            singular=names.get('singular') or kind.lower(),
            shortnames=tuple(names.get('shortNames') or ()),
            categories=tuple(names.get('categories') or ()),
            subresources=tuple(sorted(version.get('subresources') or {})),
            generation=True, custom=True, storage_version=storage,
        )
        for version in versions
        if version.get('served', True)
    ]


# --------------------------------------------------------------------------------------------------
# Label and field selectors.

@dataclasses.dataclass(frozen=True)
class Requirement:
    """One clause of a label selector: ``key op values`` (op: = != in notin exists !exists > <)."""

    key: str
    op: str
    values: frozenset[str] = frozenset()

    def matches(self, labels: Mapping[str, Any]) -> bool:
        present = self.key in labels
        value = str(labels[self.key]) if present else None
        match self.op:
            case 'exists':
                return present
            case '!exists':
                return not present
            case '=' | 'in':
                return present and value in self.values
            case '!=' | 'notin':
                return not present or value not in self.values
            case '>' | '<':
                try:
                    number, bound = int(value or ''), int(next(iter(self.values)))
                except ValueError:
                    return False
                return present and (number > bound if self.op == '>' else number < bound)
        return False  # pragma: no cover  # ops are validated at parsing


_SET_RE = re.compile(r'^\s*([^\s!=<>(),]+)\s+(in|notin)\s+\(([^()]*)\)\s*$')
_BINARY_RE = re.compile(r'^\s*([^\s!=<>(),]+)\s*(==|=|!=|>|<)\s*([^\s!=<>(),]*)\s*$')
_KEY_RE = re.compile(r'^\s*(!?)\s*([^\s!=<>(),]+)\s*$')


def _split_top_level(text: str) -> list[str]:
    parts, depth, current = [], 0, ''
    for char in text:
        if char == '(':
            depth += 1
        elif char == ')':
            depth -= 1
        if char == ',' and depth == 0:
            parts.append(current)
            current = ''
        else:
            current += char
    parts.append(current)
    return [part for part in parts if part.strip()]


def parse_label_selector(text: str) -> list[Requirement]:
    """Parse the ``labelSelector`` query syntax; raises :class:`ValueError` on bad input."""
    requirements: list[Requirement] = []
    for clause in _split_top_level(text or ''):
        if m := _SET_RE.match(clause):
            values = frozenset(v.strip() for v in m.group(3).split(',') if v.strip())
            requirements.append(Requirement(m.group(1), m.group(2), values))
        elif m := _BINARY_RE.match(clause):
            op = '=' if m.group(2) == '==' else m.group(2)
            if op in ('>', '<') and not m.group(3).lstrip('-').isdigit():
                raise ValueError(f"Invalid label selector: {clause!r}")
            requirements.append(Requirement(m.group(1), op, frozenset({m.group(3)})))
        elif m := _KEY_RE.match(clause):
            requirements.append(Requirement(m.group(2), '!exists' if m.group(1) else 'exists'))
        else:
            raise ValueError(f"Invalid label selector: {clause!r}")
    return requirements


def parse_field_selector(text: str) -> list[tuple[str, str, str]]:
    """Parse ``fieldSelector``: ``path=value``, ``path==value``, ``path!=value`` clauses."""
    clauses: list[tuple[str, str, str]] = []
    for clause in (text or '').split(','):
        if not clause.strip():
            continue
        m = re.match(r'^\s*([\w.\-/]+)\s*(==|=|!=)\s*(.*?)\s*$', clause)
        if not m:
            raise ValueError(f"Invalid field selector: {clause!r}")
        clauses.append((m.group(1), '!=' if m.group(2) == '!=' else '=', m.group(3)))
    return clauses


def _field_value(obj: Mapping[str, Any], path: str) -> str:
    node: Any = obj
    for part in path.split('.'):
        node = node.get(part) if isinstance(node, Mapping) else None
    if node is None:
        return ''
    if isinstance(node, bool):
        return 'true' if node else 'false'
    return str(node)


def matches_selectors(
        obj: Mapping[str, Any],
        labels: Iterable[Requirement] = (),
        fields: Iterable[tuple[str, str, str]] = (),
) -> bool:
    """Whether an object satisfies all label requirements and field clauses."""
    meta = obj.get('metadata') or {}
    object_labels = meta.get('labels') or {}
    if not all(req.matches(object_labels) for req in labels):
        return False
    return all((_field_value(obj, path) == value) == (op == '=') for path, op, value in fields)


def selector_to_string(selector: Mapping[str, Any] | None) -> str:
    """Render a ``LabelSelector`` (matchLabels + matchExpressions) in the query syntax."""
    if not selector:
        return ''
    clauses = [f'{k}={v}' for k, v in sorted((selector.get('matchLabels') or {}).items())]
    for expr in selector.get('matchExpressions') or []:
        key, op, values = expr.get('key'), expr.get('operator'), expr.get('values') or []
        if op == 'In':
            clauses.append(f"{key} in ({','.join(values)})")
        elif op == 'NotIn':
            clauses.append(f"{key} notin ({','.join(values)})")
        elif op == 'Exists':
            clauses.append(str(key))
        elif op == 'DoesNotExist':
            clauses.append(f'!{key}')
    return ','.join(clauses)
