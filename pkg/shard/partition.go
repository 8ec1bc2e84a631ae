package shard

import (
	"fmt"
	"hash/fnv"

	"github.com/cespare/xxhash/v2"
)

// Hash names how a cluster's base partition is chosen.
type Hash string

const (
	// HashXX is xxHash64 of the cluster name mod the partition count: it
	// spreads names that differ in one character (cluster-0 ... cluster-63)
	// like random ones. The default.
	HashXX Hash = "xxhash"
	// HashFNV1a is sarama's default partitioner (32-bit FNV-1a of the key),
	// what the gateway used before the shard table: a rolling upgrade can
	// keep it so that no cluster changes partition, then switch.
	HashFNV1a Hash = "fnv1a"
)

// ParseHash checks a -shards.hash value.
func ParseHash(s string) (Hash, error) {
	switch h := Hash(s); h {
	case HashXX, HashFNV1a:
		return h, nil
	}
	return "", fmt.Errorf("unknown hash %q: want %s or %s", s, HashXX, HashFNV1a)
}

// Base is cluster's base partition among partitions (> 0).
func (h Hash) Base(cluster string, partitions int32) int32 {
	if h == HashFNV1a {
		// As sarama's hashPartitioner with its defaults: the signed 32-bit
		// sum mod n, negated when negative.
		f := fnv.New32a()
		f.Write([]byte(cluster))
		p := int32(f.Sum32()) % partitions
		if p < 0 {
			p = -p
		}
		return p
	}
	return int32(xxhash.Sum64String(cluster) % uint64(partitions))
}

// Partition is the partition of shard (0 <= shard < k) of cluster: the
// base partition for shard 0, the ones after it for the others.
//
// Consecutive partitions: they are always k distinct ones, and the
// ingesters' balanced assignors (round-robin, and sticky in a group formed
// at once) hand out a topic's partitions in order, one per consumer in
// turn, so a cluster's shards land on different ingesters; with k a
// multiple of the ingester count each ingester gets the same share of it.
// The assignor balances partition counts, not load: what evens the
// ingesters is that no partition is much hotter than the others, which is
// what the table is for.
func (h Hash) Partition(cluster string, shard int, partitions int32) int32 {
	base := h.Base(cluster, partitions)
	if shard == 0 {
		return base
	}
	return int32((int64(base) + int64(shard)) % int64(partitions))
}

// Of picks one of k shards for a series (stream, trace) hash: Lamping and
// Veach's jump consistent hash, so that growing a cluster from k to k+1
// shards moves only a 1/(k+1) share of its series, the least that can move.
func Of(hash uint64, k int) int {
	if k <= 1 {
		return 0
	}
	var b, j int64 = -1, 0
	for j < int64(k) {
		b = j
		hash = hash*2862933555777941757 + 1
		j = int64(float64(b+1) * (float64(int64(1)<<31) / float64((hash>>33)+1)))
	}
	return int(b)
}

// Labels hashes a label set whatever the order of its labels, so that a
// series sent with unsorted labels maps like its sorted form. Callers leave
// the cluster label out: a series must map the same whether the gateway
// added its cluster label or the sender did.
type Labels struct{ sum uint64 }

// Add adds one label.
func (l *Labels) Add(name, value []byte) {
	l.sum += mix(xxhash.Sum64(name)*0x9e3779b97f4a7c15 ^ xxhash.Sum64(value))
}

// AddString is Add for strings.
func (l *Labels) AddString(name, value string) {
	l.sum += mix(xxhash.Sum64String(name)*0x9e3779b97f4a7c15 ^ xxhash.Sum64String(value))
}

// Sum is the hash of the labels added.
func (l *Labels) Sum() uint64 { return mix(l.sum) }

// Bytes hashes an opaque id (a trace id).
func Bytes(b []byte) uint64 { return xxhash.Sum64(b) }

// mix is splitmix64's finaliser: a sum of hashes is itself well spread.
func mix(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}
