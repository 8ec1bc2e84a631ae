// Package metrics is the one place that wires Prometheus's libraries into
// the agent's metrics pipeline, as Prometheus in agent mode wires them
// (cmd/prometheus/main.go of the pinned version, v0.316.0): discovery
// manager → scrape manager → agent-mode WAL (tsdb/agent) → remote-write
// queue (storage/remote) to the gateway. Those signatures change between
// releases; nothing outside this package touches them.
//
// Added to what Prometheus does: the cluster label pinned on every series
// (pkg/agent appends the relabel rules), cluster-wide jobs gated by a
// Leader, and a resume mark so that a restarted agent resends from the WAL
// what the gateway had not acknowledged (Prometheus's WAL watcher starts at
// "now" and skips it).
package metrics

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/discovery"
	_ "github.com/prometheus/prometheus/discovery/file"       // file_sd_configs
	_ "github.com/prometheus/prometheus/discovery/kubernetes" // kubernetes_sd_configs
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/scrape"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/storage/remote"
	"github.com/prometheus/prometheus/tsdb/agent"
	"github.com/prometheus/prometheus/util/compression"
)

// Leader says whether this agent scrapes the cluster-wide jobs.
// *k8s.Elector satisfies it.
type Leader interface {
	IsLeader() bool
	// Subscribe sends the current state first, then each change.
	Subscribe() <-chan bool
}

// AlwaysLeader is the Leader of an agent without Kubernetes: it scrapes
// every job.
type AlwaysLeader struct{}

// IsLeader is always true.
func (AlwaysLeader) IsLeader() bool { return true }

// Subscribe sends true once.
func (AlwaysLeader) Subscribe() <-chan bool {
	c := make(chan bool, 1)
	c <- true
	return c
}

// How soon target changes reach the scrape loops. Prometheus batches them
// for 5 s in discovery and again for 5 s in the scrape manager, which on a
// new leader would add up to 10 s to every hand-over's gap in the
// cluster-wide series, beyond the Lease take-over. An agent's target set is
// small (its node's pods, plus a handful of cluster-wide targets on the
// leader), so syncing it more often costs little; a new leader's scrape
// loops start within ~1.25 s of the Lease, then wait at most one interval
// for their slot.
const (
	discoveryUpdateEvery = time.Second
	scrapeReloadEvery    = 250 * time.Millisecond
)

// Params are the pipeline's dependencies.
type Params struct {
	Config *Config
	Leader Leader
	// FlushDeadline bounds how long a shutdown waits for the send queue to
	// empty; what is left stays in the WAL and is resent after a restart.
	FlushDeadline time.Duration
	Registerer    prometheus.Registerer
	// Gatherer reads the remote-write queue's own metrics for Status.
	Gatherer prometheus.Gatherer
	Logger   *slog.Logger
}

// Pipeline scrapes, writes the WAL and sends to the gateway.
type Pipeline struct {
	log    *slog.Logger
	reg    prometheus.Registerer
	gather prometheus.Gatherer
	leader Leader
	walDir string
	m      *selfMetrics

	remote   *remote.Storage
	scrape   *scrape.Manager
	disc     *discovery.Manager
	discStop context.CancelFunc
	app      *walAppendable
	db       atomic.Pointer[agent.DB]
	resume   *resumer

	mu       sync.Mutex // serialises apply
	cfg      *Config
	isLeader bool
	applied  bool

	ready atomic.Bool
}

