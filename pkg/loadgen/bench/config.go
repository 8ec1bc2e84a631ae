// Package bench is `make bench` (`loadgen bench`): it starts the dev broker,
// the gateway, ingesters and real Prometheus servers on loopback (through
// internal/testenv), drives them with the load tool in process, reads the
// servers' /metrics with expfmt, and prints a table and, as its last line,
// one JSON object with every result. Every number of a run is set against
// ceilings measured in the same run (issue 11's targets).
//
// Phases:
//
//	a  ceilings of the decode path (go test -bench Ceiling, one core)
//	b  the load tool's own ceiling (discard mode), and the producer ceiling:
//	   load tool kafka-produce → devbroker (no gateway)
//	c  gateway: remote-write → gateway → devbroker, in 6 rounds (3 below 18 s
//	   windows, 1 below 6), each between two runs of the validate ceiling
//	d  bare sarama consumer vs. ingester -discard.enabled, on the topic of c
//	e  Prometheus: load tool straight into a fresh one vs. ingester → a fresh
//	   one, topic of c, in 3 rounds (1 below 9 s windows)
//	f  latency: half the sustained rate → gateway → ingester → Prometheus
//	g  logs: loki-proto and loki-json → gateway → devbroker
//	agent  the agent vs. Prometheus in agent mode (and vmagent, if built):
//	   the same loopback scrape targets, each sending to the same gateway;
//	   CPU seconds and RSS of each over the same window, at 10k and 100k
//	   series (see AgentConfig)
//	spans  OTLP traces (gRPC and HTTP) → gateway → devbroker, and the same
//	   into an OpenTelemetry Collector (if built), at each of
//	   -spans.per-request; spans per CPU-second of each, and the gateway's
//	   floor: its parse and compress alone (go test -bench CeilingSpans,
//	   one core), which bounds any gateway / Collector ratio
//	spans-sink  the ingester's Jaeger Elasticsearch sink vs. a direct _bulk
//	   client writing the same documents, each into a fresh ZincSearch,
//	   3 rounds (1 below 6 s windows): spans/s until searchable
//	otlp  OTLP/HTTP metrics and logs → gateway → devbroker, next to
//	   remote-write and Loki push into the same gateway: data points/s and
//	   line MB/s, each per gateway CPU-second
//
//	logs-agent  the agent's log tailing vs. Promtail (if built): 100
//	   container log files at 1k lines/s and a 1M-line backlog, each shipper
//	   alone into its own gateway, alternated; lines per CPU-second and RSS
//	   (see LogsAgentConfig)
//	skew  64 clusters of Zipf-like size (the largest 25%) → 3 gateways → 12
//	   partitions → 3 ingesters (discard): partition and ingester max/mean,
//	   (a) sarama's partitioner and the range assignor, (b) xxhash and the
//	   sticky assignor, (c) b with the shard table suggested from b's load
//
// -phases runs a subset, e.g. -phases=agent (make bench BENCH_PHASES=agent).
//
// A phase that fails is reported (its fields are null) and the others still
// run; Run then returns an error.
package bench

import (
	"errors"
	"flag"
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// allPhases in the order they run.
var allPhases = []string{"a", "b", "c", "d", "e", "f", "g", "agent", "spans", "spans-sink", "otlp", "logs-agent", "skew"}

// phases is the -phases list; empty: all.
func (c *Config) phases() []string {
	var out []string
	for _, p := range strings.Split(c.Phases, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	if len(out) == 0 {
		return allPhases
	}
	return out
}

// Config of a bench run.
type Config struct {
	// Seconds is each measured window; the whole run takes about
	// 10 × Seconds + 60 s.
	Seconds     int    `yaml:"seconds"`
	Concurrency int    `yaml:"concurrency"`
	Bin         string `yaml:"bin"`
	// Root is the module root, where phase a compiles its benchmark.
	Root string `yaml:"root"`
	// Phases to run, comma-separated; empty: all.
	Phases string      `yaml:"phases"`
	Agent  AgentConfig `yaml:"agent"`
	// Otelcol is the Collector binary of the spans phase
	// (scripts/build-otelcol.sh); empty: the Collector is left out.
	Otelcol string `yaml:"otelcol"`
	// LogsAgent is the logs-agent phase (issue 20).
	LogsAgent LogsAgentConfig `yaml:"logs_agent"`
	// SpansPerRequest are the spans phase's request sizes, comma-separated.
	SpansPerRequest string `yaml:"spans_per_request"`
}

// spanSizes are the spans phase's request sizes.
func (c *Config) spanSizes() ([]int, error) {
	var out []int
	for _, f := range strings.Split(c.SpansPerRequest, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 {
			return nil, fmt.Errorf("spans.per-request: %q is not a positive number of spans", f)
		}
		if !slices.Contains(out, n) {
			out = append(out, n)
		}
	}
	return out, nil
}

// RegisterFlags registers the flags.
func (c *Config) RegisterFlags(fs *flag.FlagSet) {
	fs.IntVar(&c.Seconds, "seconds", 20, "Each measured window, in seconds (20: the whole run takes under 5 minutes).")
	fs.IntVar(&c.Concurrency, "concurrency", 8, "Concurrent senders of the load tool (issue 11's 8).")
	fs.StringVar(&c.Bin, "bin", "bin", "Directory with the devbroker, gateway and ingester binaries (make build).")
	fs.StringVar(&c.Root, "root", ".", "Module root, where phase a compiles ./pkg/remotewrite's ceiling benchmarks.")
	fs.StringVar(&c.Phases, "phases", "", "Phases to run, comma-separated (a, b, c, d, e, f, g, agent, spans, spans-sink, otlp); empty: all. d and e read the topic c fills.")
	c.Agent.RegisterFlags(fs)
	fs.StringVar(&c.Otelcol, "otelcol", "", "OpenTelemetry Collector binary for the spans phase's baseline (make bench builds it with scripts/build-otelcol.sh); empty: left out.")
	c.LogsAgent.RegisterFlags(fs)
	// 100: a service exporting small batches often; 512: the SDK batch
	// span processor's largest export, what a busy service sends.
	fs.StringVar(&c.SpansPerRequest, "spans.per-request", "100,512", "spans phase: spans per OTLP export request, comma-separated; each size is measured on both receivers. 100's results have the plain keys, others end in _<size>.")
}

// Validate checks the configuration.
func (c *Config) Validate() error {
	switch {
	case c.Seconds < 1:
		return errors.New("seconds must be at least 1")
	case c.Concurrency < 1:
		return errors.New("concurrency must be positive")
	case c.Bin == "":
		return errors.New("bin is required")
	}
	for _, p := range c.phases() {
		if !slices.Contains(allPhases, p) {
			return fmt.Errorf("phases: unknown phase %q (want some of %s)", p, strings.Join(allPhases, ", "))
		}
	}
	if _, err := c.spanSizes(); err != nil {
		return err
	}
	if err := c.LogsAgent.Validate(); err != nil {
		return err
	}
	return c.Agent.Validate()
}
