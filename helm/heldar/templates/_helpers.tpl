{{/* Names ------------------------------------------------------------------------------------- */}}
{{- define "heldar.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The release's base name; RayCluster services append "-head-svc", so keep it short. */}}
{{- define "heldar.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 40 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 40 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 40 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "heldar.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "heldar.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "heldar.selectorLabels" -}}
app.kubernetes.io/name: {{ include "heldar.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "heldar.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{- define "heldar.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "heldar.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "heldar.secretName" -}}
{{- default (printf "%s-secrets" (include "heldar.fullname" .)) .Values.secrets.existingSecret }}
{{- end }}

{{- define "heldar.recordingsClaim" -}}
{{- default (printf "%s-recordings" (include "heldar.fullname" .)) .Values.recordings.persistence.existingClaim }}
{{- end }}

{{- define "heldar.postgresqlHost" -}}
{{- printf "%s-postgresql" (include "heldar.fullname" .) }}
{{- end }}

{{/* KubeRay names the head's Service <RayCluster name>-head-svc; 10001 is the Ray client server. */}}
{{- define "heldar.rayAddress" -}}
{{- printf "ray://%s-head-svc.%s.svc:10001" (include "heldar.fullname" .) .Release.Namespace }}
{{- end }}

{{/* Checks that stop a broken release at render time ---------------------------------------- */}}
{{- define "heldar.validate" -}}
{{- $p := .Values.recordings.persistence }}
{{- if and (ne $p.accessMode "ReadWriteMany") (not $p.allowReadWriteOnce) }}
{{- fail "recordings.persistence.accessMode must be ReadWriteMany: camera actors on every Ray worker and the API replicas share the recordings root. Set recordings.persistence.allowReadWriteOnce=true only if every pod runs on one node." }}
{{- end }}
{{- if and (not .Values.secrets.existingSecret) (not .Values.postgresql.bundled.enabled) (not .Values.postgresql.externalUrl) }}
{{- fail "heldar needs PostgreSQL: set postgresql.externalUrl, or postgresql.bundled.enabled=true, or secrets.existingSecret (with HELDAR_DATABASE_URL)" }}
{{- end }}
{{- if and .Values.metrics.serviceMonitor.enabled (not .Values.metrics.serviceMonitor.apiKeySecret.name) }}
{{- fail "metrics.serviceMonitor.apiKeySecret.name is required: /metrics needs an API key with system:read" }}
{{- end }}
{{- if and .Values.api.ingress.enabled .Values.api.ingress.tls.enabled (not .Values.api.ingress.tls.secretName) }}
{{- fail "api.ingress.tls.secretName is required when api.ingress.tls.enabled" }}
{{- end }}
{{- end }}

{{/* Settings every heldar process shares (the ConfigMap). */}}
{{- define "heldar.envFrom" -}}
- configMapRef:
    name: {{ include "heldar.fullname" . }}-settings
{{- end }}

{{/* The database URL from the Secret: every heldar process. The admin password goes to the API only. */}}
{{- define "heldar.databaseEnv" -}}
- name: HELDAR_DATABASE_URL
  valueFrom:
    secretKeyRef:
      name: {{ include "heldar.secretName" . }}
      key: HELDAR_DATABASE_URL
{{- end }}

{{- define "heldar.recordingsVolume" -}}
- name: recordings
  persistentVolumeClaim:
    claimName: {{ include "heldar.recordingsClaim" . }}
{{- end }}

{{- define "heldar.recordingsMount" -}}
- name: recordings
  mountPath: {{ .Values.recordings.mountPath }}
{{- end }}

{{/* A map rendered as a flow-style map of strings (rayStartParams and Ray resources must be strings). */}}
{{- define "heldar.stringMap" -}}
{{- $out := dict }}
{{- range $k, $v := . }}
{{- $_ := set $out $k (toString $v) }}
{{- end }}
{{- toJson $out }}
{{- end }}
