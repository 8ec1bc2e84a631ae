package agent

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/tributary-io/tributary/pkg/agent/metrics"
)

// Params are the agent's dependencies.
type Params struct {
	// ConfigFile is read again on every reload.
	ConfigFile string
	Leader     metrics.Leader
	// FlushDeadline bounds the send queue's flush at shutdown.
	FlushDeadline time.Duration
	Registry      *prometheus.Registry
	Logger        *slog.Logger
}

// Agent is the running agent: the metrics pipeline and what operates it.
type Agent struct {
	file     string
	log      *slog.Logger
	reg      *prometheus.Registry
	pipeline *metrics.Pipeline

	reloadMu      sync.Mutex // one reload at a time
	reloads       *prometheus.CounterVec
	reloadSuccess prometheus.Gauge
}

// New builds the agent from a loaded configuration.
func New(mcfg *metrics.Config, p Params) (*Agent, error) {
	pl, err := metrics.New(metrics.Params{
		Config: mcfg, Leader: p.Leader, FlushDeadline: p.FlushDeadline,
		Registerer: p.Registry, Gatherer: p.Registry, Logger: p.Logger,
	})
	if err != nil {
		return nil, err
	}
	a := &Agent{
		file: p.ConfigFile, log: p.Logger, reg: p.Registry, pipeline: pl,
		reloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tributary_agent_config_reloads_total",
			Help: "Configuration reloads (SIGHUP, /-/reload) by outcome: applied, refused (the old configuration keeps running).",
		}, []string{"outcome"}),
		reloadSuccess: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "tributary_agent_config_last_reload_successful",
			Help: "1 if the last reload was applied, 0 if it was refused.",
		}),
	}
	a.reloadSuccess.Set(1)
	p.Registry.MustRegister(a.reloads, a.reloadSuccess)
	return a, nil
}

// Run runs the metrics pipeline until ctx ends, then shuts it down
// gracefully (see metrics.Pipeline.Run).
func (a *Agent) Run(ctx context.Context) error { return a.pipeline.Run(ctx) }

// Reload reads the configuration file again and applies it. A file that
// does not load (syntax, unknown key, invalid scrape config) is refused and
// the running configuration stays.
func (a *Agent) Reload() error {
	a.reloadMu.Lock()
	defer a.reloadMu.Unlock()
	_, mcfg, err := LoadFile(a.file)
	if err == nil {
		err = a.pipeline.Reload(mcfg)
	}
	if err != nil {
		a.reloads.WithLabelValues("refused").Inc()
		a.reloadSuccess.Set(0)
		a.log.Error("configuration refused; the previous one keeps running", "file", a.file, "err", err)
		return err
	}
	a.reloads.WithLabelValues("applied").Inc()
	a.reloadSuccess.Set(1)
	a.log.Info("configuration reloaded", "file", a.file)
	return nil
}

// Handler serves /metrics, /-/healthy, /-/ready, /-/reload (POST) and the
// plain-text status page /status (what `agent status` prints).
func (a *Agent) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(a.reg, promhttp.HandlerOpts{Registry: a.reg}))
	mux.HandleFunc("/-/healthy", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("/-/ready", func(w http.ResponseWriter, _ *http.Request) {
		if !a.pipeline.Ready() {
			http.Error(w, "not ready: WAL not open or configuration not applied", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ready")
	})
	mux.HandleFunc("/-/reload", func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost && r.Method != http.MethodPut {
			w.Header().Set("Allow", "POST, PUT")
			http.Error(w, "use POST", http.StatusMethodNotAllowed)
			return
		}
		if err := a.Reload(); err != nil {
			// 400: the file is wrong; the agent is fine and runs the old one.
			http.Error(w, "configuration refused, the previous one keeps running: "+err.Error(), http.StatusBadRequest)
			return
		}
		fmt.Fprintln(w, "configuration reloaded")
	})
	mux.HandleFunc("/status", func(w http.ResponseWriter, _ *http.Request) {
		var buf bytes.Buffer
		a.pipeline.Status(&buf)
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = w.Write(buf.Bytes())
	})
	return mux
}
