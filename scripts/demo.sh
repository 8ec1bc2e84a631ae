#!/usr/bin/env bash
# Runs the pipeline locally: dev broker → gateway → Kafka → ingester → sink
# Prometheus and Loki. Metrics come from a second real Prometheus that scrapes
# the stack and remote-writes to the gateway as cluster "demo"; logs from a
# small loop that pushes one Loki JSON line per second. Beside the sender,
# the Tributary agent (cmd/agent) scrapes the same stack with static_configs
# (jobs agent-self, tributary-gateway, tributary-ingester, prometheus), keeps the samples in its WAL and sends them as "demo".
# Traces: loadgen tracegen (a three-service shop instrumented with the
# OpenTelemetry SDK) sends OTLP to the agent's OTLP relay, which adds
# k8s.cluster.name=demo and relays to the gateway; the ingester's jaeger
# consumer writes Jaeger's span documents into ZincSearch (jaeger-span-*),
# and Jaeger v2's query service reads them back.
# Loki, the sink Prometheus, the agent and Jaeger run with the local stack's
# own config files (deploy/local/, the ones docker-compose.yml mounts), so
# the demo runs them for real; only their addresses differ, set through the
# environment variables the files name (`scripts/demo.sh env agent|loki|jaeger`
# prints the demo's).
#   scripts/demo.sh start | stop | status | env agent|loki|jaeger
# Everything listens on 127.0.0.1. State and logs live in .demo/.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
DEMO=$ROOT/.demo
BIN=$ROOT/bin
BROKER_PORT=${DEMO_BROKER_PORT:-19092}
SINK_PORT=${DEMO_SINK_PORT:-19090}
SENDER_PORT=${DEMO_SENDER_PORT:-19091}
GATEWAY_PORT=${DEMO_GATEWAY_PORT:-18080}
INGESTER_PORT=${DEMO_INGESTER_PORT:-18081}
AGENT_PORT=${DEMO_AGENT_PORT:-19095}
LOKI_PORT=${DEMO_LOKI_PORT:-13100}
LOKI_GRPC_PORT=${DEMO_LOKI_GRPC_PORT:-13101}
LOKI_MEMBERLIST_PORT=${DEMO_LOKI_MEMBERLIST_PORT:-13102}
ZINC_PORT=${DEMO_ZINC_PORT:-14080}
GATEWAY_OTLP_PORT=${DEMO_GATEWAY_OTLP_PORT:-14317}
AGENT_OTLP_GRPC_PORT=${DEMO_AGENT_OTLP_GRPC_PORT:-14417}
AGENT_OTLP_HTTP_PORT=${DEMO_AGENT_OTLP_HTTP_PORT:-14418}
JAEGER_PORT=${DEMO_JAEGER_PORT:-26686}
JAEGER_GRPC_PORT=${DEMO_JAEGER_GRPC_PORT:-26685}
JAEGER_HEALTH_PORT=${DEMO_JAEGER_HEALTH_PORT:-23133}
ZINC_USER=admin
ZINC_PASSWORD=tributary-demo-Zinc1

running() { [ -f "$DEMO/pids/$1" ] && kill -0 "$(cat "$DEMO/pids/$1")" 2>/dev/null; }

launch() { # name, command...
  local name=$1; shift
  if running "$name"; then echo "  $name already running (pid $(cat "$DEMO/pids/$name"))"; return; fi
  setsid "$@" >"$DEMO/logs/$name.log" 2>&1 < /dev/null &
  echo $! >"$DEMO/pids/$name"
  echo "  started $name (pid $!, log .demo/logs/$name.log)"
}

wait_http() { # url, what
  for _ in $(seq 1 120); do
    if curl -fs -o /dev/null "$1"; then return 0; fi
    sleep 0.5
  done
  echo "demo: $2 did not become ready at $1; see .demo/logs/" >&2
  exit 1
}

