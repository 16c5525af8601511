{{/* Names, labels and the settings several templates share. */}}

{{- define "kpages.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "kpages.fullname" -}}
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

{{/* "<fullname>-<component>", kept within a DNS label. */}}
{{- define "kpages.componentName" -}}
{{- printf "%s-%s" (include "kpages.fullname" .root | trunc 50 | trimSuffix "-") .component }}
{{- end }}

{{- define "kpages.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels every object carries. Call with (dict "root" $ "component" "router"). */}}
{{- define "kpages.labels" -}}
helm.sh/chart: {{ include "kpages.chart" .root }}
{{ include "kpages.selectorLabels" . }}
app.kubernetes.io/version: {{ .root.Values.image.tag | default .root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
app.kubernetes.io/part-of: kpages
{{- end }}

{{/* Labels a component's pods are selected by; never change them (selectors are immutable). */}}
{{- define "kpages.selectorLabels" -}}
app.kubernetes.io/name: {{ include "kpages.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{/* The label the operator's function-pod NetworkPolicies admit (KPAGES_ROUTER_POD_LABELS). */}}
{{- define "kpages.routerPodLabel" -}}
kpages.dev/router: "true"
{{- end }}

{{- define "kpages.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) }}
{{- end }}
{{- end }}

{{- define "kpages.operator.serviceAccountName" -}}
{{- .Values.operator.serviceAccount.name | default (include "kpages.componentName" (dict "root" . "component" "operator")) }}
{{- end }}

{{- define "kpages.router.serviceAccountName" -}}
{{- .Values.router.serviceAccount.name | default (include "kpages.componentName" (dict "root" . "component" "router")) }}
{{- end }}

{{/* Object storage: the URL, the credentials Secret. */}}
{{- define "kpages.minio.secretName" -}}
{{- .Values.minio.existingSecret | default (include "kpages.componentName" (dict "root" . "component" "minio")) }}
{{- end }}

{{- define "kpages.storeUrl" -}}
{{- if .Values.store.url }}
{{- .Values.store.url }}
{{- else if .Values.minio.enabled }}
{{- printf "s3://%s?endpoint=http://%s.%s.svc:9000" .Values.minio.bucket (include "kpages.componentName" (dict "root" . "component" "minio")) .Release.Namespace }}
{{- else }}
{{- fail "store.url is required: set it to your object store (s3://bucket/prefix?endpoint=… or file:///dir), or set minio.enabled=true for the built-in S3 server" }}
{{- end }}
{{- end }}

{{- define "kpages.storeSecret" -}}
{{- if .Values.store.existingSecret }}
{{- .Values.store.existingSecret }}
{{- else if .Values.minio.enabled }}
{{- include "kpages.minio.secretName" . }}
{{- end }}
{{- end }}

{{- define "kpages.natsUrl" -}}
{{- if .Values.nats.url }}
{{- .Values.nats.url }}
{{- else if .Values.natsServer.enabled }}
{{- printf "nats://%s.%s.svc:4222" (include "kpages.componentName" (dict "root" . "component" "nats")) .Release.Namespace }}
{{- end }}
{{- end }}

{{/* The router admin Service's URL, which the operator's schedule CronJobs POST to. */}}
{{- define "kpages.routerAdminUrl" -}}
{{- if .Values.router.adminUrl }}
{{- .Values.router.adminUrl }}
{{- else }}
{{- printf "http://%s.%s.svc:%d" (include "kpages.componentName" (dict "root" . "component" "router-admin")) .Release.Namespace (int .Values.router.adminPort) }}
{{- end }}
{{- end }}

{{/* Environment both binaries share. */}}
{{- define "kpages.commonEnv" -}}
- name: KPAGES_STORE_URL
  value: {{ include "kpages.storeUrl" . | quote }}
{{- with include "kpages.storeSecret" . }}
- name: AWS_ACCESS_KEY_ID
  valueFrom:
    secretKeyRef:
      name: {{ . }}
      key: AWS_ACCESS_KEY_ID
- name: AWS_SECRET_ACCESS_KEY
  valueFrom:
    secretKeyRef:
      name: {{ . }}
      key: AWS_SECRET_ACCESS_KEY
{{- end }}
- name: KPAGES_WATCH_NAMESPACES
  value: {{ join "," .Values.watchNamespaces | quote }}
- name: KPAGES_LOG_FORMAT
  value: {{ .Values.logFormat | quote }}
- name: RUST_LOG
  value: {{ .Values.logLevel | quote }}
- name: POD_NAME
  valueFrom:
    fieldRef:
      fieldPath: metadata.name
- name: POD_NAMESPACE
  valueFrom:
    fieldRef:
      fieldPath: metadata.namespace
{{- end }}

{{/* A writable /tmp under a read-only root filesystem. */}}
{{- define "kpages.tmpVolume" -}}
- name: tmp
  emptyDir:
    sizeLimit: 64Mi
{{- end }}
