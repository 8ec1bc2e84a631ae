package remotewrite

import (
	"fmt"
	"sort"
	"strings"
	"testing"

	"github.com/golang/snappy"
	"github.com/prometheus/prometheus/prompb"
	"github.com/stretchr/testify/require"

	"github.com/tributary-io/tributary/pkg/reject"
)

func series(labels ...string) prompb.TimeSeries {
	ts := prompb.TimeSeries{}
	for i := 0; i < len(labels); i += 2 {
		ts.Labels = append(ts.Labels, prompb.Label{Name: labels[i], Value: labels[i+1]})
	}
	return ts
}

func withSamples(ts prompb.TimeSeries, n int, t0 int64) prompb.TimeSeries {
	for i := 0; i < n; i++ {
		ts.Samples = append(ts.Samples, prompb.Sample{Timestamp: t0 + int64(i), Value: float64(i)})
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

func TestRefusesBadInput(t *testing.T) {
	good := func(ts ...prompb.TimeSeries) []byte {
		return encode(t, &prompb.WriteRequest{Timeseries: ts})
	}
	huge := snappy.Encode(nil, make([]byte, 1<<20))
	for _, tc := range []struct {
		name   string
		body   []byte
		def    string
		status int
		reason string
	}{
		{"not snappy", []byte("hello world, definitely not snappy"), "", 400, "snappy"},
		{"declared length too large", huge, "", 413, "exceeds the limit"},
		{"snappy of garbage", snappy.Encode(nil, []byte{0x0a, 0xff, 0xff, 0xff}), "", 400, "malformed"},
		{"no cluster, no default", good(withSamples(series("__name__", "up"), 1, 1)), "", 400, "no cluster label"},
		{"invalid label name", good(series("__name__", "up", "cluster", "a", "bad-name", "x")), "", 400, `invalid label name "bad-name"`},
		{"label name starts with digit", good(series("0a", "x", "__name__", "up", "cluster", "a")), "", 400, "invalid label name"},
		{"duplicate label", good(series("__name__", "up", "cluster", "a", "job", "x", "job", "y")), "", 400, `duplicate label name "job"`},
		{"unsorted duplicate", good(series("job", "x", "__name__", "up", "job", "y", "cluster", "a")), "", 400, `duplicate label name "job"`},
		{"empty metric name", good(series("__name__", "", "cluster", "a")), "", 400, "empty metric name"},
		{"no metric name", good(series("cluster", "a", "job", "x")), "", 400, "no __name__"},
		{"invalid metric name", good(series("__name__", "a-b", "cluster", "a")), "", 400, "invalid metric name"},
		{"no labels", good(withSamples(prompb.TimeSeries{}, 1, 1)), "x", 400, "no labels"},
		{"invalid utf8", good(series("__name__", "up", "cluster", "a", "v", "\xff\xfe")), "", 400, "not valid UTF-8"},
		{"empty cluster", good(series("__name__", "up", "cluster", "")), "x", 400, "empty cluster label"},
		{"too many labels", good(series(manyLabels(70)...)), "x", 400, "more than 64 labels"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			lim := DefaultLimits()
			lim.MaxDecodedBytes = 1 << 19
			var p Parser
			_, err := p.Parse(tc.body, tc.def, lim)
			require.Error(t, err)
			status, ok := reject.Status(err)
			require.True(t, ok, "not a refusal: %v", err)
			require.Equal(t, tc.status, status, "%v", err)
			require.Contains(t, err.Error(), tc.reason)
			require.NotContains(t, err.Error(), "\n")
		})
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

func TestMetadataOnly(t *testing.T) {
	req := &prompb.WriteRequest{Metadata: []prompb.MetricMetadata{{MetricFamilyName: "m", Type: prompb.MetricMetadata_COUNTER}}}
	var p Parser
	_, err := p.Parse(encode(t, req), "", DefaultLimits())
	require.Error(t, err)
	bs, err := p.Parse(encode(t, req), "d", DefaultLimits())
	require.NoError(t, err)
	require.Len(t, bs, 1)
	require.Equal(t, "d", bs[0].Cluster)
	require.Len(t, decode(t, bs[0].Value).Metadata, 1)
}
