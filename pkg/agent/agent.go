package agent

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"k8s.io/client-go/kubernetes"

	"github.com/tributary-io/tributary/pkg/agent/events"
	"github.com/tributary-io/tributary/pkg/agent/logs"
	"github.com/tributary-io/tributary/pkg/agent/metrics"
	"github.com/tributary-io/tributary/pkg/agent/otlp"
	"github.com/tributary-io/tributary/pkg/exepages"
	"github.com/tributary-io/tributary/pkg/k8s"
)

// Component is one part of the agent beside the metrics pipeline: the log
// tailer, the events watcher, the OTLP receiver. Each lives in its own
// package under pkg/agent, with a Config section of the agent's file and a
// New(Params) constructor; agent.New builds the ones configured.
type Component interface {
	// Run runs until ctx ends; then it flushes what it holds within the
	// agent's shutdown deadline (-shutdown.flush-timeout) and returns. An
	// error before ctx ended stops the whole agent.
	Run(ctx context.Context) error
	// Status writes the component's section of the /status page (plain
	// text, what `agent status` prints).
	Status(w io.Writer)
	// Ready reports whether the component does its job (/-/ready).
	Ready() bool
}

// Params are the agent's dependencies.
type Params struct {
	// ConfigFile is read again on every reload.
	ConfigFile string
	// FlushDeadline bounds the shutdown: how long the metrics queue and
	// each component may take to flush after Run's ctx ended.
	FlushDeadline time.Duration
	Registry      *prometheus.Registry
	Logger        *slog.Logger
	// ReleaseStartupPages gives back, at each of startupPagesReleases, the
	// pages of the agent's binary that start-up touched (package
	// exepages).
	ReleaseStartupPages bool
}

// startupPagesReleases are when, after Run starts, the binary's pages are
// released. At once: package initialisation's. Then what starting maps
// again (opening the WAL, the first discovery, building the scrape loops
// and the queue, the first scrape of each target within one interval, the
// first sends): released while it happens, the peak RSS stays lower than
// with one late release (the bench's timeline at 10k series: 60 MiB just
// before a single release at 1 min, the binary's pages 24 MiB of it).
// After a minute, what is mapped is what the agent keeps using.
var startupPagesReleases = []time.Duration{0, 10 * time.Second, 30 * time.Second, time.Minute}

// Agent is the running agent: the metrics pipeline, the components, what
// they share (one Kubernetes client, one leader election, one pod
// informer) and what operates them (reload, HTTP).
type Agent struct {
	file          string
	log           *slog.Logger
	reg           *prometheus.Registry
	flushDeadline time.Duration
	pipeline      *metrics.Pipeline
	components    []namedComponent
	releasePages  bool

	// Shared with the components; nil when not configured.
	kube    kubernetes.Interface
	elector *k8s.Elector
	pods    *k8s.Pods

	reloadMu      sync.Mutex // one reload at a time
	reloads       *prometheus.CounterVec
	reloadSuccess prometheus.Gauge
	pagesReleased prometheus.Counter
}

type namedComponent struct {
	name string
	Component
}

// New builds the agent from a loaded configuration (LoadFile): the
// Kubernetes client when the kubernetes section is present, the leader
// election when cluster-wide work is configured (metrics.cluster_wide_jobs
// or events), the node's pod informer when kubernetes.node_name is set,
// the metrics pipeline and each configured component.
func New(cfg *Config, mcfg *metrics.Config, p Params) (*Agent, error) {
	a := &Agent{
		file: p.ConfigFile, log: p.Logger, reg: p.Registry, flushDeadline: p.FlushDeadline, releasePages: p.ReleaseStartupPages,
		reloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tributary_agent_config_reloads_total",
			Help: "Configuration reloads (SIGHUP, /-/reload) by outcome: applied, refused (the old configuration keeps running).",
		}, []string{"outcome"}),
		reloadSuccess: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "tributary_agent_config_last_reload_successful",
			Help: "1 if the last reload was applied, 0 if it was refused.",
		}),
		pagesReleased: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tributary_agent_binary_pages_released_bytes_total",
			Help: "Bytes of the agent binary's code and read-only data unmapped after start-up (-runtime.release-startup-pages): clean file pages, left in the page cache and mapped back when used again.",
		}),
	}
	if k := cfg.Kubernetes; k != nil {
		client, _, err := k8s.NewClient(k8s.ClientConfig{Kubeconfig: k.Kubeconfig})
		if err != nil {
			return nil, err
		}
		a.kube = client
		if cfg.needsElection() {
			a.elector, err = k8s.NewElector(client, k.LeaderElection.ElectionConfig(), p.Registry, p.Logger.With("component", "election"))
			if err != nil {
				return nil, err
			}
		}
		if k.NodeName != "" {
			a.pods = k8s.NewPods(client, k.NodeName, p.Registry, p.Logger.With("component", "pods"))
		}
	}
	var leader metrics.Leader = metrics.AlwaysLeader{}
	if a.elector != nil {
		leader = a.elector
	}
	pl, err := metrics.New(metrics.Params{
		Config: mcfg, Leader: leader, FlushDeadline: p.FlushDeadline,
		Registerer: p.Registry, Gatherer: p.Registry, Logger: p.Logger,
	})
	if err != nil {
		return nil, err
	}
	a.pipeline = pl
	if cfg.Events != nil {
		le := cfg.Kubernetes.LeaderElection
		w, err := events.New(events.Params{
			Config: *cfg.Events, Cluster: cfg.Cluster, Node: cfg.Kubernetes.NodeName, Gateway: cfg.Gateway,
			Pods: a.pods, Client: a.kube, Leader: a.elector, Namespace: le.Namespace, Identity: le.Identity,
			FlushDeadline: p.FlushDeadline, Registerer: p.Registry, Logger: p.Logger,
		})
		if err != nil {
			return nil, err
		}
		a.add("events", w)
	}
	if cfg.Logs != nil {
		var node string
		if cfg.Kubernetes != nil {
			node = cfg.Kubernetes.NodeName
		}
		t, err := logs.New(logs.Params{
			Config: cfg.Logs, Cluster: cfg.Cluster, Node: node, Gateway: cfg.Gateway, Pods: a.pods,
			FlushDeadline: p.FlushDeadline, Registerer: p.Registry, Logger: p.Logger.With("component", "logs"),
		})
		if err != nil {
			return nil, err
		}
		a.add("logs", t)
	}
	if cfg.OTLP != nil {
		var node string
		if cfg.Kubernetes != nil {
			node = cfg.Kubernetes.NodeName
		}
		r, err := otlp.New(otlp.Params{
			Config: *cfg.OTLP, Cluster: cfg.Cluster, Node: node, Gateway: cfg.Gateway, Pods: a.pods,
			FlushDeadline: p.FlushDeadline, Registerer: p.Registry, Logger: p.Logger,
		})
		if err != nil {
			return nil, err
		}
		a.add("otlp", r)
	}
	a.reloadSuccess.Set(1)
	p.Registry.MustRegister(a.reloads, a.reloadSuccess, a.pagesReleased)
	return a, nil
}

