{{- define "switchyard.fullname" -}}
{{ .Release.Name }}-switchyard
{{- end }}

{{- define "switchyard.labels" -}}
app.kubernetes.io/name: switchyard
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: Helm
helm.sh/chart: switchyard-{{ .Chart.Version }}
{{- end }}

{{- define "switchyard.secretName" -}}
{{- if .Values.secrets.existingSecret -}}
{{ .Values.secrets.existingSecret }}
{{- else -}}
{{ include "switchyard.fullname" . }}
{{- end -}}
{{- end }}
