package remotewrite

import (
	"testing"

	"github.com/prometheus/prometheus/prompb"
	"github.com/stretchr/testify/require"
)

// With OverrideCluster the default cluster replaces every other cluster
// label, labels stay sorted and unique, and a request already in the
// default cluster is still forwarded as is.
func TestOverrideCluster(t *testing.T) {
	lim := DefaultLimits()
	lim.OverrideCluster = true
	req := &prompb.WriteRequest{Timeseries: []prompb.TimeSeries{
		withSamples(series("__name__", "up", "cluster", "b", "job", "x"), 2, 0),
		withSamples(series("__name__", "up", "job", "y"), 3, 0),
		withSamples(series("__name__", "up", "cluster", "a", "job", "z"), 1, 0),
	}}
	var p Parser
	batches, err := p.Parse(encode(t, req), "a", lim)
	require.NoError(t, err)
	require.Len(t, batches, 1, "one cluster: the identity's")
	require.Equal(t, "a", batches[0].Cluster)
	require.Equal(t, 6, batches[0].Samples)
	got := decode(t, batches[0].Value)
	var labels []string
	for _, ts := range got.Timeseries {
		labels = append(labels, labelsOf(ts))
	}
	require.Equal(t, []string{
		"__name__=up,cluster=a,job=x",
		"__name__=up,cluster=a,job=y",
		"__name__=up,cluster=a,job=z",
	}, labels)

	// Already the identity's cluster: the body is the record.
	body := encode(t, &prompb.WriteRequest{Timeseries: []prompb.TimeSeries{withSamples(series("__name__", "up", "cluster", "a"), 1, 0)}})
	batches, err = p.Parse(body, "a", lim)
	require.NoError(t, err)
	require.Len(t, batches, 1)
	require.Equal(t, &body[0], &batches[0].Value[0], "forwarded, not re-encoded")

	// Without the option, the claimed cluster is kept.
	lim.OverrideCluster = false
	batches, err = p.Parse(encode(t, req), "a", lim)
	require.NoError(t, err)
	require.Len(t, batches, 2)
	require.Equal(t, "b", batches[0].Cluster)
}
