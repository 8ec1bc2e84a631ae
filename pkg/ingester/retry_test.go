package ingester

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/stretchr/testify/require"
)

// fakeSink is a Sink (and Prober when probe is set) of function fields.
type fakeSink struct {
	write func(recs []Record) error
	probe func() error
}

func (s *fakeSink) Write(_ context.Context, recs []Record) error { return s.write(recs) }

type probingSink struct{ *fakeSink }

func (s probingSink) Probe(context.Context) error { return s.probe() }

type deadLetter struct {
	offset int64
	reason string
	class  string
}

// testWriter returns a writer over s that records what it wrote and
// dead-lettered.
func testWriter(s Sink, attempts int) (*writer, *[]int64, *[]deadLetter) {
	var written []int64
	var dead []deadLetter
	w := &writer{
		sink: s, backoff: Backoff{Min: time.Millisecond, Max: 5 * time.Millisecond}, maxAttempts: attempts,
		retries: prometheus.NewCounter(prometheus.CounterOpts{Name: "r"}),
		warn:    newLogLimiter(slog.New(slog.NewTextHandler(io.Discard, nil)), time.Second),
		written: func(recs []Record) {
			for _, r := range recs {
				written = append(written, r.Offset)
			}
		},
		deadLetter: func(_ context.Context, r Record, cause error, class string) error {
			dead = append(dead, deadLetter{r.Offset, cause.Error(), class})
			return nil
		},
	}
	if p, ok := s.(Prober); ok {
		w.prober = p
	}
	return w, &written, &dead
}

func offsets(from, to int64) []Record {
	var recs []Record
	for o := from; o < to; o++ {
		recs = append(recs, Record{Offset: o})
	}
	return recs
}

func holds(recs []Record, offset int64) bool {
	return slices.ContainsFunc(recs, func(r Record) bool { return r.Offset == offset })
}

func TestWriterRetries(t *testing.T) {
	for _, tc := range []struct {
		name    string
		errs    []error // returned by successive attempts; then nil
		dead    int
		calls   int
		retries float64
	}{
		{"success", nil, 0, 1, 0},
		{"retryable then success", []error{errors.New("503"), errors.New("reset")}, 0, 3, 2},
		{"permanent is dead-lettered", []error{Permanent(errors.New("400"))}, 1, 1, 0},
		{"retry after is capped at max", []error{&RetryAfterError{Err: errors.New("429"), After: time.Hour}}, 0, 2, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			calls := 0
			w, written, dead := testWriter(&fakeSink{write: func([]Record) error {
				calls++
				if calls <= len(tc.errs) {
					return tc.errs[calls-1]
				}
				return nil
			}}, 1)
			start := time.Now()
			var failing atomic.Bool
			require.NoError(t, w.write(context.Background(), offsets(0, 1), &failing))
			require.Len(t, *dead, tc.dead)
			require.Len(t, *written, 1-tc.dead)
			require.Equal(t, tc.calls, calls)
			require.Equal(t, tc.retries, value(t, w.retries))
			require.False(t, failing.Load())
			require.Less(t, time.Since(start), 10*time.Second)
		})
	}
}

// While the sink is healthy (its probe succeeds, or without a probe other
// writes succeed), a record that keeps failing with a retryable error is
// found by splitting the batch and dead-lettered with the sink's answer;
// the rest is written in order.
func TestWriterIsolatesPoisonWhileHealthy(t *testing.T) {
	poison := errors.New("prometheus write: 500 Internal Server Error: too old sample")
	for _, tc := range []struct {
		name  string
		sink  func(f *fakeSink) Sink
		bad   []int64
		batch int64
	}{
		{"probe succeeds", func(f *fakeSink) Sink { return probingSink{f} }, []int64{7}, 16},
		{"probe succeeds, first and last", func(f *fakeSink) Sink { return probingSink{f} }, []int64{0, 99}, 100},
		{"no probe, other partitions succeed", func(f *fakeSink) Sink { return f }, []int64{12}, 16},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := &fakeSink{probe: func() error { return nil }}
			f.write = func(recs []Record) error {
				for _, b := range tc.bad {
					if holds(recs, b) {
						return poison
					}
				}
				return nil
			}
			w, written, dead := testWriter(tc.sink(f), 3)
			if w.prober == nil {
				// Another partition's writes succeed between this one's
				// attempts.
				write := f.write
				f.write = func(recs []Record) error {
					w.lastOK.Store(time.Now().UnixNano())
					time.Sleep(time.Microsecond)
					return write(recs)
				}
			}
			var failing atomic.Bool
			require.NoError(t, w.write(context.Background(), offsets(0, tc.batch), &failing))
			var want []int64
			for o := int64(0); o < tc.batch; o++ {
				if !slices.Contains(tc.bad, o) {
					want = append(want, o)
				}
			}
			require.Equal(t, want, *written, "written, in order")
			require.Len(t, *dead, len(tc.bad))
			for i, d := range *dead {
				require.Equal(t, tc.bad[i], d.offset)
				require.Equal(t, "failed", d.class)
				require.Contains(t, d.reason, "too old sample")
			}
		})
	}
}

