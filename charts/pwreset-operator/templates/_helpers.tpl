{{/* Chart name, truncated to a DNS label. */}}
{{- define "pwreset-operator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Full name: the release name, with the chart name unless the release name contains it.
     Kept to 52 characters so that "-shard-NN" and "-leader-election" suffixes fit. */}}
{{- define "pwreset-operator.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 52 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 52 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 52 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "pwreset-operator.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "pwreset-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "pwreset-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "pwreset-operator.labels" -}}
helm.sh/chart: {{ include "pwreset-operator.chart" . }}
{{ include "pwreset-operator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/component: operator
{{- end }}

{{- define "pwreset-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "pwreset-operator.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "pwreset-operator.image" -}}
{{- $tag := default .Chart.AppVersion .Values.image.tag }}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository $tag }}
{{- end }}
{{- end }}

{{/* "true" when leader election is on: asked for, or forced by more than one replica. */}}
{{- define "pwreset-operator.leaderElect" -}}
{{- if or .Values.leaderElection.enabled (gt (int .Values.replicaCount) 1) }}true{{ else }}false{{ end }}
{{- end }}

{{/* Number of Deployments: one per shard, or one. */}}
{{- define "pwreset-operator.shards" -}}
{{- if .Values.sharding.enabled }}{{ int .Values.sharding.totalShards }}{{ else }}1{{ end }}
{{- end }}

{{- define "pwreset-operator.leaseName" -}}
{{- default (include "pwreset-operator.fullname" .) .Values.leaderElection.leaseName }}
{{- end }}

{{/* Namespaces where Secrets may be read, as a JSON list; [] means every namespace. */}}
{{- define "pwreset-operator.secretNamespaces" -}}
{{- if .Values.rbac.namespaces }}
{{- toJson (uniq .Values.rbac.namespaces) }}
{{- else if .Values.watchNamespace }}
{{- toJson (list .Values.watchNamespace) }}
{{- else }}
{{- toJson (list) }}
{{- end }}
{{- end }}

{{/* The Secret rule: get/patch only (the rotated refresh token is written with a conditional patch), optionally limited to named Secrets. */}}
{{- define "pwreset-operator.secretRule" -}}
- apiGroups: [""]
  resources: [secrets]
  {{- with .Values.rbac.secretNames }}
  resourceNames: {{ toJson (uniq .) }}
  {{- end }}
  verbs: [get, patch]
{{- end }}

{{/* The rules on PasswordResetOperations and events. */}}
{{- define "pwreset-operator.operatorRules" -}}
- apiGroups: [pwreset.dev]
  resources: [passwordresetoperations]
  # delete: ttlSecondsAfterFinished.
  verbs: [get, list, watch, delete]
- apiGroups: [pwreset.dev]
  resources: [passwordresetoperations/status]
  verbs: [get, patch]
- apiGroups: [events.k8s.io]
  resources: [events]
  verbs: [create, patch]
- apiGroups: [""]
  resources: [events]
  verbs: [create, patch]
{{- end }}

{{/* Checks the values cannot express in the schema; fails with a message naming them. */}}
{{- define "pwreset-operator.validate" -}}
{{- if and .Values.watchNamespace .Values.rbac.namespaces (not (has .Values.watchNamespace .Values.rbac.namespaces)) }}
{{- fail (printf "rbac.namespaces %v must include watchNamespace %q: resources read Secrets of their own namespace" .Values.rbac.namespaces .Values.watchNamespace) }}
{{- end }}
{{- if and .Values.sharding.enabled (lt (int .Values.sharding.totalShards) 2) }}
{{- fail "sharding.totalShards must be at least 2 when sharding.enabled is true" }}
{{- end }}
{{- if and (not .Values.serviceAccount.create) (not .Values.serviceAccount.name) .Values.rbac.create }}
{{- fail "serviceAccount.name must be set when serviceAccount.create is false and rbac.create is true (the RBAC binds that account)" }}
{{- end }}
{{- if and .Values.metrics.serviceMonitor.enabled (not .Values.metrics.service.enabled) }}
{{- fail "metrics.serviceMonitor.enabled needs metrics.service.enabled: the ServiceMonitor selects the metrics Service" }}
{{- end }}
{{- end }}

{{/* PromQL label matchers selecting the operator's own series in the alerts: by default
     what the chart's ServiceMonitor scrapes (job = the metrics Service's name). */}}
{{- define "pwreset-operator.alertSelector" -}}
{{- default (printf "job=%q,namespace=%q" (printf "%s-metrics" (include "pwreset-operator.fullname" .)) .Release.Namespace) .Values.prometheusRule.selector }}
{{- end }}

