package loadgen

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/golang/snappy"
	"github.com/prometheus/prometheus/prompb"
	"github.com/stretchr/testify/require"

	"github.com/tributary-io/tributary/pkg/remotewrite"
)

func decodeWriteRequest(t *testing.T, b *Body) *prompb.WriteRequest {
	t.Helper()
	raw, err := snappy.Decode(nil, b.Data)
	require.NoError(t, err)
	var req prompb.WriteRequest
	require.NoError(t, req.Unmarshal(raw))
	return &req
}

func seriesKey(ls []prompb.Label) string {
	var b strings.Builder
	for _, l := range ls {
		b.WriteString(l.Name + "=" + l.Value + ",")
	}
	return b.String()
}

func TestRemoteWriteBodiesDecode(t *testing.T) {
	cfg := SeriesConfig{Series: 10_500, SeriesPerRequest: 2000, Labels: 12, Clusters: 3}
	bodies, err := RemoteWriteBodies(cfg)
	require.NoError(t, err)
	require.Len(t, bodies, 6)
	seen := map[string]bool{}
	clusters := map[string]bool{}
	for k, b := range bodies {
		req := decodeWriteRequest(t, b)
		want := 2000
		if k == 5 {
			want = 500
		}
		require.Len(t, req.Timeseries, want)
		require.Equal(t, want, b.Items)
		clusters[b.Cluster] = true
		for _, ts := range req.Timeseries {
			require.Len(t, ts.Labels, cfg.Labels)
			require.True(t, slices.IsSortedFunc(ts.Labels, func(a, b prompb.Label) int { return strings.Compare(a.Name, b.Name) }), "labels sorted")
			require.Equal(t, "__name__", ts.Labels[0].Name)
			require.Contains(t, ts.Labels, prompb.Label{Name: "cluster", Value: b.Cluster})
			require.Len(t, ts.Samples, 1)
			key := seriesKey(ts.Labels)
			require.False(t, seen[key], "series %s twice", key)
			seen[key] = true
		}
	}
	require.Len(t, seen, cfg.Series)
	require.Len(t, clusters, 3)
}

// Successive sends of a body carry, for every series, a strictly newer
// timestamp than the send before (even when the clock stands still or goes
// back) and a new value.
func TestRemoteWriteStampStrictlyIncreasing(t *testing.T) {
	bodies, err := RemoteWriteBodies(SeriesConfig{Series: 300, SeriesPerRequest: 100, Labels: 10, Clusters: 1})
	require.NoError(t, err)
	lastTs := map[string]int64{}
	lastV := map[string]float64{}
	for _, b := range bodies { // stamped when built
		for _, ts := range decodeWriteRequest(t, b).Timeseries {
			lastTs[seriesKey(ts.Labels)], lastV[seriesKey(ts.Labels)] = ts.Samples[0].Timestamp, ts.Samples[0].Value
		}
	}
	now := time.Now()
	for round, at := range []time.Time{now, now, now.Add(-time.Hour), now.Add(time.Second), now.Add(time.Second)} {
		for _, b := range bodies {
			b.Stamp(at)
			for _, ts := range decodeWriteRequest(t, b).Timeseries {
				key, s := seriesKey(ts.Labels), ts.Samples[0]
				require.Greater(t, s.Timestamp, lastTs[key], "round %d %s", round, key)
				require.Equal(t, max(at.UnixMilli(), lastTs[key]+1), s.Timestamp)
				require.NotEqual(t, lastV[key], s.Value)
				lastTs[key], lastV[key] = s.Timestamp, s.Value
			}
		}
	}
}

// The gateway forwards the bodies as received: labels sorted and valid,
// one cluster per body.
func TestRemoteWriteBodiesForwardedByGateway(t *testing.T) {
	bodies, err := RemoteWriteBodies(SeriesConfig{Series: 4000, SeriesPerRequest: 2000, Labels: 10, Clusters: 2})
	require.NoError(t, err)
	var p remotewrite.Parser
	for _, b := range bodies {
		batches, err := p.Parse(b.Data, "", remotewrite.DefaultLimits())
		require.NoError(t, err)
		require.Len(t, batches, 1)
		require.Equal(t, b.Cluster, batches[0].Cluster)
		require.Equal(t, b.Items, batches[0].Samples)
		require.Same(t, &b.Data[0], &batches[0].Value[0], "forwarded byte for byte")
	}
}

func TestDetachKeepsStamping(t *testing.T) {
	bodies, err := RemoteWriteBodies(SeriesConfig{Series: 10, SeriesPerRequest: 10, Labels: 4, Clusters: 1})
	require.NoError(t, err)
	b := bodies[0]
	old := b.Data
	before := slices.Clone(old)
	b.Detach()
	b.Stamp(time.Now().Add(time.Minute))
	require.Equal(t, before, old, "the detached buffer is left alone")
	require.Greater(t, decodeWriteRequest(t, b).Timeseries[0].Samples[0].Timestamp, time.Now().UnixMilli())
}

// TestRemoteWriteClusterSkew: -cluster-skew gives the largest cluster the
// share asked of all series, every cluster at least one body, sizes falling
// with the rank; -cluster-prefix names them.
func TestRemoteWriteClusterSkew(t *testing.T) {
	c := SeriesConfig{Series: 64000, SeriesPerRequest: 100, Labels: 10, Clusters: 64, ClusterPrefix: "cluster-", ClusterSkew: 0.25}
	bodies, err := RemoteWriteBodies(c)
	require.NoError(t, err)
	count := map[string]int{}
	for _, b := range bodies {
		count[b.Cluster]++
	}
	require.Len(t, count, 64)
	require.InDelta(t, 0.25, float64(count["cluster-0"])/float64(len(bodies)), 0.01)
	for i := 1; i < 64; i++ {
		require.LessOrEqual(t, count[fmt.Sprintf("cluster-%d", i)], count[fmt.Sprintf("cluster-%d", i-1)])
		require.GreaterOrEqual(t, count[fmt.Sprintf("cluster-%d", i)], 1)
	}
	c.Series = 6000
	require.ErrorContains(t, c.Validate(), "cluster-skew needs at least one request body per cluster")
}
