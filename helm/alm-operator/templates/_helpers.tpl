{{/*
Names and labels. The fullname is "alm-operator" for a release named
"alm-operator" (the documented install), which keeps the rendered objects
identical to manifests/base (tests/chart/test_manifests.py checks this).
*/}}
{{- define "alm-operator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "alm-operator.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "alm-operator.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "alm-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "alm-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "alm-operator.labels" -}}
helm.sh/chart: {{ include "alm-operator.chart" . }}
{{ include "alm-operator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/component: operator
app.kubernetes.io/part-of: alm
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "alm-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "alm-operator.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "alm-operator.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/*
RBAC. Least privilege and no wildcards: every group, resource and verb is named.
The same rules are written out in manifests/base/clusterrole.yaml; a test fails
when the two differ.

Rules for namespaced resources: bound cluster-wide by a ClusterRole, or by a
Role in each watched namespace when .Values.watchNamespaces is set.
*/}}
{{- define "alm-operator.namespacedRules" -}}
# The alm.dev kinds: the operator reads specs, adds finalizers (patch) and
# creates/deletes the AgentRollouts it owns.
- apiGroups: ["alm.dev"]
  resources: ["agents", "agentversions", "agentretirements"]
  verbs: ["get", "list", "watch", "patch", "update"]
- apiGroups: ["alm.dev"]
  resources: ["agentrollouts"]
  verbs: ["get", "list", "watch", "create", "patch", "update", "delete"]
# Results and kopf's own progress live in status (never in annotations).
- apiGroups: ["alm.dev"]
  resources: ["agents/status", "agentversions/status", "agentrollouts/status", "agentretirements/status"]
  verbs: ["get", "patch", "update"]
# Owner references with blockOwnerDeletion need `update` on the owner's
# finalizers subresource where the OwnerReferencesPermissionEnforcement
# admission plugin is on (e.g. OpenShift).
- apiGroups: ["alm.dev"]
  resources: ["agents/finalizers", "agentversions/finalizers", "agentrollouts/finalizers", "agentretirements/finalizers"]
  verbs: ["update"]
# Children of an Agent.
- apiGroups: [""]
  resources: ["configmaps", "secrets", "serviceaccounts", "services"]
  verbs: ["get", "list", "watch", "create", "patch", "update", "delete"]
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["get", "list", "watch"]
# Audit trail and kopf's handler events.
- apiGroups: [""]
  resources: ["events"]
  verbs: ["create", "patch"]
- apiGroups: ["events.k8s.io"]
  resources: ["events"]
  verbs: ["create", "patch"]
- apiGroups: ["apps"]
  resources: ["deployments"]
  verbs: ["get", "list", "watch", "create", "patch", "update", "delete"]
- apiGroups: ["rbac.authorization.k8s.io"]
  resources: ["roles", "rolebindings"]
  verbs: ["get", "list", "watch", "create", "patch", "update", "delete"]
{{- if .Values.rbac.escalate }}
# An Agent's Role carries the rules its owner wrote in spec.permissions.
# Kubernetes only lets a subject create a Role with rules it holds itself, or
# with `escalate` on roles; and bind a Role it does not hold with `bind`.
# Both are granted on `roles` only (never clusterroles), so the operator can
# grant agents namespaced permissions but nothing cluster-scoped.
- apiGroups: ["rbac.authorization.k8s.io"]
  resources: ["roles"]
  verbs: ["bind", "escalate"]
{{- end }}
- apiGroups: ["networking.k8s.io"]
  resources: ["networkpolicies"]
  verbs: ["get", "list", "watch", "create", "patch", "update", "delete"]
- apiGroups: ["policy"]
  resources: ["poddisruptionbudgets"]
  verbs: ["get", "list", "watch", "create", "patch", "update", "delete"]
- apiGroups: ["gateway.networking.k8s.io"]
  resources: ["httproutes"]
  verbs: ["get", "list", "watch", "create", "patch", "update", "delete"]
# Archival at retirement runs as a Job.
- apiGroups: ["batch"]
  resources: ["jobs"]
  verbs: ["get", "list", "watch", "create", "delete"]
{{- if and .Values.peering.enabled .Values.watchNamespaces }}
# kopf peering between replicas, per watched namespace.
- apiGroups: ["kopf.dev"]
  resources: ["kopfpeerings"]
  verbs: ["get", "list", "watch", "patch"]
{{- end }}
{{- with .Values.rbac.extraRules }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/*
Rules for cluster-scoped resources, needed in both modes: kopf scans CRDs at
startup and observes namespaces.
*/}}
{{- define "alm-operator.clusterRules" -}}
- apiGroups: [""]
  resources: ["namespaces"]
  verbs: ["get", "list", "watch"]
- apiGroups: ["apiextensions.k8s.io"]
  resources: ["customresourcedefinitions"]
  verbs: ["get", "list", "watch"]
{{- if and .Values.peering.enabled (not .Values.watchNamespaces) }}
# kopf peering between replicas, cluster-wide.
- apiGroups: ["kopf.dev"]
  resources: ["clusterkopfpeerings"]
  verbs: ["get", "list", "watch", "patch"]
{{- end }}
{{- end }}
