{{/*
The sink's own flags: (dict "root" $ "sink" "prometheus" "s" <sink values>).
Only the sink's address turns it on in the binary: one sink per Deployment.
*/}}
{{- define "tributary.ingesterSinkArgs" -}}
{{- $s := .s -}}
{{- $t := .root.Values.kafka.topics -}}
{{- if eq .sink "prometheus" }}
- -prometheus.url={{ $s.url }}
- -prometheus.topic={{ $t.metrics }}
{{- with $s.defaultTenant }}
- -prometheus.default-tenant={{ . }}
{{- end }}
{{- with $s.basicAuth.username }}
- -prometheus.basic-auth.username={{ . }}
{{- end }}
{{- if $s.spanmetrics.enabled }}
- -spanmetrics.enabled
- -spanmetrics.topic={{ $t.spans }}
- -spanmetrics.dlq-topic={{ $t.dlq }}
{{- end }}
{{- else if eq .sink "loki" }}
- -loki.url={{ $s.url }}
- -loki.topic={{ $t.logs }}
{{- with $s.defaultTenant }}
- -loki.default-tenant={{ . }}
{{- end }}
{{- with $s.basicAuth.username }}
- -loki.basic-auth.username={{ . }}
{{- end }}
{{- else if eq .sink "elasticsearch" }}
- -elasticsearch.addresses={{ $s.addresses }}
- -elasticsearch.topic={{ $t.logs }}
- -elasticsearch.index={{ $s.index }}
{{- with $s.username }}
- -elasticsearch.username={{ . }}
{{- end }}
{{- with $s.caSecret }}
- -elasticsearch.ca-file=/etc/tributary/sink-ca/ca.crt
{{- end }}
{{- else if eq .sink "jaeger" }}
- -jaeger.addresses={{ $s.addresses }}
- -jaeger.topic={{ $t.spans }}
{{- with $s.indexPrefix }}
- -jaeger.index-prefix={{ . }}
{{- end }}
{{- with $s.username }}
- -jaeger.username={{ . }}
{{- end }}
{{- with $s.caSecret }}
- -jaeger.ca-file=/etc/tributary/sink-ca/ca.crt
{{- end }}
{{- end }}
- -{{ .sink }}.group={{ $s.group }}
- -{{ .sink }}.dlq-topic={{ $t.dlq }}
{{- end -}}

{{/* Sink credentials from Secrets, as the flags' environment form (TRIBUTARY_INGESTER_<FLAG>). */}}
{{- define "tributary.ingesterSinkEnv" -}}
{{- $s := .s -}}
{{- $prefix := printf "TRIBUTARY_INGESTER_%s" (upper .sink) -}}
{{- if has .sink (list "prometheus" "loki") }}
{{- with $s.basicAuth.passwordSecret.name }}
- name: {{ $prefix }}_BASIC_AUTH_PASSWORD
  valueFrom: {secretKeyRef: {name: {{ . }}, key: {{ $s.basicAuth.passwordSecret.key }}}}
{{- end }}
{{- with $s.bearerTokenSecret.name }}
- name: {{ $prefix }}_BEARER_TOKEN
  valueFrom: {secretKeyRef: {name: {{ . }}, key: {{ $s.bearerTokenSecret.key }}}}
{{- end }}
{{- else }}
{{- with $s.passwordSecret.name }}
- name: {{ $prefix }}_PASSWORD
  valueFrom: {secretKeyRef: {name: {{ . }}, key: {{ $s.passwordSecret.key }}}}
{{- end }}
{{- with $s.apiKeySecret.name }}
- name: {{ $prefix }}_API_KEY
  valueFrom: {secretKeyRef: {name: {{ . }}, key: {{ $s.apiKeySecret.key }}}}
{{- end }}
{{- end }}
{{- end -}}

{{- define "tributary.ingesterVolumeMounts" -}}
{{- include "tributary.kafkaVolumeMounts" (dict "root" .root) }}
{{- if .s.caSecret }}
- {name: sink-ca, mountPath: /etc/tributary/sink-ca, readOnly: true}
{{- end }}
{{- end -}}

{{- define "tributary.ingesterVolumes" -}}
{{- include "tributary.kafkaVolumes" (dict "root" .root) }}
{{- if .s.caSecret }}
- name: sink-ca
  secret: {secretName: {{ .s.caSecret }}, items: [{key: ca.crt, path: ca.crt}]}
{{- end }}
{{- end -}}
