{{- define "tributary.gatewayVolumeMounts" -}}
{{- $g := .Values.gateway -}}
{{- include "tributary.kafkaVolumeMounts" (dict "root" $) }}
{{- if ne $g.tls.secret "" }}
- {name: tls, mountPath: /etc/tributary/tls, readOnly: true}
{{- end }}
{{- if ne $g.tls.clientCASecret "" }}
- {name: client-ca, mountPath: /etc/tributary/client-ca, readOnly: true}
{{- end }}
{{- if ne $g.auth.tokensSecret "" }}
- {name: auth, mountPath: /etc/tributary/auth, readOnly: true}
{{- end }}
{{- end -}}

{{- define "tributary.gatewayVolumes" -}}
{{- $g := .Values.gateway -}}
{{- include "tributary.kafkaVolumes" (dict "root" $) }}
{{- if ne $g.tls.secret "" }}
- name: tls
  secret: {secretName: {{ $g.tls.secret }}, items: [{key: tls.crt, path: tls.crt}, {key: tls.key, path: tls.key}]}
{{- end }}
{{- if ne $g.tls.clientCASecret "" }}
- name: client-ca
  secret: {secretName: {{ $g.tls.clientCASecret }}, items: [{key: ca.crt, path: ca.crt}]}
{{- end }}
{{- if ne $g.auth.tokensSecret "" }}
- name: auth
  secret: {secretName: {{ $g.auth.tokensSecret }}, items: [{key: tokens.yaml, path: tokens.yaml}]}
{{- end }}
{{- end -}}
