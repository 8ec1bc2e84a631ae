package integration

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang/snappy"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/prometheus/model/value"
	"github.com/prometheus/prometheus/prompb"
	"github.com/stretchr/testify/require"

	"github.com/tributary-io/tributary/internal/testenv"
)

// histogramTarget exposes one native histogram (protobuf exposition, which
// Prometheus negotiates when scrape_native_histograms is on), observed once
// per scrape. It counts the scrapes it answered; after close it answers
// 503.
type histogramTarget struct {
	addr   string
	served atomic.Int64
	closed atomic.Bool
}

func startHistogramTarget(t *testing.T, name string) *histogramTarget {
	t.Helper()
	reg := prometheus.NewRegistry()
	h := prometheus.NewHistogram(prometheus.HistogramOpts{Name: name, Help: "A native histogram.", NativeHistogramBucketFactor: 1.1})
	reg.MustRegister(h)
	tg := &histogramTarget{}
	metrics := promhttp.HandlerFor(reg, promhttp.HandlerOpts{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if tg.closed.Load() {
			http.Error(w, "closed", http.StatusServiceUnavailable)
			return
		}
		h.Observe(float64(tg.served.Add(1)))
		metrics.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	tg.addr = srv.Listener.Addr().String()
	return tg
}

// histogramsInKafka returns the distinct timestamps of the native
// histogram samples of metric with cluster set to cluster, in every record
// of the metrics topic (the gateway acknowledged each of them).
func histogramsInKafka(t *testing.T, kafkaAddr, metric, cluster string) map[int64]bool {
	t.Helper()
	seen := map[int64]bool{}
	for _, m := range testenv.ReadTopic(t, kafkaAddr, "tributary.metrics") {
		raw, err := snappy.Decode(nil, m.Value)
		require.NoError(t, err)
		var req prompb.WriteRequest
		require.NoError(t, req.Unmarshal(raw))
		for _, ts := range req.Timeseries {
			var name, cl string
			for _, l := range ts.Labels {
				switch l.Name {
				case "__name__":
					name = l.Value
				case "cluster":
					cl = l.Value
				}
			}
			if name != metric {
				continue
			}
			require.Equal(t, cluster, cl, "histogram sent under another cluster")
			for _, s := range ts.Samples {
				// The one float a histogram series may carry: the stale
				// marker written when the target stops answering.
				require.True(t, value.IsStaleNaN(s.Value), "%s arrived as a float sample %v", metric, s)
			}
			for _, h := range ts.Histograms {
				seen[h.Timestamp] = true
			}
		}
	}
	return seen
}

// Native histograms go through the WAL like floats: the gateway is away,
// the agent is restarted during the outage, and afterwards every histogram
// sample scraped is in Kafka, acknowledged by the gateway. Checked in the
// topic rather than in the sink: the test's Prometheus (Debian's 2.42)
// refuses out-of-order native histograms, which a resend after a restart
// always has (the live queue of the new run is ahead of the backlog).
func TestAgentResendsNativeHistograms(t *testing.T) {
	t.Parallel()
	k := testenv.Kafka(t, 2)
	gwPort := testenv.FreePort(t)
	gw := startGateway(t, k.Addr, "-http.listen-addr="+testenv.Addr(gwPort))

	const metric = "tributary_agent_native_probe"
	probe := startHistogramTarget(t, metric)
	dir := t.TempDir()
	cfg := filepath.Join(dir, "agent.yml")
	job := fmt.Sprintf("    - job_name: native\n      scrape_native_histograms: true\n      static_configs: [{targets: [%q]}]\n", probe.addr)
	writeFile(t, cfg, agentConfig("hist", gw.URL, filepath.Join(dir, "data"), job))
	port := testenv.FreePort(t)
	first := startAgent(t, cfg, port)
	waitFor(t, func() bool { return len(histogramsInKafka(t, k.Addr, metric, "hist")) >= 3 })

	require.NoError(t, gw.Stop(30*time.Second))
	before := probe.served.Load()
	time.Sleep(10 * time.Second)
	require.NoError(t, first.Stop(30*time.Second))
	firstRun := probe.served.Load() - before // scraped, never sent by the first run
	require.Greater(t, firstRun, int64(5))
	second := startAgent(t, cfg, port)
	time.Sleep(10 * time.Second)

	startGateway(t, k.Addr, "-http.listen-addr="+testenv.Addr(gwPort))
	waitFor(t, func() bool { return second.metric(t, `tributary_agent_resend_samples_total{outcome="sent"}`) > 0 })
	time.Sleep(2 * time.Second)
	probe.closed.Store(true)
	time.Sleep(1500 * time.Millisecond) // a scrape in flight finishes
	want := int(probe.served.Load())

	var got map[int64]bool
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		if got = histogramsInKafka(t, k.Addr, metric, "hist"); len(got) == want {
			break
		}
		time.Sleep(time.Second)
	}
	require.Len(t, got, want, "histogram samples acknowledged by the gateway vs scrapes the target answered")
	require.GreaterOrEqual(t, second.metric(t, `tributary_agent_resend_samples_total{outcome="sent"}`), float64(firstRun))
}
