"""The Helm chart, rendered offline by Helm's own engine (helm-python-sdk's `Chart.render`).

Every rendered object is validated against the Kubernetes OpenAPI schemas of the versions
we support (kubernetes-validate, strict: unknown fields fail), and checked for what the
operator needs: the restricted Pod Security Standard, least-privilege RBAC without
wildcards, the flags `alm run` understands, and values the schema must refuse.
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterable
from typing import Any

import pytest

from . import sync

helm = pytest.importorskip("helm_python")
kubernetes_validate = pytest.importorskip("kubernetes_validate")

#: Kubernetes versions the rendered manifests must be valid for (the chart says >=1.27).
K8S_VERSIONS = ("1.30.0", "1.33.0")
#: Kinds without a schema in kubernetes-validate (custom resources).
NO_SCHEMA = {"ServiceMonitor"}
RBAC_KINDS = {"ClusterRole", "Role"}
PYPROJECT = tomllib.loads((sync.ROOT / "pyproject.toml").read_text())

#: Named value sets the chart must render, validate and keep least-privileged with.
VALUE_SETS: dict[str, dict[str, Any]] = {
    "defaults": {},
    "namespaced": {"watchNamespaces": ["team-a", "team-b"]},
    "service-monitor": {"metrics": {"serviceMonitor": {"enabled": True, "labels": {"release": "prom"}}}},
    "custom-image": {
        "image": {
            "repository": "registry.example.com/alm/operator",
            "tag": "0.1.0-rc.1",
            "pullPolicy": "Always",
        }
    },
    "digest": {"image": {"digest": "sha256:" + "ab" * 32}},
    "peering": {"replicas": 2, "peering": {"enabled": True}},
    "peering-namespaced": {"replicas": 2, "peering": {"enabled": True}, "watchNamespaces": ["team-a"]},
    "no-metrics": {"metrics": {"enabled": False}},
    "no-escalate": {
        "rbac": {
            "escalate": False,
            "extraRules": [{"apiGroups": [""], "resources": ["persistentvolumeclaims"], "verbs": ["get", "list"]}],
        }
    },
    "external-sa": {"serviceAccount": {"create": False, "name": "ops-managed"}, "rbac": {"create": False}},
    "scheduling": {
        "logFormat": "plain",
        "extraArgs": ["--verbose"],
        "extraEnv": [{"name": "ALM_DEBUG", "value": "1"}],
        "nodeSelector": {"kubernetes.io/os": "linux"},
        "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "ops", "effect": "NoSchedule"}],
        "affinity": {
            "nodeAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": {
                    "nodeSelectorTerms": [
                        {"matchExpressions": [{"key": "kubernetes.io/arch", "operator": "In", "values": ["amd64"]}]}
                    ]
                }
            }
        },
        "podAnnotations": {"example.com/team": "platform"},
        "priorityClassName": "system-cluster-critical",
        "imagePullSecrets": [{"name": "ghcr"}],
    },
}


def render(values: dict[str, Any] | None = None, namespace: str = "alm-system") -> list[dict[str, Any]]:
    return sync.chart_objects(values, name="alm-operator", namespace=namespace)


def only(objects: Iterable[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = [obj for obj in objects if obj["kind"] == kind]
    assert len(found) == 1, f"expected one {kind}, got {len(found)}"
    return found[0]


def allows(rules: list[dict[str, Any]], group: str, resource: str, verb: str) -> bool:
    """Whether RBAC `rules` grant `verb` on `group`/`resource` (exact names only: no wildcards)."""
    return any(
        group in rule.get("apiGroups", [])
        and resource in rule.get("resources", [])
        and verb in rule.get("verbs", [])
        and not rule.get("resourceNames")
        for rule in rules
    )


def all_rules(objects: list[dict[str, Any]], kinds: set[str] = RBAC_KINDS) -> list[dict[str, Any]]:
    return [rule for obj in objects if obj["kind"] in kinds for rule in obj.get("rules", [])]


@pytest.fixture(scope="module")
def chart() -> Any:
    with helm.Chart.load(sync.CHART) as loaded:
        yield loaded


@pytest.fixture(scope="module")
def defaults() -> list[dict[str, Any]]:
    return render()


# --- the chart itself -----------------------------------------------------------------------


def test_chart_metadata(chart: Any) -> None:
    meta = chart.metadata
    assert meta["apiVersion"] == "v2"
    assert meta["name"] == "alm-operator"
    assert meta["version"] == "0.1.0"
    assert meta["appVersion"] == PYPROJECT["project"]["version"] == "0.1.0"
    assert meta["kubeVersion"] == ">=1.27.0-0"


@pytest.mark.parametrize("name", sorted(VALUE_SETS))
def test_helm_lint_passes(name: str) -> None:
    report = helm.lint(sync.CHART, VALUE_SETS[name], strict=True, kube_version="v1.30.0")
    assert report["errors"] == []
    # Severity 2 is a warning, 3 an error; infos ("icon is recommended") are fine.
    assert [m for m in report["messages"] if m["severity"] >= 2] == []


def test_chart_ships_every_crd(chart: Any) -> None:
    """Helm installs CRDs only from the chart's crds/ folder: all four must be there."""
    assert sorted(crd["filename"].split("/")[-1] for crd in chart.crds) == sorted(sync.CRD_FILES), (
        "helm/alm-operator/crds/ must hold every CRD of crds/: run `python tests/chart/sync.py`"
    )


