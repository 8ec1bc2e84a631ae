package elasticsearch

import (
	"fmt"
	"testing"
	"time"

	"github.com/grafana/loki/pkg/push"
	tracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	resourcepb "go.opentelemetry.io/proto/otlp/resource/v1"
	otlptrace "go.opentelemetry.io/proto/otlp/trace/v1"

	"github.com/tributary-io/tributary/pkg/ingester"
)

// BenchmarkEncode is the record → bulk documents step: 20 records of 5
// streams × 20 entries of ~200-byte lines.
func BenchmarkEncode(b *testing.B) {
	pattern, err := parseIndexPattern(DefaultIndex)
	if err != nil {
		b.Fatal(err)
	}
	var recs []ingester.Record
	line := fmt.Sprintf("%0200d", 7)
	t0 := time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)
	lines := 0
	for r := 0; r < 20; r++ {
		var streams []push.Stream
		for s := 0; s < 5; s++ {
			st := push.Stream{Labels: fmt.Sprintf(`{app="app-%d", cluster="c", namespace="ns", pod="pod-%d"}`, s, s)}
			for i := 0; i < 20; i++ {
				st.Entries = append(st.Entries, push.Entry{Timestamp: t0.Add(time.Duration(i) * time.Millisecond), Line: line})
				lines += len(line)
			}
			streams = append(streams, st)
		}
		recs = append(recs, logRecord(b, 0, int64(r), "c", "", streams...))
	}
	enc := newEncoder(pattern, 64<<20)
	b.SetBytes(int64(lines))
	b.ReportAllocs()
	var docs []document
	for b.Loop() {
		if docs, err = enc.encode(docs[:0], recs); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(2000*b.N)/b.Elapsed().Seconds(), "entries/s")
}

// BenchmarkJaegerEncode is the span record → Jaeger documents step: 20
// records of 50 spans with 10 attributes each (the load tool's
// realistic span), one service and 5 operations.
func BenchmarkJaegerEncode(b *testing.B) {
	t0 := time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)
	var recs []ingester.Record
	for r := 0; r < 20; r++ {
		var spans []*otlptrace.Span
		for i := 0; i < 50; i++ {
			sp := &otlptrace.Span{
				TraceId: hexID(fmt.Sprintf("%032x", r*1000+i/5+1)), SpanId: hexID(fmt.Sprintf("%016x", r*1000+i+1)),
				ParentSpanId: hexID(fmt.Sprintf("%016x", r*1000+i)), Name: fmt.Sprintf("op-%d", i%5),
				Kind:              otlptrace.Span_SPAN_KIND_SERVER,
				StartTimeUnixNano: uint64(t0.Add(time.Duration(i) * time.Millisecond).UnixNano()),
				EndTimeUnixNano:   uint64(t0.Add(time.Duration(i+3) * time.Millisecond).UnixNano()),
				Status:            &otlptrace.Status{Code: otlptrace.Status_STATUS_CODE_OK},
			}
			for a := 0; a < 10; a++ {
				sp.Attributes = append(sp.Attributes, str(fmt.Sprintf("attr.%d", a), fmt.Sprintf("value-%d-%d", a, i)))
			}
			spans = append(spans, sp)
		}
		req := &tracepb.ExportTraceServiceRequest{ResourceSpans: []*otlptrace.ResourceSpans{{
			Resource:   &resourcepb.Resource{Attributes: []*commonpb.KeyValue{str("service.name", "shop"), str("k8s.cluster.name", "c")}},
			ScopeSpans: []*otlptrace.ScopeSpans{{Scope: &commonpb.InstrumentationScope{Name: "bench"}, Spans: spans}},
		}}}
		recs = append(recs, spanRecord(b, int64(r), "c", req))
	}
	e := newJaegerEncoder(jaegerIndices(""), 64<<20)
	cache := newServiceCache(DefaultServiceCacheSize)
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := e.encode(recs, cache); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(1000*b.N)/b.Elapsed().Seconds(), "spans/s")
}
