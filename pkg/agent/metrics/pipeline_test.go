package metrics

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"
)

// hits is a loopback scrape target counting its scrapes.
type hits struct {
	srv *httptest.Server
	n   atomic.Int64
}

func newTarget(t *testing.T) *hits {
	h := &hits{}
	h.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		h.n.Add(1)
		io.WriteString(w, "x 1\n")
	}))
	t.Cleanup(h.srv.Close)
	return h
}

func (h *hits) addr() string { return h.srv.Listener.Addr().String() }

// scrapedWithin reports whether the target is scraped (twice) within d.
func (h *hits) scrapedWithin(d time.Duration) bool {
	n := h.n.Load()
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if h.n.Load() >= n+2 {
			return true
		}
		time.Sleep(50 * time.Millisecond)
	}
	return false
}

type switchLeader struct {
	ch     chan bool
	leader atomic.Bool
}

func (s *switchLeader) IsLeader() bool         { return s.leader.Load() }
func (s *switchLeader) Subscribe() <-chan bool { return s.ch }
func (s *switchLeader) set(v bool)             { s.leader.Store(v); s.ch <- v }

func promYAML(gw string, jobs ...string) string {
	out := fmt.Sprintf(`global: {scrape_interval: 200ms, scrape_timeout: 100ms, external_labels: {cluster: c}}
remote_write: [{url: %s/api/v1/write, queue_config: {min_shards: 1, max_shards: 1}, metadata_config: {send: false}}]
scrape_configs:
`, gw)
	for i := 0; i+1 < len(jobs); i += 2 {
		out += fmt.Sprintf("  - job_name: %s\n    static_configs: [{targets: [%q]}]\n", jobs[i], jobs[i+1])
	}
	return out
}

// Cluster-wide jobs run only while the agent leads; node jobs always.
func TestClusterWideJobsFollowLeader(t *testing.T) {
	gw := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.WriteHeader(http.StatusNoContent)
	}))
	defer gw.Close()
	node, wide := newTarget(t), newTarget(t)
	wal := WALConfig{Dir: t.TempDir()}
	require.NoError(t, wal.Validate())
	leader := &switchLeader{ch: make(chan bool, 4)}
	reg := prometheus.NewRegistry()
	p, err := New(Params{
		Config: &Config{
			Cluster: "c", WAL: wal, ClusterWideJobs: []string{"wide"},
			Full:     promYAML(gw.URL, "node", node.addr(), "wide", wide.addr()),
			NodeOnly: promYAML(gw.URL, "node", node.addr()),
		},
		Leader: leader, FlushDeadline: time.Second, Registerer: reg, Gatherer: reg,
		Logger: slog.New(slog.DiscardHandler),
	})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	defer func() {
		cancel()
		require.NoError(t, <-done)
	}()

	require.True(t, node.scrapedWithin(10*time.Second), "node job not scraped by a follower")
	require.False(t, wide.scrapedWithin(2*time.Second), "cluster-wide job scraped by a follower")

	// A new leader starts the cluster-wide job within one scrape interval
	// plus the pipeline's reaction (discoveryUpdateEvery +
	// scrapeReloadEvery): that is the hand-over's gap beyond the Lease
	// take-over. Several terms, begun at unrelated moments, so that a
	// periodic reload (Prometheus's 5 s) would show.
	bound := 200*time.Millisecond + discoveryUpdateEvery + scrapeReloadEvery + 250*time.Millisecond
	for term := range 3 {
		n := wide.n.Load()
		leader.set(true)
		start := time.Now()
		for wide.n.Load() == n && time.Since(start) < 10*time.Second {
			time.Sleep(10 * time.Millisecond)
		}
		took := time.Since(start)
		require.Greater(t, wide.n.Load(), n, "term %d: cluster-wide job not scraped by the leader", term)
		require.LessOrEqual(t, took, bound, "term %d: the new leader's first cluster-wide scrape took %s", term, took)
		require.True(t, node.scrapedWithin(5*time.Second))

		leader.set(false)
		time.Sleep(500 * time.Millisecond) // a scrape in flight finishes
		require.False(t, wide.scrapedWithin(time.Second+time.Duration(term)*700*time.Millisecond), "cluster-wide job still scraped after losing the lease")
		require.True(t, node.scrapedWithin(5*time.Second))
	}
}
