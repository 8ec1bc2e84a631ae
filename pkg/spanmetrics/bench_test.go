package spanmetrics

import (
	"context"
	"fmt"
	"testing"

	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"

	"github.com/tributary-io/tributary/pkg/ingester"
)

// BenchmarkWrite: one batch of 100 records × 100 spans over 200 label
// sets of one cluster, aggregated and written (to a sink that drops the
// request). Reports spans per second of one core.
func BenchmarkWrite(b *testing.B) {
	drop := ingester.SinkFunc(func(context.Context, []ingester.Record) error { return nil })
	s, _, _ := newTestSink(b, drop, 0)
	var recs []ingester.Record
	for r := range 100 {
		spans := make([]*tracepb.Span, 100)
		for i := range spans {
			spans[i] = span(fmt.Sprintf("op-%d", (r*100+i)%100), tracepb.Span_SpanKind(1+i%2), tracepb.Status_STATUS_CODE_UNSET, float64(i))
		}
		recs = append(recs, spanRecord(b, 0, int64(r), "c1", "svc", spans...))
	}
	b.ResetTimer()
	for range b.N {
		if err := s.Write(context.Background(), recs); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N*100*100)/b.Elapsed().Seconds(), "spans/s")
}
