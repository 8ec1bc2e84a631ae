// Package filewatch keeps a configuration file in force while it changes:
// it polls the file and hands each new content to the caller once that
// content is whole.
//
// What is promised: apply is called with the file's full content, from one
// goroutine at a time, only when the content changed and two polls in a
// row read the same bytes; a content apply refused, or a file that cannot
// be read, is counted and logged once (per distinct content or error) and
// the last content applied stays in force. What is not: a writer that
// stalls mid-file for longer than the interval looks finished; write the
// file elsewhere and rename it over the watched path to be safe.
//
// Polling, not inotify: a Kubernetes ConfigMap or Secret is updated by
// swapping a symlink, which file watchers can miss, and reading a small
// file every few seconds costs nothing.
package filewatch

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

// DefaultMaxBytes bounds what is read of a file when Config.MaxBytes is 0:
// thousands of entries of a tokens, limits or shard file fit in a few
// hundred KiB.
const DefaultMaxBytes = 16 << 20

// Outcomes of a load, the outcome label of <prefix>_reloads_total.
const (
	OutcomeSuccess = "success"
	OutcomeError   = "error"
)

// Config names the file and how it is watched.
type Config struct {
	Path     string
	Interval time.Duration
	// Flag names the file in logs and metric help, e.g. "-limits.file".
	Flag string
	// MetricPrefix names the self-metrics:
	// <prefix>_reloads_total{outcome} and
	// <prefix>_last_reload_success_timestamp_seconds.
	MetricPrefix string
	// MaxBytes refuses a larger file; 0 is DefaultMaxBytes.
	MaxBytes int
}

// Watcher polls one file.
type Watcher struct {
	cfg   Config
	apply func([]byte) error
	log   *slog.Logger

	reloads     *prometheus.CounterVec
	lastSuccess prometheus.Gauge

	mu      sync.Mutex         // one load at a time
	last    [sha256.Size]byte  // content last handed to apply, good or not
	pending *[sha256.Size]byte // a changed content read once, applied when read again
	lastErr string             // read error last reported
}

// New builds a watcher of cfg.Path that hands new content to apply; an
// error from apply keeps the last good content in force. Call Load once
// before Run.
func New(cfg Config, apply func([]byte) error, reg prometheus.Registerer, log *slog.Logger) *Watcher {
	if cfg.MaxBytes == 0 {
		cfg.MaxBytes = DefaultMaxBytes
	}
	f := promauto.With(reg)
	w := &Watcher{
		cfg: cfg, apply: apply, log: log.With("file", cfg.Path),
		reloads: f.NewCounterVec(prometheus.CounterOpts{
			Name: cfg.MetricPrefix + "_reloads_total",
			Help: fmt.Sprintf("Loads of %s with changed content, by outcome (error: the last good content stays in force).", cfg.Flag),
		}, []string{"outcome"}),
		lastSuccess: f.NewGauge(prometheus.GaugeOpts{
			Name: cfg.MetricPrefix + "_last_reload_success_timestamp_seconds",
			Help: fmt.Sprintf("When %s was last loaded successfully.", cfg.Flag),
		}),
	}
	for _, o := range []string{OutcomeSuccess, OutcomeError} {
		w.reloads.WithLabelValues(o)
	}
	return w
}

// Load reads the file and applies it at once (a start-up has nothing
// older to keep), or returns why not.
func (w *Watcher) Load() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	b, err := w.read()
	if err != nil {
		w.reloads.WithLabelValues(OutcomeError).Inc()
		return err
	}
	w.pending = nil
	return w.load(b)
}

// Run polls the file every Config.Interval until ctx ends.
func (w *Watcher) Run(ctx context.Context) {
	tick := time.NewTicker(w.cfg.Interval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		w.Poll()
	}
}

// Poll reads the file once, as Run does every interval; a changed content
// is applied when the previous Poll read it too. Tests call it to step
// without waiting.
func (w *Watcher) Poll() {
	w.mu.Lock()
	defer w.mu.Unlock()
	b, err := w.read()
	if err != nil {
		if err.Error() != w.lastErr { // a missing file is reported once, not every interval
			w.lastErr = err.Error()
			w.reloads.WithLabelValues(OutcomeError).Inc()
			w.log.Warn(w.cfg.Flag+" unreadable: keeping the last good content", "err", err)
		}
		return
	}
	w.lastErr = ""
	sum := sha256.Sum256(b)
	if sum == w.last {
		w.pending = nil // changed and changed back: start over
		return
	}
	// A file written in place (truncated, then written) can be read half
	// written, and a prefix of a YAML file often parses: an empty limits
	// file lifts every limit, a cut tokens file revokes tokens.
	if w.pending == nil || *w.pending != sum {
		w.pending = &sum
		return
	}
	w.pending = nil
	if err := w.load(b); err != nil {
		w.log.Warn(w.cfg.Flag+" refused: keeping the last good content", "err", err)
		return
	}
	w.log.Info(w.cfg.Flag + " reloaded")
}

// load applies b and counts the outcome; the caller holds mu.
func (w *Watcher) load(b []byte) error {
	w.last = sha256.Sum256(b)
	if err := w.apply(b); err != nil {
		w.reloads.WithLabelValues(OutcomeError).Inc()
		return fmt.Errorf("%s: %w", w.cfg.Path, err)
	}
	w.reloads.WithLabelValues(OutcomeSuccess).Inc()
	w.lastSuccess.SetToCurrentTime()
	return nil
}

// ErrTooLarge: the file is over Config.MaxBytes.
var ErrTooLarge = errors.New("file too large")

func (w *Watcher) read() ([]byte, error) {
	fh, err := os.Open(w.cfg.Path)
	if err != nil {
		return nil, err
	}
	defer fh.Close()
	b, err := io.ReadAll(io.LimitReader(fh, int64(w.cfg.MaxBytes)+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", w.cfg.Path, err)
	}
	if len(b) > w.cfg.MaxBytes {
		return nil, fmt.Errorf("%s: %w: larger than %d bytes", w.cfg.Path, ErrTooLarge, w.cfg.MaxBytes)
	}
	return b, nil
}
