"""The emulated API server's registry: which group/version/plurals it serves, by any name.

The base of the store (:class:`alm.sandbox.objectstore.ObjectStore` is one), kept apart because
resolving loose references (``'deploy'``, ``'apps/v1/deployments'``, a kind) is a job of its own
that discovery, the HTTP layer and the tests' helpers all lean on. A stored CRD is served from
here (:meth:`ResourceRegistry._after_write`); it mirrors what it serves into kmock's
``ResourcesArray`` so that kmock's own introspection agrees.
"""

from __future__ import annotations

from typing import Any

import kmock

from alm.sandbox.resources import CRD_KEY, ResourceDef, resources_from_crd


class ResourceRegistry:
    """The served resource definitions, keyed by their exact group/version/plural."""

    def __init__(self, resources: kmock.ResourcesArray | None = None) -> None:
        self.kmock_resources = resources  # kept in sync for kmock's own introspection
        self._defs: dict[kmock.resource, ResourceDef] = {}

    def register(self, rdef: ResourceDef) -> None:
        """Serve a resource (replacing a previous definition of the same group/version/plural)."""
        self._defs[rdef.key] = rdef
        if self.kmock_resources is not None:
            self.kmock_resources[rdef.key] = kmock.ResourceInfo(
                kind=rdef.kind, singular=rdef.singular, namespaced=rdef.namespaced,
                verbs=set(rdef.verbs), shortnames=set(rdef.shortnames),
                categories=set(rdef.categories), subresources=set(rdef.subresources),
            )

    def unregister(self, key: kmock.resource) -> None:
        self._defs.pop(key, None)
        if self.kmock_resources is not None and key in self.kmock_resources:
            del self.kmock_resources[key]

    @property
    def definitions(self) -> list[ResourceDef]:
        return list(self._defs.values())

    def find_definition(self, key: kmock.resource) -> ResourceDef | None:
        """The exact group/version/plural, as addressed by a URL."""
        return self._defs.get(key)

    def resolve(self, ref: ResourceDef | kmock.resource | str) -> ResourceDef:
        """
        Find a definition by a loose reference: ``'apps/v1/deployments'``, ``'deployments'``,
        ``'deploy'``, ``'Deployment'``, ``'deployments.v1.apps'`` or a :class:`kmock.resource`.
        Prefers the core group and the storage version when the reference is ambiguous.
        """
        if isinstance(ref, ResourceDef):
            return ref
        spec = ref if isinstance(ref, kmock.resource) else kmock.resource(ref)
        if spec in self._defs:
            return self._defs[spec]
        candidates = [
            rdef for rdef in list(self._defs.values())  # a snapshot: tests may call this from another thread
            if spec.group is None or spec.group == rdef.group
            if spec.version is None or spec.version == rdef.version
            if spec.plural is None or spec.plural in rdef.names
        ]
        groups = {rdef.group for rdef in candidates}
        if len(groups) > 1:
            if '' not in groups:
                raise LookupError(f"Ambiguous resource reference: {ref!r} (groups: {sorted(groups)})")
            candidates = [rdef for rdef in candidates if rdef.group == '']
        if not candidates:
            raise LookupError(f"Unknown resource: {ref!r}")
        storage = [rdef for rdef in candidates if (rdef.storage_version or rdef.version) == rdef.version]
        return (storage or candidates)[0]

    def _storage_definition(self, storage_key: kmock.resource) -> ResourceDef | None:
        for rdef in self._defs.values():
            if rdef.storage_key == storage_key:
                return rdef
        return None

    # ----------------------------------------------------------------------------------------------
    # CRDs: serving what they define.

    def _after_write(self, rdef: ResourceDef, obj: dict[str, Any]) -> None:
        if rdef.storage_key != CRD_KEY:
            return
        try:
            new_defs = resources_from_crd(obj)
        except ValueError:
            return
        if not new_defs:
            return
        wanted = {d.key for d in new_defs}
        for old in [d for d in self._defs.values() if d.custom and d.group == new_defs[0].group
                    and d.plural == new_defs[0].plural and d.key not in wanted]:
            self.unregister(old.key)
        for new_def in new_defs:
            self.register(new_def)