wait_port() {
  for _ in $(seq 1 60); do
    if (exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null; then return 0; fi
    sleep 0.5
  done
  echo "demo: nothing listens on port $1; see .demo/logs/" >&2
  exit 1
}

# The environment of deploy/local/loki.yaml (run with -config.expand-env):
# loopback only, the demo's ports and data directory.
loki_env() {
  printf '%s\n' LOKI_LISTEN_ADDR=127.0.0.1 LOKI_HTTP_PORT="$LOKI_PORT" LOKI_GRPC_PORT="$LOKI_GRPC_PORT" \
    LOKI_MEMBERLIST_PORT="$LOKI_MEMBERLIST_PORT" LOKI_DATA="$DEMO/loki"
}

# The environment of deploy/local/agent.yml: cluster "demo", the demo's
# ports, its pod log directory instead of the compose stack's host logs.
agent_env() {
  printf '%s\n' TRIBUTARY_CLUSTER=demo GATEWAY_ADDR="127.0.0.1:$GATEWAY_PORT" AGENT_ADDR="127.0.0.1:$AGENT_PORT" \
    INGESTER_ADDRS="\"127.0.0.1:$INGESTER_PORT\"" PROMETHEUS_ADDR="127.0.0.1:$SINK_PORT" AGENT_DATA_DIR="$DEMO/agent-data" \
    SKIP_CONTAINER_LOGS=false PODS_DIR="$DEMO/pods" HOST_LOGS_DIR="$DEMO/host-logs" \
    OTLP_GRPC_ADDR="127.0.0.1:$AGENT_OTLP_GRPC_PORT" OTLP_HTTP_ADDR="127.0.0.1:$AGENT_OTLP_HTTP_PORT"
}

# The environment of deploy/local/jaeger.yaml: ZincSearch's Elasticsearch
# API instead of Elasticsearch, loopback listeners.
jaeger_env() {
  printf '%s\n' JAEGER_ES_URL="http://127.0.0.1:$ZINC_PORT/es" JAEGER_ES_USERNAME="$ZINC_USER" JAEGER_ES_PASSWORD="$ZINC_PASSWORD" \
    JAEGER_QUERY_ADDR="127.0.0.1:$JAEGER_PORT" JAEGER_QUERY_GRPC_ADDR="127.0.0.1:$JAEGER_GRPC_PORT" \
    JAEGER_HEALTH_ADDR="127.0.0.1:$JAEGER_HEALTH_PORT"
}

# A stand-in for a node's log shipper until the agent exists: one Loki JSON
# push per second to the gateway, as cluster "demo".
log_sender() {
  local n=0
  while true; do
    n=$((n + 1))
    now=$(date +%s%N)
    curl -fs -o /dev/null -H 'Content-Type: application/json' \
      --data "{\"streams\":[{\"stream\":{\"app\":\"demo-sender\",\"cluster\":\"demo\"},\"values\":[[\"$now\",\"demo log line $n\",{\"seq\":\"$n\"}]]}]}" \
      "http://127.0.0.1:$GATEWAY_PORT/loki/api/v1/push" || echo "push $n failed" >&2
    sleep 1
  done
}

# A container's log as the kubelet writes it (CRI format under
# <pods>/<namespace>_<pod>_<uid>/<container>/0.log), rotated by rename every
# 200 lines like the kubelet does; the agent's logs section tails it.
pod_log_writer() {
  local dir="$DEMO/pods/demo_log-writer_0b5e7d1c-demo/app" n=0
  mkdir -p "$dir"
  while true; do
    n=$((n + 1))
    printf '%s stdout F demo pod line %d\n' "$(date -u +%Y-%m-%dT%H:%M:%S.%NZ)" "$n" >>"$dir/0.log"
    if ((n % 200 == 0)); then
      mv "$dir/0.log" "$dir/0.log.$(date -u +%Y%m%d-%H%M%S)"
      ls -1t "$dir"/0.log.* 2>/dev/null | tail -n +3 | xargs -r rm -f
    fi
    sleep 0.5
  done
}

start() {
  mkdir -p "$DEMO"/{pids,logs,kafka,sink-data,sender-data,loki,agent-data,zinc,pods,host-logs}
  echo "Building or finding Loki (first time: ~7 minutes, cached in ~/.cache/tributary)..."
  LOKI_BIN=$(bash "$ROOT/scripts/build-loki.sh" | tail -n 1)
  echo "Building or finding ZincSearch (first time: several minutes, cached in ~/.cache/tributary)..."
  ZINC_BIN=$(bash "$ROOT/scripts/build-zinc.sh" | tail -n 1)
  echo "Building or finding Jaeger v2 (first time: ~3 minutes, cached in ~/.cache/tributary)..."
  JAEGER_BIN=$(bash "$ROOT/scripts/build-jaeger.sh" | tail -n 1)
  local loki_env agent_env jaeger_env
  mapfile -t loki_env < <(loki_env)
  mapfile -t agent_env < <(agent_env)
  mapfile -t jaeger_env < <(jaeger_env)
  cat >"$DEMO/sender.yml" <<YAML
# A stock Prometheus acting as a cluster's agent. Its jobs are named apart
# from the agent's (tributary-gateway, tributary-ingester, ...): two
# writers of one series would interleave their samples.
global:
  scrape_interval: 5s
  external_labels: {cluster: demo}
scrape_configs:
  - job_name: prometheus-sender
    static_configs: [{targets: ["127.0.0.1:$SENDER_PORT"]}]
  - job_name: prometheus-sink
    static_configs: [{targets: ["127.0.0.1:$SINK_PORT"]}]
  - job_name: sender-gateway
    static_configs: [{targets: ["127.0.0.1:$GATEWAY_PORT"]}]
  - job_name: sender-ingester
    static_configs: [{targets: ["127.0.0.1:$INGESTER_PORT"]}]
remote_write:
  - url: http://127.0.0.1:$GATEWAY_PORT/api/v1/write
    queue_config: {batch_send_deadline: 1s}
YAML
  echo "Starting the Tributary demo (development broker; see README):"
  launch devbroker "$BIN/devbroker" -port "$BROKER_PORT" -data-dir "$DEMO/kafka"
  wait_port "$BROKER_PORT"
  launch prometheus-sink prometheus --config.file="$ROOT/deploy/local/prometheus.yml" --storage.tsdb.path="$DEMO/sink-data" \
    --web.listen-address=127.0.0.1:$SINK_PORT --web.enable-remote-write-receiver
  wait_http "http://127.0.0.1:$SINK_PORT/-/ready" "sink Prometheus"
  launch loki env "${loki_env[@]}" "$LOKI_BIN" -config.file="$ROOT/deploy/local/loki.yaml" -config.expand-env=true
  wait_http "http://127.0.0.1:$LOKI_PORT/ready" Loki
  # Elasticsearch-compatible store for the spans (Jaeger's documents).
  launch zincsearch env ZINC_SERVER_ADDRESS=127.0.0.1 ZINC_SERVER_PORT=$ZINC_PORT ZINC_DATA_PATH="$DEMO/zinc" \
    ZINC_FIRST_ADMIN_USER=$ZINC_USER ZINC_FIRST_ADMIN_PASSWORD=$ZINC_PASSWORD ZINC_TELEMETRY=false ZINC_SENTRY=false \
    ZINC_SENTRY_DSN= ZINC_PROFILER=false ZINC_PROFILER_SERVER= ZINC_METADATA_STORAGE=bolt ZINC_ETCD_ENDPOINTS= \
    ZINC_SERVER_MODE=node ZINC_PROMETHEUS_ENABLE=false ZINC_PLUGIN_ES_VERSION=8.19.0 GIN_MODE=release "$ZINC_BIN"
  wait_http "http://127.0.0.1:$ZINC_PORT/healthz" ZincSearch
  launch jaeger env "${jaeger_env[@]}" "$JAEGER_BIN" --config="$ROOT/deploy/local/jaeger.yaml"
  wait_http "http://127.0.0.1:$JAEGER_HEALTH_PORT/status" "Jaeger query"
  launch gateway "$BIN/gateway" -http.listen-addr=127.0.0.1:$GATEWAY_PORT -kafka.brokers=127.0.0.1:$BROKER_PORT \
    -otlp.grpc.listen-addr=127.0.0.1:$GATEWAY_OTLP_PORT -kafka.topics.partitions=4 -kafka.topics.replication-factor=1
  wait_http "http://127.0.0.1:$GATEWAY_PORT/-/ready" gateway
  # The dev broker: one node, 4 partitions per topic (the topic check's expectations).
  launch ingester "$BIN/ingester" -http.listen-addr=127.0.0.1:$INGESTER_PORT -kafka.brokers=127.0.0.1:$BROKER_PORT \
    -kafka.topics.partitions=4 -kafka.topics.replication-factor=1 \
    -prometheus.url=http://127.0.0.1:$SINK_PORT/api/v1/write -loki.url=http://127.0.0.1:$LOKI_PORT/loki/api/v1/push \
    -jaeger.addresses=http://127.0.0.1:$ZINC_PORT/es -jaeger.username=$ZINC_USER -jaeger.password=$ZINC_PASSWORD
  wait_http "http://127.0.0.1:$INGESTER_PORT/-/ready" ingester
  launch prometheus-sender prometheus --config.file="$DEMO/sender.yml" --storage.tsdb.path="$DEMO/sender-data" \
    --web.listen-address=127.0.0.1:$SENDER_PORT
  wait_http "http://127.0.0.1:$SENDER_PORT/-/ready" "sender Prometheus"
  launch agent env "${agent_env[@]}" "$BIN/agent" -config.file="$ROOT/deploy/local/agent.yml" -http.listen-addr=127.0.0.1:$AGENT_PORT
  wait_http "http://127.0.0.1:$AGENT_PORT/-/ready" agent
  launch log-sender bash "$ROOT/scripts/demo.sh" log-sender
  launch pod-log-writer bash "$ROOT/scripts/demo.sh" pod-log-writer
  launch tracegen "$BIN/loadgen" tracegen -endpoint=127.0.0.1:$AGENT_OTLP_GRPC_PORT -rate=2

  local q='count by (cluster, job) (up)'
  echo "Waiting for the sender's metrics to arrive in the sink Prometheus..."
  for _ in $(seq 1 90); do
    out=$(curl -fsS --get "http://127.0.0.1:$SINK_PORT/api/v1/query" --data-urlencode "query=$q" || true)
    if grep -q '"cluster":"demo"' <<<"$out" && [ "$(grep -o '"job"' <<<"$out" | wc -l)" -ge 8 ]; then
      echo
      echo "Data is flowing. Sink Prometheus: http://127.0.0.1:$SINK_PORT"
      echo "Query:  $q"
      python3 -c 'import json,sys; [print("  cluster=%s job=%s -> %s series" % (r["metric"].get("cluster"), r["metric"].get("job"), r["value"][1])) for r in json.load(sys.stdin)["data"]["result"]]' <<<"$out" 2>/dev/null || echo "$out"
      echo "Also try: sum by (cluster, signal) (rate(tributary_gateway_items_received_total[1m]))"
      echo "The agent's jobs: agent-self, tributary-gateway, tributary-ingester, prometheus (deploy/local/agent.yml); its status page: bin/agent status -addr=127.0.0.1:$AGENT_PORT"
      break
    fi
    sleep 1
  done
  if ! grep -q '"cluster":"demo"' <<<"$out"; then
    echo "demo: no data with cluster=demo in the sink after 90 s; see .demo/logs/" >&2
    exit 1
  fi
  echo
  echo "Waiting for the demo logs to arrive in Loki..."
  for _ in $(seq 1 60); do
    start_ns=$(( ($(date +%s) - 600) * 1000000000 ))
    out=$(curl -fsS --get "http://127.0.0.1:$LOKI_PORT/loki/api/v1/query_range" --data-urlencode 'query={cluster="demo"}' \
      --data-urlencode "start=$start_ns" --data-urlencode limit=5 || true)
    if grep -q 'demo log line' <<<"$out"; then
      echo "Logs are flowing. Loki: http://127.0.0.1:$LOKI_PORT"
      echo "LogQL: {cluster=\"demo\"}   e.g."
      echo "  curl -G http://127.0.0.1:$LOKI_PORT/loki/api/v1/query_range --data-urlencode 'query={cluster=\"demo\"}' --data-urlencode limit=5"
      python3 -c 'import json,sys; [print("  %s %s" % (s["stream"], v[1])) for s in json.load(sys.stdin)["data"]["result"] for v in s["values"][:5]]' <<<"$out" 2>/dev/null || true
      break
    fi
    sleep 1
  done
  if ! grep -q 'demo log line' <<<"$out"; then
    echo "demo: no logs with cluster=demo in Loki after 60 s; see .demo/logs/" >&2
    exit 1
  fi
  echo
  echo "Waiting for the agent's container logs (.demo/pods, rotated every 200 lines) to arrive in Loki..."
  for _ in $(seq 1 60); do
    start_ns=$(( ($(date +%s) - 600) * 1000000000 ))
    out=$(curl -fsS --get "http://127.0.0.1:$LOKI_PORT/loki/api/v1/query_range" \
      --data-urlencode 'query={cluster="demo", namespace="demo", pod="log-writer", container="app"}' \
      --data-urlencode "start=$start_ns" --data-urlencode limit=3 || true)
    if grep -q 'demo pod line' <<<"$out"; then
      echo "Container logs are flowing (agent logs section -> gateway -> Kafka -> ingester -> Loki):"
      echo "  LogQL: {cluster=\"demo\", namespace=\"demo\", pod=\"log-writer\"}; the agent's files and offsets: bin/agent status -addr=127.0.0.1:$AGENT_PORT"
      break
    fi
    sleep 1
  done
  grep -q 'demo pod line' <<<"$out" || { echo "demo: no container logs of pod log-writer in Loki after 60 s; see .demo/logs/ (agent, pod-log-writer)" >&2; exit 1; }

  echo "Waiting for the demo traces to arrive in ZincSearch..."
  local index body
  index="jaeger-span-$(date -u +%F)"
  body='{"query":{"term":{"process.serviceName":"demo-frontend"}},"size":3}'
  for _ in $(seq 1 90); do
    out=$(curl -fsS -u "$ZINC_USER:$ZINC_PASSWORD" -H 'Content-Type: application/json' \
      "http://127.0.0.1:$ZINC_PORT/es/$index/_search" -d "$body" 2>/dev/null || true)
    if grep -q '"traceID"' <<<"$out"; then
      echo "Traces are flowing: tracegen -> agent OTLP (127.0.0.1:$AGENT_OTLP_GRPC_PORT) -> gateway -> Kafka -> ingester -> ZincSearch, in Jaeger's schema."
      echo "Elasticsearch query (Jaeger's span index of today):"
      echo "  curl -u $ZINC_USER:$ZINC_PASSWORD -H 'Content-Type: application/json' http://127.0.0.1:$ZINC_PORT/es/$index/_search -d '$body'"
      python3 -c 'import json,sys; [print("  trace %s  %s  %s" % (h["_source"]["traceID"], h["_source"]["process"]["serviceName"], h["_source"]["operationName"])) for h in json.load(sys.stdin)["hits"]["hits"]]' <<<"$out" 2>/dev/null || true
      echo "A whole trace: the same query with {\"term\":{\"traceID\":\"<id>\"}}. The spans carry k8s.cluster.name=demo (process.tags), set by the agent."
      local trace
      trace=$(grep -o '"traceID":"[0-9a-f]*"' <<<"$out" | head -n 1 | cut -d'"' -f4)
      echo "Reading trace $trace back through Jaeger v2's query service (deploy/local/jaeger.yaml)..."
      for _ in $(seq 1 30); do
        if curl -fsS "http://127.0.0.1:$JAEGER_PORT/api/traces/$trace" 2>/dev/null | grep -q "\"traceID\":\"$trace\""; then
          echo "Jaeger reads it: http://127.0.0.1:$JAEGER_PORT/trace/$trace (API: /api/traces/$trace)"
          echo "Stop with: make demo-stop"
          return 0
        fi
        sleep 1
      done
      echo "demo: Jaeger does not return trace $trace after 30 s; see .demo/logs/jaeger.log" >&2
      exit 1
    fi
    sleep 1
  done
  echo "demo: no traces of demo-frontend in ZincSearch ($index) after 90 s; see .demo/logs/ (tracegen, agent, ingester)" >&2
  exit 1
}

stop() {
  # Sender first, so that the gateway is idle before it drains; the broker last.
  for name in tracegen log-sender pod-log-writer agent prometheus-sender gateway ingester jaeger loki zincsearch prometheus-sink devbroker; do
    if running "$name"; then
      pid=$(cat "$DEMO/pids/$name")
      kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
      for _ in $(seq 1 60); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
      kill -KILL -- "-$pid" 2>/dev/null || true
      echo "stopped $name (pid $pid)"
    fi
    rm -f "$DEMO/pids/$name"
  done
}

status() {
  for name in devbroker prometheus-sink loki zincsearch jaeger gateway ingester prometheus-sender agent log-sender pod-log-writer tracegen; do
    if running "$name"; then echo "$name: running (pid $(cat "$DEMO/pids/$name"))"; else echo "$name: stopped"; fi
  done
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) status ;;
  log-sender) log_sender ;;
  pod-log-writer) pod_log_writer ;;
  env)
    case "${2:-}" in
      agent) agent_env ;;
      loki) loki_env ;;
      jaeger) jaeger_env ;;
      *) echo "usage: $0 env agent|loki|jaeger" >&2; exit 2 ;;
    esac ;;
  *) echo "usage: $0 start|stop|status|env agent|loki|jaeger" >&2; exit 2 ;;
esac
