package remotewrite

import (
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/golang/snappy"
	"github.com/prometheus/prometheus/prompb"
	writev2 "github.com/prometheus/prometheus/prompb/io/prometheus/write/v2"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/tributary-io/tributary/pkg/reject"
)

func series(labels ...string) prompb.TimeSeries {
	ts := prompb.TimeSeries{}
	for i := 0; i < len(labels); i += 2 {
		ts.Labels = append(ts.Labels, prompb.Label{Name: labels[i], Value: labels[i+1]})
	}
	return ts
}

// base is an hour ago: withSamples' timestamps are offsets from it, inside
// the default time window.
var base = time.Now().Add(-time.Hour).UnixMilli()

func withSamples(ts prompb.TimeSeries, n int, t0 int64) prompb.TimeSeries {
	for i := 0; i < n; i++ {
		ts.Samples = append(ts.Samples, prompb.Sample{Timestamp: base + t0 + int64(i), Value: float64(i)})
	}
	return ts
}

func encode(t testing.TB, req *prompb.WriteRequest) []byte {
	raw, err := req.Marshal()
	require.NoError(t, err)
	return snappy.Encode(nil, raw)
}

func decode(t testing.TB, v []byte) *prompb.WriteRequest {
	raw, err := snappy.Decode(nil, v)
	require.NoError(t, err)
	var req prompb.WriteRequest
	require.NoError(t, req.Unmarshal(raw))
	return &req
}

func labelsOf(ts prompb.TimeSeries) string {
	var parts []string
	for _, l := range ts.Labels {
		parts = append(parts, l.Name+"="+l.Value)
	}
	return strings.Join(parts, ",")
}

func TestForwardsUnchangedBody(t *testing.T) {
	req := &prompb.WriteRequest{Timeseries: []prompb.TimeSeries{
		withSamples(series("__name__", "up", "cluster", "a", "job", "x"), 3, 1000),
		withSamples(series("__name__", "up", "cluster", "a", "job", "y"), 2, 1000),
	}}
	body := encode(t, req)
	var p Parser
	bs, err := p.Parse(body, "", DefaultLimits())
	require.NoError(t, err)
	require.Len(t, bs, 1)
	require.Equal(t, "a", bs[0].Cluster)
	require.Equal(t, 5, bs[0].Samples)
	require.Equal(t, 2, bs[0].Series)
	require.Same(t, &body[0], &bs[0].Value[0], "value must be the received body, not a copy")
}

func TestRewrites(t *testing.T) {
	for _, tc := range []struct {
		name     string
		in       []prompb.TimeSeries
		def      string
		want     map[string][]string // cluster -> series labels, in order
		clusters []string
	}{
		{
			name: "default cluster inserted in sorted position",
			in: []prompb.TimeSeries{
				withSamples(series("__name__", "up", "job", "x"), 1, 1),
				withSamples(series("__name__", "up", "a", "1"), 1, 1),
				withSamples(series("__name__", "up"), 1, 1),
			},
			def:      "dflt",
			clusters: []string{"dflt"},
			want: map[string][]string{"dflt": {
				"__name__=up,cluster=dflt,job=x",
				"__name__=up,a=1,cluster=dflt",
				"__name__=up,cluster=dflt",
			}},
		},
		{
			name: "mixed clusters are split in order of appearance",
			in: []prompb.TimeSeries{
				withSamples(series("__name__", "m", "cluster", "b", "i", "1"), 1, 1),
				withSamples(series("__name__", "m", "cluster", "a", "i", "2"), 1, 1),
				withSamples(series("__name__", "m", "cluster", "b", "i", "3"), 1, 1),
				withSamples(series("__name__", "m", "i", "4"), 1, 1),
			},
			def:      "a",
			clusters: []string{"b", "a"},
			want: map[string][]string{
				"b": {"__name__=m,cluster=b,i=1", "__name__=m,cluster=b,i=3"},
				"a": {"__name__=m,cluster=a,i=2", "__name__=m,cluster=a,i=4"},
			},
		},
		{
			name: "unsorted labels are sorted",
			in: []prompb.TimeSeries{
				withSamples(series("job", "x", "cluster", "c", "__name__", "up"), 2, 1),
			},
			clusters: []string{"c"},
			want:     map[string][]string{"c": {"__name__=up,cluster=c,job=x"}},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var p Parser
			bs, err := p.Parse(encode(t, &prompb.WriteRequest{Timeseries: tc.in}), tc.def, DefaultLimits())
			require.NoError(t, err)
			var gotClusters []string
			got := map[string][]string{}
			samples := 0
			for _, b := range bs {
				gotClusters = append(gotClusters, b.Cluster)
				req := decode(t, b.Value)
				require.Equal(t, b.Series, len(req.Timeseries))
				n := 0
				for _, ts := range req.Timeseries {
					got[b.Cluster] = append(got[b.Cluster], labelsOf(ts))
					n += len(ts.Samples)
				}
				require.Equal(t, n, b.Samples)
				samples += n
			}
			require.Equal(t, tc.clusters, gotClusters)
			require.Equal(t, tc.want, got)
			want := 0
			for _, ts := range tc.in {
				want += len(ts.Samples)
			}
			require.Equal(t, want, samples)
		})
	}
}

