{{/* The objects' base name: the release's, with "kmdr" added unless it has it. */}}
{{- define "kmdr.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "kmdr.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "kmdr.labels" -}}
{{ include "kmdr.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "kmdr.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "kmdr.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* The ConfigMap holding the plan: the user's or the chart's. */}}
{{- define "kmdr.planConfigMap" -}}
{{- default (printf "%s-plan" (include "kmdr.fullname" .)) .Values.plan.existingConfigMap -}}
{{- end -}}

{{- define "kmdr.planKey" -}}
{{- if .Values.plan.existingConfigMap -}}{{ .Values.plan.existingConfigMapKey }}{{- else -}}kmdr.yaml{{- end -}}
{{- end -}}

{{/* The Service's name, which is also Prometheus' job label for its targets. */}}
{{- define "kmdr.metricsService" -}}
{{- printf "%s-metrics" (include "kmdr.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}
