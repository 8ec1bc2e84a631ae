package otlp

import (
	"strconv"
	"testing"
	"time"

	"github.com/tributary-io/tributary/pkg/loadgen"
)

// BenchmarkCeilingSpans is the gateway's floor cost for spans: Parse (the
// validating walk and the snappy-compressed record value) of the load
// tool's own OTLP bodies, with its defaults (10 attributes per span,
// traces of 10 spans, an exception event on one span in 20), at 100 and
// 512 spans per request. No transport, no Kafka: a receiver that checks
// and compresses what it forwards cannot do more spans per CPU-second
// than this, whatever its network path costs. make bench compiles it with
// the gateway's PGO profile and runs it with -test.cpu 1 next to the
// spans phase, whose gateway / Collector ratio it bounds.
//
// spans/cpu-s counts the process's CPU (user and system, GC included), as
// the gateway's per-core figure does.
func BenchmarkCeilingSpans(b *testing.B) {
	for _, n := range []int{100, 512} {
		b.Run(strconv.Itoa(n), func(b *testing.B) {
			bodies, err := loadgen.OTLPBodies(loadgen.SpanConfig{Bodies: 64, SpansPerRequest: n, SpansPerTrace: 10, Attributes: 10, Clusters: 3})
			if err != nil {
				b.Fatal(err)
			}
			raw := make([][]byte, len(bodies))
			for i, body := range bodies {
				body.Stamp(time.Now())
				raw[i] = body.Data
			}
			var p Parser
			lim := DefaultLimits()
			b.SetBytes(int64(len(raw[0])))
			b.ReportAllocs()
			cpu0 := processCPU(b)
			spans, i := 0, 0
			for b.Loop() {
				i++
				batches, err := p.Parse(raw[i%len(raw)], "", lim)
				if err != nil {
					b.Fatal(err)
				}
				for _, bt := range batches {
					spans += bt.Spans
				}
			}
			if spans != n*b.N {
				b.Fatalf("%d spans parsed, want %d: a body was refused in part", spans, n*b.N)
			}
			b.ReportMetric(float64(spans)/b.Elapsed().Seconds(), "spans/s")
			if cpu := processCPU(b) - cpu0; cpu > 0 {
				b.ReportMetric(float64(spans)/cpu.Seconds(), "spans/cpu-s")
			}
		})
	}
}