func TestSplitsOversizedRequests(t *testing.T) {
	lim := DefaultLimits()
	lim.MaxRecordBytes = 4 << 10
	req := &prompb.WriteRequest{
		Metadata: []prompb.MetricMetadata{{MetricFamilyName: "m", Help: "help", Type: prompb.MetricMetadata_GAUGE}},
	}
	for i := 0; i < 300; i++ {
		req.Timeseries = append(req.Timeseries, withSamples(series("__name__", "m", "cluster", "a", "i", fmt.Sprint(i)), 3, int64(i)))
	}
	// One series far larger than a record: must be cut by samples.
	req.Timeseries = append(req.Timeseries, withSamples(series("__name__", "big", "cluster", "a"), 2000, 0))
	var p Parser
	bs, err := p.Parse(encode(t, req), "", lim)
	require.NoError(t, err)
	require.Greater(t, len(bs), 5)
	type key struct {
		labels string
		ts     int64
	}
	seen := map[key]int{}
	last := map[string]int64{}
	meta := 0
	for _, b := range bs {
		require.LessOrEqual(t, len(b.Value), lim.MaxRecordBytes)
		out := decode(t, b.Value)
		meta += len(out.Metadata)
		for _, ts := range out.Timeseries {
			l := labelsOf(ts)
			for _, s := range ts.Samples {
				seen[key{l, s.Timestamp}]++
				if prev, ok := last[l]; ok {
					require.Greater(t, s.Timestamp, prev, "order within a series must be kept")
				}
				last[l] = s.Timestamp
			}
		}
	}
	require.Equal(t, 1, meta)
	require.Len(t, seen, 300*3+2000)
	for k, n := range seen {
		require.Equal(t, 1, n, "sample %v", k)
	}
}

