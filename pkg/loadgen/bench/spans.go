package bench

import (
	"context"
	"path/filepath"
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
// exporter (issue 21's baseline; -otelcol, built by make bench). Each run
// gets a fresh devbroker and receiver; runs are b.short long, as the
// devbroker keeps every record in memory.
func (b *bench) phaseSpans(ctx context.Context, _ *scope) {
	receivers := []string{spansGateway}
	if b.cfg.Otelcol != "" {
		receivers = append(receivers, spansOtelcol)
	} else {
		b.log.Warn("phase spans: no -otelcol binary (make bench builds it): the Collector is left out")
	}
	for _, mode := range []string{loadgen.ModeOTLPGRPC, loadgen.ModeOTLPHTTP} {
		proto := "grpc"
		if mode == loadgen.ModeOTLPHTTP {
			proto = "http"
		}
		for _, rcv := range receivers {
			b.step(ctx, "spans", func(ctx context.Context, s *scope) {
				b.log.Info("phase spans: OTLP traces → "+rcv+" → devbroker", "mode", mode, "window", b.short)
				broker := b.startBroker(s)
				var p *proc
				target := ""
				if rcv == spansGateway {
					p = b.startGateway(s, broker.Addr)
					target = p.URL
					if mode == loadgen.ModeOTLPGRPC {
						target = p.GRPCAddr
					}
				} else {
					p = b.startOtelcol(s, broker.Addr)
					target = "http://" + p.Addr
					if mode == loadgen.ModeOTLPGRPC {
						target = p.GRPCAddr
					}
				}
				res, err := b.load(ctx, "spans-"+rcv+"-"+proto, "-mode="+mode, "-target="+target, warmupArg(b.warmup), pidsArg(p),
					"-duration="+b.short.String())
				s.fatalIf(err, "loadgen %s → %s", mode, rcv)
				b.warnNotAcked(res, rcv)
				if res.Spans == 0 {
					s.Fatalf("%s acknowledged no spans: %v\n%s", rcv, res.StatusCodes, lastLines(p.Output(), 5))
				}
				st := res.PIDs[pidKey(p)]
				key := "spans_" + rcv + "_" + proto
				b.res[key+"_per_sec"] = res.SpansPerSec
				b.res[key+"_cpu_cores"] = st.CPUCores
				if st.CPUCores > 0 {
					b.res[key+"_per_core_sec"] = res.SpansPerSec / st.CPUCores
				}
				b.res[key+"_rss_max_mb"] = st.RSSMaxMB
				b.res[key+"_p99_ms"] = res.P99Ms
				stop(p, broker)
			})
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
