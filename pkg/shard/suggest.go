package shard

import (
	"math"
	"sort"
	"strconv"
)

// DefaultThreshold is the share of the mean partition load above which
// Suggest spreads a cluster, and what each of its shards then carries at
// most. A third: the hash puts other clusters next to a shard, and the
// ingesters' assignors balance partition counts, not load, so the
// partitions must be close to even for the ingesters to be. On make bench's
// skew load (64 Zipf clusters, the largest 25-28%, 12 partitions, 3
// ingesters) the hottest partition carried 4.8x the mean without a table;
// with threshold 0.5 1.83x and the busiest ingester 1.22-1.25x the mean
// (two runs), with a third 1.74x and 1.06x.
const DefaultThreshold = 1.0 / 3

// Suggest proposes a shard table from each cluster's observed load
// (samples, entries or bytes per second; from the gateways'
// tributary_gateway_items_received_total): a cluster whose load is share
// times the mean partition load (total / partitions) gets
// k = ceil(share / threshold) partitions when that is above 1, at most
// partitions. The result maps only the clusters with k > 1.
func Suggest(load map[string]float64, partitions int, threshold float64) map[string]int {
	total := 0.0
	for _, v := range load {
		total += v
	}
	out := map[string]int{}
	if total <= 0 || partitions <= 1 || threshold <= 0 {
		return out
	}
	mean := total / float64(partitions)
	for name, v := range load {
		k := int(math.Ceil(v / mean / threshold))
		if k > 1 {
			out[name] = min(k, partitions)
		}
	}
	return out
}

// FromMap builds a table from cluster → k (what Suggest returns).
func FromMap(m map[string]int) *Table {
	t := &Table{clusters: map[string]int{}}
	for name, k := range m {
		if k > 1 {
			t.clusters[name] = k
			t.maxK = max(t.maxK, k)
		}
	}
	return t
}

// YAML renders t as a shard table file, clusters sorted by name.
func (t *Table) YAML() string {
	if t.Len() == 0 {
		return "clusters: {}\n"
	}
	names := make([]string, 0, len(t.clusters))
	for name := range t.clusters {
		names = append(names, name)
	}
	sort.Strings(names)
	s := "clusters:\n"
	for _, name := range names {
		s += "  " + strconv.Quote(name) + ": " + strconv.Itoa(t.clusters[name]) + "\n"
	}
	return s
}
