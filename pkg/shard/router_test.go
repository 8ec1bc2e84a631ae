package shard

import (
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"
)

func TestRouterReload(t *testing.T) {
	path := filepath.Join(t.TempDir(), "shards.yaml")
	write := func(s string) { require.NoError(t, os.WriteFile(path, []byte(s), 0o600)) }
	write("clusters:\n  hot: 4\n")
	parts := map[string]int32{"m": 12, "l": 6}
	count := func(topic string) (int32, error) {
		if n, ok := parts[topic]; ok {
			return n, nil
		}
		return 0, errors.New("not connected")
	}
	reg := prometheus.NewRegistry()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	r, err := NewRouter(Config{File: path, PollInterval: 1, Hash: "xxhash"}, []string{"m", "l", "s"}, count, reg, log)
	require.NoError(t, err)
	require.Equal(t, 4, r.Table().Shards("hot"))
	require.Equal(t, 1.0, testutil.ToFloat64(r.clusters))

	rt, err := r.Route("m")
	require.NoError(t, err)
	require.Equal(t, 4, rt.Shards("hot"))
	require.Equal(t, HashXX.Partition("hot", 3, 12), rt.Partition("hot", 3))
	rt, err = r.Route("s")
	require.Error(t, err, "no route without the partition count")
	require.Equal(t, 1, rt.Shards("hot"))
	require.False(t, rt.Sharded())

	// A change applies on the second read that agrees.
	write("clusters:\n  hot: 2\n  warm: 3\n")
	r.watcher.Poll()
	require.Equal(t, 4, r.Table().Shards("hot"), "applied on the first read")
	r.watcher.Poll()
	require.Equal(t, 2, r.Table().Shards("hot"))
	require.Equal(t, 3, r.Table().Shards("warm"))
	require.Equal(t, 1.0, testutil.ToFloat64(r.ok))

	// k above topic l's 6 partitions: refused, the last good table stays.
	write("clusters:\n  hot: 8\n")
	r.watcher.Poll()
	r.watcher.Poll()
	require.Equal(t, 2, r.Table().Shards("hot"))
	require.Equal(t, 0.0, testutil.ToFloat64(r.ok))
	require.Equal(t, 1.0, reloads(t, reg, "error"))

	// Not YAML: refused too.
	write("clusters: [\n")
	r.watcher.Poll()
	r.watcher.Poll()
	require.Equal(t, 2, r.Table().Shards("hot"))
	require.Equal(t, 2.0, reloads(t, reg, "error"))

	// Unreadable, then back to a good table.
	require.NoError(t, os.Remove(path))
	r.watcher.Poll()
	require.Equal(t, 3.0, reloads(t, reg, "error"))
	write("clusters:\n  hot: 6\n")
	r.watcher.Poll()
	r.watcher.Poll()
	require.Equal(t, 6, r.Table().Shards("hot"))
	require.Equal(t, 1.0, testutil.ToFloat64(r.ok))
	require.Equal(t, 3.0, reloads(t, reg, "success"))

	// A table that does not fit at start is an error.
	write("clusters:\n  hot: 7\n")
	_, err = NewRouter(Config{File: path, PollInterval: 1, Hash: "xxhash"}, []string{"m", "l"}, count, prometheus.NewRegistry(), log)
	require.ErrorContains(t, err, "more partitions than topic l has (6): [hot: 7]")
}

// reloads is tributary_gateway_shards_reloads_total{outcome}.
func reloads(t *testing.T, reg *prometheus.Registry, outcome string) float64 {
	t.Helper()
	fams, err := reg.Gather()
	require.NoError(t, err)
	for _, f := range fams {
		if f.GetName() != "tributary_gateway_shards_reloads_total" {
			continue
		}
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "outcome" && l.GetValue() == outcome {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return 0
}

func TestRouteBoundsK(t *testing.T) {
	tb, err := Parse([]byte("clusters:\n  hot: 8\n"))
	require.NoError(t, err)
	rt := Route{t: tb, h: HashXX, n: 5}
	require.Equal(t, 5, rt.Shards("hot"), "a topic recreated smaller: shards wrap no further than its partitions")
}