{{/* The operator's flags after `run`, shared by the Deployment and the `helm test` Pod (which
     runs `check` with the same flags, so it checks what the operator will use). Takes a dict:
     root (the chart context), shard, lease (the Lease name of that shard). */}}
{{- define "pwreset-operator.runFlags" -}}
{{- $root := .root }}
{{- $shard := .shard }}
{{- $lease := .lease }}
{{- $leaderElect := eq (include "pwreset-operator.leaderElect" $root) "true" -}}
- {{ printf "--cloud=%v" $root.Values.cloud | quote }}
{{- with $root.Values.graphUrl }}
- {{ printf "--graph-url=%v" . | quote }}
{{- end }}
{{- with $root.Values.loginUrl }}
- {{ printf "--login-url=%v" . | quote }}
{{- end }}
{{- with $root.Values.watchNamespace }}
- {{ printf "--namespace=%v" . | quote }}
{{- end }}
{{- if $root.Values.allowPlainHttp }}
- "--allow-plain-http"
{{- end }}
{{- if include "pwreset-operator.extraCAFrom" $root }}
- "--extra-ca-file=/etc/pwreset/extra-ca/ca.crt"
{{- end }}
{{- with $root.Values.workloadIdentityNamespaces }}
- {{ printf "--workload-identity-namespaces=%v" (join "," .) | quote }}
{{- end }}
{{- with $root.Values.defaultCredentialsSecret }}
- {{ printf "--default-credentials-secret=%v" . | quote }}
{{- end }}
- {{ printf "--poll-interval=%v" $root.Values.pollInterval | quote }}
- {{ printf "--not-found-grace=%v" $root.Values.notFoundGrace | quote }}
- {{ printf "--graph-timeout=%v" $root.Values.graphTimeout | quote }}
- {{ printf "--max-concurrent-reconciles=%v" $root.Values.maxConcurrentReconciles | quote }}
- {{ printf "--tenant-rate=%v" $root.Values.tenantRate | quote }}
- {{ printf "--tenant-burst=%v" $root.Values.tenantBurst | quote }}
- --metrics-addr=0.0.0.0:{{ $root.Values.metrics.port }}
- {{ printf "--log-format=%v" $root.Values.logFormat | quote }}
{{- if $root.Values.passwordReset.enabled }}
- "--enable-password-reset"
{{- end }}
{{- if $leaderElect }}
- --leader-elect
- {{ printf "--leader-election-namespace=%v" $root.Release.Namespace | quote }}
- {{ printf "--leader-election-lease-name=%v" $lease | quote }}
- {{ printf "--leader-election-lease-duration=%v" $root.Values.leaderElection.leaseDuration | quote }}
{{- end }}
{{- if $root.Values.sharding.enabled }}
- {{ printf "--shard=%v" $shard | quote }}
- {{ printf "--total-shards=%v" $root.Values.sharding.totalShards | quote }}
{{- end }}
{{- range $root.Values.extraArgs }}
- {{ . | quote }}
{{- end }}
{{- end }}

{{/* The operator container's environment, shared by the Deployment and the `helm test` Pod. */}}
{{- define "pwreset-operator.env" -}}
- name: POD_NAME
  valueFrom:
    fieldRef:
      fieldPath: metadata.name
- name: POD_NAMESPACE
  valueFrom:
    fieldRef:
      fieldPath: metadata.namespace
- name: RUST_LOG
  value: {{ .Values.logLevel | quote }}
{{- with .Values.extraEnv }}
{{- toYaml . | nindent 0 }}
{{- end }}
{{- end }}

{{/*
Extra CA certificates (values.extraCACertificates): mounted into the operator and the
`helm test` Pod alike, and added to the system's roots with --extra-ca-file.
*/}}
{{- define "pwreset-operator.extraCAFrom" -}}
{{- $ca := .Values.extraCACertificates }}
{{- if and $ca.configMapName $ca.secretName }}
{{- fail "extraCACertificates: set configMapName or secretName, not both" }}
{{- end }}
{{- or $ca.configMapName $ca.secretName }}
{{- end }}

{{- define "pwreset-operator.extraCAVolumeMount" -}}
{{- if include "pwreset-operator.extraCAFrom" . }}
- name: extra-ca
  mountPath: /etc/pwreset/extra-ca
  readOnly: true
{{- end }}
{{- end }}

{{- define "pwreset-operator.extraCAVolume" -}}
{{- $ca := .Values.extraCACertificates }}
{{- if $ca.configMapName }}
- name: extra-ca
  configMap:
    name: {{ $ca.configMapName | quote }}
    items:
      - key: {{ $ca.key | quote }}
        path: ca.crt
{{- else if $ca.secretName }}
- name: extra-ca
  secret:
    secretName: {{ $ca.secretName | quote }}
    items:
      - key: {{ $ca.key | quote }}
        path: ca.crt
{{- end }}
{{- end }}