# --- every value set: valid Kubernetes, labelled, least privilege ---------------------------


@pytest.mark.parametrize("version", K8S_VERSIONS)
@pytest.mark.parametrize("name", sorted(VALUE_SETS))
def test_rendered_objects_are_valid_kubernetes(name: str, version: str) -> None:
    objects = render(VALUE_SETS[name])
    validated = 0
    for obj in objects:
        if obj["kind"] in NO_SCHEMA:
            continue
        try:
            kubernetes_validate.validate(obj, version, strict=True)
        except kubernetes_validate.ValidationError as error:
            pytest.fail(f"{obj['kind']}/{obj['metadata']['name']} is invalid for {version}: {error}")
        validated += 1
    assert validated >= 2  # at least the Deployment and something else were really checked


def test_validation_is_not_vacuous(defaults: list[dict[str, Any]]) -> None:
    """kubernetes-validate rejects a typo in a rendered object: the test above can fail."""
    deployment = dict(only(defaults, "Deployment"))
    deployment["spec"] = {**deployment["spec"], "replica": 1}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, K8S_VERSIONS[0], strict=True)


@pytest.mark.parametrize("name", sorted(VALUE_SETS))
def test_no_wildcard_in_any_rbac_rule(name: str) -> None:
    for rule in all_rules(render(VALUE_SETS[name])):
        for field in ("apiGroups", "resources", "verbs", "resourceNames"):
            assert not any("*" in item for item in rule.get(field, [])), rule


@pytest.mark.parametrize("name", sorted(VALUE_SETS))
def test_every_object_carries_the_standard_labels(name: str) -> None:
    for obj in render(VALUE_SETS[name]):
        labels = obj["metadata"]["labels"]
        assert labels["app.kubernetes.io/name"] == "alm-operator"
        assert labels["app.kubernetes.io/instance"] == "alm-operator"
        assert labels["app.kubernetes.io/version"] == "0.1.0"
        assert labels["app.kubernetes.io/part-of"] == "alm"
        assert labels["app.kubernetes.io/component"] == "operator"
        assert labels["app.kubernetes.io/managed-by"] == "Helm"
        assert labels["helm.sh/chart"] == "alm-operator-0.1.0"


@pytest.mark.parametrize("name", sorted(VALUE_SETS))
def test_namespaced_objects_go_to_the_release_namespace(name: str) -> None:
    watched = set(VALUE_SETS[name].get("watchNamespaces", []))
    for obj in render(VALUE_SETS[name], namespace="ops"):
        if obj["kind"] in {"ClusterRole", "ClusterRoleBinding"}:
            assert "namespace" not in obj["metadata"]
        elif obj["kind"] in {"Role", "RoleBinding"}:
            assert obj["metadata"]["namespace"] in watched
        else:
            assert obj["metadata"]["namespace"] == "ops"


# --- defaults: the operator Deployment -------------------------------------------------------


def test_default_objects(defaults: list[dict[str, Any]]) -> None:
    assert sorted(obj["kind"] for obj in defaults) == [
        "ClusterRole",
        "ClusterRoleBinding",
        "Deployment",
        "Service",
        "ServiceAccount",
    ]


