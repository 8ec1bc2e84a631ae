package ingester

import (
	"context"
	"errors"
	"log/slog"
	"math/rand/v2"
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

// withRetry retries every error that is not Permanent, until ctx ends. A
// backend's Retry-After is honoured (capped at Max).
func withRetry(s Sink, b Backoff, retries prometheus.Counter, log *slog.Logger) Sink {
	return SinkFunc(func(ctx context.Context, recs []Record) error {
		for attempt := 0; ; attempt++ {
			err := s.Write(ctx, recs)
			if err == nil || IsPermanent(err) {
				return err
			}
			if ctx.Err() != nil {
				return err
			}
			d := b.delay(attempt)
			var ra *RetryAfterError
			if errors.As(err, &ra) && ra.After > d {
				d = min(ra.After, b.Max)
			}
			retries.Inc()
			log.Warn("sink write failed, retrying", "records", len(recs), "attempt", attempt+1, "in", d, "err", err)
			select {
			case <-ctx.Done():
				return err
			case <-time.After(d):
			}
		}
	})
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
