{{/*
Names, labels, URLs and the secret values of the chart. Every template takes its names
from here, so NOTES.txt prints exactly what the resources are called.
*/}}

{{- define "hub-collab.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* <release>-hub-collab, or the release name alone when it already contains the chart's. */}}
{{- define "hub-collab.fullname" -}}
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

{{- define "hub-collab.selectorLabels" -}}
app.kubernetes.io/name: {{ include "hub-collab.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "hub-collab.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "hub-collab.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "hub-collab.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/* The service's URL prefix in the Hub: <baseUrl>services/<name>/ */}}
{{- define "hub-collab.prefix" -}}
{{- printf "%sservices/%s/" .Values.hub.baseUrl .Values.hub.serviceName }}
{{- end }}

{{/* http://<fullname>.<namespace>:<port>: where the Hub's proxy sends /services/<name>/ */}}
{{- define "hub-collab.url" -}}
{{- printf "http://%s.%s:%v" (include "hub-collab.fullname" .) .Release.Namespace .Values.service.port }}
{{- end }}

{{- define "hub-collab.sqlite" -}}
{{- if and (not .Values.db.url) (not .Values.db.existingSecret) }}true{{ end }}
{{- end }}

{{- define "hub-collab.redis" -}}
{{- if or .Values.redis.url .Values.redis.existingSecret }}true{{ end }}
{{- end }}

{{/* Where the service keeps its files: the data volume with SQLite, else /tmp. */}}
{{- define "hub-collab.dataDir" -}}
{{- if include "hub-collab.sqlite" . }}/srv/hub-collab{{ else }}/tmp/hub-collab{{ end }}
{{- end }}

{{/*
A random secret of 32 bytes as 64 hex digits (the service reads its cookie secret as hex).
*/}}
{{- define "hub-collab.randHex" -}}
{{- randAlphaNum 64 | sha256sum }}
{{- end }}

{{/*
The chart's Secret as it is in the cluster (Helm lookup), or an empty one: offline
(`helm template`, `--dry-run`) lookup finds nothing.
*/}}
{{- define "hub-collab.existingData" -}}
{{- $secret := lookup "v1" "Secret" .Release.Namespace (include "hub-collab.fullname" .) | default dict }}
{{- get $secret "data" | default dict | toJson }}
{{- end }}

{{/*
One key of the chart's Secret, base64: the value given, else the one the Secret already
holds (so it survives upgrades), else a new random one when `generate`, else nothing.
Call with (dict "ctx" $ "key" "cookie-secret" "given" "..." "generate" true).
*/}}
{{- define "hub-collab.secretValue" -}}
{{- $data := include "hub-collab.existingData" .ctx | fromJson }}
{{- if .given }}
{{- .given | b64enc }}
{{- else if hasKey $data .key }}
{{- get $data .key }}
{{- else if .generate }}
{{- include "hub-collab.randHex" .ctx | b64enc }}
{{- end }}
{{- end }}

{{/*
A container env var from a secret-backed value ({value|url, existingSecret,
existingSecretKey}): the user's Secret when named, else the chart's.
Call with (dict "ctx" $ "name" "HUB_COLLAB_DB_URL" "item" .Values.db "key" "db-url").
*/}}
{{- define "hub-collab.secretEnv" -}}
- name: {{ .name }}
  valueFrom:
    secretKeyRef:
      {{- if .item.existingSecret }}
      name: {{ .item.existingSecret }}
      key: {{ .item.existingSecretKey }}
      {{- else }}
      name: {{ include "hub-collab.fullname" .ctx }}
      key: {{ .key }}
      {{- end }}
{{- end }}

{{/* Does the chart's Secret hold this item (a value given here, or one it generates)? */}}
{{- define "hub-collab.inChartSecret" -}}
{{- if and (not .item.existingSecret) (or .given .generate) }}true{{ end }}
{{- end }}

{{/* A config value as a Python literal: JSON is one, except for booleans. */}}
{{- define "hub-collab.pyLiteral" -}}
{{- if kindIs "bool" . }}{{ ternary "True" "False" . }}{{ else }}{{ toJson . }}{{ end }}
{{- end }}

{{/* The labels zero-to-jupyterhub gives its pods, by component. */}}
{{- define "hub-collab.z2jhPeer" -}}
- podSelector:
    matchLabels:
      app: jupyterhub
      component: {{ .component }}
  {{- with .ctx.Values.hub.namespace }}
  namespaceSelector:
    matchLabels:
      kubernetes.io/metadata.name: {{ . }}
  {{- end }}
{{- end }}

{{/* An egress rule to PostgreSQL (networkPolicy.database). */}}
{{- define "hub-collab.egressDatabase" -}}
- ports:
    {{- range .Values.networkPolicy.database.ports }}
    - port: {{ . }}
      protocol: TCP
    {{- end }}
  {{- with .Values.networkPolicy.database.to }}
  to:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- end }}

