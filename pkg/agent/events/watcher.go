package events

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"time"

	"github.com/grafana/loki/pkg/push"
	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"

	"github.com/tributary-io/tributary/pkg/agent/gatewayhttp"
	"github.com/tributary-io/tributary/pkg/agent/lokiclient"
	"github.com/tributary-io/tributary/pkg/agent/metrics"
	"github.com/tributary-io/tributary/pkg/k8s"
)

// Leader is the leader election the watcher follows (*k8s.Elector).
type Leader interface {
	IsLeader() bool
	// Subscribe sends the current state first, then each change.
	Subscribe() <-chan bool
}

// Params are the watcher's dependencies.
type Params struct {
	Config  Config
	Cluster string
	Node    string
	Gateway metrics.GatewayConfig
	Pods    *k8s.Pods // unused: events name their objects themselves
	Client  kubernetes.Interface
	Leader  Leader
	// Namespace of the resume ConfigMap (the leader election's) and
	// Identity written into it (the election's).
	Namespace, Identity string
	// FlushDeadline bounds the final push at shutdown.
	FlushDeadline time.Duration
	Registerer    prometheus.Registerer
	Logger        *slog.Logger
}

// Watcher ships the cluster's Kubernetes events (core/v1 Events) while
// this agent leads.
//
// core/v1 rather than events.k8s.io/v1: both are views of the same stored
// objects, and core/v1 has the fields the log line carries (count,
// firstTimestamp, lastTimestamp, source) where events.k8s.io/v1 names them
// deprecated*; the series of new-style writers are in core/v1 too.
//
// What is promised (see the README, "Kubernetes events"): every change of
// an Event that is a new occurrence (created, or count/lastTimestamp
// moved) is one log line, shipped by one agent. A new or restarted leader
// resumes after the resume point: nothing acknowledged before it is sent
// again. An occurrence is sent twice only when its push was acknowledged
// and the leader died (or lost the Lease) before the resume point recorded
// it: at most one push (batch_size events) per hand-over, or more while
// resume writes fail. Lost: the intermediate occurrences of an event that
// changed several times while no leader read the watch, if the apiserver
// no longer has that history (resumed with a list: its latest occurrence
// is shipped), and events created and expired in that gap.
type Watcher struct {
	cfg    Params
	client *lokiclient.Client
	resume *resumeStore
	log    *slog.Logger
	m      *selfMetrics

	mu     sync.Mutex
	status status
}

type status struct {
	leading      bool
	since        time.Time
	resumeRV     string
	lastShipped  time.Time
	lastErr      string
	shippedTotal int
}

// New builds the watcher; Run starts it.
func New(p Params) (*Watcher, error) {
	if p.Client == nil || p.Leader == nil {
		return nil, errors.New("events: needs the Kubernetes client and the leader election (the kubernetes section)")
	}
	if err := p.Config.Validate(); err != nil {
		return nil, fmt.Errorf("events: %w", err)
	}
	if p.Logger == nil {
		p.Logger = slog.New(slog.DiscardHandler)
	}
	log := p.Logger.With("component", "events")
	c, err := lokiclient.New(p.Gateway, "events", p.Registerer, log)
	if err != nil {
		return nil, fmt.Errorf("events: %w", err)
	}
	return &Watcher{
		cfg: p, client: c, log: log, m: newSelfMetrics(p.Registerer),
		resume: &resumeStore{client: p.Client, namespace: p.Namespace, name: p.Config.ResumeConfigMap, identity: p.Identity},
	}, nil
}

// Run follows the leader election until ctx ends: while leading, it
// watches and ships; on losing the Lease it stops at once (what was not
// acknowledged is the next leader's). When ctx ends while leading, what
// was read is pushed (within FlushDeadline) and the resume point written
// before Run returns; the agent releases the Lease only after that.
func (w *Watcher) Run(ctx context.Context) error {
	sub := w.cfg.Leader.Subscribe()
	for {
		select {
		case <-ctx.Done():
			return nil
		case leading := <-sub:
			if leading {
				w.lead(ctx, sub)
			}
		}
	}
}

