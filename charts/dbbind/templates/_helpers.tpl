{{- define "dbbind.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "dbbind.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else if contains (include "dbbind.name" .) .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name (include "dbbind.name" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "dbbind.selectorLabels" -}}
app.kubernetes.io/name: {{ include "dbbind.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "dbbind.labels" -}}
{{ include "dbbind.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "dbbind.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "dbbind.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* The MutatingWebhookConfiguration is cluster-wide: one per release, named after it. */}}
{{- define "dbbind.webhookName" -}}
{{- include "dbbind.fullname" . -}}
{{- end -}}

{{- define "dbbind.workloadsWebhookName" -}}
{{- printf "%s-workloads" (include "dbbind.fullname" .) -}}
{{- end -}}

{{- define "dbbind.tlsSecretName" -}}
{{- if eq .Values.certificates.mode "secret" -}}
{{- required "certificates.secret.name is required with certificates.mode=secret" .Values.certificates.secret.name -}}
{{- else -}}
{{- printf "%s-tls" (include "dbbind.fullname" .) -}}
{{- end -}}
{{- end -}}

{{- define "dbbind.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}

{{/* The request deadline: two seconds below the shortest webhook timeout, at least one. */}}
{{- define "dbbind.requestTimeout" -}}
{{- $timeout := int .Values.webhook.timeoutSeconds -}}
{{- if and .Values.webhook.workloads.enabled (lt (int .Values.webhook.workloads.timeoutSeconds) $timeout) -}}
{{- $timeout = int .Values.webhook.workloads.timeoutSeconds -}}
{{- end -}}
{{- max 1 (sub $timeout 2) -}}s
{{- end -}}

{{/* The PodDisruptionBudget only when a replica can be evicted while it holds. */}}
{{- define "dbbind.pdbSatisfiable" -}}
{{- $min := .Values.podDisruptionBudget.minAvailable -}}
{{- if kindIs "string" $min -}}
{{- if gt (int .Values.replicaCount) 1 }}true{{ end -}}
{{- else if gt (int .Values.replicaCount) (int $min) -}}
true
{{- end -}}
{{- end -}}
