package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/url"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/tributary-io/tributary/internal/testenv"
)

// The election timings of the leader test: the ratios of the defaults
// (15s, 10s, 2s), short enough for a test.
const (
	leaseDuration = 6 * time.Second
	renewDeadline = 4 * time.Second
	retryPeriod   = 500 * time.Millisecond
	// scrapeEvery is agentConfig's scrape_interval.
	scrapeEvery = time.Second
	// leaderReaction bounds how long a new leader's pipeline takes from the
	// Lease to a running scrape loop (discovery's update throttle plus the
	// scrape manager's reload tick, pkg/agent/metrics), on top of the one
	// scrape interval a new scrape loop may wait for its slot.
	leaderReaction = 1500 * time.Millisecond
)

// leaderAgentConfig is agentConfig with a kubernetes section electing on
// the Lease ns/tributary-agent, and the job "wide" (scraping tg with
// the URL parameter agent=identity, so the target knows who scraped it)
// cluster-wide.
func leaderAgentConfig(k *testenv.Kube, ns, gatewayURL, walDir, identity string, tg *target) string {
	job := fmt.Sprintf("    - job_name: wide\n      params: {agent: [%s]}\n      static_configs: [{targets: [%q]}]\n", identity, tg.addr)
	return agentConfig("lead", gatewayURL, walDir, job) + fmt.Sprintf(`  cluster_wide_jobs: [wide]
kubernetes:
  kubeconfig: %s
  leader_election:
    namespace: %s
    identity: %s
    lease_duration: %s
    renew_deadline: %s
    retry_period: %s
`, k.Kubeconfig, ns, identity, promDuration(leaseDuration), promDuration(renewDeadline), promDuration(retryPeriod))
}

// promDuration writes d as a Prometheus duration (whole milliseconds).
func promDuration(d time.Duration) string { return strconv.FormatInt(d.Milliseconds(), 10) + "ms" }

// point is one sample of a series in the sink.
type point struct {
	t time.Time
	v float64
}

// rangeSamples returns every sample of the one series selected by sel
// within window before now, oldest first (the raw samples of a range
// vector selector, not a range query's evaluation steps).
func rangeSamples(t *testing.T, sink *testenv.PrometheusServer, sel string, window time.Duration) []point {
	t.Helper()
	resp, err := http.Get(sink.URL + "/api/v1/query?" + url.Values{"query": {fmt.Sprintf("%s[%s]", sel, promDuration(window))}}.Encode())
	require.NoError(t, err)
	defer resp.Body.Close()
	var body struct {
		Status string `json:"status"`
		Error  string `json:"error"`
		Data   struct {
			Result []struct {
				Values [][2]any `json:"values"`
			} `json:"result"`
		} `json:"data"`
	}
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&body))
	require.Equal(t, "success", body.Status, body.Error)
	require.LessOrEqual(t, len(body.Data.Result), 1, "%s selects several series", sel)
	var out []point
	for _, r := range body.Data.Result {
		for _, v := range r.Values {
			ts, _ := v[0].(float64)
			s, _ := v[1].(string)
			f, err := strconv.ParseFloat(s, 64)
			require.NoError(t, err)
			out = append(out, point{t: time.UnixMilli(int64(ts * 1000)), v: f})
		}
	}
	return out
}

// leaseHolder reads the Lease ns/tributary-agent: its holder and when that
// holder acquired it.
func leaseHolder(t *testing.T, k *testenv.Kube, ns string) (string, time.Time) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	l, err := k.Client.CoordinationV1().Leases(ns).Get(ctx, "tributary-agent", metav1.GetOptions{})
	require.NoError(t, err)
	var holder string
	if l.Spec.HolderIdentity != nil {
		holder = *l.Spec.HolderIdentity
	}
	var acquired time.Time
	if l.Spec.AcquireTime != nil {
		acquired = l.Spec.AcquireTime.Time
	}
	return holder, acquired
}

