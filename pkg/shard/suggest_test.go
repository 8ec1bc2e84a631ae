package shard

import (
	"fmt"
	"slices"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tributary-io/tributary/pkg/loadgen"
)

func TestSuggest(t *testing.T) {
	// 12 partitions, total 1200: the mean partition load is 100.
	load := map[string]float64{"huge": 450, "big": 150, "mean": 100, "a": 250, "b": 250}
	require.Equal(t, map[string]int{"huge": 5, "big": 2, "a": 3, "b": 3}, Suggest(load, 12, 1))
	require.Equal(t, map[string]int{"huge": 9, "big": 3, "mean": 2, "a": 5, "b": 5}, Suggest(load, 12, 0.5))
	require.Equal(t, map[string]int{"huge": 2, "a": 2, "b": 2, "big": 2, "mean": 2}, Suggest(load, 2, 0.1), "k at most the partition count")
	require.Empty(t, Suggest(map[string]float64{"a": 0}, 12, 1))

	tb := FromMap(Suggest(load, 12, 1))
	back, err := Parse([]byte(tb.YAML()))
	require.NoError(t, err)
	require.True(t, tb.Equal(back), tb.YAML())
}

// zipfLoad is the skew bench's load: n clusters named cluster-0.. sized by
// loadgen's -cluster-skew=share.
func zipfLoad(n int, share float64) map[string]float64 {
	out := map[string]float64{}
	for i, v := range loadgen.ZipfShares(n, share) {
		out[fmt.Sprintf("cluster-%d", i)] = v
	}
	return out
}

// partitionLoad places load with h and table t over n partitions: each
// sharded cluster's load split evenly over its shards (as many series
// hashed over k shards are).
func partitionLoad(load map[string]float64, h Hash, t *Table, n int32) (maxOverMean, worstIngester float64) {
	p := t.Load(load, h, n)
	total := 0.0
	for _, v := range load {
		total += v
	}
	mean := total / float64(n)
	slices.Sort(p)
	// An assignor that balances counts may give one of 3 ingesters the 4
	// hottest partitions.
	return p[n-1] / mean, (p[n-1] + p[n-2] + p[n-3] + p[n-4]) / (4 * mean)
}

// TestSuggestedTableEvensPartitions: on the skew bench's load (64 Zipf
// clusters, the largest 25%, 12 partitions), one partition per cluster
// puts the largest cluster's 3x the mean on one partition; Suggest's k
// from each base partition brings every partition under 2x the mean, and
// Place's first partitions under 1.3x, so that even the 4 hottest
// partitions on one of 3 ingesters stay under 1.2x the mean ingester.
func TestSuggestedTableEvensPartitions(t *testing.T) {
	for _, share := range []float64{0.25, 0.28} {
		load := zipfLoad(64, share)
		ks := Suggest(load, 12, DefaultThreshold)
		for _, h := range []Hash{HashXX, HashFNV1a} {
			none, _ := partitionLoad(load, h, nil, 12)
			fromBase, _ := partitionLoad(load, h, FromMap(ks), 12)
			placed, ingester := partitionLoad(load, h, Place(load, ks, 12, h), 12)
			t.Logf("share %.2f %s: partition max/mean %.2f without a table, %.2f with k from the base, %.2f placed (worst ingester %.2f); k %v",
				share, h, none, fromBase, placed, ingester, ks)
			require.Greater(t, none, 3.0)
			require.LessOrEqual(t, fromBase, 2.0)
			require.LessOrEqual(t, placed, 1.3)
			require.LessOrEqual(t, ingester, 1.2)
		}
	}
}

// TestPlaceAround: a kept line stays as it is, whatever Suggest now says
// of its cluster, and the other spread clusters are placed off the
// partitions it loads.
func TestPlaceAround(t *testing.T) {
	// 4 partitions, total 400: the mean partition load is 100.
	load := map[string]float64{"a": 200, "b": 100, "c": 50, "d": 50}
	ks := map[string]int{"a": 4, "b": 2}
	fixed, err := Parse([]byte("clusters:\n  a: {shards: 2, first_partition: 1}\n"))
	require.NoError(t, err)
	got := PlaceAround(fixed, load, ks, 4, HashXX)
	require.Equal(t, []string{"a", "b"}, got.Clusters())
	require.Equal(t, 2, got.Shards("a"), "a keeps its line, not Suggest's k")
	require.Equal(t, int32(1), got.Partition(HashXX, "a", 0, 4))
	require.Equal(t, 2, got.Shards("b"))
	for s := range 2 {
		require.NotContains(t, []int32{1, 2}, got.Partition(HashXX, "b", s, 4), "b placed onto a's partitions")
	}
	require.Equal(t, []float64{0, 100, 100, 0}, got.Load(map[string]float64{"a": 200}, HashXX, 4))
	p := got.Load(load, HashXX, 4)
	require.InDelta(t, 400, p[0]+p[1]+p[2]+p[3], 1e-9, "every cluster's load placed once: %v", p)
	require.True(t, Place(load, ks, 4, HashXX).Equal(PlaceAround(nil, load, ks, 4, HashXX)))
	require.Equal(t, []string{"b"}, got.Only("b", "c").Clusters())
	require.Equal(t, got.Partition(HashXX, "b", 0, 4), got.Only("b").Partition(HashXX, "b", 0, 4))
}
