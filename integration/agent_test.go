package integration

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tributary-io/tributary/internal/testenv"
)

// target is a loopback scrape target serving a fixed exposition. It counts
// the scrapes it answered with 200; after close it answers 503, so the
// number of samples the agent could have taken is known exactly.
type target struct {
	addr   string
	body   string
	served atomic.Int64
	closed atomic.Bool

	mu      sync.Mutex
	scrapes []scrapeAt // every scrape answered with 200
}

// scrapeAt is one answered scrape: when, and by which agent (the scrape
// URL's agent parameter, which tests set per agent; "" if none).
type scrapeAt struct {
	at time.Time
	by string
}

// log returns the answered scrapes so far, in order.
func (tg *target) log() []scrapeAt {
	tg.mu.Lock()
	defer tg.mu.Unlock()
	return slices.Clone(tg.scrapes)
}

func startTarget(t *testing.T, body string) *target {
	t.Helper()
	return serveTarget(t, body, "", false)
}

// serveTarget is startTarget answering only on path (any path if "") and,
// with useTLS, over HTTPS with a self-signed certificate.
func serveTarget(t *testing.T, body, path string, useTLS bool) *target {
	t.Helper()
	tg := &target{body: body}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if path != "" && r.URL.Path != path {
			http.NotFound(w, r)
			return
		}
		// Under the lock, so that log order is answer order and a close
		// cannot fall between the check and the count.
		tg.mu.Lock()
		defer tg.mu.Unlock()
		if tg.closed.Load() {
			http.Error(w, "closed", http.StatusServiceUnavailable)
			return
		}
		w.Header().Set("Content-Type", "text/plain; version=0.0.4")
		if _, err := io.WriteString(w, tg.body); err == nil {
			tg.served.Add(1)
			tg.scrapes = append(tg.scrapes, scrapeAt{at: time.Now(), by: r.URL.Query().Get("agent")})
		}
	}))
	if useTLS {
		srv.StartTLS()
	} else {
		srv.Start()
	}
	tg.addr = srv.Listener.Addr().String()
	t.Cleanup(srv.Close)
	return tg
}

type agentProc struct {
	*testenv.Process
	URL string
}

// startAgent runs cmd/agent with the configuration file cfg, on port.
func startAgent(t *testing.T, cfg string, port int, extra ...string) *agentProc {
	t.Helper()
	return startAgentEnv(t, cfg, port, nil, extra...)
}

// startAgentEnv is startAgent with extra environment variables ("K=V").
func startAgentEnv(t *testing.T, cfg string, port int, env []string, extra ...string) *agentProc {
	t.Helper()
	args := append([]string{
		"-config.file=" + cfg,
		"-http.listen-addr=" + testenv.Addr(port),
		"-shutdown.flush-timeout=2s",
	}, extra...)
	p := testenv.StartProcess(t, "agent", testenv.Binary(t, "agent"), args, env...)
	url := "http://" + testenv.Addr(port)
	testenv.WaitHTTP(t, p, url+"/-/ready", 60*time.Second)
	return &agentProc{Process: p, URL: url}
}