def test_deployment_runs_one_standalone_controller(defaults: list[dict[str, Any]]) -> None:
    deployment = only(defaults, "Deployment")
    spec = deployment["spec"]
    assert spec["replicas"] == 1
    assert spec["strategy"] == {"type": "Recreate"}
    [container] = spec["template"]["spec"]["containers"]
    assert container["name"] == "operator"
    assert container["image"] == "ghcr.io/alm-dev/alm-operator:0.1.0"
    assert container["args"] == [
        "run",
        "--standalone",
        "--liveness=http://0.0.0.0:8080/healthz",
        "--log-format=json",
        "--metrics-port=9090",
    ]


def test_pod_meets_the_restricted_pod_security_standard(defaults: list[dict[str, Any]]) -> None:
    pod = only(defaults, "Deployment")["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 65532
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    for key in ("hostNetwork", "hostPID", "hostIPC"):
        assert not pod.get(key)
    assert all(set(volume) <= {"name", "emptyDir"} for volume in pod["volumes"])
    for container in pod["containers"]:
        sc = container["securityContext"]
        assert sc["allowPrivilegeEscalation"] is False
        assert sc["readOnlyRootFilesystem"] is True
        assert sc["runAsNonRoot"] is True
        assert sc["capabilities"] == {"drop": ["ALL"]}
        assert sc["seccompProfile"] == {"type": "RuntimeDefault"}
        assert not sc.get("privileged")
        assert not any(port.get("hostPort") for port in container["ports"])


def test_probes_ports_and_resources(defaults: list[dict[str, Any]]) -> None:
    container = only(defaults, "Deployment")["spec"]["template"]["spec"]["containers"][0]
    ports = {port["name"]: port["containerPort"] for port in container["ports"]}
    assert ports == {"healthz": 8080, "metrics": 9090}
    probe = container["livenessProbe"]["httpGet"]
    assert probe["path"] == "/healthz" and ports[probe["port"]] == 8080
    resources = container["resources"]
    assert set(resources["requests"]) == {"cpu", "memory"}
    assert set(resources["limits"]) == {"cpu", "memory"}
    mounts = {mount["mountPath"] for mount in container["volumeMounts"]}
    assert "/tmp" in mounts  # the root filesystem is read-only


def test_service_selects_the_operator_pod_by_its_metrics_port(defaults: list[dict[str, Any]]) -> None:
    service = only(defaults, "Service")
    pod_labels = only(defaults, "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()
    assert service["spec"]["ports"] == [{"name": "metrics", "port": 9090, "targetPort": "metrics", "protocol": "TCP"}]
    selector = only(defaults, "Deployment")["spec"]["selector"]["matchLabels"]
    assert selector.items() <= pod_labels.items()


def test_service_account_is_bound(defaults: list[dict[str, Any]]) -> None:
    account = only(defaults, "ServiceAccount")["metadata"]
    assert account["name"] == "alm-operator"
    deployment = only(defaults, "Deployment")
    assert deployment["spec"]["template"]["spec"]["serviceAccountName"] == "alm-operator"
    binding = only(defaults, "ClusterRoleBinding")
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "alm-operator", "namespace": "alm-system"}]
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "ClusterRole",
        "name": only(defaults, "ClusterRole")["metadata"]["name"],
    }


# --- the container's arguments are a command line `alm run` accepts ---------------------------


def alm_run_parser() -> Any:
    """The real argument parser of the `alm` console script (the image's ENTRYPOINT)."""
    cli = pytest.importorskip("alm.cli.main")
    return cli._parser()


def parse_alm(args: list[str]) -> Any:
    """Parse like `alm` does; an unknown flag fails the test instead of exiting."""
    parser = alm_run_parser()
    namespace, unknown = parser.parse_known_args(args)
    assert unknown == [], f"`alm run` does not accept {unknown}: the operator pod would crash-loop"
    return namespace


def cli_knows(flag: str) -> bool:
    try:
        run = alm_run_parser()._subparsers._group_actions[0].choices["run"]
    except Exception:
        return False
    return flag in run._option_string_actions


def container_args(values: dict[str, Any]) -> list[str]:
    return only(render(values), "Deployment")["spec"]["template"]["spec"]["containers"][0]["args"]


