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
{{- if include "tributary.gatewayLimitsConfigMap" $ }}
- {name: limits, mountPath: /etc/tributary/limits, readOnly: true}
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
{{- with include "tributary.gatewayLimitsConfigMap" $ }}
- name: limits
  configMap: {name: {{ . }}, items: [{key: limits.yaml, path: limits.yaml}]}
{{- end }}
{{- end -}}

{{/*
The ConfigMap holding the limits file (key limits.yaml): the user's
gateway.limits.existingConfigMap, else the chart's own when
gateway.limits.defaults or .clusters say something; "" for no limits file.
*/}}
{{- define "tributary.gatewayLimitsConfigMap" -}}
{{- $l := .Values.gateway.limits -}}
{{- if ne $l.existingConfigMap "" -}}
{{- $l.existingConfigMap -}}
{{- else if or $l.defaults $l.clusters -}}
{{- printf "%s-gateway-limits" (include "tributary.fullname" .) -}}
{{- end -}}
{{- end -}}