// metric reads one of the agent's own metrics (summed over its series).
func (a *agentProc) metric(t *testing.T, name string) float64 {
	t.Helper()
	resp, err := http.Get(a.URL + "/metrics")
	require.NoError(t, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	sum := 0.0
	for _, line := range strings.Split(string(body), "\n") {
		if !strings.HasPrefix(line, name) || (len(line) > len(name) && line[len(name)] != ' ' && line[len(name)] != '{') {
			continue
		}
		f := strings.Fields(line)
		v, err := strconv.ParseFloat(f[len(f)-1], 64)
		require.NoError(t, err, line)
		sum += v
	}
	return sum
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	require.NoError(t, os.WriteFile(path, []byte(content), 0o644))
}

func agentConfig(cluster, gatewayURL, walDir string, jobs ...string) string {
	return fmt.Sprintf(`cluster: %s
gateway:
  url: %s
metrics:
  scrape_interval: 1s
  scrape_timeout: 900ms
  wal:
    dir: %s
  queue:
    batch_send_deadline: 200ms
    min_backoff: 100ms
    max_backoff: 1s
  scrape_configs:
%s`, cluster, gatewayURL, walDir, strings.Join(jobs, ""))
}

func staticJob(name, addr string) string {
	return fmt.Sprintf("    - job_name: %s\n      static_configs: [{targets: [%q]}]\n", name, addr)
}

// walOutage is how long the gateway is away in
// TestAgentWALSurvivesOutageAndRestart: the "several minutes", with
// the agent restarted half-way. The test runs in parallel with the others,
// so the wait costs the suite little wall-clock time.
const walOutage = 3 * time.Minute

// The gateway is away for three minutes (180 scrape intervals) and the
// agent is restarted once during the outage: afterwards every sample the
// agent scraped is in the sink, with the cluster label, exactly once per
// scrape.
func TestAgentWALSurvivesOutageAndRestart(t *testing.T) {
	t.Parallel()
	k := testenv.Kafka(t, 2)
	sink := testenv.Prometheus(t, testenv.SinkConfig)
	gwPort := testenv.FreePort(t)
	gw := startGateway(t, k.Addr, "-http.listen-addr="+testenv.Addr(gwPort))
	startIngester(t, k.Addr, sink.URL)

	probe := startTarget(t, "tributary_agent_wal_probe 42\n")
	dir := t.TempDir()
	cfg := filepath.Join(dir, "agent.yml")
	writeFile(t, cfg, agentConfig("walclust", gw.URL, filepath.Join(dir, "data"), staticJob("probe", probe.addr)))
	port := testenv.FreePort(t)
	first := startAgent(t, cfg, port)

	count := func() int {
		res, err := sink.Query(`count_over_time(tributary_agent_wal_probe{cluster="walclust",job="probe"}[30m])`, time.Now())
		if err != nil || len(res) != 1 {
			return 0
		}
		return int(res[0].Value)
	}
	waitFor(t, func() bool { return count() >= 3 })

	// Outage: the gateway goes; the agent keeps scraping into its WAL.
	require.NoError(t, gw.Stop(30*time.Second))
	outageStart, before := time.Now(), probe.served.Load()
	time.Sleep(walOutage / 2)
	// Restart during the outage: the first agent cannot flush, the second
	// must resend what the first had scraped.
	require.NoError(t, first.Stop(30*time.Second))
	firstRun := int(probe.served.Load() - before) // scraped, never sent by the first run
	second := startAgent(t, cfg, port)
	time.Sleep(time.Until(outageStart.Add(walOutage)))
	// One scrape a second, less the restart's few seconds.
	require.Greater(t, probe.served.Load()-before, int64(walOutage/time.Second)-15, "the outage did not span the scrapes it should")

	startGateway(t, k.Addr, "-http.listen-addr="+testenv.Addr(gwPort))
	// Stop the target once the data flows again: from then on the number
	// of scrapes, hence of samples, is fixed.
	waitFor(t, func() bool { return second.metric(t, `tributary_agent_resend_samples_total{outcome="sent"}`) > 0 })
	time.Sleep(2 * time.Second)
	probe.closed.Store(true)
	time.Sleep(1500 * time.Millisecond) // a scrape in flight finishes
	want := int(probe.served.Load())

	deadline := time.Now().Add(90 * time.Second)
	got := 0
	for time.Now().Before(deadline) {
		if got = count(); got == want {
			break
		}
		time.Sleep(500 * time.Millisecond)
	}
	require.Equal(t, want, got, "samples in the sink vs scrapes the target answered")
	// The outage met real writes: every sample the first run scraped during
	// the outage was resent by the second run, not sent by the first.
	require.GreaterOrEqual(t, second.metric(t, `tributary_agent_resend_samples_total{outcome="sent"}`), float64(firstRun))
	// Nothing arrived under another cluster or without one.
	res, err := sink.Query(`count_over_time(tributary_agent_wal_probe{cluster!="walclust"}[30m])`, time.Now())
	require.NoError(t, err)
	require.Empty(t, res)
}

// A target that exposes its own cluster label, a static_configs label and
// honor_labels cannot send under another cluster's name.
func TestAgentClusterNotOverridable(t *testing.T) {
	t.Parallel()
	k := testenv.Kafka(t, 2)
	sink := testenv.Prometheus(t, testenv.SinkConfig)
	gw := startGateway(t, k.Addr)
	startIngester(t, k.Addr, sink.URL)

	evil := startTarget(t, "tributary_agent_evil{cluster=\"evil\"} 1\ntributary_agent_plain 1\n")
	dir := t.TempDir()
	cfg := filepath.Join(dir, "agent.yml")
	writeFile(t, cfg, agentConfig("mine", gw.URL, filepath.Join(dir, "data"),
		staticJob("plain", evil.addr),
		fmt.Sprintf("    - job_name: honor\n      honor_labels: true\n      static_configs: [{targets: [%q], labels: {cluster: static-evil}}]\n", evil.addr),
		fmt.Sprintf("    - job_name: relabel\n      static_configs: [{targets: [%q]}]\n      metric_relabel_configs: [{target_label: cluster, replacement: relabel-evil}]\n", evil.addr),
	))
	startAgent(t, cfg, testenv.FreePort(t))

	waitFor(t, func() bool {
		res, err := sink.Query(`count by (job) (tributary_agent_evil)`, time.Now())
		return err == nil && len(res) == 3
	})
	waitFor(t, func() bool {
		res, err := sink.Query(`count by (job) (up)`, time.Now())
		return err == nil && len(res) == 3
	})
	for _, q := range []string{`tributary_agent_evil`, `tributary_agent_plain`, `up`} {
		res, err := sink.Query(`count by (cluster) (`+q+`)`, time.Now())
		require.NoError(t, err)
		require.Len(t, res, 1, "%s arrived under several clusters: %v", q, res)
		require.Equal(t, "mine", res[0].Metric["cluster"], q)
	}
}

// A changed scrape config takes effect on SIGHUP and on POST /-/reload; a
// broken one is refused and the running one keeps scraping.
func TestAgentReload(t *testing.T) {
	t.Parallel()
	a := startTarget(t, "tributary_agent_a 1\n")
	b := startTarget(t, "tributary_agent_b 1\n")
	dir := t.TempDir()
	cfg := filepath.Join(dir, "agent.yml")
	// No gateway: the samples wait in the WAL; the targets' own counters
	// say what is scraped.
	gwURL := "http://" + testenv.Addr(testenv.FreePort(t))
	wal := filepath.Join(dir, "data")
	writeFile(t, cfg, agentConfig("rl", gwURL, wal, staticJob("a", a.addr)))
	ag := startAgent(t, cfg, testenv.FreePort(t))

	scraped := func(tg *target) bool {
		n := tg.served.Load()
		deadline := time.Now().Add(15 * time.Second)
		for time.Now().Before(deadline) {
			if tg.served.Load() >= n+2 {
				return true
			}
			time.Sleep(100 * time.Millisecond)
		}
		return false
	}
	stopped := func(tg *target) bool {
		time.Sleep(2 * time.Second) // a scrape in flight finishes
		n := tg.served.Load()
		time.Sleep(3 * time.Second)
		return tg.served.Load() == n
	}
	require.True(t, scraped(a))
	require.False(t, scraped(b))

	// SIGHUP with job b added.
	writeFile(t, cfg, agentConfig("rl", gwURL, wal, staticJob("a", a.addr), staticJob("b", b.addr)))
	require.NoError(t, syscall.Kill(ag.PID(), syscall.SIGHUP))
	require.True(t, scraped(b), "job b not scraped after SIGHUP")

	// A broken file (unknown key) is refused, on SIGHUP and on /-/reload;
	// both jobs keep running.
	writeFile(t, cfg, agentConfig("rl", gwURL, wal, staticJob("a", a.addr))+"bogus_key: 1\n")
	require.NoError(t, syscall.Kill(ag.PID(), syscall.SIGHUP))
	waitFor(t, func() bool { return ag.metric(t, `tributary_agent_config_reloads_total{outcome="refused"}`) == 1 })
	resp, err := http.Post(ag.URL+"/-/reload", "", nil)
	require.NoError(t, err)
	msg, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.Equal(t, http.StatusBadRequest, resp.StatusCode, string(msg))
	require.Contains(t, string(msg), "bogus_key")
	require.Equal(t, 0.0, ag.metric(t, "tributary_agent_config_last_reload_successful"))
	require.True(t, scraped(a))
	require.True(t, scraped(b))

	// /-/reload with job a removed.
	writeFile(t, cfg, agentConfig("rl", gwURL, wal, staticJob("b", b.addr)))
	resp, err = http.Post(ag.URL+"/-/reload", "", nil)
	require.NoError(t, err)
	msg, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode, string(msg))
	require.True(t, stopped(a), "job a still scraped after /-/reload removed it")
	require.True(t, scraped(b))
	require.Equal(t, 1.0, ag.metric(t, "tributary_agent_config_last_reload_successful"))

	// The status page lists the running job.
	resp, err = http.Get(ag.URL + "/status")
	require.NoError(t, err)
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.Contains(t, string(page), b.addr)
	require.NotContains(t, string(page), a.addr)
}
