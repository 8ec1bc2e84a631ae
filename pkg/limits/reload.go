package limits

import (
	"context"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tributary-io/tributary/pkg/filewatch"
)

// Reloader keeps a Limiter's file layer current: it polls the limits file
// (pkg/filewatch) and applies a changed content once two polls in a row
// read it. A file that cannot be read or parsed is reported (once per
// distinct content) and the last good one stays in force.
type Reloader struct {
	w       *filewatch.Watcher
	limiter *Limiter
}

// NewReloader builds a reloader for path; Load must pass once before Run.
// Its self-metrics are tributary_gateway_limits_reloads_total{outcome} and
// tributary_gateway_limits_last_reload_success_timestamp_seconds.
func NewReloader(path string, interval time.Duration, l *Limiter, reg prometheus.Registerer, log *slog.Logger) *Reloader {
	r := &Reloader{limiter: l}
	r.w = filewatch.New(filewatch.Config{
		Path: path, Interval: interval, Flag: "-limits.file",
		MetricPrefix: "tributary_gateway_limits", MaxBytes: maxFileBytes,
	}, r.apply, reg, log)
	return r
}

// Load reads the file and applies it, or returns why not (the limiter
// keeps what it had).
func (r *Reloader) Load() error { return r.w.Load() }

func (r *Reloader) apply(b []byte) error {
	f, err := ParseFile(b)
	if err != nil {
		return err
	}
	r.limiter.SetFile(f)
	return nil
}

// Run polls the file until ctx ends.
func (r *Reloader) Run(ctx context.Context) { r.w.Run(ctx) }