// lead is one term.
func (w *Watcher) lead(ctx context.Context, sub <-chan bool) {
	w.m.terms.Inc()
	w.setStatus(func(s *status) { s.leading, s.since = true, time.Now() })
	defer w.setStatus(func(s *status) { s.leading = false })
	log := w.log.With("term", time.Now().UTC().Format(time.RFC3339))

	// lost ends when the Lease is lost; watchCtx when either the Lease
	// is lost or the agent stops (stop reading the apiserver); pushCtx
	// when the Lease is lost or FlushDeadline after the agent stopped.
	lost, lose := context.WithCancel(context.Background())
	var subDone sync.WaitGroup
	defer func() { lose(); subDone.Wait() }()
	subDone.Go(func() {
		for {
			select {
			case l := <-sub:
				if !l {
					log.Info("lost the lease: stop shipping events; the next leader resumes from the resume point")
					lose()
					return
				}
			case <-lost.Done():
				return
			}
		}
	})
	watchCtx, stopWatch := context.WithCancel(lost)
	defer stopWatch()
	stopOnCtx := context.AfterFunc(ctx, stopWatch)
	defer stopOnCtx()
	pushCtx, stopPush := context.WithCancel(lost)
	defer stopPush()
	stopPushLater := context.AfterFunc(ctx, func() { time.AfterFunc(w.cfg.FlushDeadline, stopPush) })
	defer stopPushLater()

	rp, err := w.loadResume(watchCtx)
	if err != nil {
		return
	}
	log.Info("leading: shipping Kubernetes events", "resume_resource_version", rp.ResourceVersion)
	w.setStatus(func(s *status) { s.resumeRV = rp.ResourceVersion })

	queue := make(chan item, w.cfg.Config.MaxPending)
	st := newStore(watchCtx, queue, rp, w.cfg.Cluster, w.m, log)
	var reflectorDone sync.WaitGroup
	reflectorDone.Go(func() { w.reflector(st, rp).RunWithContext(watchCtx) })

	sh := &shipper{w: w, log: log, lastSaved: rp.ResourceVersion, lastSave: time.Now()}
	defer w.m.pending.Set(0) // what was not acknowledged is the next term's
	var last batch
	for {
		b, more := sh.collect(watchCtx, queue)
		if !more {
			last = b
			break
		}
		if err := sh.ship(pushCtx, lost, b, false); err != nil {
			return
		}
	}
	// The watch stopped: the Lease is lost (drop the rest, the next
	// leader has it), or the agent stops: push what was read, then write
	// the resume point at the watch's last position, so that a restart
	// resumes by watch and sends nothing twice.
	reflectorDone.Wait()
	if lost.Err() != nil {
		return
	}
	close(queue)
	for it := range queue {
		last.items = append(last.items, it)
		if it.ship {
			last.n++
		}
	}
	for len(last.items) > 0 {
		b := last
		if cut := sh.cut(b.items); cut < len(b.items) {
			b.items = last.items[:cut]
			last.items = last.items[cut:]
		} else {
			last.items = nil
		}
		b.n = countShip(b.items)
		if err := sh.ship(pushCtx, lost, b, len(last.items) == 0); err != nil {
			return
		}
	}
}

// cut is the length of the first batch of items: batch_size occurrences.
func (sh *shipper) cut(items []item) int {
	n := 0
	for i, it := range items {
		if it.ship {
			n++
			if n == sh.w.cfg.Config.BatchSize {
				return i + 1
			}
		}
	}
	return len(items)
}

func countShip(items []item) int {
	n := 0
	for _, it := range items {
		if it.ship {
			n++
		}
	}
	return n
}

// loadResume reads the resume point, retrying while the apiserver is
// unreachable.
func (w *Watcher) loadResume(ctx context.Context) (resumePoint, error) {
	b := gatewayhttp.Backoff{Min: 500 * time.Millisecond, Max: 10 * time.Second}
	for {
		rp, err := w.resume.load(ctx)
		if err == nil {
			return rp, nil
		}
		w.log.Error("cannot read the events resume point; retrying", "err", err)
		w.setStatus(func(s *status) { s.lastErr = err.Error() })
		t := time.NewTimer(b.Next(nil))
		select {
		case <-ctx.Done():
			t.Stop()
			return resumePoint{}, ctx.Err()
		case <-t.C:
		}
	}
}

// listWatcher is the events' list and watch, cluster-wide. The first list
// of a term that has a resume point is empty at the point's resource
// version: the Reflector then watches from there and gets every change
// since, instead of a list that only has each event's latest state. If the
// apiserver no longer has that history, the watch fails with 410 Gone and
// the Reflector lists for real (store.Replace skips what was shipped).
type listWatcher struct {
	*cache.ListWatch
}

// IsWatchListSemanticsUnSupported keeps the Reflector on list + watch:
// its streaming list would bypass the list above.
func (listWatcher) IsWatchListSemanticsUnSupported() bool { return true }

func (w *Watcher) reflector(st *store, rp resumePoint) *cache.Reflector {
	events := w.cfg.Client.CoreV1().Events(metav1.NamespaceAll)
	resumeAt := rp.ResourceVersion
	var mu sync.Mutex
	lw := listWatcher{&cache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
			mu.Lock()
			at := resumeAt
			resumeAt = ""
			mu.Unlock()
			if at != "" {
				st.mu.Lock()
				st.fakeList = true
				st.mu.Unlock()
				return &corev1.EventList{ListMeta: metav1.ListMeta{ResourceVersion: at}}, nil
			}
			return events.List(ctx, o)
		},
		WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			return events.Watch(ctx, o)
		},
	}}
	return cache.NewReflectorWithOptions(lw, &corev1.Event{}, st, cache.ReflectorOptions{Name: "tributary-agent-events"})
}

// shipper batches the queue and pushes.
type shipper struct {
	w         *Watcher
	log       *slog.Logger
	lastSaved string
	lastSave  time.Time
}