// TestRefusesWhole: a request that is not a WriteRequest as a whole is
// refused whole, with the offset of the faulty byte.
func TestRefusesWhole(t *testing.T) {
	good := encode(t, &prompb.WriteRequest{Timeseries: []prompb.TimeSeries{withSamples(series("__name__", "up", "cluster", "a"), 1, 1)}})
	raw, err := snappy.Decode(nil, good)
	require.NoError(t, err)
	// A valid series followed by a field that is malformed at a known byte.
	deep := func(tail ...byte) ([]byte, int) {
		return snappy.Encode(nil, append(append([]byte(nil), raw...), tail...)), len(raw)
	}
	field29, at29 := deep(protowire.AppendTag(nil, 1<<29, protowire.VarintType)...)
	field0, at0 := deep(0x00, 0x01)
	truncated, atTrunc := deep(0x0a, 0x05, 0x01) // timeseries of 5 bytes, 1 present: the length is wrong
	// Field 2^29 nested inside a label.
	lbl := protowire.AppendTag(nil, 1<<29, protowire.BytesType)
	lbl = protowire.AppendBytes(lbl, []byte("x"))
	ts := protowire.AppendTag(nil, fSeriesLabels, protowire.BytesType)
	ts = protowire.AppendBytes(ts, lbl)
	req := protowire.AppendTag(nil, fWriteRequestTimeseries, protowire.BytesType)
	req = protowire.AppendBytes(req, ts)
	nested := snappy.Encode(nil, req)
	wrongWire := snappy.Encode(nil, append(append([]byte(nil), raw...), protowire.AppendTag(nil, fWriteRequestTimeseries, protowire.VarintType)[0], 0x01))
	huge := snappy.Encode(nil, make([]byte, 1<<20))
	for _, tc := range []struct {
		name   string
		body   []byte
		status int
		reason string
	}{
		{"not snappy", []byte("hello world, definitely not snappy"), 400, "body is not a snappy block: corrupt input"},
		{"declared length too large", huge, 413, "exceeds the limit"},
		{"snappy of garbage", snappy.Encode(nil, []byte{0x0a, 0xff, 0xff, 0xff}), 400, "malformed protobuf WriteRequest at byte 1"},
		{"field number 2^29", field29, 400, fmt.Sprintf("at byte %d: field number 536870912 is outside the legal range", at29)},
		{"field number 0", field0, 400, fmt.Sprintf("at byte %d: field number 0 is outside the legal range", at0)},
		{"truncated after a valid series", truncated, 400, fmt.Sprintf("at byte %d: field 1 (wire type 2): unexpected EOF", atTrunc+1)},
		{"field 2^29 inside a label", nested, 400, "at byte 4: field number 536870912"},
		{"wrong wire type", wrongWire, 400, fmt.Sprintf("at byte %d: WriteRequest.timeseries has wire type 0", len(raw))},
	} {
		t.Run(tc.name, func(t *testing.T) {
			lim := DefaultLimits()
			lim.MaxDecodedBytes = 1 << 19
			var p Parser
			_, err := p.Parse(tc.body, "d", lim)
			require.Error(t, err)
			status, ok := reject.Status(err)
			require.True(t, ok, "not a refusal: %v", err)
			require.Equal(t, tc.status, status, "%v", err)
			require.Contains(t, err.Error(), tc.reason)
			require.NotContains(t, err.Error(), "snappy: snappy")
			require.NotContains(t, err.Error(), "\n")
		})
	}
}

// TestRefusesSeries: a series with invalid labels is left out and counted,
// the valid series of the same request are written, like Prometheus's
// remote-write 2.0 receiver.
func TestRefusesSeries(t *testing.T) {
	for _, tc := range []struct {
		name   string
		bad    prompb.TimeSeries
		def    string
		reason string
	}{
		{"no cluster, no default", series("__name__", "up"), "", "no cluster label"},
		{"invalid label name", series("__name__", "up", "bad-name", "x", "cluster", "a"), "", `invalid label name "bad-name"`},
		{"label name starts with digit", series("0a", "x", "__name__", "up", "cluster", "a"), "", "invalid label name"},
		{"duplicate label", series("__name__", "up", "cluster", "a", "job", "x", "job", "y"), "", `duplicate label name "job"`},
		{"unsorted duplicate", series("job", "x", "__name__", "up", "job", "y", "cluster", "a"), "", `duplicate label name "job"`},
		{"empty metric name", series("__name__", "", "cluster", "a"), "", "empty metric name"},
		{"no metric name", series("cluster", "a", "job", "x"), "", "no __name__"},
		{"invalid metric name", series("__name__", "a-b", "cluster", "a"), "", "invalid metric name"},
		{"no labels", prompb.TimeSeries{}, "x", "no labels"},
		{"invalid utf8", series("__name__", "up", "cluster", "a", "v", "\xff\xfe"), "", "not valid UTF-8"},
		{"empty cluster", series("__name__", "up", "cluster", ""), "x", "empty cluster label"},
		{"too many labels", series(manyLabels(70)...), "a", "more than 64 labels (-limits.max-labels-per-series)"},
		{"utf8 name while off", series("__name__", "up", "cluster", "a", "équipe", "x"), "", "-limits.metrics.utf8-names"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			good := withSamples(series("__name__", "up", "cluster", "a", "job", "ok"), 2, 1)
			req := &prompb.WriteRequest{Timeseries: []prompb.TimeSeries{good, withSamples(tc.bad, 3, 1), good}}
			var p Parser
			bs, err := p.Parse(encode(t, req), tc.def, DefaultLimits())
			require.NoError(t, err)
			r := p.Refused()
			require.NotNil(t, r)
			require.Equal(t, 1, r.Series)
			require.Equal(t, 3, r.Samples)
			require.Contains(t, r.Error(), "refused 3 samples, 1 series")
			require.Contains(t, r.Error(), "first: series 1 {")
			require.Contains(t, r.Error(), tc.reason)
			require.Len(t, bs, 1)
			require.Equal(t, 4, bs[0].Samples)
			out := decode(t, bs[0].Value)
			require.Len(t, out.Timeseries, 2)
			for _, ts := range out.Timeseries {
				require.Equal(t, "__name__=up,cluster=a,job=ok", labelsOf(ts))
			}
		})
	}
}

