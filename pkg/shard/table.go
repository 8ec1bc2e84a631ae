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
// over, and optionally the first of them. Clusters it does not name have
// one, their base partition. A nil *Table is the empty one.
//
//	clusters:
//	  prod-eu: 4                                  # 4 partitions from its base one
//	  prod-us: {shards: 3, first_partition: 7}    # 7, 8, 9
type Table struct {
	clusters map[string]entry
	maxK     int
}

// entry is one cluster's line: k partitions from first (-1: from the
// cluster's base partition).
type entry struct {
	k     int
	first int32
}

// UnmarshalYAML reads "k" or "{shards: k, first_partition: p}".
func (e *entry) UnmarshalYAML(n *yaml.Node) error {
	e.first = -1
	if n.Kind == yaml.ScalarNode {
		return n.Decode(&e.k)
	}
	if n.Kind != yaml.MappingNode {
		return fmt.Errorf("line %d: want k or {shards: k, first_partition: p}", n.Line)
	}
	e.k = 1
	for i := 0; i+1 < len(n.Content); i += 2 {
		switch key, val := n.Content[i].Value, n.Content[i+1]; key {
		case "shards":
			if err := val.Decode(&e.k); err != nil {
				return err
			}
		case "first_partition":
			if err := val.Decode(&e.first); err != nil {
				return err
			}
			if e.first < 0 {
				return fmt.Errorf("line %d: first_partition is %d, want at least 0", val.Line, e.first)
			}
		default:
			return fmt.Errorf("line %d: field %s not known (want shards, first_partition)", n.Content[i].Line, key)
		}
	}
	return nil
}

type file struct {
	Clusters map[string]entry `yaml:"clusters"`
}

// maxFileBytes bounds what is read of the table: thousands of clusters fit
// in a few hundred KiB.
const maxFileBytes = 4 << 20

// Parse reads a shard table. Unknown keys, duplicate clusters, empty names,
// k < 1 and a negative first partition are errors naming the cluster. An
// empty file is the empty table.
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
	t := &Table{clusters: make(map[string]entry, len(f.Clusters))}
	for name, e := range f.Clusters {
		switch {
		case name == "":
			return nil, errors.New("clusters: empty cluster name")
		case e.k < 1:
			return nil, fmt.Errorf("clusters: %s: k is %d, want at least 1", name, e.k)
		}
		t.add(name, e)
	}
	return t, nil
}

func (t *Table) add(name string, e entry) {
	if e.k > 1 || e.first >= 0 {
		t.clusters[name] = e
		t.maxK = max(t.maxK, e.k, int(e.first)+1)
	}
}

// Shards is the number of partitions cluster is spread over (1 for a
// cluster the table does not name).
func (t *Table) Shards(cluster string) int {
	if t == nil || len(t.clusters) == 0 {
		return 1
	}
	if e, ok := t.clusters[cluster]; ok {
		return e.k
	}
	return 1
}

// Partition is the partition of shard (0 <= shard < k) of cluster among n:
// the cluster's first partition (the table's, else its base one by h) plus
// shard.
func (t *Table) Partition(h Hash, cluster string, shard int, n int32) int32 {
	if t != nil && len(t.clusters) > 0 {
		if e, ok := t.clusters[cluster]; ok && e.first >= 0 {
			return int32((int64(e.first) + int64(shard)) % int64(n))
		}
	}
	return h.Partition(cluster, shard, n)
}

// Len is the number of clusters the table names (k > 1 or a first
// partition).
func (t *Table) Len() int {
	if t == nil {
		return 0
	}
	return len(t.clusters)
}

// Check refuses a table that spreads a cluster over more partitions than
// topic has (its shards would wrap onto each other) or names a first
// partition the topic does not have.
func (t *Table) Check(topic string, partitions int32) error {
	if t == nil || t.maxK <= int(partitions) {
		return nil
	}
	var bad []string
	for name, e := range t.clusters {
		switch {
		case e.k > int(partitions):
			bad = append(bad, fmt.Sprintf("%s: %d", name, e.k))
		case e.first >= partitions:
			bad = append(bad, fmt.Sprintf("%s: first_partition %d", name, e.first))
		}
	}
	sort.Strings(bad)
	return fmt.Errorf("shard table spreads clusters over more partitions than topic %s has (%d): %v", topic, partitions, bad)
}

// Equal reports whether t and u place every cluster alike.
func (t *Table) Equal(u *Table) bool {
	if t.Len() != u.Len() {
		return false
	}
	for name, e := range t.clusters {
		if f, ok := u.clusters[name]; !ok || f != e {
			return false
		}
	}
	return true
}
