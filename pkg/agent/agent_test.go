package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"
)

// component is a Component whose Run waits for ctx (then takes flush to
// return) or fails with fail.
type component struct {
	ready   atomic.Bool
	fail    chan error
	flush   time.Duration
	stopped atomic.Bool
}

func (c *component) Run(ctx context.Context) error {
	select {
	case <-ctx.Done():
		time.Sleep(c.flush)
		c.stopped.Store(true)
		return nil
	case err := <-c.fail:
		return err
	}
}
func (c *component) Status(w io.Writer) { fmt.Fprintln(w, "component status line") }
func (c *component) Ready() bool        { return c.ready.Load() }

func testAgent(t *testing.T) *Agent {
	t.Helper()
	cfg, mcfg, err := Parse(fmt.Appendf(nil, "cluster: c1\ngateway: {url: http://127.0.0.1:1}\nmetrics: {wal: {dir: %s}}\n", t.TempDir()))
	require.NoError(t, err)
	a, err := New(cfg, mcfg, Params{FlushDeadline: time.Second, Registry: prometheus.NewRegistry(), Logger: slog.New(slog.DiscardHandler)})
	require.NoError(t, err)
	return a
}

func get(t *testing.T, h http.Handler, path string) (int, string) {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
	return rec.Code, rec.Body.String()
}

// The agent runs its components beside the metrics pipeline: their
// readiness and status are on its pages, ctx's end stops them all and Run
// waits for their flush; a component that fails stops the agent.
func TestAgentRunsComponents(t *testing.T) {
	a := testAgent(t)
	c := &component{fail: make(chan error, 1), flush: 300 * time.Millisecond}
	a.add("test", c)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()

	h := a.Handler()
	require.Eventually(t, a.pipeline.Ready, 10*time.Second, 20*time.Millisecond)
	code, body := get(t, h, "/-/ready")
	require.Equal(t, http.StatusServiceUnavailable, code)
	require.Contains(t, body, "test not ready")
	c.ready.Store(true)
	code, _ = get(t, h, "/-/ready")
	require.Equal(t, http.StatusOK, code)
	_, body = get(t, h, "/status")
	require.Contains(t, body, "== test ==\ncomponent status line")

	cancel()
	select {
	case err := <-done:
		require.NoError(t, err)
		require.True(t, c.stopped.Load(), "Run returned before the component flushed")
	case <-time.After(15 * time.Second):
		t.Fatal("Run did not return")
	}

	// A failing component stops the agent (the pipeline too).
	a = testAgent(t)
	c = &component{fail: make(chan error, 1)}
	a.add("test", c)
	go func() { done <- a.Run(context.Background()) }()
	c.fail <- errors.New("boom")
	select {
	case err := <-done:
		require.ErrorContains(t, err, "test: boom")
	case <-time.After(15 * time.Second):
		t.Fatal("a failed component did not stop the agent")
	}
}

// With ReleaseStartupPages the agent unmaps its binary's pages when it
// starts and counts what it released.
func TestAgentReleasesStartupPages(t *testing.T) {
	cfg, mcfg, err := Parse(fmt.Appendf(nil, "cluster: c1\ngateway: {url: http://127.0.0.1:1}\nmetrics: {wal: {dir: %s}}\n", t.TempDir()))
	require.NoError(t, err)
	a, err := New(cfg, mcfg, Params{FlushDeadline: time.Second, Registry: prometheus.NewRegistry(), Logger: slog.New(slog.DiscardHandler), ReleaseStartupPages: true})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	require.Eventually(t, func() bool { return testutil.ToFloat64(a.pagesReleased) > 256<<10 }, 10*time.Second, 20*time.Millisecond,
		"the binary's pages were not released at start")
	cancel()
	require.NoError(t, <-done)
}
