package ingester

import (
	"context"
	"errors"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Backoff is a capped exponential backoff with jitter.
type Backoff struct {
	Min time.Duration `yaml:"min"`
	Max time.Duration `yaml:"max"`
}

func (b Backoff) delay(attempt int) time.Duration {
	d := b.Min << min(attempt, 30)
	if d <= 0 || d > b.Max {
		d = b.Max
	}
	// +-20% jitter so that replicas do not retry in lockstep.
	return time.Duration(float64(d) * (0.8 + 0.4*rand.Float64()))
}

// ErrThrottled marks a sink's answer that asks the ingester to slow down
// (HTTP 429: a per-tenant rate limit, an overloaded backend). It is
// retried and never counts towards dead-lettering a record: the data is
// fine, the sink wants it later.
var ErrThrottled = errors.New("sink throttled")

// writer delivers batches to one sink, shared by all partitions of its
// consumer. A batch is settled when every record is either acknowledged by
// the sink or acknowledged by the dead-letter topic; the caller marks the
// offset only then.
//
// The rule that keeps one record from stalling a partition while a plain
// outage loses nothing:
//
//   - A permanent refusal (Permanent) splits the batch in halves until the
//     refused records are alone; those are dead-lettered ("rejected").
//   - A retryable failure is retried with backoff. An attempt counts
//     against the batch's budget (Config.PoisonMaxAttempts) only when the
//     sink is otherwise healthy (see healthy). When the budget is spent the
//     batch is split in halves, each half getting a smaller budget
//     (subBatchAttempts); a single record that spends its budget is
//     dead-lettered with the sink's answer as the reason ("failed").
//   - While the sink is down (probe fails, nothing succeeds, or its answer
//     says it is misconfigured or overloaded) attempts do not count: the
//     batch is retried without limit and nothing is dead-lettered.
type writer struct {
	sink        Sink   // one attempt, timed
	prober      Prober // nil when the sink cannot probe
	backoff     Backoff
	maxAttempts int
	retries     prometheus.Counter
	warn        *logLimiter
	written     func(recs []Record)
	deadLetter  func(ctx context.Context, r Record, cause error, class string) error

	// lastOK is when a write last succeeded, in Unix nanoseconds, for any
	// partition: proof that the sink as a whole accepts writes.
	lastOK atomic.Int64

	probeMu  sync.Mutex
	probedAt time.Time
	probeErr error
}

// subBatchAttempts is the budget of the halves of a split batch: the whole
// batch already failed PoisonMaxAttempts times while the sink was healthy,
// so a half that fails twice more (a retry covers a flaky answer) holds a
// bad record. With 500 records a batch is cut at most 9 times, ~18 writes.
const subBatchAttempts = 2

// probeEvery bounds how often partitions failing at once probe the sink,
// and probeTimeout how long one probe may take.
const (
	probeEvery   = time.Second
	probeTimeout = 5 * time.Second
)

// write settles recs. It returns an error only when ctx ended first; the
// records are then neither written nor dead-lettered as a whole, and the
// caller must not mark them. failing is set while the batch is being
// retried (it feeds the partition's readiness).
func (w *writer) write(ctx context.Context, recs []Record, failing *atomic.Bool) error {
	err := w.sink.Write(ctx, recs)
	if err == nil {
		w.ok(recs)
		return nil
	}
	failing.Store(true)
	defer failing.Store(false)
	return w.settle(ctx, recs, err, w.maxAttempts, time.Now())
}

func (w *writer) ok(recs []Record) {
	w.lastOK.Store(time.Now().UnixNano())
	w.written(recs)
}

// settle retries recs, which failed with err, until they are written or
// dead-lettered or ctx ends; budget is the number of failures while the
// sink is healthy before the batch is split, and a write that succeeded
// after since proves the sink healthy.
func (w *writer) settle(ctx context.Context, recs []Record, err error, budget int, since time.Time) error {
	counted := 0
	for attempt := 0; ; attempt++ {
		if IsPermanent(err) {
			if len(recs) == 1 {
				return w.deadLetter(ctx, recs[0], err, "rejected")
			}
			return w.split(ctx, recs, min(subBatchAttempts, budget))
		}
		if ctx.Err() != nil {
			return err
		}
		if w.healthy(ctx, since, err) {
			counted++
			if counted >= budget {
				if len(recs) == 1 {
					return w.deadLetter(ctx, recs[0], err, "failed")
				}
				return w.split(ctx, recs, min(subBatchAttempts, budget))
			}
		}
		d := w.backoff.delay(attempt)
		var ra *RetryAfterError
		if errors.As(err, &ra) && ra.After > d {
			d = min(ra.After, w.backoff.Max)
		}
		w.retries.Inc()
		w.warn.Warn("sink write failed, retrying", "records", len(recs), "attempt", attempt+1, "in", d, "err", err)
		t := time.NewTimer(d)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
		if err = w.sink.Write(ctx, recs); err == nil {
			w.ok(recs)
			return nil
		}
	}
}

// split writes the halves of recs in order, settling each. The first
// half's success proves the sink healthy for the second.
func (w *writer) split(ctx context.Context, recs []Record, budget int) error {
	since := time.Now()
	w.warn.Warn("sink keeps failing a batch while healthy; splitting it to find the records it refuses",
		"records", len(recs), "first_offset", recs[0].Offset, "partition", recs[0].Partition)
	mid := len(recs) / 2
	for _, half := range [][]Record{recs[:mid], recs[mid:]} {
		err := w.sink.Write(ctx, half)
		if err == nil {
			w.ok(half)
			continue
		}
		if err := w.settle(ctx, half, err, budget, since); err != nil {
			return err
		}
	}
	return nil
}

// healthy reports whether the sink accepts writes other than the failing
// one since it started failing: another write succeeded since then (another
// partition, or the other half of a split), or the sink's probe succeeds.
// An answer that says the sink is misconfigured (ErrMisconfigured) or asks
// to slow down (ErrThrottled, RetryAfterError: overload) means the sink is
// down, not that the records are bad.
func (w *writer) healthy(ctx context.Context, since time.Time, err error) bool {
	var ra *RetryAfterError
	if errors.Is(err, ErrMisconfigured) || errors.Is(err, ErrThrottled) || errors.As(err, &ra) {
		return false
	}
	if w.lastOK.Load() > since.UnixNano() {
		return true
	}
	return w.prober != nil && w.probe(ctx) == nil
}

// probe runs the sink's probe at most every probeEvery; partitions failing
// together share the answer.
func (w *writer) probe(ctx context.Context) error {
	w.probeMu.Lock()
	defer w.probeMu.Unlock()
	if !w.probedAt.IsZero() && time.Since(w.probedAt) < probeEvery {
		return w.probeErr
	}
	pctx, cancel := context.WithTimeout(ctx, probeTimeout)
	defer cancel()
	w.probeErr = w.prober.Probe(pctx)
	w.probedAt = time.Now()
	return w.probeErr
}

// withMetrics times writes by outcome.
func withMetrics(s Sink, m *Metrics, sink string) Sink {
	return SinkFunc(func(ctx context.Context, recs []Record) error {
		start := time.Now()
		err := s.Write(ctx, recs)
		outcome := "success"
		switch {
		case err == nil:
		case IsPermanent(err):
			outcome = "rejected"
		default:
			outcome = "error"
		}
		m.writeDuration.WithLabelValues(sink, outcome).Observe(time.Since(start).Seconds())
		return err
	})
}
