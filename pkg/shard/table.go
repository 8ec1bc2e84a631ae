// Package shard decides the Kafka partition of every record the gateway
// writes. A cluster's records go to one partition chosen by a hash of its
// name (its base partition), so that all of its data keeps its order. A hot
// cluster, named in the shard table with k > 1, is spread over k partitions:
// the base one and the k-1 after it (mod the partition count); each series
// (stream, trace) goes to one of them by a hash of its labels (stream
// labels, trace id), so each still keeps its own order.
//
// The table is configuration (-shards.file), the same on every gateway: a
// table each gateway computed from its own traffic would send a series to
// different partitions from different gateways.
package shard

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"sort"

	"go.yaml.in/yaml/v3"
)

// Table is the shard table: how many partitions each hot cluster is spread
// over. Clusters it does not name have one. A nil *Table is the empty one.
//
//	clusters:
//	  prod-eu: 4     # prod-eu's series over 4 partitions
//	  prod-us: 2
type Table struct {
	clusters map[string]int
	maxK     int
}

type file struct {
	Clusters map[string]int `yaml:"clusters"`
}

// maxFileBytes bounds what is read of the table: thousands of clusters fit
// in a few hundred KiB.
const maxFileBytes = 4 << 20

// Parse reads a shard table. Unknown keys, duplicate clusters, empty names
// and k < 1 are errors naming the cluster. An empty file is the empty
// table.
func Parse(b []byte) (*Table, error) {
	if len(b) > maxFileBytes {
		return nil, fmt.Errorf("shard table larger than %d bytes", maxFileBytes)
	}
	var f file
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(&f); err != nil && !errors.Is(err, io.EOF) {
		return nil, err
	}
	t := &Table{clusters: make(map[string]int, len(f.Clusters))}
	for name, k := range f.Clusters {
		switch {
		case name == "":
			return nil, errors.New("clusters: empty cluster name")
		case k < 1:
			return nil, fmt.Errorf("clusters: %s: k is %d, want at least 1", name, k)
		}
		if k > 1 {
			t.clusters[name] = k
			t.maxK = max(t.maxK, k)
		}
	}
	return t, nil
}

// Shards is the number of partitions cluster is spread over (1 for a
// cluster the table does not name).
func (t *Table) Shards(cluster string) int {
	if t == nil || len(t.clusters) == 0 {
		return 1
	}
	if k, ok := t.clusters[cluster]; ok {
		return k
	}
	return 1
}

// Len is the number of sharded clusters (k > 1).
func (t *Table) Len() int {
	if t == nil {
		return 0
	}
	return len(t.clusters)
}

// Check refuses a table that spreads a cluster over more partitions than
// topic has: such a cluster's shards would wrap onto each other.
func (t *Table) Check(topic string, partitions int32) error {
	if t == nil || t.maxK <= int(partitions) {
		return nil
	}
	var bad []string
	for name, k := range t.clusters {
		if k > int(partitions) {
			bad = append(bad, fmt.Sprintf("%s: %d", name, k))
		}
	}
	sort.Strings(bad)
	return fmt.Errorf("shard table spreads clusters over more partitions than topic %s has (%d): %v", topic, partitions, bad)
}

// Equal reports whether t and u map every cluster to the same k.
func (t *Table) Equal(u *Table) bool {
	if t.Len() != u.Len() {
		return false
	}
	for name, k := range t.clusters {
		if u.Shards(name) != k {
			return false
		}
	}
	return true
}
