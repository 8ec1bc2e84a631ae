package integration

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tributary-io/tributary/internal/testenv"
)

// Overload budget of the gateway under test: the in-flight budget is just
// above the body limit, and the load below holds all of it.
const (
	stockMaxBody     = 64 << 10
	stockMaxInflight = stockMaxBody + 4<<10
	stockSlowBody    = 4 << 10
	stockSlowClients = stockMaxInflight/stockSlowBody + 2
)

// A stock Prometheus 2.42 (Debian) on its default remote_write settings,
// apart from short batch and backoff times to keep the test short, sends to
// a gateway whose in-flight budget a concurrent Go client keeps spent for a
// while: the sender's requests meet the overload answer (503 + Retry-After
// by default), retry them, fail and drop nothing, and once the load stops
// every sample it scraped from a fixed target is in the sink.
func TestStockPrometheusRetriesOverload(t *testing.T) {
	t.Parallel()
	k := testenv.Kafka(t, 2)
	sink := testenv.Prometheus(t, testenv.SinkConfig)
	gw := startGateway(t, k.Addr,
		fmt.Sprintf("-limits.max-body-bytes=%d", stockMaxBody),
		fmt.Sprintf("-limits.max-inflight-bytes=%d", stockMaxInflight),
	)
	startIngester(t, k.Addr, sink.URL)

	target := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; version=0.0.4")
		fmt.Fprintln(w, "# TYPE stock_fixed gauge")
		fmt.Fprintln(w, "stock_fixed 1")
	}))
	t.Cleanup(target.Close)

	senderStart := time.Now()
	sender := testenv.Prometheus(t, fmt.Sprintf(`
global:
  scrape_interval: 1s
  external_labels:
    cluster: stock-1
scrape_configs:
  - job_name: fixed
    static_configs: [{targets: [%q]}]
remote_write:
  - url: %s/api/v1/write
    queue_config: {batch_send_deadline: 1s, max_backoff: 1s}
`, strings.TrimPrefix(target.URL, "http://"), gw.URL))

	// The normal path first: the fixed series arrives.
	waitFor(t, func() bool {
		res, err := sink.Query(`stock_fixed{cluster="stock-1",job="fixed"}`, time.Now())
		return err == nil && len(res) == 1
	})

	// Overload: slow uploads that declare their length hold the whole
	// in-flight budget while they trickle their body in.
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var held atomic.Int64
	for range stockSlowClients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				if slowUpload(ctx, gw.URL) {
					held.Add(1)
				}
			}
		}()
	}
	retriedBefore := promMetric(t, sender.URL, "prometheus_remote_storage_samples_retried_total")
	time.Sleep(15 * time.Second)
	cancel()
	wg.Wait()
	require.Positive(t, held.Load(), "the load never held any budget")

	// After the overload: the sink holds exactly what the sender scraped up
	// to a point in time after the load stopped.
	at := time.Now().Add(2 * time.Second)
	window := fmt.Sprintf("%ds", int(at.Sub(senderStart).Seconds())+10)
	time.Sleep(time.Until(at) + time.Second)
	local, err := sender.Query(fmt.Sprintf(`count_over_time(stock_fixed{job="fixed"}[%s])`, window), at)
	require.NoError(t, err)
	require.Len(t, local, 1)
	scraped := local[0].Value
	require.Greater(t, scraped, 15.0, "the sender scraped too little to mean anything")
	deadline := time.Now().Add(45 * time.Second)
	var held0 float64
	for {
		res, err := sink.Query(fmt.Sprintf(`count_over_time(stock_fixed{cluster="stock-1",job="fixed"}[%s])`, window), at)
		require.NoError(t, err)
		if len(res) == 1 {
			held0 = res[0].Value
		}
		if held0 == scraped {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the sink holds %v samples of stock_fixed, the sender scraped %v", held0, scraped)
		}
		time.Sleep(500 * time.Millisecond)
	}

	// The sender failed and dropped nothing.
	require.Positive(t, promMetric(t, sender.URL, "prometheus_remote_storage_samples_total"))
	require.Zero(t, promMetric(t, sender.URL, "prometheus_remote_storage_samples_failed_total"),
		"the sender gave up on samples")
	require.Zero(t, promMetric(t, sender.URL, "prometheus_remote_storage_samples_dropped_total"),
		"the sender dropped samples")
	requireNoDeadLetters(t, k.Addr)

	// And the overload did meet the sender: the gateway answered 503 and
	// the sender retried samples because of it.
	require.Positive(t, metricValue(t, gw.URL, "tributary_gateway_requests_total",
		map[string]string{"signal": "metrics", "code": "503"}), "the gateway never answered 503")
	require.Greater(t, promMetric(t, sender.URL, "prometheus_remote_storage_samples_retried_total"), retriedBefore,
		"the sender retried no sample during the overload: it never met it")
}

// slowUpload posts a remote-write request that declares stockSlowBody bytes
// and sends them over about two seconds, holding that much of the gateway's
// in-flight budget meanwhile. It reports whether the gateway read the body
// (any answer but the overload status).
func slowUpload(ctx context.Context, url string) bool {
	pr, pw := io.Pipe()
	go func() {
		chunk := make([]byte, stockSlowBody/32)
		for range 32 {
			select {
			case <-ctx.Done():
				pw.CloseWithError(ctx.Err())
				return
			case <-time.After(60 * time.Millisecond):
			}
			if _, err := pw.Write(chunk); err != nil {
				return
			}
		}
		pw.Close()
	}()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url+"/api/v1/write", pr)
	if err != nil {
		pr.Close()
		return false
	}
	req.ContentLength = stockSlowBody
	req.Header.Set("Content-Encoding", "snappy")
	req.Header.Set("Content-Type", "application/x-protobuf")
	req.Header.Set("X-Tributary-Cluster", "load")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		pr.Close()
		return false
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	if resp.StatusCode == http.StatusServiceUnavailable || resp.StatusCode == http.StatusTooManyRequests {
		pr.Close()
		select {
		case <-ctx.Done():
		case <-time.After(20 * time.Millisecond):
		}
		return false
	}
	return true
}

// promMetric scrapes baseURL/metrics and returns the sum of the samples of
// name; unlike metricValue it fails when the metric is absent, so a renamed
// counter cannot pass as zero.
func promMetric(t *testing.T, baseURL, name string) float64 {
	t.Helper()
	mf := scrapeMetrics(t, baseURL)[name]
	require.NotNil(t, mf, "%s/metrics has no %s", baseURL, name)
	return sumSamples(mf, nil)
}