func TestUTF8Names(t *testing.T) {
	req := &prompb.WriteRequest{Timeseries: []prompb.TimeSeries{
		withSamples(series("__name__", "http.requests", "cluster", "a", "équipe", "x"), 1, 1),
	}}
	lim := DefaultLimits()
	lim.UTF8Names = true
	var p Parser
	bs, err := p.Parse(encode(t, req), "", lim)
	require.NoError(t, err)
	require.Nil(t, p.Refused())
	require.Len(t, bs, 1)
	require.Equal(t, 1, bs[0].Samples)

	bad := &prompb.WriteRequest{Timeseries: []prompb.TimeSeries{withSamples(series("__name__", "up", "cluster", "a", "\xff", "x"), 1, 1)}}
	_, err = p.Parse(encode(t, bad), "", lim)
	require.NoError(t, err)
	require.Contains(t, p.Refused().Error(), "is not valid UTF-8")
}

// TestTimeWindow: samples, histogram samples and exemplars outside the
// window are left out one by one; the rest of their series is written.
func TestTimeWindow(t *testing.T) {
	now := time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)
	ms := func(d time.Duration) int64 { return now.Add(d).UnixMilli() }
	ts := series("__name__", "m", "cluster", "a")
	ts.Samples = []prompb.Sample{{Timestamp: 1, Value: 1}, {Timestamp: ms(-time.Hour), Value: 2}, {Timestamp: ms(11 * time.Minute), Value: 3}, {Timestamp: ms(9 * time.Minute), Value: 4}}
	ts.Histograms = []prompb.Histogram{{Timestamp: ms(-24 * time.Hour), Count: &prompb.Histogram_CountInt{CountInt: 1}, ZeroCount: &prompb.Histogram_ZeroCountInt{ZeroCountInt: 1}}, {Timestamp: ms(0), Count: &prompb.Histogram_CountInt{CountInt: 2}, ZeroCount: &prompb.Histogram_ZeroCountInt{ZeroCountInt: 2}}}
	ts.Exemplars = []prompb.Exemplar{{Timestamp: ms(time.Hour), Value: 1}, {Timestamp: ms(-time.Minute), Value: 2, Labels: []prompb.Label{{Name: "trace_id", Value: "x"}}}, {Value: 3}} // the last without a timestamp
	old := series("__name__", "old", "cluster", "a")
	old.Samples = []prompb.Sample{{Timestamp: ms(-48 * time.Hour), Value: 1}}
	req := &prompb.WriteRequest{Timeseries: []prompb.TimeSeries{old, ts}}

	p := Parser{now: func() time.Time { return now }}
	bs, err := p.Parse(encode(t, req), "", DefaultLimits())
	require.NoError(t, err)
	r := p.Refused()
	require.NotNil(t, r)
	require.Equal(t, Refusal{Samples: 3, Histograms: 1, Exemplars: 1, byReason: r.byReason, first: r.first}, *r)
	require.Equal(t, 3, r.byReason[reasonTooOld])
	require.Equal(t, 2, r.byReason[reasonTooNew])
	require.Equal(t, "refused 3 samples, 1 histogram sample, 1 exemplar (3 too old, 2 too far in the future); first: series 0 {__name__=\"old\", cluster=\"a\"}: timestamp 2026-11-27T12:00:00Z is older than 23h0m0s (-limits.metrics.max-sample-age)", r.Error())
	require.Len(t, bs, 1)
	require.Equal(t, Batch{Cluster: "a", Value: bs[0].Value, Series: 1, Samples: 3, Histograms: 1, Exemplars: 2}, bs[0])
	out := decode(t, bs[0].Value)
	require.Len(t, out.Timeseries, 1)
	got := out.Timeseries[0]
	require.Equal(t, []prompb.Sample{{Timestamp: ms(-time.Hour), Value: 2}, {Timestamp: ms(9 * time.Minute), Value: 4}}, got.Samples)
	require.Len(t, got.Histograms, 1)
	require.Equal(t, ms(0), got.Histograms[0].Timestamp)
	require.Len(t, got.Exemplars, 2)
	require.Equal(t, 2.0, got.Exemplars[0].Value)
	require.Equal(t, 3.0, got.Exemplars[1].Value)

	// Bounds off: everything is kept, and forwarded as is.
	lim := DefaultLimits()
	lim.MaxSampleAge, lim.MaxFuture = 0, 0
	body := encode(t, req)
	bs, err = p.Parse(body, "", lim)
	require.NoError(t, err)
	require.Nil(t, p.Refused())
	require.Same(t, &body[0], &bs[0].Value[0])
}

