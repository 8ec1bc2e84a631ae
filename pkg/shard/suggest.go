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

// FromMap builds a table from cluster → k (what Suggest returns), each
// cluster from its base partition.
func FromMap(m map[string]int) *Table {
	t := &Table{clusters: map[string]entry{}}
	for name, k := range m {
		t.add(name, entry{k: k, first: -1})
	}
	return t
}

// Place builds a table from cluster → k (what Suggest returns) that also
// chooses each spread cluster's first partition: the clusters it does not
// spread stay on their base partitions (by h), then the spread ones, the
// largest first, each take the k consecutive partitions whose hottest
// would be coolest after adding it (ties: the one nearest after its base
// partition). Changing one cluster's line later moves only that cluster,
// so keep the lines of an applied table when a new suggestion differs
// little (PlaceAround).
func Place(load map[string]float64, ks map[string]int, partitions int32, h Hash) *Table {
	return PlaceAround(nil, load, ks, partitions, h)
}

// PlaceAround is Place keeping the lines of fixed as they are: the
// clusters fixed names stay where it puts them (whatever ks says of them)
// and the other spread clusters are placed around them. The result names
// fixed's clusters with fixed's lines.
func PlaceAround(fixed *Table, load map[string]float64, ks map[string]int, partitions int32, h Hash) *Table {
	t := &Table{clusters: map[string]entry{}}
	var names []string
	still := map[string]float64{}
	for name, v := range load {
		if _, ok := fixed.line(name); ok || ks[name] <= 1 {
			still[name] = v
		}
	}
	for name, k := range ks {
		if _, ok := fixed.line(name); !ok && k > 1 {
			names = append(names, name)
		}
	}
	for _, name := range fixed.Clusters() {
		e, _ := fixed.line(name)
		t.add(name, e)
	}
	p := fixed.Load(still, h, partitions)
	sort.Slice(names, func(i, j int) bool {
		if load[names[i]] != load[names[j]] {
			return load[names[i]] > load[names[j]]
		}
		return names[i] < names[j]
	})
	for _, name := range names {
		k := min(ks[name], int(partitions))
		per := load[name] / float64(k)
		base := h.Base(name, partitions)
		best, bestMax := int32(-1), 0.0
		for i := range partitions {
			first := (base + i) % partitions
			hottest := 0.0
			for s := range int32(k) {
				hottest = max(hottest, p[(first+s)%partitions]+per)
			}
			if best < 0 || hottest < bestMax*(1-1e-9) {
				best, bestMax = first, hottest
			}
		}
		for s := range int32(k) {
			p[(best+s)%partitions] += per
		}
		t.add(name, entry{k: k, first: best})
	}
	return t
}

// Load is what t puts on each of n partitions of load (cluster → items per
// second) with h: a spread cluster's load evenly over its k partitions,
// as its many series are by their hash.
func (t *Table) Load(load map[string]float64, h Hash, n int32) []float64 {
	p := make([]float64, n)
	for name, v := range load {
		k := min(t.Shards(name), int(n))
		for s := range k {
			p[t.Partition(h, name, s, n)] += v / float64(k)
		}
	}
	return p
}

// Clusters lists the clusters t names, sorted.
func (t *Table) Clusters() []string {
	if t == nil {
		return nil
	}
	names := make([]string, 0, len(t.clusters))
	for name := range t.clusters {
		names = append(names, name)
	}
	sort.Strings(names)
	return names
}

// Only is the table of t's lines for the clusters named (those t names).
func (t *Table) Only(clusters ...string) *Table {
	u := &Table{clusters: map[string]entry{}}
	for _, name := range clusters {
		if e, ok := t.line(name); ok {
			u.add(name, e)
		}
	}
	return u
}

func (t *Table) line(cluster string) (entry, bool) {
	if t == nil {
		return entry{}, false
	}
	e, ok := t.clusters[cluster]
	return e, ok
}

// YAML renders t as a shard table file, clusters sorted by name.
func (t *Table) YAML() string {
	if t.Len() == 0 {
		return "clusters: {}\n"
	}
	s := "clusters:\n"
	for _, name := range t.Clusters() {
		e := t.clusters[name]
		if e.first < 0 {
			s += "  " + strconv.Quote(name) + ": " + strconv.Itoa(e.k) + "\n"
		} else {
			s += "  " + strconv.Quote(name) + ": {shards: " + strconv.Itoa(e.k) + ", first_partition: " + strconv.Itoa(int(e.first)) + "}\n"
		}
	}
	return s
}
