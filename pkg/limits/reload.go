package limits

import (
	"bytes"
	"context"
	"crypto/sha256"
	"log/slog"
	"os"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

// Reloader keeps a Limiter's file layer current: it reads the limits file
// every interval and applies it when its content changed and read the same
// on two polls in a row. A file that
// cannot be read or parsed is reported (once per distinct content) and the
// last good one stays in force.
type Reloader struct {
	path     string
	interval time.Duration
	limiter  *Limiter
	log      *slog.Logger

	reloads     *prometheus.CounterVec
	lastSuccess prometheus.Gauge

	last    [sha256.Size]byte // content last tried
	pending [sha256.Size]byte // a changed content seen once, applied when seen again
	lastErr string            // read error last reported
}

// NewReloader builds a reloader for path; Load must pass once before Run.
func NewReloader(path string, interval time.Duration, l *Limiter, reg prometheus.Registerer, log *slog.Logger) *Reloader {
	f := promauto.With(reg)
	return &Reloader{
		path: path, interval: interval, limiter: l, log: log.With("file", path),
		reloads: f.NewCounterVec(prometheus.CounterOpts{
			Name: "tributary_gateway_limits_reloads_total",
			Help: "Loads of -limits.file with changed content, by outcome (success, error: the last good file stays in force).",
		}, []string{"outcome"}),
		lastSuccess: f.NewGauge(prometheus.GaugeOpts{
			Name: "tributary_gateway_limits_last_reload_success_timestamp_seconds",
			Help: "When -limits.file was last loaded successfully.",
		}),
	}
}

// Load reads the file and applies it, or returns why not (the limiter
// keeps what it had).
func (r *Reloader) Load() error {
	b, err := os.ReadFile(r.path)
	if err != nil {
		r.reloads.WithLabelValues("error").Inc()
		return err
	}
	r.last = sha256.Sum256(b)
	return r.apply(b)
}

func (r *Reloader) apply(b []byte) error {
	if len(b) > maxFileBytes {
		r.reloads.WithLabelValues("error").Inc()
		return errFileTooLarge
	}
	f, err := ParseFile(b)
	if err != nil {
		r.reloads.WithLabelValues("error").Inc()
		return err
	}
	r.limiter.SetFile(f)
	r.reloads.WithLabelValues("success").Inc()
	r.lastSuccess.SetToCurrentTime()
	return nil
}

// Run polls the file until ctx ends. Polling, not inotify: a Kubernetes
// ConfigMap is updated by swapping a symlink, which some watchers miss.
func (r *Reloader) Run(ctx context.Context) {
	tick := time.NewTicker(r.interval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		r.poll()
	}
}

func (r *Reloader) poll() {
	b, err := os.ReadFile(r.path)
	if err != nil {
		if err.Error() != r.lastErr {
			r.lastErr = err.Error()
			r.reloads.WithLabelValues("error").Inc()
			r.log.Warn("limits file unreadable: keeping the last good limits", "err", err)
		}
		return
	}
	r.lastErr = ""
	sum := sha256.Sum256(b)
	if bytes.Equal(sum[:], r.last[:]) {
		return
	}
	// A change is applied once two polls read the same content: a file
	// written in place (truncated, then written) can be read half-written,
	// and a prefix of a limits file often parses (an empty file lifts
	// every limit).
	if !bytes.Equal(sum[:], r.pending[:]) {
		r.pending = sum
		return
	}
	r.last = sum
	if err := r.apply(b); err != nil {
		r.log.Warn("limits file invalid: keeping the last good limits", "err", err)
		return
	}
	r.log.Info("limits file reloaded")
}
