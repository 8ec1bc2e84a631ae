package metrics

import (
	"errors"
	"io/fs"
	"path/filepath"

	"github.com/prometheus/client_golang/prometheus"
)

// selfMetrics are the agent's own metrics (tributary_agent_*). The send
// queue's are Prometheus's, under prometheus_remote_storage_* (samples
// sent, failed, retried, dropped, pending, shards), and the WAL's under
// prometheus_agent_*; see the README.
type selfMetrics struct {
	leader          prometheus.Gauge
	appended        prometheus.Counter
	commitFailures  prometheus.Counter
	walOpenFailures prometheus.Counter
	resent          *prometheus.CounterVec
	resendRetries   prometheus.Counter
	resumeMark      prometheus.Gauge
}

func newSelfMetrics(reg prometheus.Registerer, p *Pipeline) *selfMetrics {
	m := &selfMetrics{
		leader: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "tributary_agent_leader",
			Help: "1 while this agent is the cluster's leader and scrapes the cluster-wide jobs.",
		}),
		appended: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tributary_agent_samples_appended_total",
			Help: "Scraped samples written to the WAL (report series such as up not counted).",
		}),
		commitFailures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tributary_agent_wal_append_failures_total",
			Help: "Scrapes whose samples could not be written to the WAL (full or failing disk); those scrapes are lost.",
		}),
		walOpenFailures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tributary_agent_wal_open_failures_total",
			Help: "Failed attempts to open the WAL at start; the agent retries.",
		}),
		resent: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tributary_agent_resend_samples_total",
			Help: "Samples (floats and native histograms) of a previous run resent from the WAL after a restart, by outcome (sent, dropped: refused by the gateway with a 4xx).",
		}, []string{"outcome"}),
		resendRetries: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tributary_agent_resend_retries_total",
			Help: "Resend requests retried (network error, 5xx or 429).",
		}),
		resumeMark: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "tributary_agent_resume_mark_timestamp_seconds",
			Help: "Every sample at or before this time was acknowledged by the gateway (kept on disk; a restart resends what is after it).",
		}),
	}
	// pkg/k8s's Elector exports the same gauge when it runs: share it.
	if err := reg.Register(m.leader); err != nil {
		if are, ok := errors.AsType[prometheus.AlreadyRegisteredError](err); ok {
			if g, ok := are.ExistingCollector.(prometheus.Gauge); ok {
				m.leader = g
			}
		}
	}
	reg.MustRegister(m.appended, m.commitFailures, m.walOpenFailures, m.resent, m.resendRetries, m.resumeMark,
		&stateCollector{p: p})
	return m
}

var (
	targetsDesc = prometheus.NewDesc("tributary_agent_targets",
		"Active scrape targets by job and health (up, down, unknown).", []string{"job", "health"}, nil)
	walSizeDesc = prometheus.NewDesc("tributary_agent_wal_size_bytes",
		"Bytes on disk in the WAL directory (segments and checkpoints).", nil, nil)
)

// stateCollector reads the targets and the WAL's size when scraped.
type stateCollector struct{ p *Pipeline }

func (c *stateCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- targetsDesc
	ch <- walSizeDesc
}

func (c *stateCollector) Collect(ch chan<- prometheus.Metric) {
	for job, ts := range c.p.scrape.TargetsActive() {
		n := map[string]int{"up": 0, "down": 0, "unknown": 0}
		for _, t := range ts {
			n[string(t.Health())]++
		}
		for h, v := range n {
			ch <- prometheus.MustNewConstMetric(targetsDesc, prometheus.GaugeValue, float64(v), job, h)
		}
	}
	ch <- prometheus.MustNewConstMetric(walSizeDesc, prometheus.GaugeValue, float64(dirSize(filepath.Join(c.p.walDir, "wal"))))
}

func dirSize(dir string) int64 {
	var n int64
	_ = filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil
		}
		if info, err := d.Info(); err == nil && !d.IsDir() {
			n += info.Size()
		}
		return nil
	})
	return n
}
