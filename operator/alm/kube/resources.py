"""Where each kind lives on the API server: the URL arithmetic, in one table."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

__all__ = ["KINDS", "Resource", "for_kind", "for_object"]


@dataclasses.dataclass(frozen=True)
class Resource:
    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool = True

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    def path(self, namespace: str | None = None, name: str | None = None, sub: str | None = None) -> str:
        base = f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"
        if self.namespaced and namespace:
            base += f"/namespaces/{quote(namespace)}"
        base += f"/{self.plural}"
        if name:
            base += f"/{quote(name)}"
        if sub:
            base += f"/{sub}"
        return base


_ALL = [
    Resource("", "v1", "configmaps", "ConfigMap"),
    Resource("", "v1", "secrets", "Secret"),
    Resource("", "v1", "serviceaccounts", "ServiceAccount"),
    Resource("", "v1", "services", "Service"),
    Resource("", "v1", "pods", "Pod"),
    Resource("", "v1", "events", "Event"),
    Resource("", "v1", "namespaces", "Namespace", namespaced=False),
    Resource("apps", "v1", "deployments", "Deployment"),
    Resource("batch", "v1", "jobs", "Job"),
    Resource("rbac.authorization.k8s.io", "v1", "roles", "Role"),
    Resource("rbac.authorization.k8s.io", "v1", "rolebindings", "RoleBinding"),
    Resource("networking.k8s.io", "v1", "networkpolicies", "NetworkPolicy"),
    Resource("policy", "v1", "poddisruptionbudgets", "PodDisruptionBudget"),
    Resource("gateway.networking.k8s.io", "v1", "httproutes", "HTTPRoute"),
    Resource("apiextensions.k8s.io", "v1", "customresourcedefinitions", "CustomResourceDefinition", False),
    Resource("alm.dev", "v1alpha1", "agents", "Agent"),
    Resource("alm.dev", "v1alpha1", "agentversions", "AgentVersion"),
    Resource("alm.dev", "v1alpha1", "agentrollouts", "AgentRollout"),
    Resource("alm.dev", "v1alpha1", "agentretirements", "AgentRetirement"),
]

KINDS: Mapping[str, Resource] = {r.kind: r for r in _ALL}

# The kinds an Agent owns, in the order the operator watches them.
AGENT_CHILD_KINDS = (
    "ServiceAccount", "Role", "RoleBinding", "Secret", "Service",
    "NetworkPolicy", "PodDisruptionBudget", "Deployment",
)


def for_kind(kind: str) -> Resource:
    try:
        return KINDS[kind]
    except KeyError:
        raise ValueError(f"alm does not manage objects of kind {kind!r}") from None


def for_object(obj: Mapping[str, Any]) -> Resource:
    return for_kind(str(obj.get("kind")))
