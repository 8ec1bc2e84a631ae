package lokipush

import (
	"testing"
	"time"

	"github.com/grafana/loki/pkg/push"
	"github.com/stretchr/testify/require"
)

// With OverrideCluster the default cluster replaces every other cluster
// label, in both formats; streams already in it are left alone.
func TestParseOverrideCluster(t *testing.T) {
	now := time.Now()
	ns := now.Add(-time.Minute).UnixNano()
	streams := []push.Stream{
		stream(`{app="api", cluster="b"}`, entry(ns, "claims b")),
		stream(`{app="web"}`, entry(ns+1, "no cluster")),
		stream(`{app="db", cluster="a"}`, entry(ns+2, "already a")),
	}
	bothFormats(t, streams, func(t *testing.T, body []byte, ct string) {
		got, err := Parse(body, ct, "", DefaultLimits(), Options{DefaultCluster: "a", OverrideCluster: true, Now: now})
		require.NoError(t, err)
		require.Len(t, got, 1, "one cluster: the identity's")
		require.Equal(t, "a", got[0].Cluster)
		var labels []string
		for _, s := range decode(t, got[0]).Streams {
			labels = append(labels, s.Labels)
		}
		require.Equal(t, []string{`{app="api", cluster="a"}`, `{app="web", cluster="a"}`, `{app="db", cluster="a"}`}, labels)

		got, err = Parse(body, ct, "", DefaultLimits(), Options{DefaultCluster: "a", Now: now})
		require.NoError(t, err)
		require.Equal(t, map[string][]string{"b": {"claims b"}, "a": {"no cluster", "already a"}}, linesOf(t, got), "without the option the claim stands")
	})
}
