package otlp

import (
	"testing"

	"github.com/stretchr/testify/require"
)

// With OverrideCluster the default cluster replaces every other
// k8s.cluster.name, once per resource; a request already in the default
// cluster is still forwarded as received.
func TestOverrideCluster(t *testing.T) {
	lim := DefaultLimits()
	lim.OverrideCluster = true
	raw := marshal(t, resource("b", "api", span(1)), resource("", "web", span(2)), resource("a", "db", span(3)))
	var p Parser
	batches, err := p.Parse(raw, "a", lim)
	require.NoError(t, err)
	require.Len(t, batches, 1, "one cluster: the identity's")
	require.Equal(t, "a", batches[0].Cluster)
	require.Equal(t, 3, batches[0].Spans)
	for i, rs := range decodeBatch(t, batches[0]).ResourceSpans {
		require.Equal(t, []string{"a"}, clusterOf(rs.Resource), "resource %d", i)
	}

	batches, err = p.Parse(marshal(t, resource("a", "db", span(3))), "a", lim)
	require.NoError(t, err)
	require.True(t, batches[0].Forwarded, "already in the identity's cluster")

	lim.OverrideCluster = false
	batches, err = p.Parse(raw, "a", lim)
	require.NoError(t, err)
	require.Len(t, batches, 2, "without the option the claim stands")
	require.Equal(t, "b", batches[0].Cluster)
}
