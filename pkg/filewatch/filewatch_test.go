package filewatch

import (
	"bytes"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"
)

// recorder is an apply that keeps what it was given and refuses content
// starting with "bad".
type recorder struct{ applied []string }

func (r *recorder) apply(b []byte) error {
	if bytes.HasPrefix(b, []byte("bad")) {
		return errors.New("refused by the caller")
	}
	r.applied = append(r.applied, string(b))
	return nil
}

func newWatcher(t *testing.T, content string, maxBytes int) (*Watcher, *recorder, func(string), func(string) float64) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "f.yaml")
	write := func(s string) { require.NoError(t, os.WriteFile(path, []byte(s), 0o600)) }
	write(content)
	rec := &recorder{}
	w := New(Config{Path: path, Interval: time.Hour, Flag: "-test.file", MetricPrefix: "test_file", MaxBytes: maxBytes},
		rec.apply, prometheus.NewRegistry(), slog.New(slog.NewTextHandler(io.Discard, nil)))
	count := func(outcome string) float64 { return testutil.ToFloat64(w.reloads.WithLabelValues(outcome)) }
	return w, rec, write, count
}

func TestWatcherAppliesWholeContentOnly(t *testing.T) {
	w, rec, write, count := newWatcher(t, "v1", 0)
	require.NoError(t, w.Load())
	require.Equal(t, []string{"v1"}, rec.applied, "Load applies at once")

	w.Poll()
	require.Equal(t, []string{"v1"}, rec.applied, "unchanged: nothing applied")

	write("v2 half")
	w.Poll()
	write("v2 half and the rest")
	w.Poll()
	require.Equal(t, []string{"v1"}, rec.applied, "a content read once is never applied")
	w.Poll()
	require.Equal(t, []string{"v1", "v2 half and the rest"}, rec.applied, "read twice: applied")
	require.Equal(t, 2.0, count(OutcomeSuccess))

	// Changed, then changed back before a second read: the first change
	// must be read twice again, not count its earlier read.
	write("v3")
	w.Poll()
	write("v2 half and the rest")
	w.Poll()
	write("v3")
	w.Poll()
	require.Len(t, rec.applied, 2, "v3 read once since the file went back")
	w.Poll()
	require.Equal(t, "v3", rec.applied[2])

	write("bad content")
	w.Poll()
	w.Poll()
	w.Poll()
	require.Len(t, rec.applied, 3, "refused content leaves the last good in force")
	require.Equal(t, 1.0, count(OutcomeError), "the same refused content is counted once")

	path := w.cfg.Path
	require.NoError(t, os.Remove(path))
	w.Poll()
	w.Poll()
	require.Equal(t, 2.0, count(OutcomeError), "a missing file is counted once")

	write("v4")
	w.Poll()
	w.Poll()
	require.Equal(t, "v4", rec.applied[3])
	require.Equal(t, 4.0, count(OutcomeSuccess))
}

func TestWatcherBoundsTheFile(t *testing.T) {
	w, rec, write, count := newWatcher(t, strings.Repeat("x", 11), 10)
	require.ErrorIs(t, w.Load(), ErrTooLarge)
	require.Empty(t, rec.applied)
	write("small")
	w.Poll()
	w.Poll()
	require.Equal(t, []string{"small"}, rec.applied)
	write(strings.Repeat("y", 11))
	w.Poll()
	w.Poll()
	require.Equal(t, []string{"small"}, rec.applied, "over MaxBytes: refused")
	require.Equal(t, 2.0, count(OutcomeError))
}

func TestWatcherRunPolls(t *testing.T) {
	t.Parallel()
	w, rec, write, _ := newWatcher(t, "v1", 0)
	w.cfg.Interval = 5 * time.Millisecond
	require.NoError(t, w.Load())
	go w.Run(t.Context())
	write("v2")
	require.Eventually(t, func() bool {
		w.mu.Lock()
		defer w.mu.Unlock()
		return len(rec.applied) == 2
	}, 5*time.Second, 5*time.Millisecond)
}