// Two agents campaign for one Lease; the cluster-wide job runs on exactly
// one. The leader is killed with SIGKILL (no release): the other takes the
// Lease once it expires and scrapes the job from then on. The killed one
// comes back as a follower; then the leader is stopped gracefully (a
// rolling update) and the follower takes the released Lease at once.
// Asserted for both hand-overs: the new leader's first scrape is at most
// one scrape interval (plus the pipeline's reaction, leaderReaction) after
// its acquireTime in the Lease, so the series' gap in the sink is the
// take-over (the old leader's last scrape to that acquireTime; after a
// kill at most lease duration + retry period, after a release at most a
// retry period) plus at most one interval; no two scrapes by different
// agents are less than a scrape interval apart, and no agent scrapes
// outside its term; and the sink holds exactly as many samples as the
// target answered scrapes (nothing lost, no two on one timestamp), once
// the killed agent, restarted as its DaemonSet would, has resent its WAL.
func TestAgentLeaderHandOver(t *testing.T) {
	t.Parallel()
	k := sharedKube.Get(t)
	ns := k.CreateNamespace(t)
	kafka := testenv.Kafka(t, 2)
	sink := testenv.Prometheus(t, testenv.SinkConfig)
	gw := startGateway(t, kafka.Addr)
	startIngester(t, kafka.Addr, sink.URL)

	wide := startTarget(t, "tributary_agent_wide_probe 1\n")
	dir := t.TempDir()
	cfgA, cfgB := filepath.Join(dir, "a.yml"), filepath.Join(dir, "b.yml")
	writeFile(t, cfgA, leaderAgentConfig(k, ns, gw.URL, filepath.Join(dir, "wal-a"), "a", wide))
	writeFile(t, cfgB, leaderAgentConfig(k, ns, gw.URL, filepath.Join(dir, "wal-b"), "b", wide))

	portA := testenv.FreePort(t)
	a := startAgent(t, cfgA, portA)
	waitFor(t, func() bool { return a.metric(t, "tributary_agent_leader") == 1 })
	b := startAgent(t, cfgB, testenv.FreePort(t))

	scrapedBy := func(who string) int {
		n := 0
		for _, s := range wide.log() {
			if s.by == who {
				n++
			}
		}
		return n
	}
	// Exactly one agent scrapes the job: its own metrics say so, and the
	// target sees only its scrapes.
	waitFor(t, func() bool { return scrapedBy("a") >= 8 })
	require.Equal(t, 1.0, a.metric(t, "tributary_agent_leader"))
	require.Equal(t, 0.0, b.metric(t, "tributary_agent_leader"))
	require.Equal(t, 1.0, metricValue(t, a.URL, "tributary_agent_targets", map[string]string{"job": "wide", "health": "up"}))
	require.Zero(t, metricValue(t, b.URL, "tributary_agent_targets", map[string]string{"job": "wide"}))
	require.Zero(t, scrapedBy("b"), "the follower scraped the cluster-wide job")
	sel := `tributary_agent_wide_probe{cluster="lead",job="wide"}`
	waitFor(t, func() bool { return len(rangeSamples(t, sink, sel, 10*time.Minute)) >= 5 })

	// The kill falls at a random point of the new leader's discovery and
	// scrape-reload cycles, so that a periodic batching of target changes
	// (Prometheus's 5 s) would show in the gap.
	time.Sleep(rand.N(5 * time.Second))
	a.Kill()
	killed := time.Now()
	waitFor(t, func() bool { return scrapedBy("b") >= 8 })
	holder, acquired := leaseHolder(t, k, ns)
	require.Equal(t, "b", holder)
	require.Equal(t, 1.0, b.metric(t, "tributary_agent_leader"))
	require.Equal(t, 1.0, metricValue(t, b.URL, "tributary_agent_targets", map[string]string{"job": "wide", "health": "up"}))

	// The killed agent comes back, as its DaemonSet pod would: a follower
	// now, it resends what its WAL held unsent and scrapes nothing wide.
	a = startAgent(t, cfgA, portA)
	waitFor(t, func() bool { return a.metric(t, `tributary_agent_resend_samples_total{outcome="sent"}`) > 0 })
	require.Equal(t, 0.0, a.metric(t, "tributary_agent_leader"))
	require.Zero(t, metricValue(t, a.URL, "tributary_agent_targets", map[string]string{"job": "wide"}))

	// A rolling update: the leader stops gracefully and releases the
	// Lease; the follower takes it at its next retry.
	time.Sleep(rand.N(5 * time.Second))
	stopping := time.Now()
	require.NoError(t, b.Stop(30*time.Second))
	stoppedB := time.Now()
	beforeRelease := scrapedBy("a")
	waitFor(t, func() bool { return scrapedBy("a") >= beforeRelease+8 })
	holder, acquired2 := leaseHolder(t, k, ns)
	require.Equal(t, "a", holder)
	require.Equal(t, 1.0, a.metric(t, "tributary_agent_leader"))
	wide.closed.Store(true)
	time.Sleep(scrapeEvery + 500*time.Millisecond) // a scrape in flight finishes

	// The terms, in order: who scraped, from when (its acquireTime) until
	// when it could no longer scrape.
	terms := []struct {
		by          string
		from, until time.Time
	}{
		{"a", time.Time{}, killed},
		{"b", acquired, stoppedB},
		{"a", acquired2, time.Now()},
	}
	log := wide.log()
	term := 0
	type handOver struct{ last, acquired, first time.Time }
	var hand []handOver
	for i, s := range log {
		if s.by != terms[term].by {
			require.Less(t, term+1, len(terms), "scrape %d by %s after the last term", i, s.by)
			term++
			require.Equal(t, terms[term].by, s.by, "scrape %d: a term of %s, want %s", i, s.by, terms[term].by)
			prev := log[i-1]
			// Never both at once: the old leader's last scrape came
			// before the new one held the Lease. (Two scrapes across a
			// hand-over may be closer than one interval: each agent keeps
			// its own scrape phase, which Prometheus derives from the
			// host name, so on different nodes the phases differ. That
			// is two samples at two times, not one sample sent twice.)
			require.True(t, prev.at.Before(terms[term].from),
				"scrape by %s at %s, after %s took the Lease at %s", prev.by, prev.at, s.by, terms[term].from)
			hand = append(hand, handOver{last: prev.at, acquired: terms[term].from, first: s.at})
		}
		require.False(t, s.at.Before(terms[term].from), "scrape %d by %s at %s, before its term began at %s", i, s.by, s.at, terms[term].from)
		require.True(t, s.at.Before(terms[term].until), "scrape %d by %s at %s, after its term ended at %s", i, s.by, s.at, terms[term].until)
	}
	require.Len(t, hand, 2, "hand-overs seen by the target")
	t.Logf("killed a at %s, b acquired the Lease %s later; stopped b at %s, a acquired it %s later",
		killed.Format(time.StampMilli), acquired.Sub(killed), stopping.Format(time.StampMilli), acquired2.Sub(stopping))
	// 2 s for the API server and the candidates on a loaded machine.
	require.LessOrEqual(t, acquired.Sub(killed), leaseDuration+retryPeriod+2*time.Second, "take-over after a kill slower than the Lease allows")
	require.LessOrEqual(t, acquired2.Sub(stopping), retryPeriod+2*time.Second, "a released Lease not taken at the follower's next retry")
	for i, h := range hand {
		t.Logf("hand-over %d: last scrape %s before the Lease changed hands, first scrape %s after", i, h.acquired.Sub(h.last), h.first.Sub(h.acquired))
		require.LessOrEqual(t, h.first.Sub(h.acquired), scrapeEvery+leaderReaction,
			"hand-over %d: the new leader's first scrape came more than one scrape interval (+%s reaction) after it acquired the Lease", i, leaderReaction)
	}

	// The sink: every answered scrape exactly once, and the series has no
	// gap but the hand-overs'.
	want := len(log)
	var got []point
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		if got = rangeSamples(t, sink, sel, 10*time.Minute); len(got) == want {
			break
		}
		time.Sleep(500 * time.Millisecond)
	}
	require.Len(t, got, want, "samples in the sink vs scrapes the target answered")
	for i := 1; i < len(got); i++ {
		gap := got[i].t.Sub(got[i-1].t)
		require.Positive(t, gap, "two samples at %s", got[i].t)
		limit := scrapeEvery * 3 / 2 // a missed scrape makes it two
		for _, h := range hand {
			// Sample timestamps are the scrapes' start, a little before
			// the target answered.
			if !got[i-1].t.After(h.last) && got[i].t.After(h.last) {
				limit = h.acquired.Sub(h.last) + scrapeEvery + leaderReaction
			}
		}
		require.LessOrEqual(t, gap, limit, "gap of %s before the sample at %s", gap, got[i].t.Format(time.StampMilli))
	}
	require.True(t, slices.IsSortedFunc(got, func(x, y point) int { return x.t.Compare(y.t) }))
}
