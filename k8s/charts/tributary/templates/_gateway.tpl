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
{{- range $file, $_ := include "tributary.gatewayFiles" $ | fromJson }}
{{- if include "tributary.gatewayFileConfigMap" (dict "root" $ "file" $file) }}
- {name: {{ $file }}, mountPath: /etc/tributary/{{ $file }}, readOnly: true}
{{- end }}
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
{{- range $file, $_ := include "tributary.gatewayFiles" $ | fromJson }}
{{- with include "tributary.gatewayFileConfigMap" (dict "root" $ "file" $file) }}
- name: {{ $file }}
  configMap: {name: {{ . }}, items: [{key: {{ $file }}.yaml, path: {{ $file }}.yaml}]}
{{- end }}
{{- end }}
{{- end -}}

{{/*
The files the gateway reads from a ConfigMap and polls for changes
(-<file>.file), by name, as JSON: content, the values under
gateway.<file> that make up the file (rendered into the chart's ConfigMap
under key <file>.yaml unless gateway.<file>.existingConfigMap names the
user's), and title, how NOTES.txt names it. Each is mounted read-only as a
directory at /etc/tributary/<file>.
*/}}
{{- define "tributary.gatewayFiles" -}}
{{- dict
  "limits" (dict "content" (list "defaults" "clusters") "title" "Per-cluster limits")
  "shards" (dict "content" (list "clusters") "title" "Shard table (hot clusters)")
  | toJson -}}
{{- end -}}

{{/*
The ConfigMap holding gateway file .file (key <file>.yaml): the user's
gateway.<file>.existingConfigMap, else the chart's own when one of the
file's content values says something; "" for no file.
(dict "root" $ "file" "limits")
*/}}
{{- define "tributary.gatewayFileConfigMap" -}}
{{- $root := .root -}}
{{- $file := .file -}}
{{- $v := index $root.Values.gateway $file -}}
{{- if ne $v.existingConfigMap "" -}}
{{- $v.existingConfigMap -}}
{{- else -}}
{{- $set := false -}}
{{- range (index (include "tributary.gatewayFiles" $root | fromJson) $file).content -}}
{{- if index $v . -}}
{{- $set = true -}}
{{- end -}}
{{- end -}}
{{- if $set -}}
{{- printf "%s-gateway-%s" (include "tributary.fullname" $root) $file -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/*
Refuses (fails the install) a gateway.shards.clusters line that does not
fit a topic the gateway writes, where the chart knows the topics' partition
counts (Strimzi's KafkaTopics, or kafka.createTopics): k above the
partition count, or a first_partition the topic does not have. The gateway
refuses such a table at start, so a chart that rendered it would
crash-loop every gateway. Without either (an existing Kafka's topics) the
gateway's own check at start is the only one.
*/}}
{{- define "tributary.gatewayShardsFit" -}}
{{- $k := .Values.kafka -}}
{{- $topics := dict -}}
{{- range $signal := list "metrics" "logs" "spans" -}}
{{- $topic := index $k.topics $signal -}}
{{- if $k.strimzi.enabled -}}
{{- $_ := set $topics $topic (list (int (index $k.strimzi.topics.partitions $signal)) (printf "kafka.strimzi.topics.partitions.%s" $signal)) -}}
{{- else if and $k.createTopics.enabled (hasKey ($k.createTopics.partitionsPerTopic | default dict) $topic) -}}
{{- $_ := set $topics $topic (list (int (index $k.createTopics.partitionsPerTopic $topic)) (printf "kafka.createTopics.partitionsPerTopic.%s" $topic)) -}}
{{- else if $k.createTopics.enabled -}}
{{- $_ := set $topics $topic (list (int $k.createTopics.partitions) "kafka.createTopics.partitions") -}}
{{- end -}}
{{- end -}}
{{- range $cluster, $line := .Values.gateway.shards.clusters -}}
{{- $shards := 1 -}}
{{- $first := -1 -}}
{{- if kindIs "map" $line -}}
{{- if hasKey $line "shards" }}{{ $shards = int $line.shards }}{{ end -}}
{{- if hasKey $line "first_partition" }}{{ $first = int $line.first_partition }}{{ end -}}
{{- else -}}
{{- $shards = int $line -}}
{{- end -}}
{{- range $topic, $p := $topics -}}
{{- $n := index $p 0 -}}
{{- if gt $shards $n -}}
{{- fail (printf "gateway.shards.clusters.%s spreads the cluster over %d partitions, but topic %s has %d (%s): the gateway refuses a shard table that does not fit its topics, so every gateway pod would fail to start" $cluster $shards $topic $n (index $p 1)) -}}
{{- end -}}
{{- if ge $first $n -}}
{{- fail (printf "gateway.shards.clusters.%s.first_partition is %d, but topic %s has partitions 0 to %d (%s): the gateway refuses a shard table that does not fit its topics, so every gateway pod would fail to start" $cluster $first $topic (sub $n 1) (index $p 1)) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}
