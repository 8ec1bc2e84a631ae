package bench

import (
	"bytes"
	"fmt"
	"io"
	"math"
	"slices"
	"strconv"
	"strings"
)

// row is one measured value of the table, in table order.
type row struct{ key, label, unit string }

var rows = []row{
	{"loadgen_ceiling_samples_per_sec", "load tool ceiling: loadgen -mode discard", "samples/s"},
	{"loadgen_ceiling_cpu_cores", "loadgen CPU, discard mode", "cores"},
	{"ceiling_validate_samples_per_core_sec", "ceiling: snappy + validating walk, 1 core", "samples/s"},
	{"ceiling_snappy_samples_per_core_sec", "ceiling: snappy decode alone, 1 core", "samples/s"},
	{"producer_ceiling_samples_per_sec", "producer ceiling: loadgen → devbroker", "samples/s"},
	{"producer_broker_cpu_cores", "devbroker CPU during producer run", "cores"},
	{"producer_loadgen_cpu_cores", "loadgen CPU during producer run", "cores"},
	{"producer_broker_rss_max_mb", "devbroker peak RSS (all in memory)", "MB"},
	{"body_bytes_per_sample", "remote-write body (snappy) per sample", "bytes"},
	{"gateway_rounds", "gateway windows, each between two ceiling runs", ""},
	{"gateway_samples_per_sec", "gateway: remote-write → Kafka, acked", "samples/s"},
	{"gateway_cpu_cores", "gateway CPU", "cores"},
	{"gateway_samples_per_core_sec", "gateway per core", "samples/s"},
	{"gateway_rss_max_mb", "gateway peak RSS in the run", "MB"},
	{"gateway_p99_ms", "gateway request p99", "ms"},
	{"gateway_overload_answers", "gateway overload answers (429/503)", "requests"},
	{"gateway_broker_cpu_cores", "devbroker CPU during gateway run", "cores"},
	{"gateway_loadgen_cpu_cores", "loadgen CPU during gateway run", "cores"},
	{"bare_consumer_samples_per_sec", "bare sarama consumer, topic of the gateway run", "samples/s"},
	{"ingester_discard_samples_per_sec", "ingester → discard, same topic", "samples/s"},
	{"prometheus_rounds", "Prometheus rounds (direct, then ingester)", ""},
	{"prometheus_direct_samples_per_sec", "loadgen → Prometheus directly", "samples/s"},
	{"prometheus_direct_cpu_cores", "Prometheus CPU, direct run", "cores"},
	{"ingester_prometheus_samples_per_sec", "ingester → Prometheus, same topic", "samples/s"},
	{"e2e_rate_samples_per_sec", "latency run: offered load", "samples/s"},
	{"e2e_p50_ms", "gateway receive → Prometheus ack, p50", "ms"},
	{"e2e_p99_ms", "gateway receive → Prometheus ack, p99", "ms"},
	{"logs_mb_per_sec", "logs, protobuf: line bytes → Kafka", "MB/s"},
	{"logs_gateway_cpu_cores", "gateway CPU, protobuf logs", "cores"},
	{"logs_json_mb_per_sec", "logs, JSON: line bytes → Kafka", "MB/s"},
	{"logs_json_gateway_cpu_cores", "gateway CPU, JSON logs", "cores"},
	{"spans_gateway_grpc_per_sec", "spans, OTLP gRPC → gateway → Kafka, acked", "spans/s"},
	{"spans_gateway_grpc_per_core_sec", "  per gateway CPU-second", "spans/s"},
	{"spans_otelcol_grpc_per_sec", "spans, OTLP gRPC → Collector → Kafka, acked", "spans/s"},
	{"spans_otelcol_grpc_per_core_sec", "  per Collector CPU-second", "spans/s"},
	{"spans_gateway_http_per_sec", "spans, OTLP HTTP → gateway → Kafka, acked", "spans/s"},
	{"spans_gateway_http_per_core_sec", "  per gateway CPU-second", "spans/s"},
	{"spans_otelcol_http_per_sec", "spans, OTLP HTTP → Collector → Kafka, acked", "spans/s"},
	{"spans_otelcol_http_per_core_sec", "  per Collector CPU-second", "spans/s"},
	{"spans_sink_rounds", "spans-sink rounds (direct, then ingester)", ""},
	{"spans_sink_spans", "spans-sink: spans through each side of a round", "spans"},
	{"spans_sink_direct_per_sec", "spans: direct _bulk → ZincSearch, until searchable", "spans/s"},
	{"spans_sink_direct_zinc_cpu_cores", "ZincSearch CPU, direct run", "cores"},
	{"spans_sink_ingester_per_sec", "spans: ingester ES sink → ZincSearch, until searchable", "spans/s"},
	{"spans_sink_ingester_cpu_cores", "ingester CPU, Jaeger sink run", "cores"},
	{"spans_sink_ingester_zinc_cpu_cores", "ZincSearch CPU, ingester run", "cores"},
	{"otlp_phase_rw_samples_per_sec", "otlp phase: remote-write → gateway → Kafka, acked", "samples/s"},
	{"otlp_phase_rw_samples_per_core_sec", "  per gateway CPU-second", "samples/s"},
	{"otlp_metrics_samples_per_sec", "otlp phase: OTLP/HTTP metrics → gateway → Kafka, acked", "samples/s"},
	{"otlp_metrics_samples_per_core_sec", "  per gateway CPU-second", "samples/s"},
	{"otlp_phase_loki_mb_per_sec", "otlp phase: Loki push (protobuf) line bytes → Kafka", "MB/s"},
	{"otlp_phase_loki_mb_per_core_sec", "  per gateway CPU-second", "MB/s"},
	{"otlp_logs_mb_per_sec", "otlp phase: OTLP/HTTP logs line bytes → Kafka", "MB/s"},
	{"otlp_logs_mb_per_core_sec", "  per gateway CPU-second", "MB/s"},
}