// TestInvalidHistogram: a native histogram Prometheus would not store (its
// buckets do not add up to its count) is left out, the rest written.
func TestInvalidHistogram(t *testing.T) {
	now := time.Now().UnixMilli()
	ts := series("__name__", "h", "cluster", "a")
	ts.Histograms = []prompb.Histogram{
		{Timestamp: now - 1, Count: &prompb.Histogram_CountInt{CountInt: 5}, ZeroCount: &prompb.Histogram_ZeroCountInt{ZeroCountInt: 1}},
		{Timestamp: now, Count: &prompb.Histogram_CountInt{CountInt: 1}, ZeroCount: &prompb.Histogram_ZeroCountInt{ZeroCountInt: 1}},
	}
	var p Parser
	bs, err := p.Parse(encode(t, &prompb.WriteRequest{Timeseries: []prompb.TimeSeries{ts}}), "", DefaultLimits())
	require.NoError(t, err)
	require.NotNil(t, p.Refused())
	require.Contains(t, p.Refused().Error(), "refused 1 histogram sample (1 invalid histograms); first: series 0 {__name__=\"h\", cluster=\"a\"}: invalid native histogram at ")
	require.Contains(t, p.Refused().Error(), "observations found in buckets")
	require.Len(t, bs, 1)
	require.Equal(t, 1, bs[0].Histograms)
	out := decode(t, bs[0].Value)
	require.Len(t, out.Timeseries[0].Histograms, 1)
	require.Equal(t, now, out.Timeseries[0].Histograms[0].Timestamp)
}

// TestClusterBound: the split by cluster is bounded and keeps first-seen
// order.
func TestClusterBound(t *testing.T) {
	build := func(n int) []byte {
		req := &prompb.WriteRequest{}
		for i := 0; i < n; i++ {
			req.Timeseries = append(req.Timeseries, withSamples(series("__name__", "up", "cluster", fmt.Sprintf("c%06d", n-i)), 1, 1))
		}
		return encode(t, req)
	}
	var p Parser
	lim := DefaultLimits()
	lim.MaxClusters = 64
	_, err := p.Parse(build(128000), "", lim)
	require.Error(t, err)
	status, _ := reject.Status(err)
	require.Equal(t, 400, status)
	require.Contains(t, err.Error(), "more than 64 distinct clusters")

	bs, err := p.Parse(build(64), "", lim)
	require.NoError(t, err)
	require.Len(t, bs, 64)
	for i, b := range bs {
		require.Equal(t, fmt.Sprintf("c%06d", 64-i), b.Cluster)
		require.Equal(t, 1, b.Samples)
	}
}

