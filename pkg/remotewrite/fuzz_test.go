package remotewrite

import (
	"testing"

	"github.com/golang/snappy"
	"github.com/prometheus/prometheus/prompb"

	"github.com/tributary-io/tributary/pkg/reject"
)

// FuzzParse feeds arbitrary bodies to the decoder. It must never panic, must
// refuse only with a 4xx reject error, and whatever it accepts must itself be
// accepted unchanged: every record value is a valid, sorted, single-cluster
// WriteRequest that forwards as is, with the same sample count.
func FuzzParse(f *testing.F) {
	seed := func(req *prompb.WriteRequest) {
		raw, _ := req.Marshal()
		f.Add(snappy.Encode(nil, raw), "d")
	}
	seed(&prompb.WriteRequest{Timeseries: []prompb.TimeSeries{withSamples(series("__name__", "up", "cluster", "a"), 2, 1)}})
	seed(&prompb.WriteRequest{Timeseries: []prompb.TimeSeries{withSamples(series("job", "x", "__name__", "up"), 1, 1)}})
	seed(&prompb.WriteRequest{
		Timeseries: []prompb.TimeSeries{
			withSamples(series("__name__", "up", "cluster", "a"), 1, 1),
			withSamples(series("__name__", "up", "cluster", "b"), 1, 1),
		},
		Metadata: []prompb.MetricMetadata{{MetricFamilyName: "up", Type: prompb.MetricMetadata_GAUGE}},
	})
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 0x0f}, "")
	f.Fuzz(func(t *testing.T, body []byte, def string) {
		lim := DefaultLimits()
		lim.MaxDecodedBytes = 1 << 20
		lim.MaxRecordBytes = 512
		var p Parser
		bs, err := p.Parse(body, def, lim)
		if err != nil {
			if status, ok := reject.Status(err); !ok || status < 400 || status > 499 {
				t.Fatalf("error is not a 4xx refusal: %v", err)
			}
			return
		}
		var total int
		var values [][]byte
		var clusters []string
		for _, b := range bs {
			total += b.Samples
			values = append(values, append([]byte(nil), b.Value...))
			clusters = append(clusters, b.Cluster)
			if len(b.Value) > lim.MaxRecordBytes && &b.Value[0] != &body[0] {
				t.Fatalf("record of %d bytes over the limit", len(b.Value))
			}
		}
		again := 0
		for i, v := range values {
			var q Parser
			lim2 := lim
			lim2.MaxRecordBytes = 1 << 20
			out, err := q.Parse(v, clusters[i], lim2) // the default only matters for metadata-only records
			if err != nil {
				t.Fatalf("record %d does not re-parse: %v", i, err)
			}
			for _, b := range out {
				if b.Cluster != clusters[i] {
					t.Fatalf("record %d: cluster %q, want %q", i, b.Cluster, clusters[i])
				}
				if b.Series > 0 && &b.Value[0] != &v[0] {
					t.Fatalf("record %d is not forwardable as is", i)
				}
				again += b.Samples
			}
		}
		if again != total {
			t.Fatalf("samples: %d after re-parse, %d before", again, total)
		}
	})
}
