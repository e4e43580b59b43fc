"""The objects an Agent needs, derived from its spec and its version: nothing else.

Every child carries the Agent as controller owner (garbage-collected with it), the
``alm.dev/agent`` label (so the operator finds it again) and only the fields alm
decides: server-side apply then leaves every other field to its other owners.
Pods run under the ``restricted`` Pod Security Standard and get credentials as
read-only files, never as environment variables.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from alm.api import AgentSpec, AgentVersionSpec
from alm.core import hashing, naming, versionconfig

__all__ = ["AgentInputs", "desired_children"]

Obj = dict[str, Any]

DNS_PORTS = [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}]


@dataclasses.dataclass(frozen=True)
class AgentInputs:
    """Everything the children depend on, already validated and resolved."""

    name: str
    namespace: str
    uid: str
    spec: AgentSpec
    version: str
    version_spec: AgentVersionSpec
    config_map: str
    credentials: dict[str, str]  # base64 data of the scoped Secret
    credentials_hash: str
    suspended: bool = False  # over budget with onExceeded: suspend: scaled to zero, all else kept
    # During a rollout the AgentRollout decides these (see ``agenttraffic.RolloutTraffic``); None / empty:
    # provisioning's own choice (spec.replicas pods, a Service over every pod, no mirroring).
    deployment_replicas: int | None = None
    shadow: bool = False  # the runtime runs as a shadow (ALM_SHADOW=true: tools in dry-run)
    extra_env: tuple[tuple[str, str], ...] = ()  # e.g. the stable runtime's ALM_MIRROR_* env
    service_selector: tuple[tuple[str, str], ...] | None = None

    @property
    def replicas(self) -> int:
        return 0 if self.suspended else self.spec.replicas

    @property
    def pods(self) -> int:
        """Replicas of this version's Deployment: the rollout's share, else ``replicas``."""
        if self.suspended or self.deployment_replicas is None:
            return self.replicas
        return self.deployment_replicas

    def meta(self, name: str, component: str, *, version: bool = False) -> Obj:
        labels = (
            naming.version_labels(self.name, self.version, component)
            if version
            else naming.agent_labels(self.name, component)
        )
        return {
            "name": name,
            "namespace": self.namespace,
            "labels": labels,
            "ownerReferences": [naming.owner_reference("Agent", self.name, self.uid)],
        }

    @property
    def secret_name(self) -> str:
        return naming.credentials_secret_name(self.name, self.credentials_hash)

    @property
    def selector(self) -> dict[str, str]:
        return {naming.AGENT_LABEL: naming.label_value(self.name)}

    @property
    def service_pods(self) -> dict[str, str]:
        """The Service's selector: every pod of the Agent, or what a rollout routes to."""
        return dict(self.service_selector) if self.service_selector is not None else self.selector


def desired_children(inputs: AgentInputs) -> list[Obj]:
    """Children in the order they should be applied (identity and access before pods)."""
    children = [_service_account(inputs)]
    if inputs.spec.permissions:
        children += [_role(inputs), _role_binding(inputs)]
    children.append(_secret(inputs))
    children.append(_service(inputs))
    if inputs.spec.egress is not None:
        children.append(_network_policy(inputs))
    if inputs.replicas > 1:
        children.append(_pdb(inputs))
    children.append(_deployment(inputs))
    return children


def _service_account(i: AgentInputs) -> Obj:
    return {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": i.meta(i.name, "identity"),
        "automountServiceAccountToken": i.spec.service_account.automount_token,
    }


def _role(i: AgentInputs) -> Obj:
    rules = [rule.model_dump(by_alias=True, exclude_none=True) for rule in i.spec.permissions]
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "Role",
        "metadata": i.meta(i.name, "permissions"),
        "rules": rules,
    }


def _role_binding(i: AgentInputs) -> Obj:
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": i.meta(i.name, "permissions"),
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": i.name},
        "subjects": [{"kind": "ServiceAccount", "name": i.name, "namespace": i.namespace}],
    }


def _secret(i: AgentInputs) -> Obj:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": i.meta(i.secret_name, "credentials"),
        "type": "Opaque",
        "immutable": True,
        "data": dict(i.credentials),
    }


def _service(i: AgentInputs) -> Obj:
    svc = i.spec.exposure.service
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": i.meta(i.name, "service"),
        "spec": {
            "type": svc.type,
            "selector": i.service_pods,
            "ports": [{"name": "http", "port": svc.port, "targetPort": "http", "protocol": "TCP"}],
        },
    }


