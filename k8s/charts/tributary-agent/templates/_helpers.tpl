{{/* The release's full name: the release name, with the chart's name
appended unless the release name already holds it. */}}
{{- define "tributary-agent.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "tributary-agent.labels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{- define "tributary-agent.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "tributary-agent.serviceAccountName" -}}
{{- default (include "tributary-agent.fullname" .) .Values.serviceAccount.name -}}
{{- end -}}

{{- define "tributary-agent.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{/* The Secret holding the gateway token, and its key. */}}
{{- define "tributary-agent.tokenSecret" -}}
{{- if .Values.gateway.token.existingSecret -}}
{{- .Values.gateway.token.existingSecret -}}
{{- else -}}
{{- printf "%s-token" (include "tributary-agent.fullname" .) -}}
{{- end -}}
{{- end -}}

{{- define "tributary-agent.tokenKey" -}}
{{- if .Values.gateway.token.existingSecret -}}
{{- .Values.gateway.token.existingSecretKey -}}
{{- else -}}
token
{{- end -}}
{{- end -}}

{{/* Fails the render when no token is given: the gateway refuses an
agent without one, and a DaemonSet that cannot send is worse than no
install. */}}
{{- define "tributary-agent.checkToken" -}}
{{- if and (not .Values.gateway.token.existingSecret) (not .Values.gateway.token.value) -}}
{{- fail "gateway.token: set gateway.token.existingSecret (a Secret with the cluster's token) or gateway.token.value (--set-file gateway.token.value=./token)" -}}
{{- end -}}
{{- if and .Values.gateway.token.existingSecret .Values.gateway.token.value -}}
{{- fail "gateway.token: set existingSecret or value, not both" -}}
{{- end -}}
{{- end -}}

{{/* The gateway section of agent.yml, shared by both modes. */}}
{{- define "tributary-agent.gatewayConfig" -}}
gateway:
  url: {{ .Values.gateway.url | quote }}
  bearer_token_file: /etc/tributary/token/token
  timeout: {{ .Values.gateway.timeout }}
  {{- if or .Values.gateway.tls.caSecret .Values.gateway.tls.clientCertSecret }}
  tls:
    {{- if .Values.gateway.tls.caSecret }}
    ca_file: /etc/tributary/gateway-ca/ca.crt
    {{- end }}
    {{- if .Values.gateway.tls.clientCertSecret }}
    cert_file: /etc/tributary/gateway-client/tls.crt
    key_file: /etc/tributary/gateway-client/tls.key
    {{- end }}
  {{- end }}
{{- end -}}

{{/* Volumes for the token and the gateway's TLS files. */}}
{{- define "tributary-agent.gatewayVolumes" -}}
- name: tributary-agent-token
  secret:
    secretName: {{ include "tributary-agent.tokenSecret" . }}
    items:
      - key: {{ include "tributary-agent.tokenKey" . }}
        path: token
{{- if .Values.gateway.tls.caSecret }}
- name: tributary-agent-gateway-ca
  secret:
    secretName: {{ .Values.gateway.tls.caSecret }}
    items:
      - key: ca.crt
        path: ca.crt
{{- end }}
{{- if .Values.gateway.tls.clientCertSecret }}
- name: tributary-agent-gateway-client
  secret:
    secretName: {{ .Values.gateway.tls.clientCertSecret }}
{{- end }}
{{- end -}}

{{- define "tributary-agent.gatewayMounts" -}}
- name: tributary-agent-token
  mountPath: /etc/tributary/token
  readOnly: true
{{- if .Values.gateway.tls.caSecret }}
- name: tributary-agent-gateway-ca
  mountPath: /etc/tributary/gateway-ca
  readOnly: true
{{- end }}
{{- if .Values.gateway.tls.clientCertSecret }}
- name: tributary-agent-gateway-client
  mountPath: /etc/tributary/gateway-client
  readOnly: true
{{- end }}
{{- end -}}

{{/* Environment from the downward API, expanded by the agent in agent.yml. */}}
{{- define "tributary-agent.downwardEnv" -}}
- name: NODE_NAME
  valueFrom:
    fieldRef:
      fieldPath: spec.nodeName
- name: POD_NAME
  valueFrom:
    fieldRef:
      fieldPath: metadata.name
- name: POD_NAMESPACE
  valueFrom:
    fieldRef:
      fieldPath: metadata.namespace
{{- end -}}
