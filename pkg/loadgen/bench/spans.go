package bench

import (
	"context"
	"fmt"
	"path/filepath"
	"strconv"
	"time"

	"github.com/tributary-io/tributary/internal/testenv"
	"github.com/tributary-io/tributary/pkg/loadgen"
)

// Receivers of the spans phase, by result key part.
const (
	spansGateway = "gateway"
	spansOtelcol = "otelcol"
)

// phaseSpans measures OTLP traces → Kafka (acks=all): the load tool's
// otlp-grpc and otlp-http modes into the gateway and, side by side, into
// an OpenTelemetry Collector with only the OTLP receiver and the Kafka
// exporter (issue 21's baseline; -otelcol, built by make bench), at each
// request size of -spans.per-request. Each run gets a fresh devbroker and
// receiver; runs are b.short long, as the devbroker keeps every record in
// memory. First it measures the gateway's floor on one core (spansCeiling).
func (b *bench) phaseSpans(ctx context.Context, s *scope) {
	sizes, err := b.cfg.spanSizes()
	s.fatalIf(err, "spans phase")
	b.spansCeiling(ctx, s, sizes)
	receivers := []string{spansGateway}
	if b.cfg.Otelcol != "" {
		receivers = append(receivers, spansOtelcol)
	} else {
		b.log.Warn("phase spans: no -otelcol binary (make bench builds it): the Collector is left out")
	}
	for _, n := range sizes {
		for _, mode := range []string{loadgen.ModeOTLPGRPC, loadgen.ModeOTLPHTTP} {
			for _, rcv := range receivers {
				b.step(ctx, "spans", func(ctx context.Context, s *scope) {
					b.spansRun(ctx, s, rcv, mode, n)
				})
			}
		}
	}
}

// spansKey is a spans phase result's key: the plain key for 100 spans per
// request (the load tool's default), key_<n> for other sizes.
func spansKey(key string, n int) string {
	if n == 100 {
		return key
	}
	return key + "_" + strconv.Itoa(n)
}

// spansRun is one receiver's run at one request size and transport.
func (b *bench) spansRun(ctx context.Context, s *scope, rcv, mode string, n int) {
	proto := "grpc"
	if mode == loadgen.ModeOTLPHTTP {
		proto = "http"
	}
	b.log.Info("phase spans: OTLP traces → "+rcv+" → devbroker", "mode", mode, "spans_per_request", n, "window", b.short)
	broker := b.startBroker(s)
	var p *proc
	target := ""
	if rcv == spansGateway {
		p = b.startGateway(s, broker.Addr)
		target = p.URL
	} else {
		p = b.startOtelcol(s, broker.Addr)
		target = "http://" + p.Addr
	}
	if mode == loadgen.ModeOTLPGRPC {
		target = p.GRPCAddr
	}
	res, err := b.load(ctx, fmt.Sprintf("spans-%s-%s-%d", rcv, proto, n), "-mode="+mode, "-target="+target, warmupArg(b.warmup), pidsArg(p),
		"-duration="+b.short.String(), "-spans-per-request="+strconv.Itoa(n))
	s.fatalIf(err, "loadgen %s → %s", mode, rcv)
	b.warnNotAcked(res, rcv)
	if res.Spans == 0 {
		s.Fatalf("%s acknowledged no spans: %v\n%s", rcv, res.StatusCodes, lastLines(p.Output(), 5))
	}
	st := res.PIDs[pidKey(p)]
	key := func(k string) string { return spansKey("spans_"+rcv+"_"+proto+"_"+k, n) }
	b.res[key("per_sec")] = res.SpansPerSec
	b.res[key("cpu_cores")] = st.CPUCores
	if st.CPUCores > 0 {
		b.res[key("per_core_sec")] = res.SpansPerSec / st.CPUCores
	}
	b.res[key("rss_max_mb")] = st.RSSMaxMB
	b.res[key("p99_ms")] = res.P99Ms
	stop(p, broker)
}

// spansCeiling runs ./pkg/otlp's BenchmarkCeilingSpans (the gateway's
// parse and compress of the load tool's bodies, one core, built with the
// gateway's PGO profile; 3 runs, the median): what the gateway could do
// per CPU-second if receiving and producing cost nothing.
func (b *bench) spansCeiling(ctx context.Context, s *scope, sizes []int) {
	b.log.Info("phase spans: the gateway's floor (go test -bench CeilingSpans, -cpu 1, 3 runs)", "each", b.warmup)
	c, err := buildCeiling(ctx, b.cfg.Root, b.work, "./pkg/otlp/")
	s.fatalIf(err, "build the spans ceiling benchmark")
	out, err := c.run(ctx, "CeilingSpans", b.warmup, 3)
	s.fatalIf(err, "run the spans ceiling benchmark")
	for _, n := range sizes {
		if v, ok := upperMedian(benchRates(out, "BenchmarkCeilingSpans/"+strconv.Itoa(n), "spans")); ok {
			b.res[spansKey("spans_ceiling_per_core_sec", n)] = v
		} else if n == 100 || n == 512 {
			s.Fatalf("no spans/cpu-s from BenchmarkCeilingSpans/%d:\n%s", n, lastLines(out, 10))
		}
	}
}

// startOtelcol starts the Collector (OTLP receiver on free loopback
// ports, Kafka exporter to broker) and waits until both receivers listen.
// Its Kafka exporter is set up to give the gateway's guarantee: acks=all,
// and no sending queue, so the receiver answers only after Kafka has
// acknowledged (with the queue, the Collector acknowledges before it has
// written anything). Snappy batch compression: the gateway snappy-encodes
// its record values. Its own telemetry is off.
func (b *bench) startOtelcol(s *scope, broker string) *proc {
	dir := s.TempDir()
	cfg := filepath.Join(dir, "otelcol.yml")
	grpcAddr := testenv.Addr(testenv.FreePort(s))
	httpAddr := testenv.Addr(testenv.FreePort(s))
	writeYAML(s, cfg, map[string]any{
		"receivers": map[string]any{"otlp": map[string]any{"protocols": map[string]any{
			"grpc": map[string]any{"endpoint": grpcAddr},
			"http": map[string]any{"endpoint": httpAddr},
		}}},
		"exporters": map[string]any{"kafka": map[string]any{
			"brokers":       []string{broker},
			"traces":        map[string]any{"topic": "tributary.spans", "encoding": "otlp_proto"},
			"producer":      map[string]any{"required_acks": -1, "compression": "snappy"},
			"sending_queue": map[string]any{"enabled": false},
		}},
		"service": map[string]any{
			"telemetry": map[string]any{"metrics": map[string]any{"level": "none"}, "logs": map[string]any{"level": "warn"}},
			"pipelines": map[string]any{"traces": map[string]any{"receivers": []string{"otlp"}, "exporters": []string{"kafka"}}},
		},
	})
	p := testenv.StartProcess(s, "otelcol", b.cfg.Otelcol, []string{"--config=" + cfg})
	waitPort(s, p, grpcAddr, 60*time.Second)
	waitPort(s, p, httpAddr, 60*time.Second)
	return &proc{Process: p, Addr: httpAddr, URL: "http://" + httpAddr, GRPCAddr: grpcAddr}
}