type batch struct {
	items []item
	n     int // items to ship
}

// markOnlySave is how often a resume point that only moved by bookmarks
// and skipped updates is written: keeping it near the watch's position
// lets a hand-over after a quiet hour resume by watch rather than by list.
const markOnlySave = 30 * time.Second

// collect takes up to batch_size occurrences from the queue, waiting at
// most batch_wait after the first. more is false once ctx ended or the
// queue is closed and empty.
func (sh *shipper) collect(ctx context.Context, queue <-chan item) (b batch, more bool) {
	cfg := sh.w.cfg.Config
	var timeout <-chan time.Time
	for b.n < cfg.BatchSize {
		select {
		case it, ok := <-queue:
			if !ok {
				return b, false
			}
			b.items = append(b.items, it)
			if it.ship {
				b.n++
			}
			if timeout == nil {
				timeout = time.After(time.Duration(cfg.BatchWait))
			}
		case <-timeout:
			return b, true
		case <-ctx.Done():
			return b, false
		}
	}
	return b, true
}

// ship pushes b and then writes the resume point (for a batch without
// occurrences, only every markOnlySave or when final). An error means the
// term is over (the Lease lost, or the flush deadline passed): b is not
// acknowledged and the next leader sends it.
func (sh *shipper) ship(ctx, lost context.Context, b batch, final bool) error {
	if len(b.items) == 0 {
		return nil
	}
	defer sh.w.m.pending.Sub(float64(b.n))
	rv := b.items[len(b.items)-1].rv
	var shipped []occurrence
	if b.n > 0 {
		req := &push.PushRequest{}
		streams := map[string]int{}
		for _, it := range b.items {
			if !it.ship {
				continue
			}
			i, ok := streams[it.labels]
			if !ok {
				i = len(req.Streams)
				streams[it.labels] = i
				req.Streams = append(req.Streams, push.Stream{Labels: it.labels})
			}
			req.Streams[i].Entries = append(req.Streams[i].Entries, it.entry)
			shipped = append(shipped, it.occ)
		}
		err := sh.w.client.Push(ctx, req)
		switch {
		case err == nil:
			sh.w.m.shipped.Add(float64(b.n))
		case errors.Is(err, lokiclient.ErrRefused):
			// Retrying gets the same answer; the gateway kept what it could.
			sh.w.m.refused.Add(float64(b.n))
			sh.log.Error("gateway refused events; not retried", "events", b.n, "err", err)
		default:
			sh.w.setStatus(func(s *status) { s.lastErr = err.Error() })
			return err
		}
		sh.w.setStatus(func(s *status) { s.lastShipped, s.shippedTotal = time.Now(), s.shippedTotal+b.n })
	} else if !final && time.Since(sh.lastSave) < markOnlySave {
		return nil
	}
	if rv == sh.lastSaved {
		return nil
	}
	// Never write after the Lease is lost: the next leader owns the point.
	if lost.Err() != nil || !sh.w.cfg.Leader.IsLeader() {
		return errors.New("lost the lease")
	}
	saveCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if err := sh.w.resume.save(saveCtx, resumePoint{ResourceVersion: rv, Shipped: shipped}); err != nil {
		// The next batch's write covers this one; until then a hand-over
		// sends these again.
		sh.w.m.resumeWrites.WithLabelValues("failed").Inc()
		sh.log.Warn("cannot write the events resume point", "err", err)
		sh.w.setStatus(func(s *status) { s.lastErr = err.Error() })
		return nil
	}
	sh.w.m.resumeWrites.WithLabelValues("ok").Inc()
	sh.lastSaved, sh.lastSave = rv, time.Now()
	sh.w.setStatus(func(s *status) { s.resumeRV = rv })
	return nil
}

func (w *Watcher) setStatus(f func(*status)) {
	w.mu.Lock()
	defer w.mu.Unlock()
	f(&w.status)
}

// Status writes the events section of the status page.
func (w *Watcher) Status(out io.Writer) {
	w.mu.Lock()
	s := w.status
	w.mu.Unlock()
	if !s.leading {
		fmt.Fprintln(out, "events: not leading (another agent of the cluster ships them)")
	} else {
		fmt.Fprintf(out, "events: leading since %s\n", s.since.UTC().Format(time.RFC3339))
	}
	fmt.Fprintf(out, "  resume point:    %s/%s at resourceVersion %q\n", w.resume.namespace, w.resume.name, s.resumeRV)
	fmt.Fprintf(out, "  shipped:         %d (this process)", s.shippedTotal)
	if !s.lastShipped.IsZero() {
		fmt.Fprintf(out, ", last at %s", s.lastShipped.UTC().Format(time.RFC3339))
	}
	fmt.Fprintln(out)
	if s.lastErr != "" {
		fmt.Fprintf(out, "  last error:      %s\n", s.lastErr)
	}
}

// Ready is always true: a follower has nothing to do, and a leader that
// cannot reach the gateway keeps the events in the apiserver; neither is
// a reason to take the agent out of service.
func (w *Watcher) Ready() bool { return true }
