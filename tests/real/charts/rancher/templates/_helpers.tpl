{{/* STAND-IN; imitates rancher/rancher chart/templates/_helpers.tpl (fullname, labels, image). */}}
{{- define "rancher.fullname" -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "rancher.labels" -}}
app: {{ template "rancher.fullname" . }}
chart: {{ .Chart.Name }}-{{ .Chart.Version | replace "+" "_" }}
heritage: {{ .Release.Service }}
release: {{ .Release.Name }}
{{- end -}}

{{/* The rancher image: systemDefaultRegistry prefix, tag defaults to appVersion. */}}
{{- define "rancher.image" -}}
{{- $registry := .Values.systemDefaultRegistry -}}
{{- if $registry }}{{ $registry }}/{{ end }}{{ .Values.rancherImage }}:{{ .Values.rancherImageTag | default .Chart.AppVersion }}
{{- end -}}
