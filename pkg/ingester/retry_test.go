package ingester

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/stretchr/testify/require"
)

func TestWithRetry(t *testing.T) {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	b := Backoff{Min: time.Millisecond, Max: 20 * time.Millisecond}
	for _, tc := range []struct {
		name    string
		errs    []error // returned by successive attempts; then nil
		wantErr bool
		calls   int
		retries float64
	}{
		{"success", nil, false, 1, 0},
		{"retryable then success", []error{errors.New("503"), errors.New("reset")}, false, 3, 2},
		{"permanent is not retried", []error{Permanent(errors.New("400"))}, true, 1, 0},
		{"retry after is capped at max", []error{&RetryAfterError{Err: errors.New("429"), After: time.Hour}}, false, 2, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			calls := 0
			base := SinkFunc(func(context.Context, []Record) error {
				calls++
				if calls <= len(tc.errs) {
					return tc.errs[calls-1]
				}
				return nil
			})
			retries := prometheus.NewCounter(prometheus.CounterOpts{Name: "r"})
			start := time.Now()
			err := withRetry(base, b, retries, log).Write(context.Background(), []Record{{}})
			require.Equal(t, tc.wantErr, err != nil, "%v", err)
			require.Equal(t, tc.calls, calls)
			require.Equal(t, tc.retries, value(t, retries))
			require.Less(t, time.Since(start), 10*time.Second)
		})
	}
}

func TestWithRetryStopsWithContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	calls := 0
	base := SinkFunc(func(context.Context, []Record) error {
		calls++
		if calls == 3 {
			cancel()
		}
		return errors.New("down")
	})
	err := withRetry(base, Backoff{Min: time.Millisecond, Max: time.Millisecond}, prometheus.NewCounter(prometheus.CounterOpts{Name: "r"}),
		slog.New(slog.NewTextHandler(io.Discard, nil))).Write(ctx, nil)
	require.Error(t, err)
	require.Equal(t, 3, calls)
}

func TestBackoffIsCapped(t *testing.T) {
	b := Backoff{Min: 100 * time.Millisecond, Max: time.Second}
	for attempt := 0; attempt < 100; attempt++ {
		d := b.delay(attempt)
		require.Greater(t, d, time.Duration(0))
		require.LessOrEqual(t, d, 1200*time.Millisecond, "attempt %d", attempt)
	}
	require.Less(t, b.delay(0), 200*time.Millisecond)
}

func value(t *testing.T, c prometheus.Counter) float64 {
	var m dto.Metric
	require.NoError(t, c.Write(&m))
	return m.GetCounter().GetValue()
}
