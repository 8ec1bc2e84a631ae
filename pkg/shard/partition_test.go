package shard

import (
	"fmt"
	"math"
	"testing"

	"github.com/IBM/sarama"
	"github.com/stretchr/testify/require"
)

func TestFNV1aIsSaramasDefault(t *testing.T) {
	p := sarama.NewHashPartitioner("t")
	for _, n := range []int32{1, 4, 7, 12, 100} {
		for i := range 500 {
			name := fmt.Sprintf("cluster-%d", i)
			want, err := p.Partition(&sarama.ProducerMessage{Key: sarama.StringEncoder(name)}, n)
			require.NoError(t, err)
			require.Equal(t, want, HashFNV1a.Base(name, n), "%s of %d", name, n)
		}
	}
}

// spread counts names per partition.
func spread(h Hash, names []string, n int32) []int {
	c := make([]int, n)
	for _, name := range names {
		c[h.Base(name, n)]++
	}
	return c
}

func clusterNames() []string {
	var names []string
	for i := range 64 {
		names = append(names, fmt.Sprintf("cluster-%d", i))
	}
	return names
}

func realisticNames() []string {
	var names []string
	for _, env := range []string{"prod", "staging", "dev", "qa"} {
		for _, region := range []string{"eu-west-1", "eu-central-1", "us-east-1", "us-west-2"} {
			for _, n := range []string{"a", "b", "c", "d"} {
				names = append(names, env+"-"+region+"-"+n)
			}
		}
	}
	return names
}

// TestBaseSpread: xxhash spreads 64 names over 12 partitions about as
// random placement would (mean 5.3; the expected maximum of a random one
// is ~9), on sequential and on realistic names. The figures of both hashes
// are logged (go test -v -run TestBaseSpread).
func TestBaseSpread(t *testing.T) {
	for _, set := range []struct {
		name  string
		names []string
	}{{"cluster-N", clusterNames()}, {"env-region-x", realisticNames()}} {
		for _, h := range []Hash{HashXX, HashFNV1a} {
			c := spread(h, set.names, 12)
			mx, empty := 0, 0
			for _, v := range c {
				mx = max(mx, v)
				if v == 0 {
					empty++
				}
			}
			t.Logf("%-12s %-6s per partition %v: max %d (%.2fx the mean), %d empty", set.name, h, c, mx, float64(mx)*12/float64(len(set.names)), empty)
			if h == HashXX {
				require.LessOrEqual(t, mx, 9, "%s: %v", set.name, c)
				require.Zero(t, empty, "%s: %v", set.name, c)
			}
		}
	}
}

func TestPartitionShardsAreConsecutiveAndDistinct(t *testing.T) {
	for _, n := range []int32{3, 12, 13} {
		base := HashXX.Base("hot", n)
		seen := map[int32]bool{}
		for s := range int(n) {
			p := HashXX.Partition("hot", s, n)
			require.Equal(t, (base+int32(s))%n, p)
			require.False(t, seen[p], "shard %d reuses partition %d", s, p)
			seen[p] = true
		}
	}
}

// TestSeriesKeepOnePartition: a series maps to the same shard every time,
// whatever the order of its labels, and the k shards are all used about
// evenly.
func TestSeriesKeepOnePartition(t *testing.T) {
	const k, series = 5, 20000
	count := make([]int, k)
	for i := range series {
		var a, b Labels
		a.Add([]byte("__name__"), []byte("up"))
		a.Add([]byte("instance"), []byte(fmt.Sprintf("10.0.%d.%d:9100", i/256, i%256)))
		a.AddString("job", "node")
		b.AddString("job", "node")
		b.AddString("instance", fmt.Sprintf("10.0.%d.%d:9100", i/256, i%256))
		b.AddString("__name__", "up")
		s := Of(a.Sum(), k)
		require.Equal(t, s, Of(b.Sum(), k), "series %d: label order changed its shard", i)
		require.Equal(t, s, Of(a.Sum(), k))
		count[s]++
	}
	for s, c := range count {
		require.InDelta(t, series/k, c, 0.05*series/k, "shard %d of %v", s, count)
	}
}

// TestOfMovesLeast: growing k to k+1 moves series only to the new shard,
// about 1/(k+1) of them.
func TestOfMovesLeast(t *testing.T) {
	const n = 50000
	for k := 1; k < 8; k++ {
		moved := 0
		for i := range n {
			h := Bytes([]byte(fmt.Sprint("trace-", i)))
			a, b := Of(h, k), Of(h, k+1)
			require.Less(t, a, k)
			if a != b {
				require.Equal(t, k, b, "a series moved between old shards")
				moved++
			}
		}
		want := float64(n) / float64(k+1)
		require.Less(t, math.Abs(float64(moved)-want), 0.05*want, "k %d→%d moved %d", k, k+1, moved)
	}
}