func manyLabels(n int) []string {
	out := []string{"__name__", "up"}
	var names []string
	for i := 0; i < n; i++ {
		names = append(names, fmt.Sprintf("l%03d", i))
	}
	sort.Strings(names)
	for _, n := range names {
		out = append(out, n, "v")
	}
	return out
}

func TestEmptyRequest(t *testing.T) {
	var p Parser
	bs, err := p.Parse(encode(t, &prompb.WriteRequest{}), "", DefaultLimits())
	require.NoError(t, err)
	require.Empty(t, bs)
}

// TestMetadataOnly: stock Prometheus sends metadata-only requests, which
// external labels never reach: without a default cluster they are dropped
// and counted, not refused.
func TestMetadataOnly(t *testing.T) {
	req := &prompb.WriteRequest{Metadata: []prompb.MetricMetadata{{MetricFamilyName: "m", Type: prompb.MetricMetadata_COUNTER}}}
	var p Parser
	bs, err := p.Parse(encode(t, req), "", DefaultLimits())
	require.NoError(t, err)
	require.Empty(t, bs)
	require.Equal(t, 1, p.MetadataDropped())
	bs, err = p.Parse(encode(t, req), "d", DefaultLimits())
	require.Equal(t, 0, p.MetadataDropped())
	require.NoError(t, err)
	require.Len(t, bs, 1)
	require.Equal(t, "d", bs[0].Cluster)
	require.Len(t, decode(t, bs[0].Value).Metadata, 1)
}

// TestParseV2Refuses: the 2.0 decoder refuses illegal field numbers
// anywhere, and leaves out series with dangling symbol references or
// without samples, as Prometheus's 2.0 receiver does.
func TestParseV2Refuses(t *testing.T) {
	now := time.Now().UnixMilli()
	req := &writev2.Request{
		Symbols: []string{"", "__name__", "up", "cluster", "a"},
		Timeseries: []writev2.TimeSeries{
			{LabelsRefs: []uint32{1, 2, 3, 4}, Samples: []writev2.Sample{{Value: 1, Timestamp: now}}},
			{LabelsRefs: []uint32{1, 99}, Samples: []writev2.Sample{{Value: 2, Timestamp: now}}},
			{LabelsRefs: []uint32{1, 2, 3, 4}},
		},
	}
	raw, err := req.Marshal()
	require.NoError(t, err)
	var p Parser
	bs, err := p.ParseV2(snappy.Encode(nil, raw), "", DefaultLimits())
	require.NoError(t, err)
	require.Len(t, bs, 1)
	require.Equal(t, 1, bs[0].Samples)
	require.Equal(t, "refused 1 sample, 2 series (1 in invalid series); first: series 1: labels: labelRefs 1 (name) = 99 (value) outside of symbols table (size 5)", p.Refused().Error())

	// Field 2^29 at the top level and inside a sample (a series holding
	// one Sample that holds only the illegal field).
	sample := []byte{0x80, 0x80, 0x80, 0x80, 0x10, 0x01}
	ts := protowire.AppendTag(nil, 2, protowire.BytesType)
	ts = protowire.AppendBytes(ts, sample)
	nested := protowire.AppendTag(nil, 5, protowire.BytesType)
	nested = protowire.AppendBytes(nested, ts)
	for _, tc := range []struct {
		name string
		body []byte
		want string
	}{
		{"top level", append(append([]byte(nil), raw...), 0x80, 0x80, 0x80, 0x80, 0x10, 0x01), fmt.Sprintf("malformed protobuf io.prometheus.write.v2.Request at byte %d: field number 536870912", len(raw))},
		{"inside a sample", nested, "malformed protobuf io.prometheus.write.v2.Request at byte 4: field number 536870912"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := p.ParseV2(snappy.Encode(nil, tc.body), "", DefaultLimits())
			require.Error(t, err)
			status, _ := reject.Status(err)
			require.Equal(t, 400, status)
			require.Contains(t, err.Error(), tc.want)
		})
	}
}