// ratio is a target stated as measured/ceiling >= want. Where a phase
// measured the ratio per round (c and e), its median wins over the ratio
// of the medians.
type ratio struct {
	key, num, den string
	want          float64
	label         string
}

var ratios = []ratio{
	{"gateway_per_core_vs_ceiling", "gateway_samples_per_core_sec", "ceiling_validate_samples_per_core_sec", 0.75, "1. gateway per core / validate ceiling (per round)"},
	{"gateway_vs_producer_ceiling", "gateway_samples_per_sec", "producer_ceiling_samples_per_sec", 0.5, "2. gateway / producer ceiling"},
	{"ingester_discard_vs_bare_consumer", "ingester_discard_samples_per_sec", "bare_consumer_samples_per_sec", 0.8, "3. ingester discard / bare consumer"},
	{"ingester_prometheus_vs_direct", "ingester_prometheus_samples_per_sec", "prometheus_direct_samples_per_sec", 0.9, "3. ingester → Prometheus / direct (per round)"},
	{"spans_gateway_vs_otelcol_per_core_grpc", "spans_gateway_grpc_per_core_sec", "spans_otelcol_grpc_per_core_sec", 5, "21. spans/CPU-s gateway / Collector, gRPC"},
	{"spans_gateway_vs_otelcol_per_core_http", "spans_gateway_http_per_core_sec", "spans_otelcol_http_per_core_sec", 5, "21. spans/CPU-s gateway / Collector, HTTP"},
	{"spans_gateway_vs_otelcol_per_core_grpc_512", "spans_gateway_grpc_per_core_sec_512", "spans_otelcol_grpc_per_core_sec_512", 5, "21. same, 512 spans per request, gRPC"},
	{"spans_gateway_vs_otelcol_per_core_http_512", "spans_gateway_http_per_core_sec_512", "spans_otelcol_http_per_core_sec_512", 5, "21. same, 512 spans per request, HTTP"},
	{"spans_sink_ingester_vs_direct", "spans_sink_ingester_per_sec", "spans_sink_direct_per_sec", 0.8, "21. ES sink / direct _bulk (per round)"},
}

// check is a target on an absolute value.
type check struct {
	key   string
	less  bool // value < want; else value >= want
	want  float64
	label string
}

var checks = []check{
	{"e2e_p99_ms", true, 2000, "4. e2e p99 (ms)"},
	{"logs_mb_per_sec", false, 100, "6. logs protobuf (MB/s)"},
	{"logs_json_mb_per_sec", false, 40, "6. logs JSON (MB/s)"},
}

// results are the measured values by key; an absent key was not measured
// (null in the JSON line).
type results map[string]float64

func (r results) get(k string) (float64, bool) {
	v, ok := r[k]
	return v, ok && !math.IsNaN(v) && !math.IsInf(v, 0)
}

// final adds the ratios to r.
func (r results) final() results {
	out := results{}
	for k, v := range r {
		out[k] = v
	}
	spansBoundKeys(out)
	for _, q := range ratios {
		if _, ok := r.get(q.key); ok {
			continue // measured per round
		}
		n, okN := r.get(q.num)
		d, okD := r.get(q.den)
		if okN && okD && n != 0 && d != 0 {
			out[q.key] = n / d
		}
	}
	return out
}

