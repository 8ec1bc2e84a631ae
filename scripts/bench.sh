#!/usr/bin/env bash
# make bench: measures the pipeline on this machine, every number of a run
# against the ceilings measured in the same run (issue 11). Phases:
#   a  ceilings of the decode path (go test -bench Ceiling, one core)
#   b  the load tool's own ceiling (loadgen -mode discard), and the producer
#      ceiling: loadgen kafka-produce → devbroker (no gateway)
#   c  gateway: loadgen remote-write → gateway → devbroker, in 6 rounds (3
#      below BENCH_SECONDS=18, 1 below 6), each between two runs of the
#      validate ceiling (the machine drifts)
#   d  bare sarama consumer vs. ingester -discard.enabled, on the topic of c
#   e  Prometheus: loadgen straight into a fresh one vs. ingester → a fresh
#      one, topic of c, in 3 rounds (1 below BENCH_SECONDS=9)
#   f  latency: loadgen at half the sustained rate → gateway → ingester → Prometheus
#   g  logs: loadgen loki-proto and loki-json → gateway → devbroker
# Prints a table, then as its LAST line one JSON object with every result.
#
#   BENCH_SECONDS=20 BIN=./bin bash scripts/bench.sh
#
# BENCH_SECONDS (default 20) is each measured window; the whole run takes
# about 10 × BENCH_SECONDS + 60 s (4½ min at 20). BENCH_CONCURRENCY (default
# 8, as in the issue) is the number of concurrent senders. BENCH_KEEP=1 keeps
# the logs and raw results. PROMETHEUS names the Prometheus binary.
#
# It builds nothing: the binaries come from `make build` (BIN, default
# ./bin); phase a compiles its benchmark with `go test`. Every process it
# starts listens on 127.0.0.1 only and is killed by PID when it exits.
# A phase that fails is reported (its fields are null) and the script then
# exits 1, after running the others.
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
BIN=$(cd "${BIN:-$ROOT/bin}" 2>/dev/null && pwd) || { echo "bench: BIN=${BIN:-$ROOT/bin} does not exist; run make build" >&2; exit 1; }
S=${BENCH_SECONDS:-20}
CONCURRENCY=${BENCH_CONCURRENCY:-8}
PROMETHEUS=${PROMETHEUS:-prometheus}
case "$S" in '' | *[!0-9]*) echo "bench: BENCH_SECONDS must be a whole number of seconds" >&2; exit 1 ;; esac
[ "$S" -ge 1 ] || { echo "bench: BENCH_SECONDS must be at least 1" >&2; exit 1; }
WARMUP_MS=$((S * 100)) # unmeasured load before each measured window
# The devbroker keeps every record in memory, and the producer and log runs
# write hundreds of MB/s: they are measured for at most 10 s.
SHORT=$((S < 10 ? S : 10))
WARMUP_S=$(python3 -c "print($WARMUP_MS / 1000)")
SERIES=100000 # loadgen's default -series: a warmup lasts until each was sent once
for b in devbroker gateway ingester loadgen; do
  [ -x "$BIN/$b" ] || { echo "bench: $BIN/$b missing; run make build" >&2; exit 1; }
done

WORK=$(mktemp -d "${TMPDIR:-/tmp}/tributary-bench.XXXXXX")
LOGS=$WORK/logs
mkdir -p "$LOGS"
RESULTS=$WORK/results  # key=value lines
FAILURES=$WORK/failures
: >"$RESULTS"
: >"$FAILURES"
PIDS=() # every process started and not yet stopped

say() { echo "bench: $*" >&2; }

