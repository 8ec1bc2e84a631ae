package remotewrite

import (
	"testing"
	"time"

	"github.com/golang/snappy"
	"github.com/prometheus/prometheus/prompb"
	writev2 "github.com/prometheus/prometheus/prompb/io/prometheus/write/v2"

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

		// Sharded: the same samples, each record holding one shard whose
		// series all hash to it (a re-parse keeps it whole, same shard).
		lim.Sharder = everyCluster(3)
		var sp Parser
		sharded, err := sp.Parse(body, def, lim)
		if err != nil {
			t.Fatalf("refused sharded, accepted unsharded: %v", err)
		}
		again = 0
		for i, b := range sharded {
			if b.Shard < 0 || b.Shard >= 3 {
				t.Fatalf("record %d: shard %d of 3", i, b.Shard)
			}
			again += b.Samples
			v, cluster, shard := append([]byte(nil), b.Value...), b.Cluster, b.Shard
			lim2 := lim
			lim2.MaxRecordBytes = 1 << 20
			var q Parser
			out, err := q.Parse(v, cluster, lim2)
			if err != nil {
				t.Fatalf("sharded record %d does not re-parse: %v", i, err)
			}
			for _, o := range out {
				if o.Series > 0 && (o.Shard != shard || &o.Value[0] != &v[0]) {
					t.Fatalf("sharded record %d (shard %d) re-parses as shard %d, forwarded %v", i, shard, o.Shard, &o.Value[0] == &v[0])
				}
			}
		}
		if again != total {
			t.Fatalf("samples: %d sharded, %d not", again, total)
		}
	})
}

// everyCluster spreads every cluster over k shards.
type everyCluster int

func (k everyCluster) Shards(string) int { return int(k) }

// FuzzParseV2 feeds arbitrary bodies to the remote-write 2.0 decoder. It
// must never panic, must refuse only with a 4xx reject error, and what it
// accepts must be 1.0 records that Parse forwards as is, with the same
// counts.
func FuzzParseV2(f *testing.F) {
	now := time.Now().UnixMilli()
	seed := func(req *writev2.Request) {
		raw, _ := req.Marshal()
		f.Add(snappy.Encode(nil, raw), "d")
	}
	seed(&writev2.Request{
		Symbols: []string{"", "__name__", "up", "cluster", "a", "trace_id", "x", "help"},
		Timeseries: []writev2.TimeSeries{{
			LabelsRefs: []uint32{1, 2, 3, 4},
			Samples:    []writev2.Sample{{Value: 1, Timestamp: now, StartTimestamp: now - 1}},
			Exemplars:  []writev2.Exemplar{{LabelsRefs: []uint32{5, 6}, Value: 1, Timestamp: now}},
			Metadata:   writev2.Metadata{Type: writev2.Metadata_METRIC_TYPE_GAUGE, HelpRef: 7},
		}},
	})
	seed(&writev2.Request{
		Symbols: []string{"", "__name__", "h", "job", "j"},
		Timeseries: []writev2.TimeSeries{
			{LabelsRefs: []uint32{1, 2, 3, 4}, Histograms: []writev2.Histogram{{
				Count: &writev2.Histogram_CountInt{CountInt: 2}, Schema: 1,
				PositiveSpans: []writev2.BucketSpan{{Offset: 1, Length: 1}}, PositiveDeltas: []int64{2},
				Timestamp: now, StartTimestamp: now - 1,
			}}},
			{LabelsRefs: []uint32{1, 9}, Samples: []writev2.Sample{{Value: 1, Timestamp: 1}}},
		},
	})
	f.Add([]byte{0x05, 0x10, 0x2a, 0x03, 0x00}, "")
	f.Fuzz(func(t *testing.T, body []byte, def string) {
		lim := DefaultLimits()
		lim.MaxDecodedBytes = 1 << 20
		lim.MaxRecordBytes = 512
		var p Parser
		bs, err := p.ParseV2(body, def, lim)
		if err != nil {
			if status, ok := reject.Status(err); !ok || status < 400 || status > 499 {
				t.Fatalf("error is not a 4xx refusal: %v", err)
			}
			return
		}
		for i, b := range bs {
			if len(b.Value) > lim.MaxRecordBytes {
				t.Fatalf("record %d of %d bytes over the limit", i, len(b.Value))
			}
			var q Parser
			lim2 := lim
			lim2.MaxRecordBytes = 1 << 20
			out, err := q.Parse(b.Value, b.Cluster, lim2)
			if err != nil {
				t.Fatalf("record %d does not re-parse: %v", i, err)
			}
			if q.Refused() != nil {
				t.Fatalf("record %d holds refused data: %v", i, q.Refused())
			}
			for _, o := range out {
				if o.Cluster != b.Cluster || o.Samples != b.Samples || o.Exemplars != b.Exemplars || o.Histograms != b.Histograms {
					t.Fatalf("record %d: re-parsed as %+v, was %+v", i, o, b)
				}
			}
		}
	})
}
