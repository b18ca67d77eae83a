{{/* STAND-IN; imitates rancher/rancher chart/templates/_helpers.tpl: names, labels, the image
     (rancherImage, else image.registry/repository), the registry prefix, the Linux
     tolerations and node selector terms every workload gets. */}}
{{- define "rancher.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "rancher.fullname" -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "rancher.chartname" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "rancher.labels" -}}
app: {{ template "rancher.fullname" . }}
chart: {{ template "rancher.chartname" . }}
heritage: {{ .Release.Service }}
release: {{ .Release.Name }}
{{- end -}}

{{- define "rancher.preupgradelabels" -}}
app: {{ template "rancher.fullname" . }}-pre-upgrade
chart: {{ template "rancher.chartname" . }}
heritage: {{ .Release.Service }}
release: {{ .Release.Name }}
{{- end -}}

{{- define "system_default_registry" -}}
{{- if .Values.systemDefaultRegistry -}}
{{- printf "%s/" (.Values.systemDefaultRegistry | trimSuffix "/") -}}
{{- end -}}
{{- end -}}

{{/* list root-context registry: the registry given (with a trailing slash), else systemDefaultRegistry's */}}
{{- define "defaultOrOverrideRegistry" -}}
{{- $root := index . 0 -}}
{{- $registry := index . 1 | default "" -}}
{{- if $registry -}}
{{- printf "%s/" ($registry | trimSuffix "/") -}}
{{- else -}}
{{- include "system_default_registry" $root -}}
{{- end -}}
{{- end -}}

{{- define "rancher.image" -}}
{{- if .Values.rancherImage -}}
{{- .Values.rancherImage -}}
{{- else -}}
{{- printf "%s%s" (include "defaultOrOverrideRegistry" (list . (default "" .Values.image.registry))) (default "rancher/rancher" .Values.image.repository) -}}
{{- end -}}
{{- end -}}

{{- define "rancher.imageTag" -}}
{{- default .Chart.AppVersion (default .Values.image.tag (default "" .Values.rancherImageTag)) -}}
{{- end -}}

{{- define "rancher.imagePullPolicy" -}}
{{- default "IfNotPresent" (default .Values.image.pullPolicy (default "" .Values.rancherImagePullPolicy)) -}}
{{- end -}}

{{- define "linux-node-tolerations" -}}
- key: "cattle.io/os"
  value: "linux"
  effect: "NoSchedule"
  operator: "Equal"
{{- end -}}

{{- define "linux-node-selector-terms" -}}
- key: kubernetes.io/os
  operator: NotIn
  values:
  - windows
{{- end -}}
