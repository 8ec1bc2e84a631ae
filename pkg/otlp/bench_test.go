package otlp

import (
	"errors"
	"fmt"
	"syscall"
	"testing"
	"time"

	"github.com/golang/snappy"
	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/proto"
)

// benchRequest is an SDK's default batch: 512 spans with ~10 attributes
// each, in one resource (with or without k8s.cluster.name).
func benchRequest(b *testing.B, cluster string) []byte {
	var spans []*tracepb.Span
	for i := 0; i < 512; i++ {
		s := span(i)
		s.Attributes = append(s.Attributes,
			str("http.route", "/api/v1/items/{id}"), str("url.path", fmt.Sprintf("/api/v1/items/%d", i)),
			str("server.address", "items.shop.svc.cluster.local"), str("user_agent.original", "Mozilla/5.0 (X11; Linux x86_64)"),
			str("network.protocol.version", "1.1"), str("client.address", "10.1.2.3"),
			str("db.system", "postgresql"), str("db.statement", "SELECT id, name, price FROM items WHERE id = $1"))
		spans = append(spans, s)
	}
	return marshal(b, resource(cluster, "items", spans...))
}

func benchmarkParse(b *testing.B, parse func(raw []byte) (int, error)) {
	for _, tc := range []struct{ name, cluster string }{{"forward", "a"}, {"rewrite", ""}} {
		raw := benchRequest(b, tc.cluster)
		b.Run(tc.name, func(b *testing.B) {
			b.SetBytes(int64(len(raw)))
			b.ReportAllocs()
			cpu0 := processCPU(b)
			spans := 0
			for b.Loop() {
				n, err := parse(raw)
				if err != nil {
					b.Fatal(err)
				}
				spans += n
			}
			b.ReportMetric(float64(spans)/b.Elapsed().Seconds(), "spans/s")
			if cpu := processCPU(b) - cpu0; cpu > 0 {
				b.ReportMetric(float64(spans)/cpu.Seconds(), "spans/cpu-s")
			}
		})
	}
}

// processCPU is the CPU time (user + system) of the process, the loop's
// and the garbage collector's, as the gateway is counted: on a shared
// machine the wall clock counts the time the benchmark waited for a core
// too.
func processCPU(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkParse is the package's decoder: a walk over the wire format,
// the request forwarded as received or its bytes spliced.
func BenchmarkParse(b *testing.B) {
	var p Parser
	benchmarkParse(b, func(raw []byte) (int, error) {
		batches, err := p.Parse(raw, "dflt", DefaultLimits())
		n := 0
		for _, bt := range batches {
			n += bt.Spans
		}
		return n, err
	})
}

// BenchmarkUnmarshal is the other way: build the OTLP objects with the
// official protos, validate them, set the cluster attribute, marshal
// again. It checks less than Parse (no per-span UTF-8: Unmarshal refuses
// the whole request instead) and is still slower.
func BenchmarkUnmarshal(b *testing.B) {
	benchmarkParse(b, func(raw []byte) (int, error) {
		var req coltracepb.ExportTraceServiceRequest
		if err := proto.Unmarshal(raw, &req); err != nil {
			return 0, err
		}
		n := 0
		for _, rs := range req.ResourceSpans {
			hasCluster := false
			for _, kv := range rs.Resource.GetAttributes() {
				hasCluster = hasCluster || kv.Key == ClusterAttribute
			}
			if !hasCluster {
				rs.Resource.Attributes = append(rs.Resource.Attributes, &commonpb.KeyValue{Key: ClusterAttribute, Value: &commonpb.AnyValue{Value: &commonpb.AnyValue_StringValue{StringValue: "dflt"}}})
			}
			for _, ss := range rs.ScopeSpans {
				kept := ss.Spans[:0]
				for _, s := range ss.Spans {
					if validID(s.TraceId, 16) && validID(s.SpanId, 8) && s.EndTimeUnixNano >= s.StartTimeUnixNano && len(s.Attributes) <= 128 {
						kept = append(kept, s)
					}
				}
				ss.Spans = kept
				n += len(kept)
			}
		}
		out, err := proto.Marshal(&req)
		if err != nil {
			return 0, err
		}
		if len(snappy.Encode(nil, out)) == 0 {
			return 0, errors.New("empty")
		}
		return n, nil
	})
}