// While the sink as a whole is down, nothing is dead-lettered however
// long it lasts: its probe fails, its answer says it is misconfigured or
// overloaded, or nothing else succeeds.
func TestWriterOutageDeadLettersNothing(t *testing.T) {
	down := errors.New("prometheus write: 503 Service Unavailable")
	for _, tc := range []struct {
		name  string
		err   error
		probe error
		sink  func(f *fakeSink) Sink
	}{
		{"probe fails", down, errors.New("connection refused"), func(f *fakeSink) Sink { return probingSink{f} }},
		{"misconfigured while probe succeeds", fmt.Errorf("push: %w: answered 404", ErrMisconfigured), nil, func(f *fakeSink) Sink { return probingSink{f} }},
		{"429 while probe succeeds", fmt.Errorf("loki push: %w: 429 Too Many Requests: ingestion rate limit exceeded", ErrThrottled), nil, func(f *fakeSink) Sink { return probingSink{f} }},
		{"retry-after while probe succeeds", &RetryAfterError{Err: down, After: time.Millisecond}, nil, func(f *fakeSink) Sink { return probingSink{f} }},
		{"no probe, nothing succeeds", down, nil, func(f *fakeSink) Sink { return f }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			calls := 0
			f := &fakeSink{probe: func() error { return tc.probe }}
			f.write = func(recs []Record) error {
				calls++
				if calls <= 40 {
					return tc.err
				}
				return nil
			}
			w, written, dead := testWriter(tc.sink(f), 2)
			var failing atomic.Bool
			require.NoError(t, w.write(context.Background(), offsets(0, 8), &failing))
			require.Empty(t, *dead)
			require.Equal(t, []int64{0, 1, 2, 3, 4, 5, 6, 7}, *written)
			require.Equal(t, 41, calls, "one write per attempt, the whole batch each time")
		})
	}
}

func TestWriterStopsWithContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	calls := 0
	w, written, dead := testWriter(&fakeSink{write: func([]Record) error {
		calls++
		if calls == 3 {
			cancel()
		}
		return errors.New("down")
	}}, 1)
	var failing atomic.Bool
	require.Error(t, w.write(ctx, offsets(0, 4), &failing))
	require.Equal(t, 3, calls)
	require.Empty(t, *written)
	require.Empty(t, *dead)
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

func TestLogLimiter(t *testing.T) {
	var lines []string
	h := slog.New(slog.NewTextHandler(writerFunc(func(p []byte) { lines = append(lines, string(p)) }), nil))
	l := newLogLimiter(h, 50*time.Millisecond)
	for range 5 {
		l.Warn("sink write failed, retrying", "err", "503")
	}
	l.Warn("dead-letter produce failed, retrying")
	require.Len(t, lines, 2, "one line per cause: %q", lines)
	time.Sleep(60 * time.Millisecond)
	l.Warn("sink write failed, retrying", "err", "503")
	require.Len(t, lines, 3)
	require.Contains(t, lines[2], "suppressed=4")
}

type writerFunc func([]byte)

func (f writerFunc) Write(p []byte) (int, error) { f(p); return len(p), nil }

func value(t *testing.T, c prometheus.Counter) float64 {
	var m dto.Metric
	require.NoError(t, c.Write(&m))
	return m.GetCounter().GetValue()
}
