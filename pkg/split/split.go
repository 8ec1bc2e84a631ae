// Package split groups the items of one request by cluster, in the order the
// clusters first appear, in time linear in the number of items. The
// remote-write and Loki push decoders both use it, so a request that mixes
// clusters costs the same on either path and is bounded the same way.
package split

import "github.com/tributary-io/tributary/pkg/reject"

// DefaultMaxClusters is the default bound on distinct clusters in one
// request. A node agent sends one; a relay (Prometheus federating several
// clusters, a Promtail in front of many) a handful. Each distinct cluster
// becomes at least one Kafka record, so the bound also bounds the records a
// request can fan out into.
const DefaultMaxClusters = 64

// Grouper assigns group numbers to cluster names: the first cluster seen is
// group 0, the next new one group 1, and so on. It keeps its map between
// requests; it is not safe for concurrent use.
type Grouper struct {
	max   int
	index map[string]int
	names []string
}

// Reset prepares g for a request that may hold at most max distinct
// clusters (max <= 0: DefaultMaxClusters).
func (g *Grouper) Reset(max int) {
	if max <= 0 {
		max = DefaultMaxClusters
	}
	g.max = max
	if g.index == nil || len(g.index) > 4*DefaultMaxClusters {
		g.index = make(map[string]int, 4)
	} else {
		clear(g.index)
	}
	clear(g.names)
	g.names = g.names[:0]
}

// Group returns cluster's group number, adding it if new. It refuses (400)
// a cluster beyond the request's bound. The name is copied when added, so
// cluster may alias a buffer that is reused.
func (g *Grouper) Group(cluster []byte) (int, error) {
	if i, ok := g.index[string(cluster)]; ok { // no allocation for the lookup
		return i, nil
	}
	if len(g.names) >= g.max {
		return 0, reject.BadRequest("request holds more than %d distinct clusters; send each cluster's data separately", g.max)
	}
	name := string(cluster)
	g.index[name] = len(g.names)
	g.names = append(g.names, name)
	return len(g.names) - 1, nil
}

// GroupString is Group for a string.
func (g *Grouper) GroupString(cluster string) (int, error) {
	if i, ok := g.index[cluster]; ok {
		return i, nil
	}
	return g.Group([]byte(cluster))
}

// Names returns the clusters in first-seen order; index = group number.
// Valid until the next Reset.
func (g *Grouper) Names() []string { return g.names }

// Len is the number of distinct clusters seen.
func (g *Grouper) Len() int { return len(g.names) }
