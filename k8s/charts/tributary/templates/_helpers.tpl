{{/* The release's full name, at most 63 characters minus the longest suffix (-ingester-elasticsearch). */}}
{{- define "tributary.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 40 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "tributary.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: tributary
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* Selector labels of one component: (dict "root" $ "component" "gateway"). */}}
{{- define "tributary.selectorLabels" -}}
app.kubernetes.io/name: {{ .root.Chart.Name }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "tributary.image" -}}
{{- printf "%s/%s:%s" .root.Values.image.repository .component (.root.Values.image.tag | default .root.Chart.AppVersion) -}}
{{- end -}}

{{/* The Strimzi Kafka resource's name. */}}
{{- define "tributary.strimziCluster" -}}
{{- .Values.kafka.strimzi.clusterName | default (include "tributary.fullname" .) -}}
{{- end -}}

{{/* Bootstrap brokers: Strimzi's plain internal listener, or kafka.brokers. */}}
{{- define "tributary.kafkaBrokers" -}}
{{- if .Values.kafka.strimzi.enabled -}}
{{- printf "%s-kafka-bootstrap.%s.svc:9092" (include "tributary.strimziCluster" .) .Release.Namespace -}}
{{- else -}}
{{- .Values.kafka.brokers -}}
{{- end -}}
{{- end -}}

{{/* Flags every binary shares: Kafka and logging. (dict "root" $) */}}
{{- define "tributary.commonArgs" -}}
{{- $v := .root.Values -}}
- -kafka.brokers={{ include "tributary.kafkaBrokers" .root }}
{{- with $v.kafka.version }}
- -kafka.version={{ . }}
{{- end }}
- -log.level={{ $v.log.level }}
- -log.format={{ $v.log.format }}
{{- end -}}

{{/* Pod security: the images run as distroless's nonroot user (65532). */}}
{{- define "tributary.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 65532
runAsGroup: 65532
fsGroup: 65532
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{- define "tributary.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
privileged: false
capabilities:
  drop: [ALL]
{{- end -}}

{{/* Zone and node spread: (dict "root" $ "component" "gateway" "spread" .topologySpread). */}}
{{- define "tributary.topologySpread" -}}
- maxSkew: 1
  topologyKey: topology.kubernetes.io/zone
  whenUnsatisfiable: {{ .spread.zone }}
  labelSelector:
    matchLabels:
      {{- include "tributary.selectorLabels" (dict "root" .root "component" .component) | nindent 6 }}
  matchLabelKeys: [pod-template-hash]
- maxSkew: 1
  topologyKey: kubernetes.io/hostname
  whenUnsatisfiable: {{ .spread.node }}
  labelSelector:
    matchLabels:
      {{- include "tributary.selectorLabels" (dict "root" .root "component" .component) | nindent 6 }}
  matchLabelKeys: [pod-template-hash]
{{- end -}}

{{/* Kafka TLS and SASL flags; the Secrets are mounted under /etc/tributary/kafka. (dict "root" $) */}}
{{- define "tributary.kafkaArgs" -}}
{{- $k := .root.Values.kafka -}}
{{- if $k.tls.enabled }}
- -kafka.tls.enabled
{{- with $k.tls.caSecret }}
- -kafka.tls.ca-file=/etc/tributary/kafka/ca/ca.crt
{{- end }}
{{- with $k.tls.clientCertSecret }}
- -kafka.tls.cert-file=/etc/tributary/kafka/client/tls.crt
- -kafka.tls.key-file=/etc/tributary/kafka/client/tls.key
{{- end }}
{{- end }}
{{- if $k.sasl.enabled }}
- -kafka.sasl.mechanism={{ $k.sasl.mechanism }}
- -kafka.sasl.username={{ $k.sasl.username }}
- -kafka.sasl.password-file=/etc/tributary/kafka/sasl/password
{{- end }}
{{- end -}}

{{- define "tributary.kafkaVolumeMounts" -}}
{{- $k := .root.Values.kafka -}}
{{- if and $k.tls.enabled $k.tls.caSecret }}
- {name: kafka-ca, mountPath: /etc/tributary/kafka/ca, readOnly: true}
{{- end }}
{{- if and $k.tls.enabled $k.tls.clientCertSecret }}
- {name: kafka-client, mountPath: /etc/tributary/kafka/client, readOnly: true}
{{- end }}
{{- if $k.sasl.enabled }}
- {name: kafka-sasl, mountPath: /etc/tributary/kafka/sasl, readOnly: true}
{{- end }}
{{- end -}}

{{- define "tributary.kafkaVolumes" -}}
{{- $k := .root.Values.kafka -}}
{{- if and $k.tls.enabled $k.tls.caSecret }}
- name: kafka-ca
  secret: {secretName: {{ $k.tls.caSecret }}, items: [{key: ca.crt, path: ca.crt}]}
{{- end }}
{{- if and $k.tls.enabled $k.tls.clientCertSecret }}
- name: kafka-client
  secret: {secretName: {{ $k.tls.clientCertSecret }}, items: [{key: tls.crt, path: tls.crt}, {key: tls.key, path: tls.key}]}
{{- end }}
{{- if $k.sasl.enabled }}
- name: kafka-sasl
  secret: {secretName: {{ $k.sasl.passwordSecret.name }}, items: [{key: {{ $k.sasl.passwordSecret.key }}, path: password}]}
{{- end }}
{{- end -}}
