package events

import (
	"context"
	"log/slog"
	"slices"
	"sync"

	"github.com/grafana/loki/pkg/push"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/resourceversion"
	"k8s.io/client-go/tools/cache"
)

// item is one entry of the queue from the watch to the shipper: an event
// occurrence to ship, or (ship false) only a resource version the watch
// has passed (a bookmark, a skipped update, a deletion, the end of a list).
type item struct {
	rv     string
	ship   bool
	occ    occurrence
	labels string
	entry  push.Entry
}

// store is what client-go's Reflector (the list-and-watch half of an
// informer) writes into. A SharedInformer's handlers would see a relist
// item by item, in no order, with no bookmarks; here a relist arrives as
// one list that is sorted by resource version before it is queued, so the
// queue is always in resource-version order and "everything up to rv is
// shipped" holds at every acknowledged item.
//
// enq is the resource version up to which every change was queued (or
// found already shipped); a change at or below it is skipped. last holds
// each live Event's last queued occurrence, so an update that is not a new
// occurrence (labels, managed fields) is not shipped again.
type store struct {
	ctx     context.Context // the term's: a blocked send gives up with it
	queue   chan<- item
	cluster string
	log     *slog.Logger
	m       *selfMetrics

	mu   sync.Mutex
	enq  string
	last map[string]occurrence
	// fakeList is set while the Reflector's first list is the empty one
	// that makes it watch from the resume point.
	fakeList bool
}

func newStore(ctx context.Context, queue chan<- item, rp resumePoint, cluster string, m *selfMetrics, log *slog.Logger) *store {
	s := &store{ctx: ctx, queue: queue, cluster: cluster, m: m, log: log, enq: rp.ResourceVersion, last: map[string]occurrence{}}
	for _, o := range rp.Shipped {
		s.last[o.UID] = o
	}
	return s
}

// after reports whether rv is after the queued mark. An unreadable
// version (not an etcd revision) counts as after: shipping twice beats
// dropping.
func (s *store) after(rv string) bool {
	if s.enq == "" {
		return true
	}
	c, err := resourceversion.CompareResourceVersion(rv, s.enq)
	return err != nil || c > 0
}

func (s *store) send(it item) error {
	select {
	case s.queue <- it:
		if it.ship {
			s.m.pending.Inc()
		}
		return nil
	case <-s.ctx.Done():
		return s.ctx.Err()
	}
}

// change queues one event's new state, in resource-version order.
func (s *store) change(e *corev1.Event) error {
	rv := e.ResourceVersion
	if !s.after(rv) {
		s.m.skipped.WithLabelValues("already_shipped").Inc()
		return nil
	}
	occ := occurrenceOf(e)
	it := item{rv: rv}
	if prev, ok := s.last[occ.UID]; ok && prev == occ {
		s.m.skipped.WithLabelValues("same_occurrence").Inc()
	} else {
		it.ship, it.occ = true, occ
		it.labels, it.entry = entry(s.cluster, e)
		s.last[occ.UID] = occ
	}
	if err := s.send(it); err != nil {
		return err
	}
	s.enq = rv
	return nil
}

func (s *store) mark(rv string) error {
	if rv == "" || !s.after(rv) {
		return nil
	}
	if err := s.send(item{rv: rv}); err != nil {
		return err
	}
	s.enq = rv
	return nil
}

// Add is a watch's ADDED.
func (s *store) Add(obj any) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := obj.(*corev1.Event)
	if !ok {
		return nil
	}
	return s.change(e)
}

// Update is a watch's MODIFIED.
func (s *store) Update(obj any) error { return s.Add(obj) }

// Delete is a watch's DELETED (events expire after the apiserver's
// --event-ttl, 1 h by default): nothing to ship, the occurrence is
// forgotten.
func (s *store) Delete(obj any) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = d.Obj
	}
	e, ok := obj.(*corev1.Event)
	if !ok {
		return nil
	}
	delete(s.last, string(e.UID))
	return s.mark(e.ResourceVersion)
}

// Replace is a list: the first one, or a relist after the watch lost its
// place ("resource version too old", 410 Gone). Every event changed after
// the queued mark is queued in resource-version order; what is at or
// below it was shipped already. Changes between the mark and the list
// that the apiserver no longer has are lost as separate lines: the list
// holds only each event's latest state, which is shipped.
func (s *store) Replace(objs []any, rv string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fakeList {
		s.fakeList = false
		return nil
	}
	s.m.relists.Inc()
	if s.enq != "" && rv != "" {
		if c, err := resourceversion.CompareResourceVersion(rv, s.enq); err == nil && c < 0 {
			// The list is older than the resume point: the point comes
			// from another etcd (a restored backup, a rebuilt cluster).
			s.log.Warn("resume point is ahead of the apiserver; shipping every event it lists", "resume", s.enq, "list", rv)
			s.enq = ""
		}
	}
	evs := make([]*corev1.Event, 0, len(objs))
	live := make(map[string]bool, len(objs))
	for _, o := range objs {
		if e, ok := o.(*corev1.Event); ok {
			evs = append(evs, e)
			live[string(e.UID)] = true
		}
	}
	for uid := range s.last {
		if !live[uid] {
			delete(s.last, uid)
		}
	}
	slices.SortFunc(evs, func(a, b *corev1.Event) int {
		c, err := resourceversion.CompareResourceVersion(a.ResourceVersion, b.ResourceVersion)
		if err != nil {
			return 0
		}
		return c
	})
	for _, e := range evs {
		if err := s.change(e); err != nil {
			return err
		}
	}
	return s.mark(rv)
}

// Bookmark is the watch saying it has passed rv with nothing to report.
func (s *store) Bookmark(rv string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.mark(rv)
}

// Resync has nothing to do: there is no cache to replay.
func (s *store) Resync() error { return nil }