// New builds the pipeline; Run starts it.
func New(p Params) (*Pipeline, error) {
	if p.Leader == nil {
		p.Leader = AlwaysLeader{}
	}
	pl := &Pipeline{log: p.Logger, reg: p.Registerer, gather: p.Gatherer, leader: p.Leader, cfg: p.Config, walDir: p.Config.WAL.Dir}
	pl.m = newSelfMetrics(p.Registerer, pl)
	pl.app = &walAppendable{m: pl.m, log: p.Logger}
	// Kubernetes client metrics are process-wide; a second pipeline in the
	// same process (tests) finds them registered already.
	if err := discovery.RegisterK8sClientMetricsWithPrometheus(p.Registerer); err != nil && !isAlreadyRegistered(err) {
		return nil, fmt.Errorf("kubernetes client metrics: %w", err)
	}
	sdMetrics, err := discovery.CreateAndRegisterSDMetrics(p.Registerer)
	if err != nil {
		return nil, fmt.Errorf("discovery metrics: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	pl.discStop = cancel
	pl.disc = discovery.NewManager(ctx, p.Logger.With("component", "discovery"), p.Registerer, sdMetrics,
		discovery.Name("scrape"), discovery.Updatert(discoveryUpdateEvery))
	if pl.disc == nil {
		cancel()
		return nil, errors.New("discovery manager: could not register its metrics")
	}
	// PassMetadataInContext puts the target in the appender's context, so
	// the status page can count samples per scrape and target.
	// DiscoveryReloadOnStartup: the first targets are scraped as soon as
	// they are discovered rather than 5 s later.
	pl.scrape, err = scrape.NewManager(&scrape.Options{
		PassMetadataInContext: true, DiscoveryReloadOnStartup: true,
		DiscoveryReloadInterval: model.Duration(scrapeReloadEvery),
	},
		p.Logger.With("component", "scrape"), nil, nil, pl.app, p.Registerer)
	if err != nil {
		cancel()
		return nil, fmt.Errorf("scrape manager: %w", err)
	}
	pl.remote = remote.NewStorage(p.Logger.With("component", "remote"), p.Registerer,
		func() (int64, error) { return int64(model.Latest), nil },
		p.Config.WAL.Dir, p.FlushDeadline, readyScrape{pl.scrape}, false)
	return pl, nil
}

type readyScrape struct{ m *scrape.Manager }

func (r readyScrape) Get() (*scrape.Manager, error) { return r.m, nil }

func isAlreadyRegistered(err error) bool {
	_, ok := errors.AsType[prometheus.AlreadyRegisteredError](err)
	return ok
}

// Ready reports whether the WAL is open and the configuration applied.
func (p *Pipeline) Ready() bool { return p.ready.Load() }

// Run opens the WAL, applies the configuration and runs until ctx ends;
// then it stops scraping, flushes the send queue (up to the flush
// deadline), records how far the gateway acknowledged, and closes the WAL.
func (p *Pipeline) Run(ctx context.Context) error {
	defer p.discStop()
	db, backlog, err := p.openWAL(ctx)
	if err != nil {
		return err
	}
	// Tell the remote queue's WAL watcher of each write; without it the
	// watcher only looks every 15 s.
	db.SetWriteNotified(p.remote)
	p.db.Store(db)
	p.app.set(storage.NewFanout(p.log, db, p.remote))

	// The remote queue's WAL watcher must start before the first scrape:
	// it sends only samples newer than its own start, and the resumer
	// covers everything older.
	if err := p.apply(p.leader.IsLeader()); err != nil {
		p.closeWAL(db, backlog)
		return err
	}
	p.ready.Store(true)

	var wg sync.WaitGroup
	runCtx, stopAll := context.WithCancel(ctx)
	defer stopAll()
	wg.Go(func() {
		if err := p.disc.Run(); err != nil && !errors.Is(err, context.Canceled) {
			p.log.Error("discovery stopped", "err", err)
		}
	})
	scrapeDone := make(chan struct{})
	go func() {
		defer close(scrapeDone)
		if err := p.scrape.Run(p.disc.SyncCh()); err != nil {
			p.log.Error("scrape manager stopped", "err", err)
		}
	}()
	wg.Go(func() { p.followLeader(runCtx) })
	send, external, err := p.sender()
	if err != nil {
		p.log.Error("resend from the WAL disabled", "err", err)
		backlog.Close()
	} else {
		wg.Go(func() { p.resume.run(runCtx, backlog, send, external) })
	}

	<-ctx.Done()
	p.ready.Store(false)
	// Stop scraping first so nothing is appended to a closing WAL.
	p.scrape.Stop()
	<-scrapeDone
	p.discStop()
	stopAll()
	wg.Wait()
	p.closeWAL(db, nil)
	return nil
}

// sender posts to the gateway with the remote_write entry's settings.
func (p *Pipeline) sender() (func(context.Context, []byte) (int, time.Duration, error), labels.Labels, error) {
	p.mu.Lock()
	text := p.cfg.Full
	p.mu.Unlock()
	c, err := LoadPromConfig(text)
	if err != nil {
		return nil, labels.EmptyLabels(), err
	}
	rw := c.RemoteWriteConfigs[0]
	send, err := httpSender(rw.URL.String(), rw.HTTPClientConfig, time.Duration(rw.RemoteTimeout))
	return send, c.GlobalConfig.ExternalLabels, err
}

// closeWAL flushes the send queue (bounded by the flush deadline), writes
// the resume mark and closes the WAL.
func (p *Pipeline) closeWAL(db *agent.DB, backlog *backlog) {
	if backlog != nil {
		backlog.Close()
	}
	if err := p.remote.Close(); err != nil {
		p.log.Warn("remote write close", "err", err)
	}
	p.resume.save()
	if err := db.Close(); err != nil {
		p.log.Warn("WAL close", "err", err)
	}
}

// openWAL opens the WAL, retrying while it fails (a full or read-only
// disk): the agent keeps serving /metrics and its status page, and says
// why in the log and in tributary_agent_wal_open_failures_total, rather
// than exit and crash-loop.
func (p *Pipeline) openWAL(ctx context.Context) (*agent.DB, *backlog, error) {
	cfg := p.cfg.WAL
	opts := agent.DefaultOptions()
	opts.MaxWALTime = time.Duration(cfg.MaxAge).Milliseconds()
	opts.MinWALTime = time.Duration(cfg.MinAge).Milliseconds()
	opts.TruncateFrequency = time.Duration(cfg.TruncateFrequency)
	opts.WALCompression = compression.Type(cfg.Compression)
	// 1024 stripes, not Prometheus's 16384: the series table's fixed cost
	// falls from 2.8 MiB (heap profile at 10k series, make bench
	// BENCH_PHASES=agent) to ~0.2; a node's few scrape loops do not
	// contend on 1024 locks.
	opts.StripeSize = 1 << 10
	if cfg.Compression == "none" {
		opts.WALCompression = compression.None
	}
	for attempt := 0; ; attempt++ {
		err := os.MkdirAll(cfg.Dir, 0o755)
		var (
			db *agent.DB
			bl *backlog
		)
		if err == nil {
			p.resume = newResumer(cfg, p.remote, p.m, p.log)
			// The backlog's segments are opened before the WAL starts a new
			// segment for this run: they hold exactly the previous runs.
			bl, err = p.resume.openBacklog()
		}
		if err == nil {
			reg := &undoRegisterer{Registerer: p.reg}
			db, err = agent.Open(p.log.With("component", "wal"), reg, p.remote, cfg.Dir, opts)
			if err != nil {
				reg.undo()
				bl.Close()
			}
		}
		if err == nil {
			return db, bl, nil
		}
		p.m.walOpenFailures.Inc()
		wait := min(time.Duration(1<<min(attempt, 5))*time.Second, 30*time.Second)
		p.log.Error("cannot open the WAL; retrying", "dir", cfg.Dir, "in", wait, "err", err)
		select {
		case <-ctx.Done():
			return nil, nil, fmt.Errorf("open WAL in %s: %w", cfg.Dir, err)
		case <-time.After(wait):
		}
	}
}

// undoRegisterer remembers what it registered so that a failed attempt can
// take it back and the next one register again.
type undoRegisterer struct {
	prometheus.Registerer
	done []prometheus.Collector
}

func (r *undoRegisterer) Register(c prometheus.Collector) error {
	err := r.Registerer.Register(c)
	if err == nil {
		r.done = append(r.done, c)
	}
	return err
}

func (r *undoRegisterer) MustRegister(cs ...prometheus.Collector) {
	for _, c := range cs {
		if err := r.Register(c); err != nil {
			panic(err)
		}
	}
}

func (r *undoRegisterer) undo() {
	for _, c := range r.done {
		r.Registerer.Unregister(c)
	}
}

// followLeader applies the configuration again whenever leadership
// changes: the cluster-wide jobs start on the new leader and stop on the
// old one.
func (p *Pipeline) followLeader(ctx context.Context) {
	ch := p.leader.Subscribe()
	for {
		select {
		case <-ctx.Done():
			return
		case l, ok := <-ch:
			if !ok {
				return
			}
			p.mu.Lock()
			changed := l != p.isLeader
			p.mu.Unlock()
			if !changed {
				continue
			}
			p.log.Info("leadership changed", "leader", l)
			if err := p.apply(l); err != nil {
				p.log.Error("apply configuration after leadership change", "leader", l, "err", err)
			}
		}
	}
}

// Reload replaces the configuration. A configuration that does not load
// is refused and the running one stays; the WAL's settings need a restart.
func (p *Pipeline) Reload(cfg *Config) error {
	if _, err := LoadPromConfig(cfg.Full); err != nil {
		return err
	}
	if _, err := LoadPromConfig(cfg.NodeOnly); err != nil {
		return err
	}
	p.mu.Lock()
	old := p.cfg
	if cfg.WAL != old.WAL {
		p.mu.Unlock()
		return errors.New("metrics.wal changed: restart the agent to apply it")
	}
	p.cfg = cfg
	leader := p.isLeader
	p.mu.Unlock()
	if err := p.apply(leader); err != nil {
		p.mu.Lock()
		p.cfg = old
		p.mu.Unlock()
		if rerr := p.apply(leader); rerr != nil {
			p.log.Error("re-apply the previous configuration", "err", rerr)
		}
		return err
	}
	return nil
}

// apply loads the configuration for the given leadership and hands it to
// the remote queue, the scrape manager and the discovery manager, in the
// order Prometheus reloads them.
func (p *Pipeline) apply(leader bool) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	text := p.cfg.NodeOnly
	if leader {
		text = p.cfg.Full
	}
	c, err := LoadPromConfig(text)
	if err != nil {
		return err
	}
	if p.db.Load() == nil {
		// Not running yet: Run applies once the WAL is open.
		p.isLeader = leader
		return nil
	}
	if err := p.remote.ApplyConfig(c); err != nil {
		return fmt.Errorf("remote write: %w", err)
	}
	if err := p.scrape.ApplyConfig(c); err != nil {
		return fmt.Errorf("scrape: %w", err)
	}
	scfgs, err := c.GetScrapeConfigs()
	if err != nil {
		return err
	}
	sd := make(map[string]discovery.Configs, len(scfgs))
	for _, s := range scfgs {
		sd[s.JobName] = s.ServiceDiscoveryConfigs
	}
	if err := p.disc.ApplyConfig(sd); err != nil {
		return fmt.Errorf("discovery: %w", err)
	}
	p.isLeader = leader
	p.applied = true
	p.m.leader.Set(b2f(leader))
	return nil
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
