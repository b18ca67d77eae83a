{{/* STAND-IN; imitates cert-manager deploy/charts/cert-manager/templates/_helpers.tpl. */}}
{{- define "cert-manager.labels" -}}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
helm.sh/chart: {{ .Chart.Name }}-{{ .Chart.Version }}
{{- end -}}

{{- define "cert-manager.crd-labels" -}}
app: cert-manager
app.kubernetes.io/name: cert-manager
app.kubernetes.io/component: crds
{{ include "cert-manager.labels" . }}
{{- end -}}

{{/* image: [registry/]repository:tag (tag defaults to appVersion; digest wins), as the real chart's "image" helper. */}}
{{- define "cert-manager.image" -}}
{{- $image := index . 0 -}}{{- $appVersion := index . 1 -}}
{{- if $image.registry }}{{ $image.registry }}/{{ end }}{{ $image.repository }}
{{- if $image.digest }}@{{ $image.digest }}{{ else }}:{{ $image.tag | default $appVersion }}{{ end }}
{{- end -}}

{{/*
The spec of Issuer and ClusterIssuer (the same in the real CRDs): the fields Rancher's chart
and users set — acme (server, email, privateKeySecretRef, solvers with http01.ingress),
ca (secretName), selfSigned, vault and venafi (kept open) — in the real CRDs' shape.
*/}}
{{- define "cert-manager.issuer-spec-schema" -}}
type: object
properties:
  acme:
    type: object
    required: [privateKeySecretRef, server]
    properties:
      server: {type: string}
      email: {type: string}
      caBundle: {type: string, format: byte}
      skipTLSVerify: {type: boolean}
      disableAccountKeyGeneration: {type: boolean}
      enableDurationFeature: {type: boolean}
      preferredChain: {type: string, maxLength: 64}
      profile: {type: string}
      privateKeySecretRef:
        type: object
        required: [name]
        properties:
          key: {type: string}
          name: {type: string}
      solvers:
        type: array
        items:
          type: object
          properties:
            selector:
              type: object
              x-kubernetes-preserve-unknown-fields: true
            dns01:
              type: object
              x-kubernetes-preserve-unknown-fields: true
            http01:
              type: object
              properties:
                ingress:
                  type: object
                  properties:
                    class: {type: string}
                    ingressClassName: {type: string}
                    name: {type: string}
                    serviceType: {type: string}
                    podTemplate:
                      type: object
                      x-kubernetes-preserve-unknown-fields: true
                    ingressTemplate:
                      type: object
                      x-kubernetes-preserve-unknown-fields: true
                gatewayHTTPRoute:
                  type: object
                  x-kubernetes-preserve-unknown-fields: true
  ca:
    type: object
    required: [secretName]
    properties:
      secretName: {type: string}
      crlDistributionPoints: {type: array, items: {type: string}}
      issuingCertificateURLs: {type: array, items: {type: string}}
      ocspServers: {type: array, items: {type: string}}
  selfSigned:
    type: object
    properties:
      crlDistributionPoints: {type: array, items: {type: string}}
  vault:
    type: object
    x-kubernetes-preserve-unknown-fields: true
  venafi:
    type: object
    x-kubernetes-preserve-unknown-fields: true
{{- end -}}

{{- define "cert-manager.status-schema" -}}
type: object
properties:
  conditions:
    type: array
    items:
      type: object
      required: [status, type]
      properties:
        lastTransitionTime: {type: string, format: date-time}
        message: {type: string}
        observedGeneration: {type: integer, format: int64}
        reason: {type: string}
        status: {type: string, enum: ["True", "False", Unknown]}
        type: {type: string}
    x-kubernetes-list-map-keys: [type]
    x-kubernetes-list-type: map
  acme:
    type: object
    x-kubernetes-preserve-unknown-fields: true
{{- end -}}