// add appends a built component; agent.New calls it for each configured
// section.
func (a *Agent) add(name string, c Component) {
	a.components = append(a.components, namedComponent{name: name, Component: c})
}

// Run runs the metrics pipeline and every component until ctx ends (or one
// of them fails), then shuts them down: each flushes within the flush
// deadline. The pod informer and the leader election stop last, after
// every component returned, so that nothing is still shipping
// cluster-wide work when the Lease is released.
func (a *Agent) Run(ctx context.Context) error {
	runCtx, stop := context.WithCancel(ctx)
	defer stop()

	// Shared services: their own context, cancelled after the components.
	svcCtx, stopSvc := context.WithCancel(context.Background())
	var svc sync.WaitGroup
	if a.pods != nil {
		svc.Go(func() { _ = a.pods.Run(svcCtx) })
	}
	if a.elector != nil {
		svc.Go(func() {
			if err := a.elector.Run(svcCtx); err != nil {
				a.log.Error("leader election stopped", "err", err)
			}
		})
	}
	if a.releasePages {
		svc.Go(func() { a.releaseStartupPages(svcCtx) })
	}

	type result struct {
		name string
		err  error
	}
	parts := append([]namedComponent{{name: "metrics", Component: a.pipeline}}, a.components...)
	results := make(chan result, len(parts))
	for _, c := range parts {
		go func() { results <- result{c.name, c.Run(runCtx)} }()
	}
	var errs []error
	var deadline <-chan time.Time
	for pending := len(parts); pending > 0; {
		select {
		case r := <-results:
			pending--
			if r.err != nil && runCtx.Err() == nil {
				a.log.Error("component failed; stopping the agent", "component", r.name, "err", r.err)
			}
			if r.err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", r.name, r.err))
			}
			stop() // one part ending ends them all
		case <-runCtx.Done():
			if deadline == nil {
				// The flush deadline plus a margin for the part's own
				// clean-up after its flush gave up.
				deadline = time.After(a.flushDeadline + 5*time.Second)
			}
		case <-deadline:
			errs = append(errs, fmt.Errorf("%d part(s) of the agent did not stop within the flush deadline %s", pending, a.flushDeadline))
			pending = 0
		}
	}
	stopSvc()
	svc.Wait()
	return errors.Join(errs...)
}

// releaseStartupPages releases the binary's pages at each of
// startupPagesReleases.
func (a *Agent) releaseStartupPages(ctx context.Context) {
	start := time.Now()
	for _, at := range startupPagesReleases {
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Until(start.Add(at))):
		}
		n, err := exepages.Release()
		if err != nil {
			a.log.Warn("could not release the binary's start-up pages", "err", err)
			return
		}
		a.pagesReleased.Add(float64(n))
		a.log.Debug("released the binary's start-up pages", "bytes", n)
	}
}

// Ready reports whether the metrics pipeline and every component are ready.
func (a *Agent) Ready() (bool, string) {
	if !a.pipeline.Ready() {
		return false, "metrics: WAL not open or configuration not applied"
	}
	for _, c := range a.components {
		if !c.Ready() {
			return false, c.name + " not ready"
		}
	}
	return true, ""
}

// Reload reads the configuration file again and applies the metrics
// section. A file that does not load (syntax, unknown key, invalid scrape
// config) is refused and the running configuration stays. Changes to the
// other sections (kubernetes, logs, events, otlp) take effect at the next
// restart.
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
		if ok, why := a.Ready(); !ok {
			http.Error(w, "not ready: "+why, http.StatusServiceUnavailable)
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
		for _, c := range a.components {
			fmt.Fprintf(&buf, "\n== %s ==\n", c.name)
			c.Status(&buf)
		}
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = w.Write(buf.Bytes())
	})
	return mux
}
