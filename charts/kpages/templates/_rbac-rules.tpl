{{/* The operator: owns kpages objects' status, writes the workloads of each deploy. */}}
{{- define "kpages.operatorRules" -}}
- apiGroups: ["kpages.dev"]
  resources: ["sites", "deploys", "functionroutes"]
  verbs: ["get", "list", "watch", "create", "update", "patch", "delete"]
- apiGroups: ["kpages.dev"]
  resources: ["sites/status", "deploys/status", "functionroutes/status"]
  verbs: ["get", "update", "patch"]
# Each deploy's Deployment, Service, NetworkPolicy and CronJobs, written by server-side apply
# (patch) and pruned when no longer desired.
- apiGroups: ["apps"]
  resources: ["deployments"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
- apiGroups: [""]
  resources: ["services"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
- apiGroups: ["batch"]
  resources: ["cronjobs"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
- apiGroups: ["networking.k8s.io"]
  resources: ["networkpolicies"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
# Read-only: why a deploy's pods are not ready (a failed bundle fetch) goes into its status.
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["get", "list", "watch"]
- apiGroups: ["", "events.k8s.io"]
  resources: ["events"]
  verbs: ["create", "patch"]
{{- end }}

{{/* The router: reads routing objects and endpoints; scales a deploy up from zero. */}}
{{- define "kpages.routerRules" -}}
- apiGroups: ["kpages.dev"]
  resources: ["sites", "deploys", "functionroutes"]
  verbs: ["get", "list", "watch"]
- apiGroups: ["discovery.k8s.io"]
  resources: ["endpointslices"]
  verbs: ["get", "list", "watch"]
# FunctionRoutes whose backend is a Service: the router proxies to its cluster IP.
- apiGroups: [""]
  resources: ["services"]
  verbs: ["get", "list", "watch"]
# Scale from zero: the router notes calls on a Deploy (annotation kpages.dev/last-call); the
# operator turns that into pods. Spec and status stay the operator's.
- apiGroups: ["kpages.dev"]
  resources: ["deploys"]
  verbs: ["patch"]
{{- end }}
