package elasticsearch

import (
	"fmt"
	"testing"
	"time"

	"github.com/grafana/loki/pkg/push"

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
