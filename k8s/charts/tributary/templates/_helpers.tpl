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

{{/* Bootstrap brokers: Strimzi's internal listener (plain 9092, TLS 9093), or kafka.brokers. */}}
{{- define "tributary.kafkaBrokers" -}}
{{- if .Values.kafka.strimzi.enabled -}}
{{- printf "%s-kafka-bootstrap.%s.svc:%d" (include "tributary.strimziCluster" .) .Release.Namespace (ternary 9093 9092 (and .Values.kafka.strimzi.tls true)) -}}
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

{{/*
The clients' Kafka TLS as a dict: enabled, the CA Secret and the client
certificate Secret ("" for none). With Strimzi and kafka.strimzi.tls, its
TLS listener verified against the operator's cluster CA Secret.
*/}}
{{- define "tributary.kafkaTLS" -}}
{{- $v := .Values.kafka -}}
{{- if $v.strimzi.enabled -}}
{{- $ca := ternary (printf "%s-cluster-ca-cert" (include "tributary.strimziCluster" .)) "" (and $v.strimzi.tls true) -}}
{{- dict "enabled" (and $v.strimzi.tls true) "caSecret" $ca "clientCertSecret" "" "serverName" "" | toJson -}}
{{- else -}}
{{- dict "enabled" (and $v.tls.enabled true) "caSecret" (ternary $v.tls.caSecret "" (and $v.tls.enabled true)) "clientCertSecret" (ternary $v.tls.clientCertSecret "" (and $v.tls.enabled true)) "serverName" $v.tls.serverName | toJson -}}
{{- end -}}
{{- end -}}

{{/* Kafka TLS and SASL flags; the Secrets are mounted under /etc/tributary/kafka. (dict "root" $) */}}
{{- define "tributary.kafkaArgs" -}}
{{- $tls := include "tributary.kafkaTLS" .root | fromJson -}}
{{- $sasl := .root.Values.kafka.sasl -}}
{{- if $tls.enabled }}
- -kafka.tls.enabled
{{- with $tls.caSecret }}
- -kafka.tls.ca-file=/etc/tributary/kafka/ca/ca.crt
{{- end }}
{{- with $tls.clientCertSecret }}
- -kafka.tls.cert-file=/etc/tributary/kafka/client/tls.crt
- -kafka.tls.key-file=/etc/tributary/kafka/client/tls.key
{{- end }}
{{- with $tls.serverName }}
- -kafka.tls.server-name={{ . }}
{{- end }}
{{- end }}
{{- if $sasl.enabled }}
- -kafka.sasl.mechanism={{ $sasl.mechanism }}
- -kafka.sasl.username={{ $sasl.username }}
- -kafka.sasl.password-file=/etc/tributary/kafka/sasl/password
{{- end }}
{{- end -}}

{{/*
Topic flags (-kafka.topics.*) the gateway and the ingesters share: with
kafka.createTopics.enabled they create missing topics; with Strimzi (which
creates them) the start-up check expects the KafkaTopics' partitions and
replicas instead of the binaries' defaults. (dict "root" $)
*/}}
{{- define "tributary.topicArgs" -}}
{{- $k := .root.Values.kafka -}}
{{- if $k.strimzi.enabled }}
{{- $p := $k.strimzi.topics.partitions }}
- -kafka.topics.partitions-per-topic={{ $k.topics.metrics }}={{ int $p.metrics }},{{ $k.topics.logs }}={{ int $p.logs }},{{ $k.topics.spans }}={{ int $p.spans }},{{ $k.topics.dlq }}={{ int $p.dlq }}
- -kafka.topics.replication-factor={{ int $k.strimzi.topics.replicas }}
{{- else if $k.createTopics.enabled }}
{{- $c := $k.createTopics }}
- -kafka.topics.create
- -kafka.topics.partitions={{ int $c.partitions }}
- -kafka.topics.replication-factor={{ int $c.replicationFactor }}
{{- with $c.partitionsPerTopic }}
{{- $pp := . }}
- -kafka.topics.partitions-per-topic={{ range $i, $t := keys $pp | sortAlpha }}{{ if $i }},{{ end }}{{ $t }}={{ int (index $pp $t) }}{{ end }}
{{- end }}
{{- end }}
{{- end -}}

{{- define "tributary.kafkaVolumeMounts" -}}
{{- $tls := include "tributary.kafkaTLS" .root | fromJson -}}
{{- if $tls.caSecret }}
- {name: kafka-ca, mountPath: /etc/tributary/kafka/ca, readOnly: true}
{{- end }}
{{- if $tls.clientCertSecret }}
- {name: kafka-client, mountPath: /etc/tributary/kafka/client, readOnly: true}
{{- end }}
{{- if .root.Values.kafka.sasl.enabled }}
- {name: kafka-sasl, mountPath: /etc/tributary/kafka/sasl, readOnly: true}
{{- end }}
{{- end -}}

{{- define "tributary.kafkaVolumes" -}}
{{- $tls := include "tributary.kafkaTLS" .root | fromJson -}}
{{- $sasl := .root.Values.kafka.sasl -}}
{{- with $tls.caSecret }}
- name: kafka-ca
  secret: {secretName: {{ . }}, items: [{key: ca.crt, path: ca.crt}]}
{{- end }}
{{- with $tls.clientCertSecret }}
- name: kafka-client
  secret: {secretName: {{ . }}, items: [{key: tls.crt, path: tls.crt}, {key: tls.key, path: tls.key}]}
{{- end }}
{{- if $sasl.enabled }}
- name: kafka-sasl
  secret: {secretName: {{ $sasl.passwordSecret.name }}, items: [{key: {{ $sasl.passwordSecret.key }}, path: password}]}
{{- end }}
{{- end -}}