@pytest.mark.parametrize("name", sorted(VALUE_SETS))
def test_args_are_accepted_by_alm_run(name: str) -> None:
    """Everything but --metrics-port (see the next test) is a flag `alm run` has today."""
    args = [arg for arg in container_args(VALUE_SETS[name]) if not arg.startswith("--metrics-port")]
    parsed = parse_alm(args)
    assert parsed.command == "run"
    assert parsed.namespace == VALUE_SETS[name].get("watchNamespaces", [])
    assert parsed.standalone is not VALUE_SETS[name].get("peering", {}).get("enabled", False)
    assert parsed.liveness == "http://0.0.0.0:8080/healthz"
    assert parsed.log_format == VALUE_SETS[name].get("logFormat", "json")


@pytest.mark.xfail(
    not cli_knows("--metrics-port"),
    reason="`alm run` has no --metrics-port flag yet; the chart passes it (metrics on :9090)",
    strict=True,
)
def test_metrics_port_flag_is_accepted_by_alm_run() -> None:
    args = container_args({})
    assert "--metrics-port=9090" in args
    parse_alm(args)


# --- RBAC: what the operator needs, and nothing more ------------------------------------------

CRUD = ("get", "list", "watch", "create", "patch", "update", "delete")
#: (group, resource, verbs) the operator must hold on namespaced resources.
NEEDED_NAMESPACED = [
    *[
        ("alm.dev", r, ("get", "list", "watch", "patch", "update"))
        for r in ("agents", "agentversions", "agentrollouts", "agentretirements")
    ],
    ("alm.dev", "agentrollouts", ("create", "delete")),
    *[
        ("alm.dev", f"{r}/status", ("get", "patch", "update"))
        for r in ("agents", "agentversions", "agentrollouts", "agentretirements")
    ],
    *[("", r, CRUD) for r in ("configmaps", "secrets", "serviceaccounts", "services")],
    ("", "pods", ("get", "list", "watch")),
    ("", "events", ("create", "patch")),
    ("events.k8s.io", "events", ("create", "patch")),
    ("apps", "deployments", CRUD),
    ("rbac.authorization.k8s.io", "roles", CRUD),
    ("rbac.authorization.k8s.io", "rolebindings", CRUD),
    ("networking.k8s.io", "networkpolicies", CRUD),
    ("policy", "poddisruptionbudgets", CRUD),
    ("gateway.networking.k8s.io", "httproutes", CRUD),
    ("batch", "jobs", ("get", "list", "watch", "create", "delete")),
]
NEEDED_CLUSTER = [
    ("", "namespaces", ("get", "list", "watch")),
    ("apiextensions.k8s.io", "customresourcedefinitions", ("get", "list", "watch")),
]
#: Permissions the operator must never hold.
FORBIDDEN = [
    ("", "pods", "create"),
    ("", "pods", "delete"),
    ("", "pods/exec", "create"),
    ("", "nodes", "get"),
    ("", "secrets", "deletecollection"),
    ("", "namespaces", "delete"),
    ("", "namespaces", "create"),
    ("apiextensions.k8s.io", "customresourcedefinitions", "create"),
    ("apiextensions.k8s.io", "customresourcedefinitions", "patch"),
    ("rbac.authorization.k8s.io", "clusterroles", "escalate"),
    ("rbac.authorization.k8s.io", "clusterroles", "bind"),
    ("rbac.authorization.k8s.io", "clusterroles", "create"),
    ("rbac.authorization.k8s.io", "clusterrolebindings", "create"),
    ("rbac.authorization.k8s.io", "rolebindings", "escalate"),
    ("alm.dev", "agents", "create"),
    ("alm.dev", "agents", "delete"),
    ("alm.dev", "agentversions", "delete"),
    ("apps", "deployments/scale", "update"),
    ("", "serviceaccounts/token", "create"),
    ("kopf.dev", "clusterkopfpeerings", "patch"),
    ("coordination.k8s.io", "leases", "create"),
]


def _check_needs(rules: list[dict[str, Any]], needs: list[tuple[str, str, tuple[str, ...]]]) -> None:
    missing = [(g, r, v) for g, r, verbs in needs for v in verbs if not allows(rules, g, r, v)]
    assert missing == []


def test_cluster_role_grants_what_the_operator_needs(defaults: list[dict[str, Any]]) -> None:
    rules = only(defaults, "ClusterRole")["rules"]
    _check_needs(rules, NEEDED_NAMESPACED + NEEDED_CLUSTER)
    # Agents' Roles carry user-written rules: escalate/bind on roles, and nothing wider.
    assert allows(rules, "rbac.authorization.k8s.io", "roles", "escalate")
    assert allows(rules, "rbac.authorization.k8s.io", "roles", "bind")


