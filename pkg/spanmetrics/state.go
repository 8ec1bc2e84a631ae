package spanmetrics

import (
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/prometheus/prompb"
)

// series is one label set: its counts and the labels they are written
// with.
type series struct {
	key      key
	overflow bool
	// labels, sorted by name, without __name__ and le.
	labels []prompb.Label
	// cur holds the spans of every batch whose write succeeded.
	cur hist
	// sent is, per written value (cumulative buckets, sum), the largest
	// ever put in a request, whether or not the request succeeded: a
	// failed write may still have been stored, and writing less after it
	// would look like a counter reset to rate() and count everything
	// again. Written values never go below it.
	sent     cumulative
	lastSeen time.Time
}

// cumulative is a histogram as written: buckets summed up to each le.
type cumulative struct {
	buckets [nBuckets]uint64
	sum     float64
}

// partitionState is what this process counted of one partition for one
// tenant. It outlives the partition's claim: if the partition comes back
// to this process its series continue (flat meanwhile, as this process
// counted nothing), and otherwise they expire.
type partitionState struct {
	mu        sync.Mutex
	partition int32
	tenant    string
	ingester  string
	clusters  map[string]*clusterState
	dead      bool // removed from the sink's map; look it up again
}

type clusterState struct {
	sets     map[key]*series
	overflow *series
}

// plan is where a batch's spans go.
type plan struct {
	deltas map[*series]*hist
	// created are the series the batch creates; they are written at 0
	// first and join the state when that write succeeded.
	created []*series
	// overflowSpans counts per cluster the spans folded into the overflow
	// series.
	overflowSpans map[string]uint64
}

// plan assigns the batch's label sets to series: an existing one, a new
// one while the cluster has fewer than limit (0: no limit), else the
// cluster's overflow series.
func (ps *partitionState) plan(b *batch, limit int) *plan {
	p := &plan{deltas: map[*series]*hist{}, overflowSpans: map[string]uint64{}}
	created := map[key]*series{}
	newPerCluster := map[string]int{}
	var newOverflow map[string]*series
	// Sorted, so that which label sets get the last free places does not
	// depend on map order.
	keys := make([]key, 0, len(b.sets))
	for k := range b.sets {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool { return keys[i].less(keys[j]) })
	for _, k := range keys {
		h := b.sets[k]
		cs := ps.clusters[k.cluster]
		var s *series
		switch {
		case cs != nil && cs.sets[k] != nil:
			s = cs.sets[k]
		case created[k] != nil:
			s = created[k]
		case limit == 0 || clusterLen(cs)+newPerCluster[k.cluster] < limit:
			s = ps.newSeries(k, false)
			created[k] = s
			newPerCluster[k.cluster]++
			p.created = append(p.created, s)
		default:
			p.overflowSpans[k.cluster] += h.count()
			switch {
			case cs != nil && cs.overflow != nil:
				s = cs.overflow
			case newOverflow[k.cluster] != nil:
				s = newOverflow[k.cluster]
			default:
				s = ps.newSeries(k, true)
				if newOverflow == nil {
					newOverflow = map[string]*series{}
				}
				newOverflow[k.cluster] = s
				p.created = append(p.created, s)
			}
		}
		d := p.deltas[s]
		if d == nil {
			d = &hist{}
			p.deltas[s] = d
		}
		d.add(h)
	}
	return p
}

func clusterLen(cs *clusterState) int {
	if cs == nil {
		return 0
	}
	return len(cs.sets)
}

func (k key) less(o key) bool {
	if k.cluster != o.cluster {
		return k.cluster < o.cluster
	}
	if k.service != o.service {
		return k.service < o.service
	}
	if k.span != o.span {
		return k.span < o.span
	}
	if k.kind != o.kind {
		return k.kind < o.kind
	}
	return k.status < o.status
}

// newSeries builds the series of k (of k.cluster's overflow if overflow).
// Empty values are left out, as Prometheus does.
func (ps *partitionState) newSeries(k key, overflow bool) *series {
	ls := []prompb.Label{
		{Name: "cluster", Value: k.cluster},
		{Name: "ingester", Value: ps.ingester},
		{Name: "partition", Value: strconv.Itoa(int(ps.partition))},
	}
	if overflow {
		ls = append(ls, prompb.Label{Name: "otel_metric_overflow", Value: "true"})
	} else {
		ls = append(ls,
			prompb.Label{Name: "service_name", Value: k.service},
			prompb.Label{Name: "span_name", Value: k.span},
			prompb.Label{Name: "span_kind", Value: k.kind},
			prompb.Label{Name: "status_code", Value: k.status})
	}
	kept := ls[:0]
	for _, l := range ls {
		if l.Value != "" {
			kept = append(kept, l)
		}
	}
	sort.Slice(kept, func(i, j int) bool { return kept[i].Name < kept[j].Name })
	if overflow {
		k = key{cluster: k.cluster}
	}
	return &series{key: k, overflow: overflow, labels: kept}
}

// adopt adds series written at 0 to the state.
func (ps *partitionState) adopt(created []*series, now time.Time) {
	for _, s := range created {
		cs := ps.clusters[s.key.cluster]
		if cs == nil {
			cs = &clusterState{sets: map[key]*series{}}
			ps.clusters[s.key.cluster] = cs
		}
		s.lastSeen = now
		if s.overflow {
			cs.overflow = s
			continue
		}
		cs.sets[s.key] = s
	}
}

// merge adds the deltas of a written batch.
func (ps *partitionState) merge(p *plan, now time.Time) {
	for s, d := range p.deltas {
		s.cur.add(d)
		s.lastSeen = now
	}
}

// expire drops the series without spans since before now-idle, except
// those b has spans for; it returns how many it dropped per cluster.
func (ps *partitionState) expire(now time.Time, idle time.Duration, b *batch) map[string]int {
	var dropped map[string]int
	drop := func(c string) {
		if dropped == nil {
			dropped = map[string]int{}
		}
		dropped[c]++
	}
	for c, cs := range ps.clusters {
		for k, s := range cs.sets {
			if now.Sub(s.lastSeen) < idle {
				continue
			}
			if b != nil && b.sets[k] != nil {
				continue
			}
			delete(cs.sets, k)
			drop(c)
		}
		if cs.overflow != nil && now.Sub(cs.overflow.lastSeen) >= idle && (b == nil || b.spans[c] == 0) {
			cs.overflow = nil
			drop(c)
		}
		if len(cs.sets) == 0 && cs.overflow == nil {
			delete(ps.clusters, c)
		}
	}
	return dropped
}

// values are the cumulative values s is written with now: its counts
// plus d (nil: none), never below what was sent before. They become the
// new floor.
func (s *series) values(d *hist) cumulative {
	var v cumulative
	var n uint64
	for i := range s.cur.buckets {
		n += s.cur.buckets[i]
		if d != nil {
			n += d.buckets[i]
		}
		v.buckets[i] = max(n, s.sent.buckets[i])
	}
	v.sum = s.cur.sum
	if d != nil {
		v.sum += d.sum
	}
	v.sum = max(v.sum, s.sent.sum)
	s.sent = v
	return v
}