def _egress_rule(rule: Any) -> Obj:
    peer: Obj = {}
    if rule.cidr is not None:
        block: Obj = {"cidr": rule.cidr}
        if rule.except_:
            block["except"] = list(rule.except_)
        peer["ipBlock"] = block
    if rule.namespace is not None:
        peer["namespaceSelector"] = {"matchLabels": {"kubernetes.io/metadata.name": rule.namespace}}
    if rule.pod_selector is not None:
        peer["podSelector"] = {"matchLabels": dict(rule.pod_selector)}
    out: Obj = {"to": [peer]}
    if rule.ports:
        out["ports"] = [{"protocol": p.protocol, "port": p.port} for p in rule.ports]
    return out


def _network_policy(i: AgentInputs) -> Obj:
    egress = [{"ports": DNS_PORTS}] + [_egress_rule(rule) for rule in i.spec.egress or []]
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": i.meta(i.name, "egress"),
        "spec": {"podSelector": {"matchLabels": i.selector}, "policyTypes": ["Egress"], "egress": egress},
    }


def _pdb(i: AgentInputs) -> Obj:
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": i.meta(i.name, "availability"),
        "spec": {"maxUnavailable": 1, "selector": {"matchLabels": i.selector}},
    }


def _container(i: AgentInputs, config_hash: str) -> Obj:
    rt = i.version_spec.runtime
    env = [{"name": e.name, "value": e.value} for e in rt.env or []]
    env += [
        {"name": "ALM_AGENT", "value": i.name},
        {"name": "ALM_AGENT_VERSION", "value": i.version},
        {"name": "ALM_CONFIG_FILE", "value": f"{versionconfig.CONFIG_MOUNT}/{versionconfig.CONFIG_FILE}"},
        {"name": "ALM_CREDENTIALS_DIR", "value": versionconfig.CREDENTIALS_MOUNT},
        {"name": "ALM_SHADOW", "value": "true" if i.shadow else "false"},
    ]
    env += [{"name": name, "value": value} for name, value in i.extra_env]
    container: Obj = {
        "name": "agent",
        "image": rt.image,
        "ports": [{"name": "http", "containerPort": rt.port, "protocol": "TCP"}],
        "env": env,
        "readinessProbe": {"httpGet": {"path": rt.ready_path, "port": "http"}, "periodSeconds": 5},
        "livenessProbe": {"httpGet": {"path": rt.health_path, "port": "http"}, "periodSeconds": 10},
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "runAsNonRoot": True,
            "capabilities": {"drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "volumeMounts": [
            {"name": "config", "mountPath": versionconfig.CONFIG_MOUNT, "readOnly": True},
            {"name": "credentials", "mountPath": versionconfig.CREDENTIALS_MOUNT, "readOnly": True},
            {"name": "tmp", "mountPath": "/tmp"},
        ],
    }
    if rt.command:
        container["command"] = list(rt.command)
    if rt.args:
        container["args"] = list(rt.args)
    if rt.resources is not None:
        container["resources"] = rt.resources.model_dump(by_alias=True, exclude_none=True)
    return container


def _deployment(i: AgentInputs) -> Obj:
    config_hash = hashing.short_hash({"config": i.config_map, "credentials": i.secret_name}, 16)
    labels = naming.version_labels(i.name, i.version, "workload")
    selector = {naming.AGENT_LABEL: labels[naming.AGENT_LABEL], naming.VERSION_LABEL: labels[naming.VERSION_LABEL]}
    pod_spec: Obj = {
        "serviceAccountName": i.name,
        "automountServiceAccountToken": i.spec.service_account.automount_token,
        "securityContext": {
            "runAsNonRoot": True,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "containers": [_container(i, config_hash)],
        "volumes": [
            {"name": "config", "configMap": {"name": i.config_map}},
            {"name": "credentials", "secret": {"secretName": i.secret_name, "defaultMode": 0o440}},
            {"name": "tmp", "emptyDir": {}},
        ],
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": i.meta(naming.deployment_name(i.name, i.version), "workload", version=True),
        "spec": {
            "replicas": i.pods,
            "selector": {"matchLabels": selector},
            "template": {
                "metadata": {
                    "labels": labels,
                    "annotations": {naming.CONFIG_HASH_ANNOTATION: config_hash},
                },
                "spec": pod_spec,
            },
        },
    }