@pytest.mark.parametrize(("group", "resource", "verb"), FORBIDDEN)
def test_cluster_role_grants_nothing_more(defaults: list[dict[str, Any]], group: str, resource: str, verb: str) -> None:
    assert not allows(all_rules(defaults), group, resource, verb)


def test_no_escalate_drops_escalate_and_bind_and_adds_extra_rules() -> None:
    rules = only(render(VALUE_SETS["no-escalate"]), "ClusterRole")["rules"]
    assert not allows(rules, "rbac.authorization.k8s.io", "roles", "escalate")
    assert not allows(rules, "rbac.authorization.k8s.io", "roles", "bind")
    assert allows(rules, "", "persistentvolumeclaims", "list")
    _check_needs(rules, NEEDED_CLUSTER)


def test_namespaced_mode_uses_a_role_per_watched_namespace() -> None:
    objects = render(VALUE_SETS["namespaced"])
    roles = {obj["metadata"]["namespace"]: obj for obj in objects if obj["kind"] == "Role"}
    bindings = {obj["metadata"]["namespace"]: obj for obj in objects if obj["kind"] == "RoleBinding"}
    assert sorted(roles) == sorted(bindings) == ["team-a", "team-b"]
    for namespace, role in roles.items():
        _check_needs(role["rules"], NEEDED_NAMESPACED)
        binding = bindings[namespace]
        assert binding["roleRef"] == {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "Role",
            "name": role["metadata"]["name"],
        }
        assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "alm-operator", "namespace": "alm-system"}]
    # Cluster-wide, the operator keeps only reads of namespaces and CRDs.
    cluster_rules = only(objects, "ClusterRole")["rules"]
    _check_needs(cluster_rules, NEEDED_CLUSTER)
    assert all(rule["resources"] in (["namespaces"], ["customresourcedefinitions"]) for rule in cluster_rules)
    assert not allows(cluster_rules, "", "secrets", "get")
    args = only(objects, "Deployment")["spec"]["template"]["spec"]["containers"][0]["args"]
    assert [a for a in args if a.startswith("--namespace")] == ["--namespace=team-a", "--namespace=team-b"]


def test_peering_runs_replicas_behind_kopf_peering() -> None:
    objects = render(VALUE_SETS["peering"])
    deployment = only(objects, "Deployment")
    args = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--peering" in args and "--standalone" not in args
    assert deployment["spec"]["replicas"] == 2
    assert deployment["spec"]["strategy"] == {"type": "RollingUpdate"}
    rules = all_rules(objects)
    assert allows(rules, "kopf.dev", "clusterkopfpeerings", "patch")
    assert not allows(rules, "kopf.dev", "kopfpeerings", "patch")
    namespaced = render(VALUE_SETS["peering-namespaced"])
    role = only(namespaced, "Role")
    assert allows(role["rules"], "kopf.dev", "kopfpeerings", "patch")
    assert not allows(all_rules(namespaced), "kopf.dev", "clusterkopfpeerings", "patch")


def test_rbac_and_service_account_can_be_external() -> None:
    objects = render(VALUE_SETS["external-sa"])
    assert sorted(obj["kind"] for obj in objects) == ["Deployment", "Service"]
    assert only(objects, "Deployment")["spec"]["template"]["spec"]["serviceAccountName"] == "ops-managed"
    with pytest.raises(helm.HelmRenderError, match=r"serviceAccount\.name is required"):
        render({"serviceAccount": {"create": False}})


# --- optional parts ----------------------------------------------------------------------------


def test_service_monitor_scrapes_the_metrics_service() -> None:
    objects = render(VALUE_SETS["service-monitor"])
    monitor = only(objects, "ServiceMonitor")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["metadata"]["labels"]["release"] == "prom"
    assert monitor["spec"]["endpoints"] == [
        {"port": "metrics", "path": "/metrics", "interval": "30s", "scrapeTimeout": "10s"}
    ]
    service = only(objects, "Service")
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": ["alm-system"]}
    assert "ServiceMonitor" not in {obj["kind"] for obj in render()}


def test_service_monitor_needs_metrics() -> None:
    with pytest.raises(helm.HelmRenderError, match=r"needs metrics\.enabled"):
        render({"metrics": {"enabled": False, "serviceMonitor": {"enabled": True}}})