// formatValue prints large values with thousands separators and no
// decimals, small ones with two decimals, and "-" for none.
func formatValue(v float64, ok bool) string {
	if !ok {
		return "-"
	}
	if math.Abs(v) >= 100 {
		s := strconv.FormatFloat(math.Abs(math.Round(v)), 'f', 0, 64)
		var b strings.Builder
		if v < 0 {
			b.WriteByte('-')
		}
		for i, c := range s {
			if i > 0 && (len(s)-i)%3 == 0 {
				b.WriteByte(',')
			}
			b.WriteRune(c)
		}
		return b.String()
	}
	return strconv.FormatFloat(v, 'f', 2, 64)
}

// writeReport prints the table, the targets, the failures and, last, one
// JSON line with every field.
func writeReport(w io.Writer, r results, failures []string, seconds, cpus, concurrency int) error {
	r = r.final()
	var b bytes.Buffer
	line := func(label, value, rest string) { fmt.Fprintf(&b, "%-50s %16s  %s\n", label, value, rest) }
	b.WriteString("\n")
	line(fmt.Sprintf("measured (%ds windows, %d senders, %d CPUs)", seconds, concurrency, cpus), "value", "unit")
	b.WriteString(strings.Repeat("-", 78) + "\n")
	for _, rw := range rows {
		v, ok := r.get(rw.key)
		line(rw.label, formatValue(v, ok), rw.unit)
	}
	b.WriteString("\n")
	line("target", "measured", "wanted")
	b.WriteString(strings.Repeat("-", 78) + "\n")
	for _, q := range ratios {
		v, ok := r.get(q.key)
		shown, verdict := "-", ""
		if ok {
			shown, verdict = strconv.FormatFloat(v, 'f', 2, 64), "ok"
			if v < q.want {
				verdict = "MISSED"
			}
		}
		line(q.label, shown, fmt.Sprintf(">= %v  %s", q.want, verdict))
	}
	for _, c := range checks {
		v, ok := r.get(c.key)
		op, verdict := ">=", ""
		if c.less {
			op = "<"
		}
		if ok {
			verdict = "ok"
			if (c.less && v >= c.want) || (!c.less && v < c.want) {
				verdict = "MISSED"
			}
		}
		line(c.label, formatValue(v, ok), fmt.Sprintf("%s %v  %s", op, c.want, verdict))
	}
	writeAgentTable(&b, r)
	writeLogsAgentTable(&b, r)
	writeSpansTable(&b, r)
	if len(failures) > 0 {
		b.WriteString("\n")
		for _, f := range failures {
			b.WriteString("FAILED " + f + "\n")
		}
	}
	b.WriteString("\n")
	b.Write(jsonLine(r, seconds, cpus, concurrency))
	b.WriteString("\n")
	_, err := w.Write(b.Bytes())
	return err
}

// jsonLine is one JSON object: the run's settings, then every row and
// ratio in table order, rounded to 3 decimals, null where not measured.
func jsonLine(r results, seconds, cpus, concurrency int) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, `{"bench_seconds": %d, "cpus": %d, "concurrency": %d`, seconds, cpus, concurrency)
	keys := make([]string, 0, len(rows)+len(ratios))
	for _, rw := range rows {
		keys = append(keys, rw.key)
	}
	for _, q := range ratios {
		keys = append(keys, q.key)
	}
	// Then the fields of rows that depend on the run's settings (the agent
	// phase's points), sorted.
	var extra []string
	for k := range r {
		if !slices.Contains(keys, k) {
			extra = append(extra, k)
		}
	}
	slices.Sort(extra)
	keys = append(keys, extra...)
	for _, k := range keys {
		v, ok := r.get(k)
		val := "null"
		if ok {
			val = strconv.FormatFloat(math.Round(v*1000)/1000, 'f', -1, 64)
		}
		fmt.Fprintf(&b, `, %q: %s`, k, val)
	}
	b.WriteString("}")
	return b.Bytes()
}

// median of vs (the mean of the middle two for an even count); ok is false
// for none.
func median(vs []float64) (float64, bool) {
	if len(vs) == 0 {
		return 0, false
	}
	s := slices.Clone(vs)
	slices.Sort(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2], true
	}
	return (s[n/2-1] + s[n/2]) / 2, true
}

// setMedian sets r[key] to the median of vs, if there are any.
func (r results) setMedian(key string, vs []float64) {
	if m, ok := median(vs); ok {
		r[key] = m
	}
}
