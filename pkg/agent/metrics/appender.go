package metrics

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/prometheus/model/histogram"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/scrape"
	"github.com/prometheus/prometheus/storage"
)

// walAppendable is what the scrape manager appends to: the WAL (and the
// remote storage's timestamp tracker), wrapped to count samples per scrape
// and target for the status page, and to count failed commits (a full
// disk) instead of letting them pass unseen. A failed commit loses that
// scrape, not the agent: the scrape loop goes on and the next commit
// succeeds once there is room.
type walAppendable struct {
	m    *selfMetrics
	log  *slog.Logger
	base atomic.Pointer[storage.Storage]

	perTarget sync.Map // *scrape.Target → int (samples in its last committed scrape)

	lastLog atomic.Int64 // unix nanos of the last commit-failure log line

	// For the status page: the last commit's outcome.
	lastOK, lastFailed, failingSince atomic.Int64 // unix nanos
	lastErr                          atomic.Pointer[string]
}

// walHealth says whether the last commit failed, since when the commits
// fail (the first failure after the last success) and with what error.
func (a *walAppendable) walHealth() (failing bool, since time.Time, err string) {
	ok, failed := a.lastOK.Load(), a.lastFailed.Load()
	if failed == 0 || ok > failed {
		return false, time.Time{}, ""
	}
	if e := a.lastErr.Load(); e != nil {
		err = *e
	}
	return true, time.Unix(0, a.failingSince.Load()), err
}

func (a *walAppendable) set(s storage.Storage) { a.base.Store(&s) }

var errNotOpen = errors.New("WAL not open")

// AppenderV2 implements storage.AppendableV2.
func (a *walAppendable) AppenderV2(ctx context.Context) storage.AppenderV2 {
	base := a.base.Load()
	if base == nil {
		return failingAppender{}
	}
	t, _ := scrape.TargetFromContext(ctx)
	return &countingAppender{AppenderV2: (*base).AppenderV2(ctx), a: a, target: t}
}

// samplesLastScrape is what the target's last committed scrape appended,
// the report series (up, scrape_duration_seconds, …) not counted.
func (a *walAppendable) samplesLastScrape(t *scrape.Target) (int, bool) {
	v, ok := a.perTarget.Load(t)
	if !ok {
		return 0, false
	}
	return v.(int), true
}

// forget drops targets no longer active, so the map stays bounded.
func (a *walAppendable) forget(active map[*scrape.Target]bool) {
	a.perTarget.Range(func(k, _ any) bool {
		if !active[k.(*scrape.Target)] {
			a.perTarget.Delete(k)
		}
		return true
	})
}

type countingAppender struct {
	storage.AppenderV2
	a      *walAppendable
	target *scrape.Target
	n      int
	report bool
}

func (c *countingAppender) Append(ref storage.SeriesRef, ls labels.Labels, st, t int64, v float64, h *histogram.Histogram, fh *histogram.FloatHistogram, opts storage.AppendV2Options) (storage.SeriesRef, error) {
	switch ls.Get(labels.MetricName) {
	case "up", "scrape_duration_seconds", "scrape_samples_scraped", "scrape_samples_post_metric_relabeling", "scrape_series_added":
		c.report = true
	default:
		c.n++
	}
	return c.AppenderV2.Append(ref, ls, st, t, v, h, fh, opts)
}

func (c *countingAppender) Commit() error {
	err := c.AppenderV2.Commit()
	now := time.Now().UnixNano()
	if err != nil {
		c.a.m.commitFailures.Inc()
		if c.a.lastOK.Load() >= c.a.lastFailed.Load() {
			c.a.failingSince.Store(now)
		}
		msg := err.Error()
		c.a.lastErr.Store(&msg)
		c.a.lastFailed.Store(now)
		// One line per 10 s at most: a full disk fails every scrape.
		if last := c.a.lastLog.Load(); now-last > int64(10*time.Second) && c.a.lastLog.CompareAndSwap(last, now) {
			c.a.log.Error("WAL append failed; the scrape is lost, scraping goes on", "err", err)
		}
		return err
	}
	c.a.lastOK.Store(now)
	c.a.m.appended.Add(float64(c.n))
	if c.target != nil && (c.n > 0 || c.report) {
		c.a.perTarget.Store(c.target, c.n)
	}
	return nil
}

type failingAppender struct{}

func (failingAppender) Append(storage.SeriesRef, labels.Labels, int64, int64, float64, *histogram.Histogram, *histogram.FloatHistogram, storage.AppendV2Options) (storage.SeriesRef, error) {
	return 0, errNotOpen
}
func (failingAppender) Commit() error   { return errNotOpen }
func (failingAppender) Rollback() error { return nil }