def test_metrics_off_removes_port_flag_and_service() -> None:
    objects = render(VALUE_SETS["no-metrics"])
    assert "Service" not in {obj["kind"] for obj in objects}
    container = only(objects, "Deployment")["spec"]["template"]["spec"]["containers"][0]
    assert [port["name"] for port in container["ports"]] == ["healthz"]
    assert not any(arg.startswith("--metrics-port") for arg in container["args"])


@pytest.mark.parametrize(
    ("values", "image", "policy"),
    [
        (VALUE_SETS["custom-image"], "registry.example.com/alm/operator:0.1.0-rc.1", "Always"),
        (VALUE_SETS["digest"], "ghcr.io/alm-dev/alm-operator@sha256:" + "ab" * 32, "IfNotPresent"),
    ],
)
def test_custom_image(values: dict[str, Any], image: str, policy: str) -> None:
    container = only(render(values), "Deployment")["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == image
    assert container["imagePullPolicy"] == policy


def test_scheduling_and_extra_settings_reach_the_pod() -> None:
    values = VALUE_SETS["scheduling"]
    pod = only(render(values), "Deployment")["spec"]["template"]
    spec = pod["spec"]
    assert spec["nodeSelector"] == values["nodeSelector"]
    assert spec["tolerations"] == values["tolerations"]
    assert spec["affinity"] == values["affinity"]
    assert spec["priorityClassName"] == "system-cluster-critical"
    assert spec["imagePullSecrets"] == [{"name": "ghcr"}]
    assert pod["metadata"]["annotations"] == {"example.com/team": "platform"}
    container = spec["containers"][0]
    assert "--log-format=plain" in container["args"]
    assert container["args"][-1] == "--verbose"  # extraArgs come last
    assert {"name": "ALM_DEBUG", "value": "1"} in container["env"]


def test_notes_describe_the_install() -> None:
    notes = sync.render_chart({"watchNamespaces": ["team-a"]})["alm-operator/templates/NOTES.txt"]
    assert "only these namespaces: team-a" in notes
    assert "kubectl apply --server-side" in notes


# --- values.schema.json refuses bad values -------------------------------------------------------

BAD_VALUES = {
    "replicas-not-a-number": {"replicas": "two"},
    "two-controllers-without-peering": {"replicas": 2},
    "negative-replicas": {"replicas": -1},
    "unknown-key": {"replica": 1},
    "latest-tag": {"image": {"tag": "latest"}},
    "bad-digest": {"image": {"digest": "sha256:nothex"}},
    "bad-pull-policy": {"image": {"pullPolicy": "Sometimes"}},
    "bad-log-format": {"logFormat": "xml"},
    "bad-namespace": {"watchNamespaces": ["Team_A"]},
    "duplicate-namespace": {"watchNamespaces": ["team-a", "team-a"]},
    "namespaces-not-a-list": {"watchNamespaces": "team-a"},
    "wildcard-extra-rule": {"rbac": {"extraRules": [{"apiGroups": [""], "resources": ["*"], "verbs": ["get"]}]}},
    "wildcard-verb": {"rbac": {"extraRules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["*"]}]}},
    "port-out-of-range": {"metrics": {"port": 70000}},
    "bad-interval": {"metrics": {"serviceMonitor": {"interval": "often"}}},
    "rbac-create-not-bool": {"rbac": {"create": "yes"}},
}


@pytest.mark.parametrize("name", sorted(BAD_VALUES))
def test_schema_rejects_bad_values(chart: Any, name: str) -> None:
    values = BAD_VALUES[name]
    with pytest.raises(helm.HelmValuesError):
        chart.validate_schema(values)
    # `helm install`/`template` would refuse them too: rendering validates against the schema.
    with pytest.raises(helm.HelmValuesError):
        chart.render(values, name="alm-operator", namespace="alm-system")


def test_lint_reports_bad_values() -> None:
    report = helm.lint(sync.CHART, {"replicas": "two"})
    assert any("replicas" in error for error in report["errors"])


@pytest.mark.parametrize("name", sorted(VALUE_SETS))
def test_schema_accepts_every_documented_value_set(chart: Any, name: str) -> None:
    chart.validate_schema(VALUE_SETS[name])


def test_schema_covers_every_default_key(chart: Any) -> None:
    """Every top-level key of values.yaml is described by the schema (and nothing is left loose)."""
    schema = chart.schema
    assert schema is not None and schema["additionalProperties"] is False
    assert set(chart.values) <= set(schema["properties"])