cleanup() {
  local pid
  for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null; done
  for pid in "${PIDS[@]}"; do
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
  done
  PIDS=()
  if [ -s "$FAILURES" ] || [ -n "${BENCH_KEEP:-}" ]; then
    say "logs kept in $LOGS"
  else
    rm -rf "$WORK"
  fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# start NAME CMD...: runs CMD in the background, log in $LOGS/NAME.log; the
# PID is in $LAST_PID. Must run in this shell (not in $(...)) so that the
# PID is tracked.
start() {
  local name=$1
  shift
  "$@" >"$LOGS/$name.log" 2>&1 </dev/null &
  LAST_PID=$!
  PIDS+=("$LAST_PID")
  say "started $name (pid $LAST_PID)"
}

# stop PID...: SIGTERM, up to 15 s to exit, then SIGKILL.
stop() {
  local pid p keep
  for pid in "$@"; do kill -TERM "$pid" 2>/dev/null; done
  for pid in "$@"; do
    for _ in $(seq 1 150); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
    keep=()
    for p in "${PIDS[@]}"; do [ "$p" = "$pid" ] || keep+=("$p"); done
    PIDS=("${keep[@]}")
  done
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# wait_http URL PID: until URL answers 200, while PID lives (60 s at most).
wait_http() {
  for _ in $(seq 1 300); do
    curl -fs -o /dev/null --max-time 2 "$1" && return 0
    kill -0 "$2" 2>/dev/null || { say "process $2 exited before $1 was ready"; return 1; }
    sleep 0.2
  done
  say "$1 not ready after 60 s"
  return 1
}

wait_port() {
  for _ in $(seq 1 150); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    kill -0 "$2" 2>/dev/null || { say "process $2 exited before listening on $1"; return 1; }
    sleep 0.2
  done
  say "nothing listens on port $1 after 30 s"
  return 1
}

put() { echo "$1=$2" >>"$RESULTS"; }
get() { grep "^$1=" "$RESULTS" | tail -1 | cut -d= -f2-; }
fail() {
  echo "$1: $2" >>"$FAILURES"
  say "FAILED phase $1: $2"
  return 1
}
# j FILE KEY: a field of a loadgen JSON result (dots for nested keys).
j() { python3 "$WORK/bench.py" field "$1" "$2"; }

cat >"$WORK/bench.py" <<'PY'
import json, math, sys, time, urllib.request

def field(path, key):
    v = json.load(open(path))
    for k in key.split("."):
        v = v[k]
    print(v)

def scrape(url):
    with urllib.request.urlopen(url, timeout=5) as r:
        return r.read().decode()

def samples(text, metric, labels):
    """(labels dict, value) of every sample of metric whose labels include labels."""
    out = []
    for line in text.splitlines():
        if not line.startswith(metric) or line.startswith("#"):
            continue
        name, _, rest = line.partition("{")
        if name != metric:
            continue
        lbl, _, val = rest.rpartition("} ")
        d = {}
        for part in lbl.split('",'):
            if "=" in part:
                k, v = part.split("=", 1)
                d[k.strip()] = v.strip().strip('"')
        if all(d.get(k) == v for k, v in labels.items()):
            out.append((d, float(val.split()[0])))
    return out

def watch(url, sink, total, window, skip, skip_items, timeout):
    """Follows an ingester sink through a backlog: polls its consumed-records
    and written-items counters every 50 ms until the items reach total (if
    > 0), or window seconds into the measurement, or they stall for 5 s, or
    timeout. The measurement starts `skip` seconds after the first record
    was consumed and once `skip_items` were written, mirroring loadgen's
    warmup (0, 0: at the first record, as the bare consumer measures itself),
    and ends at the last poll before the end: the final partial batch, which
    waits for the batch delay, is not counted."""
    labels = {"sink": sink}
    total = float(total)
    t0 = time.time()
    points = []  # (t, written)
    start = None  # first record consumed
    a = None  # (t, written) where the measurement starts
    while True:
        now = time.time()
        try:
            text = scrape(url)
            rec = sum(v for _, v in samples(text, "tributary_ingester_records_consumed_total", labels))
            c = sum(v for _, v in samples(text, "tributary_ingester_items_written_total", labels))
        except OSError:
            rec, c = 0.0, 0.0
        points.append((now, c))
        if start is None and (rec > 0 or c > 0):
            start = now
        if a is None and start is not None and now >= start + skip and c >= skip_items:
            a = (start, 0.0) if skip == 0 and skip_items == 0 else (now, c)
        if total > 0 and c >= total:
            break
        if a is not None and window > 0 and now - a[0] >= window:
            break
        if c > 0 and len(points) > 100 and points[-100][1] == c:
            break
        if now - t0 > timeout:
            break
        time.sleep(0.05)
    final = points[-1][1]
    caught_up = total > 0 and final >= total
    rate = 0.0
    if a is not None:
        top = final if caught_up else final + 1  # cut by the window: the last poll counts
        inside = [(t, c) for t, c in points if t > a[0] and c < top]
        if inside and inside[-1][1] > a[1]:
            rate = (inside[-1][1] - a[1]) / (inside[-1][0] - a[0])
        elif caught_up:
            # Faster than the polls: from the last poll before consumption
            # to the first that saw the end (a lower bound).
            before = [t for t, _ in points if t < start]
            t_end = next(t for t, c in points if c == final)
            t_0 = before[-1] if before else t0
            rate = final / (t_end - t_0) if t_end > t_0 else 0.0
    print(json.dumps({"rate": rate, "count": final, "caught_up": caught_up, "polls": len(points)}))

def quantiles(url, metric, sink):
    """p50 and p99 in ms of a histogram, as PromQL's histogram_quantile."""
    buckets = sorted(
        (float("inf") if d["le"] == "+Inf" else float(d["le"]), v)
        for d, v in samples(scrape(url), metric + "_bucket", {"sink": sink}))
    if not buckets or buckets[-1][1] == 0:
        print("null null")
        return
    total = buckets[-1][1]
    out = []
    for q in (0.5, 0.99):
        rank = q * total
        lo, prev = 0.0, 0.0
        for le, c in buckets:
            if c >= rank:
                if math.isinf(le):
                    v = lo
                else:
                    v = lo + (le - lo) * ((rank - prev) / (c - prev) if c > prev else 1)
                break
            lo, prev = le, c
        out.append("%.1f" % (v * 1000))
    print(" ".join(out))

def median(v):
    v = sorted(v)
    n = len(v)
    return None if n == 0 else (v[n // 2] if n % 2 else (v[n // 2 - 1] + v[n // 2]) / 2)

def rounds(path, gw, broker, *ceiling_files):
    """Summarises phase c's rounds as key=value lines: a round is a loadgen
    result and the validate ceilings measured right before and after it."""
    lines = [l.split() for l in open(path) if l.strip()]
    rs = []
    for k, l in enumerate(lines):
        if len(l) != 2:
            continue
        d = json.load(open(l[0]))
        after = lines[k + 1][0] if k + 1 < len(lines) else "null"
        ceil = [float(x) for x in (l[1], after) if x != "null"]
        g = d["pids"][gw]
        rs.append({
            "rate": d["samples_per_sec"], "cores": g["cpu_cores"], "rss": g["rss_max_mb"],
            "p99": d["p99_ms"], "broker": d["pids"][broker]["cpu_cores"], "loadgen": d["self"]["cpu_cores"],
            "body": d["body_bytes_per_sec"], "ceil": sum(ceil) / len(ceil) if ceil else None,
        })
    if not rs:
        sys.exit("no rounds")
    per_core = [r["rate"] / r["cores"] for r in rs if r["cores"] > 0]
    ratios = [r["rate"] / r["cores"] / r["ceil"] for r in rs if r["cores"] > 0 and r["ceil"]]
    ceils = []
    for f in ceiling_files:
        ceils += bench_values(f, "BenchmarkCeilingValidate")
    rate = median([r["rate"] for r in rs])
    out = {
        "gateway_samples_per_sec": rate,
        "gateway_cpu_cores": median([r["cores"] for r in rs]),
        "gateway_samples_per_core_sec": median(per_core),
        "gateway_rss_max_mb": max(r["rss"] for r in rs),
        "gateway_p99_ms": median([r["p99"] for r in rs]),
        "gateway_broker_cpu_cores": median([r["broker"] for r in rs]),
        "gateway_loadgen_cpu_cores": median([r["loadgen"] for r in rs]),
        "body_bytes_per_sample": median([r["body"] for r in rs]) / rate if rate else None,
        "ceiling_validate_samples_per_core_sec": median(ceils),
        "gateway_per_core_vs_ceiling": median(ratios),
        "gateway_rounds": len(rs),
    }
    for k, v in out.items():
        print("%s=%s" % (k, "null" if v is None else v))

def prometheus_rounds(path):
    """Summarises phase e's rounds (lines: direct rate, Prometheus cores in
    the direct run, ingester rate; null where a run failed) as key=value
    lines."""
    rs = [[None if x == "null" else float(x) for x in l.split()] for l in open(path) if l.strip()]
    both = [(d, g) for d, _, g in rs if d and g]
    out = {
        "prometheus_direct_samples_per_sec": median([d for d, _, _ in rs if d]),
        "prometheus_direct_cpu_cores": median([c for _, c, _ in rs if c is not None]),
        "ingester_prometheus_samples_per_sec": median([g for _, _, g in rs if g]),
        "ingester_prometheus_vs_direct": median([g / d for d, g in both]),  # None without a pair
        "prometheus_rounds": len(rs),
    }
    for k, v in out.items():
        print("%s=%s" % (k, "null" if v is None else v))

def bench_values(path, name):
    """Every run's rate of benchmark name in a `go test -bench` output:
    samples per CPU-second of its thread where the benchmark reports it
    (the gateway's rate per core is in CPU-seconds too), else samples per
    second of wall time."""
    vals = []
    for line in open(path):
        f = line.split()
        if f and (f[0] == name or f[0].startswith(name + "-")):
            units = {f[i]: float(f[i - 1]) for i in range(2, len(f)) if f[i] in ("samples/s", "samples/cpu-s")}
            v = units.get("samples/cpu-s", units.get("samples/s"))
            if v is not None:
                vals.append(v)
    return vals

def benchparse(path, name):
    """The median rate of the runs of benchmark name."""
    vals = bench_values(path, name)
    if not vals:
        sys.exit("no %s samples/s in %s" % (name, path))
    print(sorted(vals)[len(vals) // 2])

# The result's fields, in table order: (key, label, unit, target ratio key).
ROWS = [
    ("loadgen_ceiling_samples_per_sec", "load tool ceiling: loadgen -mode discard", "samples/s", None),
    ("loadgen_ceiling_cpu_cores", "loadgen CPU, discard mode", "cores", None),
    ("ceiling_validate_samples_per_core_sec", "ceiling: snappy + validating walk, 1 core", "samples/s", None),
    ("ceiling_snappy_samples_per_core_sec", "ceiling: snappy decode alone, 1 core", "samples/s", None),
    ("producer_ceiling_samples_per_sec", "producer ceiling: loadgen → devbroker", "samples/s", None),
    ("producer_broker_cpu_cores", "devbroker CPU during producer run", "cores", None),
    ("producer_loadgen_cpu_cores", "loadgen CPU during producer run", "cores", None),
    ("producer_broker_rss_max_mb", "devbroker peak RSS (all in memory)", "MB", None),
    ("body_bytes_per_sample", "remote-write body (snappy) per sample", "bytes", None),
    ("gateway_rounds", "gateway windows, each between two ceiling runs", "", None),
    ("gateway_samples_per_sec", "gateway: remote-write → Kafka, acked", "samples/s", None),
    ("gateway_cpu_cores", "gateway CPU", "cores", None),
    ("gateway_samples_per_core_sec", "gateway per core", "samples/s", None),
    ("gateway_rss_max_mb", "gateway peak RSS in the run", "MB", None),
    ("gateway_p99_ms", "gateway request p99", "ms", None),
    ("gateway_broker_cpu_cores", "devbroker CPU during gateway run", "cores", None),
    ("gateway_loadgen_cpu_cores", "loadgen CPU during gateway run", "cores", None),
    ("bare_consumer_samples_per_sec", "bare sarama consumer, topic of the gateway run", "samples/s", None),
    ("ingester_discard_samples_per_sec", "ingester → discard, same topic", "samples/s", None),
    ("prometheus_rounds", "Prometheus rounds (direct, then ingester)", "", None),
    ("prometheus_direct_samples_per_sec", "loadgen → Prometheus directly", "samples/s", None),
    ("prometheus_direct_cpu_cores", "Prometheus CPU, direct run", "cores", None),
    ("ingester_prometheus_samples_per_sec", "ingester → Prometheus, same topic", "samples/s", None),
    ("e2e_rate_samples_per_sec", "latency run: offered load", "samples/s", None),
    ("e2e_p50_ms", "gateway receive → Prometheus ack, p50", "ms", None),
    ("e2e_p99_ms", "gateway receive → Prometheus ack, p99", "ms", None),
    ("logs_mb_per_sec", "logs, protobuf: line bytes → Kafka", "MB/s", None),
    ("logs_gateway_cpu_cores", "gateway CPU, protobuf logs", "cores", None),
    ("logs_json_mb_per_sec", "logs, JSON: line bytes → Kafka", "MB/s", None),
    ("logs_json_gateway_cpu_cores", "gateway CPU, JSON logs", "cores", None),
]
RATIOS = [
    ("gateway_per_core_vs_ceiling", "gateway_samples_per_core_sec", "ceiling_validate_samples_per_core_sec", ">=", 0.75, "1. gateway per core / validate ceiling (per round)"),
    ("gateway_vs_producer_ceiling", "gateway_samples_per_sec", "producer_ceiling_samples_per_sec", ">=", 0.5, "2. gateway / producer ceiling"),
    ("ingester_discard_vs_bare_consumer", "ingester_discard_samples_per_sec", "bare_consumer_samples_per_sec", ">=", 0.8, "3. ingester discard / bare consumer"),
    ("ingester_prometheus_vs_direct", "ingester_prometheus_samples_per_sec", "prometheus_direct_samples_per_sec", ">=", 0.9, "3. ingester → Prometheus / direct (per round)"),
]
CHECKS = [
    ("e2e_p99_ms", "<", 2000, "4. e2e p99 (ms)"),
    ("logs_mb_per_sec", ">=", 100, "6. logs protobuf (MB/s)"),
    ("logs_json_mb_per_sec", ">=", 40, "6. logs JSON (MB/s)"),
]

def report(results, failures, seconds, cpus, concurrency):
    r = {}
    for line in open(results):
        k, _, v = line.strip().partition("=")
        try:
            r[k] = float(v)
        except ValueError:
            r[k] = None
    out = {"bench_seconds": int(seconds), "cpus": int(cpus), "concurrency": int(concurrency)}
    for k, *_ in ROWS:
        out[k] = r.get(k)
    for k, num, den, *_ in RATIOS:
        out[k] = out[num] / out[den] if out.get(num) and out.get(den) else None
        if r.get(k) is not None:  # measured per round (phases c and e)
            out[k] = r[k]
    fmt = lambda v: "-" if v is None else ("{:,.0f}".format(v) if abs(v) >= 100 else "{:.2f}".format(v))
    print()
    print("%-50s %16s  %s" % ("measured (%ds windows, %d senders, %d CPUs)" % (int(seconds), int(concurrency), int(cpus)), "value", "unit"))
    print("-" * 78)
    for k, label, unit, _ in ROWS:
        print("%-50s %16s  %s" % (label, fmt(out[k]), unit))
    print()
    print("%-50s %16s  %s" % ("target", "measured", "wanted"))
    print("-" * 78)
    for k, _, _, op, want, label in RATIOS:
        v = out[k]
        ok = "" if v is None else ("ok" if v >= want else "MISSED")
        print("%-50s %16s  %s %s  %s" % (label, "-" if v is None else "%.2f" % v, op, want, ok))
    for k, op, want, label in CHECKS:
        v = out[k]
        ok = "" if v is None else ("ok" if (v < want if op == "<" else v >= want) else "MISSED")
        print("%-50s %16s  %s %s  %s" % (label, fmt(v), op, want, ok))
    fails = [l.strip() for l in open(failures) if l.strip()]
    if fails:
        print()
        for f in fails:
            print("FAILED " + f)
    print()
    for k, v in out.items():
        if isinstance(v, float):
            out[k] = round(v, 3)
    print(json.dumps(out))

if __name__ == "__main__":
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "field":
        field(*args)
    elif cmd == "watch":
        watch(args[0], args[1], args[2], *map(float, args[3:7]))
    elif cmd == "quantiles":
        quantiles(*args)
    elif cmd == "rounds":
        rounds(*args)
    elif cmd == "prometheus_rounds":
        prometheus_rounds(*args)
    elif cmd == "benchparse":
        benchparse(*args)
    elif cmd == "report":
        report(*args)
PY

LOADGEN_COMMON=(-log.level=warn -progress=0 -duration="${S}s" -concurrency="$CONCURRENCY")

start_broker() { # NAME → BROKER_PID, BROKER (host:port)
  local port
  port=$(free_port)
  start "$1" "$BIN/devbroker" -port "$port"
  BROKER_PID=$LAST_PID
  BROKER=127.0.0.1:$port
  wait_port "$port" "$BROKER_PID"
}

start_gateway() { # NAME → GATEWAY_PID, GATEWAY (URL)
  local port
  port=$(free_port)
  start "$1" "$BIN/gateway" -http.listen-addr="127.0.0.1:$port" -kafka.brokers="$BROKER" -log.level=warn
  GATEWAY_PID=$LAST_PID
  GATEWAY=http://127.0.0.1:$port
  wait_http "$GATEWAY/-/ready" "$GATEWAY_PID"
}

start_prometheus() { # NAME → PROM_PID, PROM (URL)
  local port
  port=$(free_port)
  mkdir -p "$WORK/$1"
  # Accepts samples a day out of order, as the sinks in tests and the demo:
  # an at-least-once pipeline may replay.
  printf 'global: {scrape_interval: 1h}\nstorage: {tsdb: {out_of_order_time_window: 1d}}\n' >"$WORK/$1/prometheus.yml"
  start "$1" "$PROMETHEUS" --config.file="$WORK/$1/prometheus.yml" --storage.tsdb.path="$WORK/$1/data" \
    --web.listen-address="127.0.0.1:$port" --web.enable-remote-write-receiver --log.level=warn
  PROM_PID=$LAST_PID
  PROM=http://127.0.0.1:$port
  wait_http "$PROM/-/ready" "$PROM_PID"
}

start_ingester() { # NAME ARGS... → INGESTER_PID, INGESTER (URL)
  local name=$1 port
  shift
  port=$(free_port)
  start "$name" "$BIN/ingester" -http.listen-addr="127.0.0.1:$port" -kafka.brokers="$BROKER" -log.level=warn "$@"
  INGESTER_PID=$LAST_PID
  INGESTER=http://127.0.0.1:$port
  wait_http "$INGESTER/-/healthy" "$INGESTER_PID"
}

# loadgen NAME ARGS...: runs the load tool, result in $WORK/NAME.json.
loadgen() {
  local name=$1
  shift
  "$BIN/loadgen" "$@" >"$WORK/$name.json" 2>"$LOGS/loadgen-$name.log" && [ -s "$WORK/$name.json" ]
}

# non_2xx FILE: requests the receiver did not acknowledge.
non_2xx() { j "$1" errors; }

phase_a() {
  # One core (-cpu 1), the median of three runs: the ceiling is what one
  # core can do, and single runs are noisy on a shared machine. Phase c
  # measures the validate ceiling again between its rounds. The benchmark
  # is compiled with the gateway's PGO profile, as the gateway is: the
  # ceiling is the same code built the same way.
  say "phase a: ceiling benchmarks (go test -bench Ceiling, -cpu 1, 3 × ${WARMUP_MS}ms each)"
  (cd "$ROOT" && go test -pgo="$ROOT/cmd/gateway/default.pgo" -c -o "$WORK/remotewrite.test" ./pkg/remotewrite/) >"$LOGS/ceiling.txt" 2>&1 ||
    { fail a "go test -c ./pkg/remotewrite failed: $(tail -5 "$LOGS/ceiling.txt")"; return; }
  "$WORK/remotewrite.test" -test.run '^$' -test.bench 'Ceiling' -test.benchtime="${WARMUP_MS}ms" -test.cpu 1 -test.count 3 \
    >>"$LOGS/ceiling.txt" 2>&1 || { fail a "go test -bench Ceiling failed: $(tail -5 "$LOGS/ceiling.txt")"; return; }
  local v
  v=$(python3 "$WORK/bench.py" benchparse "$LOGS/ceiling.txt" BenchmarkCeilingValidate) || { fail a "no samples/s from BenchmarkCeilingValidate"; return; }
  put ceiling_validate_samples_per_core_sec "$v"
  v=$(python3 "$WORK/bench.py" benchparse "$LOGS/ceiling.txt" BenchmarkCeilingSnappyDecode) && put ceiling_snappy_samples_per_core_sec "$v"
}

# ceiling_once FILE MS: one more CeilingValidate run of MS milliseconds
# (phase a built the binary), appended to FILE; prints its rate.
ceiling_once() {
  [ -x "$WORK/remotewrite.test" ] || return 1
  "$WORK/remotewrite.test" -test.run '^$' -test.bench 'CeilingValidate' -test.benchtime="${2}ms" -test.cpu 1 -test.count 1 \
    >"$WORK/ceiling-once.txt" 2>&1 || return 1
  cat "$WORK/ceiling-once.txt" >>"$1"
  python3 "$WORK/bench.py" benchparse "$WORK/ceiling-once.txt" BenchmarkCeilingValidate
}

phase_b() {
  # The load tool's own ceiling: the same bodies, stamped and dropped.
  local toolsec=$(((S + 3) / 4))
  say "phase b: the load tool's ceiling (loadgen -mode discard, ${toolsec}s)"
  if loadgen discard-mode -mode=discard "${LOADGEN_COMMON[@]}" -duration="${toolsec}s"; then
    put loadgen_ceiling_samples_per_sec "$(j "$WORK/discard-mode.json" samples_per_sec)"
    put loadgen_ceiling_cpu_cores "$(j "$WORK/discard-mode.json" self.cpu_cores)"
  else
    fail b "loadgen -mode discard failed: $(tail -3 "$LOGS/loadgen-discard-mode.log")"
  fi
  say "phase b: producer ceiling (loadgen kafka-produce → devbroker, ${SHORT}s)"
  start_broker broker-b || { fail b "devbroker did not start"; return; }
  loadgen producer -mode=kafka-produce -target="$BROKER" -warmup="${WARMUP_MS}ms" -watch-pids="$BROKER_PID" "${LOADGEN_COMMON[@]}" -duration="${SHORT}s" ||
    { fail b "loadgen kafka-produce failed: $(tail -3 "$LOGS/loadgen-producer.log")"; stop "$BROKER_PID"; return; }
  put producer_ceiling_samples_per_sec "$(j "$WORK/producer.json" samples_per_sec)"
  put producer_broker_cpu_cores "$(j "$WORK/producer.json" "pids.$BROKER_PID.cpu_cores")"
  put producer_broker_rss_max_mb "$(j "$WORK/producer.json" "pids.$BROKER_PID.rss_max_mb")"
  put producer_loadgen_cpu_cores "$(j "$WORK/producer.json" self.cpu_cores)"
  [ "$(non_2xx "$WORK/producer.json")" = 0 ] || say "warning: $(non_2xx "$WORK/producer.json") produce requests failed"
  stop "$BROKER_PID"
}

# Phases c, d and e share broker M: the gateway run fills its topic, which
# the consumers of d and e read afterwards.
phase_c() {
  # The machine's speed drifts by tens of percent within seconds (shared
  # host), so target 1 compares each gateway window with ceiling runs right
  # before and after it: ROUNDS × (ceiling, gateway window), then a last
  # ceiling. Rates are medians over the rounds; the ratio is the median of
  # the per-round ratios. Many short rounds: the closer a ceiling run is to
  # its window, the less the drift between them. The total load stays about
  # 6/5 × BENCH_SECONDS: the devbroker keeps every record in memory, and
  # the kernel's zeroing of its new pages (perf: 60% of its CPU) takes more
  # of the two cores the longer it grows.
  local rounds=1 rs=$S warm=$WARMUP_MS
  if [ "$S" -ge 18 ]; then
    rounds=6 rs=$((S / 6)) warm=1000
  elif [ "$S" -ge 6 ]; then
    rounds=3 rs=$((S / 3))
  fi
  say "phase c: gateway (loadgen remote-write → gateway → devbroker, $rounds × ${rs}s, validate ceiling between)"
  start_broker broker-m || { fail c "devbroker did not start"; return; }
  start_gateway gateway-c || { fail c "gateway did not become ready"; stop "$BROKER_PID"; return; }
  M_BROKER=$BROKER M_BROKER_PID=$BROKER_PID
  local i f c rows=$WORK/gateway-rounds.txt
  : >"$rows"
  c=$(ceiling_once "$LOGS/ceiling-c.txt" "$warm") || c=null
  for i in $(seq 1 "$rounds"); do
    f=$WORK/gateway-$i.json
    loadgen "gateway-$i" -mode=remote-write -target="$GATEWAY" -warmup="${warm}ms" -watch-pids="$GATEWAY_PID,$BROKER_PID" "${LOADGEN_COMMON[@]}" -duration="${rs}s" ||
      { fail c "loadgen remote-write failed: $(tail -3 "$LOGS/loadgen-gateway-$i.log")"; stop "$GATEWAY_PID" "$BROKER_PID"; M_BROKER= M_BROKER_PID=; return; }
    [ "$(non_2xx "$f")" = 0 ] || say "warning: gateway answered $(j "$f" status_codes)"
    echo "$f $c" >>"$rows"
    c=$(ceiling_once "$LOGS/ceiling-c.txt" "$warm") || c=null
    echo "$c" >>"$rows"
  done
  local out
  out=$(python3 "$WORK/bench.py" rounds "$rows" "$GATEWAY_PID" "$BROKER_PID" "$LOGS/ceiling.txt" "$LOGS/ceiling-c.txt") ||
    { fail c "could not summarise the gateway rounds"; stop "$GATEWAY_PID"; return; }
  echo "$out" >>"$RESULTS"
  stop "$GATEWAY_PID"
}

phase_d() {
  [ -n "${M_BROKER:-}" ] || { fail d "no topic: phase c failed"; return; }
  BROKER=$M_BROKER
  say "phase d: bare consumer vs. ingester -discard.enabled on the gateway's topic"
  # The devbroker serves the first read of a record more slowly than later
  # ones (measured: ~13M vs ~19M samples/s): one unmeasured read first, so
  # that both consumers get the same broker.
  loadgen bare-warmup -mode=kafka-consume -target="$BROKER" -log.level=warn -progress=0 -duration="$((3 * S + 60))s"
  if loadgen bare -mode=kafka-consume -target="$BROKER" -log.level=warn -progress=0 -duration="$((3 * S + 60))s" &&
    [ "$(j "$WORK/bare.json" complete)" = True ]; then
    put bare_consumer_samples_per_sec "$(j "$WORK/bare.json" samples_per_sec)"
    TOPIC_SAMPLES=$(j "$WORK/bare.json" samples)
  else
    fail d "loadgen kafka-consume did not read the topic to its end: $(tail -3 "$LOGS/loadgen-bare.log")"
    TOPIC_SAMPLES=0
  fi
  # Not "-help | grep -q": grep exits at the first match, the ingester gets
  # SIGPIPE, and pipefail turns the pipeline false.
  local help
  help=$("$BIN/ingester" -help 2>&1 || true)
  if ! grep -q -- '-discard.enabled' <<<"$help"; then
    fail d "$BIN/ingester has no -discard.enabled flag (the ingester's discard sink is not built yet): ingester_discard_samples_per_sec not measured"
    return
  fi
  start_ingester ingester-discard -discard.enabled=true || { fail d "ingester -discard.enabled did not start: $(tail -3 "$LOGS/ingester-discard.log")"; return; }
  local w
  w=$(python3 "$WORK/bench.py" watch "$INGESTER/metrics" discard "$TOPIC_SAMPLES" 0 0 0 $((3 * S + 60))) ||
    { fail d "could not read the discard ingester's metrics"; stop "$INGESTER_PID"; return; }
  echo "$w" >"$WORK/discard.json"
  if [ "$(j "$WORK/discard.json" caught_up)" != True ]; then
    fail d "ingester -discard.enabled wrote $(j "$WORK/discard.json" count) of $TOPIC_SAMPLES samples"
  else
    put ingester_discard_samples_per_sec "$(j "$WORK/discard.json" rate)"
  fi
  stop "$INGESTER_PID"
}

phase_e() {
  # Both sides of target 3b are Prometheus-bound: Prometheus takes both
  # cores, and its rate swings with the shared machine (one run measured
  # 0.78, the six before it 0.99-1.33). So, as in phase c, ROUNDS × (loadgen
  # straight into a fresh Prometheus, then the ingester into another fresh
  # one), 3 rounds from BENCH_SECONDS=9 on. Rates are medians over the
  # rounds; the ratio is the median of the per-round ratios. The ingester
  # keeps its consumer group between rounds: each round reads on where the
  # last stopped, new data for its new Prometheus.
  local rounds=1 rs=$S
  if [ "$S" -ge 9 ]; then
    rounds=3 rs=$((S / 3))
  fi
  say "phase e: Prometheus direct vs. ingester → Prometheus ($rounds × ${rs}s each)"
  if ! command -v "$PROMETHEUS" >/dev/null; then
    fail e "$PROMETHEUS not found (make deps installs it from Debian)"
    return
  fi
  [ -n "${M_BROKER:-}" ] || fail e "no topic for the ingester: phase c failed (Prometheus direct still measured)"
  local i d cores ing w dlq rows=$WORK/prometheus-rounds.txt
  : >"$rows"
  for i in $(seq 1 "$rounds"); do
    d=null cores=null ing=null
    if start_prometheus "prometheus-direct-$i"; then
      if loadgen "direct-$i" -mode=remote-write -target="$PROM" -warmup="${WARMUP_MS}ms" -watch-pids="$PROM_PID" "${LOADGEN_COMMON[@]}" -duration="${rs}s"; then
        d=$(j "$WORK/direct-$i.json" samples_per_sec)
        cores=$(j "$WORK/direct-$i.json" "pids.$PROM_PID.cpu_cores")
        [ "$(non_2xx "$WORK/direct-$i.json")" = 0 ] || say "warning: Prometheus answered $(j "$WORK/direct-$i.json" status_codes)"
      else
        fail e "loadgen → Prometheus failed: $(tail -3 "$LOGS/loadgen-direct-$i.log")"
      fi
      stop "$PROM_PID"
    else
      fail e "Prometheus did not start"
    fi

    BROKER=${M_BROKER:-}
    if [ -z "$BROKER" ]; then
      : # no topic: failed above
    elif ! start_prometheus "prometheus-ingester-$i"; then
      fail e "Prometheus did not start"
    elif ! start_ingester "ingester-prometheus-$i" -prometheus.url="$PROM/api/v1/write"; then
      fail e "ingester did not start: $(tail -3 "$LOGS/ingester-prometheus-$i.log")"
      stop "$PROM_PID"
    else
      if w=$(python3 "$WORK/bench.py" watch "$INGESTER/metrics" prometheus "${TOPIC_SAMPLES:-0}" "$rs" "$WARMUP_S" "$SERIES" $((rs + 90))); then
        echo "$w" >"$WORK/ingester-prometheus-$i.json"
        if [ "$(j "$WORK/ingester-prometheus-$i.json" count)" = 0.0 ]; then
          fail e "the ingester wrote nothing to Prometheus: $(tail -3 "$LOGS/ingester-prometheus-$i.log")"
        else
          ing=$(j "$WORK/ingester-prometheus-$i.json" rate)
        fi
      else
        fail e "could not read the ingester's metrics"
      fi
      dlq=$(curl -fs "$INGESTER/metrics" | awk '/^tributary_ingester_dlq_records_total/ {s += $2} END {print s + 0}')
      [ "$dlq" = 0 ] || say "warning: the ingester dead-lettered $dlq records (see $LOGS/ingester-prometheus-$i.log)"
      stop "$INGESTER_PID" "$PROM_PID"
    fi
    echo "$d $cores $ing" >>"$rows"
  done
  local out
  out=$(python3 "$WORK/bench.py" prometheus_rounds "$rows") || { fail e "could not summarise the Prometheus rounds"; return; }
  echo "$out" >>"$RESULTS"
}

phase_f() {
  local gw ing rate
  gw=$(get gateway_samples_per_sec)
  ing=$(get ingester_prometheus_samples_per_sec)
  # Half the pipeline's sustained maximum: the slower of gateway and
  # ingester → Prometheus (the latter is Prometheus-bound on small machines).
  rate=$(python3 -c "v = [float(x) for x in '$gw $ing'.split() if x and x != 'null']; print(min(v) / 2 if v else 0)")
  if [ "$rate" = 0 ]; then fail f "no sustained rate measured (phases c and e failed)"; return; fi
  put e2e_rate_samples_per_sec "$rate"
  local rps
  rps=$(python3 -c "print(round($rate / 2000, 2))") # loadgen's default 2000 series per request
  say "phase f: latency at $rate samples/s ($rps requests/s): gateway → ingester → Prometheus, ${S}s"
  command -v "$PROMETHEUS" >/dev/null || { fail f "$PROMETHEUS not found"; return; }
  start_broker broker-f || { fail f "devbroker did not start"; return; }
  local broker_pid=$BROKER_PID
  start_prometheus prometheus-f || { fail f "Prometheus did not start"; stop "$broker_pid"; return; }
  local prom_pid=$PROM_PID
  start_ingester ingester-f -prometheus.url="$PROM/api/v1/write" || { fail f "ingester did not start"; stop "$prom_pid" "$broker_pid"; return; }
  local ing_pid=$INGESTER_PID
  wait_http "$INGESTER/-/ready" "$ing_pid" || { fail f "ingester not ready"; stop "$ing_pid" "$prom_pid" "$broker_pid"; return; }
  start_gateway gateway-f || { fail f "gateway did not become ready"; stop "$ing_pid" "$prom_pid" "$broker_pid"; return; }
  local gw_pid=$GATEWAY_PID
  if ! loadgen latency -mode=remote-write -target="$GATEWAY" -rate="$rps" "${LOADGEN_COMMON[@]}"; then
    fail f "loadgen failed: $(tail -3 "$LOGS/loadgen-latency.log")"
    stop "$gw_pid" "$ing_pid" "$prom_pid" "$broker_pid"
    return
  fi
  local sent w q
  sent=$(j "$WORK/latency.json" samples)
  w=$(python3 "$WORK/bench.py" watch "$INGESTER/metrics" prometheus "$sent" 0 0 0 60)
  echo "$w" >"$WORK/latency-ingester.json"
  [ "$(j "$WORK/latency-ingester.json" caught_up)" = True ] || say "warning: the ingester wrote $(j "$WORK/latency-ingester.json" count) of $sent samples within 60 s"
  q=$(python3 "$WORK/bench.py" quantiles "$INGESTER/metrics" tributary_ingester_end_to_end_delay_seconds prometheus)
  if [ "${q% *}" = null ]; then
    fail f "no end-to-end delay observed by the ingester"
  else
    put e2e_p50_ms "${q% *}"
    put e2e_p99_ms "${q#* }"
  fi
  stop "$gw_pid" "$ing_pid" "$prom_pid" "$broker_pid"
}

phase_g() {
  local mode key
  for mode in loki-proto loki-json; do
    key=logs_mb_per_sec
    [ "$mode" = loki-json ] && key=logs_json_mb_per_sec
    say "phase g: logs ($mode → gateway → devbroker, ${SHORT}s)"
    start_broker "broker-$mode" || { fail g "devbroker did not start"; continue; }
    start_gateway "gateway-$mode" || { fail g "gateway did not become ready"; stop "$BROKER_PID"; continue; }
    if loadgen "$mode" -mode="$mode" -target="$GATEWAY" -warmup="${WARMUP_MS}ms" -watch-pids="$GATEWAY_PID" "${LOADGEN_COMMON[@]}" -duration="${SHORT}s"; then
      put "$key" "$(python3 -c "print($(j "$WORK/$mode.json" bytes_per_sec) / 1e6)")"
      put "${key%_mb_per_sec}_gateway_cpu_cores" "$(j "$WORK/$mode.json" "pids.$GATEWAY_PID.cpu_cores")"
      [ "$(non_2xx "$WORK/$mode.json")" = 0 ] || say "warning: gateway answered $(j "$WORK/$mode.json" status_codes)"
    else
      fail g "loadgen $mode failed: $(tail -3 "$LOGS/loadgen-$mode.log")"
    fi
    stop "$GATEWAY_PID" "$BROKER_PID"
  done
}

T0=$(date +%s)
phase_a
phase_b
phase_c
phase_d
phase_e
[ -n "${M_BROKER_PID:-}" ] && stop "$M_BROKER_PID" # frees the broker's memory
phase_f
phase_g
say "done in $(($(date +%s) - T0)) s"
python3 "$WORK/bench.py" report "$RESULTS" "$FAILURES" "$S" "$(nproc)" "$CONCURRENCY"
[ ! -s "$FAILURES" ]
