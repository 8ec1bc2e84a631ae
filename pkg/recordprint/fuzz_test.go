package recordprint

import (
	"io"
	"testing"

	"github.com/golang/snappy"
	"github.com/grafana/loki/pkg/push"
	"github.com/prometheus/prometheus/prompb"

	"github.com/tributary-io/tributary/pkg/record"
)

// Records come from Kafka, where anything may have been written: Print
// must describe any value without panicking.
func FuzzPrint(f *testing.F) {
	wr := &prompb.WriteRequest{Timeseries: []prompb.TimeSeries{{
		Labels:     []prompb.Label{{Name: "__name__", Value: "up"}, {Name: "cluster", Value: "a"}},
		Samples:    []prompb.Sample{{Value: 1, Timestamp: 1}},
		Histograms: []prompb.Histogram{{Count: &prompb.Histogram_CountInt{CountInt: 3}, Sum: 2, Timestamp: 1}},
	}}}
	raw, _ := wr.Marshal()
	f.Add(true, snappy.Encode(nil, raw))
	pr := &push.PushRequest{Streams: []push.Stream{{Labels: `{cluster="a"}`, Entries: []push.Entry{{Line: "x"}}}}}
	raw, _ = pr.Marshal()
	f.Add(false, snappy.Encode(nil, raw))
	f.Add(true, []byte{0x80, 0x80, 0x80, 0x80, 0x08, 0x00}) // declares 2 GiB
	f.Fuzz(func(t *testing.T, metrics bool, value []byte) {
		signal, ct := "logs", record.ContentTypePushRequest
		if metrics {
			signal, ct = "metrics", record.ContentTypeWriteRequest
		}
		m := consumerMessage("k", value, record.HeaderSchema, "1", record.HeaderSignal, signal,
			record.HeaderContentType, ct, record.HeaderEncoding, record.EncodingSnappy)
		if err := Print(io.Discard, m); err != nil {
			t.Fatal(err)
		}
	})
}
