package shard

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func TestParse(t *testing.T) {
	tb, err := Parse([]byte("clusters:\n  prod-eu: 4\n  prod-us: 2\n  small: 1\n"))
	require.NoError(t, err)
	require.Equal(t, 4, tb.Shards("prod-eu"))
	require.Equal(t, 2, tb.Shards("prod-us"))
	require.Equal(t, 1, tb.Shards("small"))
	require.Equal(t, 1, tb.Shards("unnamed"))
	require.Equal(t, 2, tb.Len(), "k = 1 is no sharding")

	tb, err = Parse([]byte("clusters:\n  hot: {shards: 3, first_partition: 7}\n  moved: {first_partition: 2}\n"))
	require.NoError(t, err)
	require.Equal(t, 3, tb.Shards("hot"))
	require.Equal(t, []int32{7, 8, 9}, []int32{tb.Partition(HashXX, "hot", 0, 12), tb.Partition(HashXX, "hot", 1, 12), tb.Partition(HashXX, "hot", 2, 12)})
	require.Equal(t, int32(0), tb.Partition(HashXX, "hot", 2, 9), "wraps")
	require.Equal(t, 1, tb.Shards("moved"))
	require.Equal(t, int32(2), tb.Partition(HashXX, "moved", 0, 12), "an unsharded cluster moved off its base partition")
	require.Equal(t, HashXX.Partition("other", 1, 12), tb.Partition(HashXX, "other", 1, 12))
	require.NoError(t, tb.Check("m", 8))
	require.EqualError(t, tb.Check("m", 7), "shard table spreads clusters over more partitions than topic m has (7): [hot: first_partition 7]")
	back, err := Parse([]byte(tb.YAML()))
	require.NoError(t, err)
	require.True(t, tb.Equal(back), tb.YAML())

	tb, err = Parse(nil)
	require.NoError(t, err, "an empty file is the empty table")
	require.Equal(t, 0, tb.Len())
	var none *Table
	require.Equal(t, 1, none.Shards("a"))

	for _, tc := range []struct{ name, file, want string }{
		{"zero", "clusters:\n  a: 0\n", "a: k is 0"},
		{"negative", "clusters:\n  a: -2\n", "a: k is -2"},
		{"empty name", "clusters:\n  \"\": 2\n", "empty cluster name"},
		{"unknown key", "cluster:\n  a: 2\n", "cluster"},
		{"not a number", "clusters:\n  a: many\n", "many"},
		{"duplicate", "clusters:\n  a: 2\n  a: 3\n", "already defined"},
		{"not YAML", "clusters: [\n", "yaml"},
		{"unknown field", "clusters:\n  a: {shards: 2, first: 3}\n", "field first not known"},
		{"negative first", "clusters:\n  a: {shards: 2, first_partition: -1}\n", "first_partition is -1"},
		{"zero shards", "clusters:\n  a: {shards: 0}\n", "a: k is 0"},
		{"list", "clusters:\n  a: [2]\n", "want k or {shards: k, first_partition: p}"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(tc.file))
			require.Error(t, err)
			require.Contains(t, err.Error(), tc.want)
		})
	}
}

func TestCheck(t *testing.T) {
	tb, err := Parse([]byte("clusters:\n  big: 12\n  huge: 16\n  mid: 4\n"))
	require.NoError(t, err)
	require.NoError(t, tb.Check("m", 16))
	err = tb.Check("tributary.logs", 12)
	require.EqualError(t, err, "shard table spreads clusters over more partitions than topic tributary.logs has (12): [huge: 16]")
}