{{/* An egress rule to DNS (kube-dns, or a node-local cache). */}}
{{- define "hub-collab.egressDns" -}}
- ports:
    - port: 53
      protocol: UDP
    - port: 53
      protocol: TCP
{{- end }}

{{/*
Where the service's files and its database are: the same for the service and for
`hub-collab upgrade-db`. The root filesystem is read-only; HOME and temporary files live
on the `tmp` emptyDir.
*/}}
{{- define "hub-collab.filesEnv" -}}
- name: HOME
  value: /tmp
- name: HUB_COLLAB_DATA_DIR
  value: {{ include "hub-collab.dataDir" . }}
{{- if not (include "hub-collab.sqlite" .) }}
{{ include "hub-collab.secretEnv" (dict "ctx" . "name" "HUB_COLLAB_DB_URL" "item" .Values.db "key" "db-url") }}
{{- end }}
{{- end }}

{{- define "hub-collab.volumeMounts" -}}
- name: config
  mountPath: /etc/hub-collab
  readOnly: true
- name: tmp
  mountPath: /tmp
{{- if include "hub-collab.sqlite" . }}
- name: data
  mountPath: /srv/hub-collab
{{- end }}
{{- end }}

{{/* The pods' security context: the service's, and the prune-history CronJob's. */}}
{{- define "hub-collab.podSecurity" -}}
runAsNonRoot: true
runAsUser: 1000
runAsGroup: 1000
fsGroup: 1000
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{- define "hub-collab.containerSecurity" -}}
runAsNonRoot: true
runAsUser: 1000
runAsGroup: 1000
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
capabilities:
  drop: ["ALL"]
{{- end }}

{{/*
The volumes of volumeMounts: the ConfigMap, the `tmp` emptyDir and, with SQLite, the data
volume (the claim with persistence, else an emptyDir of the pod's own).
*/}}
{{- define "hub-collab.volumes" -}}
- name: config
  configMap:
    name: {{ include "hub-collab.fullname" . }}
- name: tmp
  emptyDir:
    sizeLimit: 256Mi
{{- if include "hub-collab.sqlite" . }}
- name: data
  {{- if .Values.persistence.enabled }}
  persistentVolumeClaim:
    claimName: {{ .Values.persistence.existingClaim | default (include "hub-collab.fullname" .) }}
  {{- else }}
  emptyDir: {}
  {{- end }}
{{- end }}
{{- end }}

{{- define "hub-collab.imagePullSecrets" -}}
{{- with .Values.image.pullSecrets }}
imagePullSecrets:
  {{- range . }}
  - name: {{ . }}
  {{- end }}
{{- end }}
{{- end }}

{{/*
Is history compacted by the chart's CronJob (`hub-collab prune-history`)? When the
service's history_keep_days is more than 0 and pruneHistory.enabled.
*/}}
{{- define "hub-collab.pruneHistory" -}}
{{- if and .Values.pruneHistory.enabled (gt (int (default 0 .Values.config.history_keep_days)) 0) }}true{{ end }}
{{- end }}

{{/*
The CronJob's name (and its NetworkPolicy's): at most 52 characters, as Kubernetes wants
of a CronJob (its Jobs' names add 11).
*/}}
{{- define "hub-collab.pruneName" -}}
{{- printf "%s-prune-history" (include "hub-collab.fullname" . | trunc 38 | trimSuffix "-") }}
{{- end }}

{{/*
The labels of the CronJob's pods. Not the service's selector labels
(app.kubernetes.io/name and instance together): the Service, the PodDisruptionBudget,
the service's NetworkPolicy and its anti-affinity select the service's pods by those.
*/}}
{{- define "hub-collab.pruneSelectorLabels" -}}
app.kubernetes.io/part-of: {{ include "hub-collab.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: prune-history
{{- end }}
