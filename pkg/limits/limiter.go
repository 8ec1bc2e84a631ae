package limits

import (
	"sync"
	"sync/atomic"
	"time"
)

// Limiter applies per-cluster limits. A cluster's limits are, field by
// field, the first that is set of: its entry in tokens.yaml, its entry in
// the limits file, the file's defaults; a field set nowhere is the
// gateway's flag (per-request bounds) or no limit (rates).
//
// Its state is bounded: one bucket per cluster and rated signal, only for
// clusters with a rate: those named in the file or tokens, and up to
// maxClusters×3 buckets of others. A bucket that has refilled is forgotten when room is
// needed (a new one would start full: nothing is lost); when no bucket can
// be forgotten, further clusters share one bucket per signal.
type Limiter struct {
	maxClusters int
	now         func() time.Time
	snap        atomic.Pointer[snapshot]

	mu       sync.Mutex // the layers and the buckets
	file     *File
	tokens   map[string]Cluster
	buckets  map[bucketKey]*bucket
	overflow [numSignals]*bucket
}

type bucketKey struct {
	cluster string
	signal  Signal
}

// snapshot is the merged limits, replaced whole on every reload.
type snapshot struct {
	defaults Cluster
	named    map[string]Cluster
	active   bool // any limit set at all
}

// NewLimiter returns a limiter without limits until SetFile or SetTokens.
func NewLimiter(maxClusters int) *Limiter {
	l := &Limiter{maxClusters: maxClusters, now: time.Now, buckets: map[bucketKey]*bucket{}}
	l.snap.Store(&snapshot{})
	return l
}

// SetFile replaces the limits file's layer; nil removes it.
func (l *Limiter) SetFile(f *File) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.file = f
	l.merge()
}

// SetTokens replaces the tokens' layer: cluster → its limits from
// tokens.yaml. They win over the file's, field by field.
func (l *Limiter) SetTokens(m map[string]Cluster) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.tokens = m
	l.merge()
}

func (l *Limiter) merge() {
	s := &snapshot{named: map[string]Cluster{}}
	if l.file != nil {
		s.defaults = l.file.Defaults
		for name, c := range l.file.Clusters {
			s.named[name] = c.Over(s.defaults)
		}
	}
	for name, c := range l.tokens {
		base, ok := s.named[name]
		if !ok {
			base = s.defaults
		}
		s.named[name] = c.Over(base)
	}
	s.active = s.defaults != Cluster{} || len(s.named) > 0
	l.snap.Store(s)
}

// Active is false while no limit is set anywhere: the gateway skips all
// checks.
func (l *Limiter) Active() bool { return l.snap.Load().active }

// For is cluster's merged limits; unset fields are zero (the flags apply).
func (l *Limiter) For(cluster string) Cluster {
	s := l.snap.Load()
	if c, ok := s.named[cluster]; ok {
		return c
	}
	return s.defaults
}

// Cost is what one cluster's part of a request costs a rate: samples,
// decoded log line bytes or spans.
type Cost struct {
	Cluster string
	N       int
}

// Take admits a request or refuses it whole: each cluster's bucket for s
// pays its cost, or none does. The refusal is an *Error: 429 with the
// time until the bucket holds the cost, or 413 when the cost exceeds the
// burst (it could never pass).
func (l *Limiter) Take(s Signal, costs []Cost) error {
	snap := l.snap.Load()
	if r, _ := snap.defaults.Rate(s); r <= 0 && len(snap.named) == 0 {
		return nil // no rates anywhere: no lock
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	type taken struct {
		b *bucket
		n float64
	}
	var paid []taken
	refund := func() {
		for _, t := range paid {
			t.b.give(t.n)
		}
	}
	for _, c := range costs {
		if c.N <= 0 {
			continue
		}
		rate, burst := l.For(c.Cluster).Rate(s)
		if rate <= 0 {
			continue
		}
		n := float64(c.N)
		if n > float64(burst) {
			refund()
			return burstError(c.Cluster, s, n, burst)
		}
		b := l.bucket(c.Cluster, s, now, rate, burst)
		if wait := b.take(n); wait > 0 {
			refund()
			return rateError(c.Cluster, s, n, rate, wait)
		}
		paid = append(paid, taken{b, n})
	}
	return nil
}

// Refund gives back what Take took for costs, when the request was not
// written after all (Kafka failed: the client retries and pays again).
func (l *Limiter) Refund(s Signal, costs []Cost) {
	if !l.Active() {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, c := range costs {
		if b, ok := l.buckets[bucketKey{c.Cluster, s}]; ok && c.N > 0 {
			b.give(float64(c.N))
		}
	}
}

// Admit is the check before a request's body is read, when its cluster is
// known from a header or the sender's identity: an *Error (429) when the
// cluster's bucket for s is empty, or could not pay for a request like the
// last one it refused.
func (l *Limiter) Admit(s Signal, cluster string) error {
	rate, burst := l.For(cluster).Rate(s)
	if rate <= 0 {
		return nil
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.bucket(cluster, s, l.now(), rate, burst)
	if wait := b.early(); wait > 0 {
		return rateError(cluster, s, 0, rate, wait)
	}
	return nil
}

// bucket is cluster's bucket for s, refilled to now. l.mu is held.
func (l *Limiter) bucket(cluster string, s Signal, now time.Time, rate float64, burst int) *bucket {
	k := bucketKey{cluster, s}
	if b, ok := l.buckets[k]; ok {
		b.refill(now, rate, burst)
		return b
	}
	_, named := l.snap.Load().named[cluster]
	limit := l.maxClusters * int(numSignals)
	if !named && len(l.buckets) >= limit {
		for k, b := range l.buckets {
			if b.refill(now, b.rate, int(b.burst)); b.full() {
				delete(l.buckets, k)
			}
		}
	}
	if !named && len(l.buckets) >= limit {
		b := l.overflow[s]
		if b == nil {
			b = newBucket(now, rate, burst)
			l.overflow[s] = b
		}
		b.refill(now, rate, burst)
		return b
	}
	b := newBucket(now, rate, burst)
	l.buckets[k] = b
	return b
}

// Buckets is the number of buckets held, for the self-metrics.
func (l *Limiter) Buckets() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.buckets)
}
