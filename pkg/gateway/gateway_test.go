package gateway

import (
	"bytes"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/golang/snappy"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/prometheus/prompb"
	"github.com/stretchr/testify/require"

	"github.com/tributary-io/tributary/internal/testenv"
	"github.com/tributary-io/tributary/pkg/kafka"
	"github.com/tributary-io/tributary/pkg/record"
)

type fixture struct {
	kafka *testenv.KafkaCluster
	srv   *httptest.Server
	prod  *kafka.Producer
	gw    *Gateway
}

func newFixture(t *testing.T, mutate func(*Config)) *fixture {
	t.Helper()
	k := testenv.Kafka(t, 4)
	var cfg Config
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	cfg.RegisterFlags(fs)
	require.NoError(t, fs.Parse([]string{"-kafka.brokers", k.Addr, "-kafka.ack-timeout", "3s", "-kafka.timeout", "2s", "-retry-after", "2s"}))
	if mutate != nil {
		mutate(&cfg)
	}
	require.NoError(t, cfg.Validate())
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	reg := prometheus.NewRegistry()
	prod, err := kafka.NewProducer(cfg.Kafka, cfg.Producer, "gateway", reg, log)
	require.NoError(t, err)
	t.Cleanup(func() { prod.Close() })
	gw := New(cfg, prod, reg, reg, log)
	srv := httptest.NewServer(gw.Handler())
	t.Cleanup(srv.Close)
	return &fixture{kafka: k, srv: srv, prod: prod, gw: gw}
}

func (f *fixture) post(t *testing.T, body []byte, headers ...string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, f.srv.URL+"/api/v1/write", bytes.NewReader(body))
	require.NoError(t, err)
	req.Header.Set("Content-Encoding", "snappy")
	req.Header.Set("Content-Type", "application/x-protobuf")
	for i := 0; i < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	msg, _ := io.ReadAll(resp.Body)
	return resp, strings.TrimSpace(string(msg))
}

func writeRequest(t *testing.T, series ...[]string) []byte {
	req := &prompb.WriteRequest{}
	for i, labels := range series {
		ts := prompb.TimeSeries{Samples: []prompb.Sample{{Value: float64(i), Timestamp: 1000}}}
		for j := 0; j < len(labels); j += 2 {
			ts.Labels = append(ts.Labels, prompb.Label{Name: labels[j], Value: labels[j+1]})
		}
		req.Timeseries = append(req.Timeseries, ts)
	}
	raw, err := req.Marshal()
	require.NoError(t, err)
	return snappy.Encode(nil, raw)
}

func TestWritesRecordsKeyedByCluster(t *testing.T) {
	f := newFixture(t, nil)
	body := writeRequest(t, []string{"__name__", "up", "cluster", "a"}, []string{"__name__", "up", "cluster", "a", "job", "j"})
	resp, msg := f.post(t, body, "X-Scope-OrgID", "team-1")
	require.Equal(t, http.StatusNoContent, resp.StatusCode, msg)
	// Mixed clusters and one series without a label (cluster from header).
	mixed := writeRequest(t, []string{"__name__", "up", "cluster", "b"}, []string{"__name__", "up", "cluster", "c"}, []string{"__name__", "up"})
	resp, msg = f.post(t, mixed, "X-Tributary-Cluster", "c")
	require.Equal(t, http.StatusNoContent, resp.StatusCode, msg)

	recs := testenv.ReadTopic(t, f.kafka.Addr, "tributary.metrics")
	require.Len(t, recs, 3)
	byCluster := map[string][]byte{}
	for _, r := range recs {
		env, err := record.Parse(r.Headers)
		require.NoError(t, err)
		require.Equal(t, string(r.Key), env.GetCluster())
		require.Equal(t, record.ContentTypeWriteRequest, env.GetContentType())
		require.InDelta(t, time.Now().UnixNano(), env.GetReceivedAtUnixNano(), float64(time.Minute))
		byCluster[env.GetCluster()] = r.Value
		if env.GetCluster() == "a" {
			require.Equal(t, "team-1", env.GetTenant())
			require.Equal(t, uint64(2), env.GetItems())
			require.Equal(t, body, r.Value, "unchanged request must be forwarded byte for byte")
		}
	}
	require.Len(t, byCluster, 3)
	raw, err := snappy.Decode(nil, byCluster["c"])
	require.NoError(t, err)
	var wr prompb.WriteRequest
	require.NoError(t, wr.Unmarshal(raw))
	require.Len(t, wr.Timeseries, 2)
	for _, ts := range wr.Timeseries {
		require.Contains(t, ts.Labels, prompb.Label{Name: "cluster", Value: "c"})
	}
}

func TestRefusesBadInput(t *testing.T) {
	f := newFixture(t, func(c *Config) { c.MaxBodyBytes = 64 << 10 })
	good := writeRequest(t, []string{"__name__", "up", "cluster", "a"})
	// A tiny body that declares a 2 GiB decoded length.
	bomb := []byte{0x80, 0x80, 0x80, 0x80, 0x08, 0x00}
	for _, tc := range []struct {
		name    string
		body    []byte
		headers []string
		status  int
		reason  string
	}{
		{"garbage", []byte("this is not snappy at all"), nil, 400, "snappy"},
		{"gzip encoding", good, []string{"Content-Encoding", "gzip"}, 415, "content-encoding"},
		{"json content type", good, []string{"Content-Type", "application/json"}, 415, "content-type"},
		{"remote write 2.0", good, []string{"Content-Type", "application/x-protobuf;proto=io.prometheus.write.v2.Request"}, 415, "remote-write 1.0"},
		{"decompression bomb", bomb, nil, 413, "exceeds the limit"},
		{"body too large", bytes.Repeat([]byte{0}, 100<<10), nil, 413, "exceeds the limit"},
		{"invalid label name", writeRequest(t, []string{"__name__", "up", "bad.name", "x", "cluster", "a"}), nil, 400, "invalid label name"},
		{"no cluster", writeRequest(t, []string{"__name__", "up"}), nil, 400, "no cluster label"},
		{"bad tenant", good, []string{"X-Scope-OrgID", "a/b"}, 400, "X-Scope-OrgID"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, msg := f.post(t, tc.body, tc.headers...)
			require.Equal(t, tc.status, resp.StatusCode, msg)
			require.Contains(t, msg, tc.reason)
		})
	}
	require.Empty(t, testenv.ReadTopic(t, f.kafka.Addr, "tributary.metrics"), "nothing refused may reach Kafka")
}

func TestKafkaDownAnswers503(t *testing.T) {
	f := newFixture(t, nil)
	ready, err := http.Get(f.srv.URL + "/-/ready")
	require.NoError(t, err)
	ready.Body.Close()
	require.Equal(t, http.StatusOK, ready.StatusCode)

	f.kafka.Close()
	for i := 0; i < 3; i++ {
		resp, msg := f.post(t, writeRequest(t, []string{"__name__", "up", "cluster", fmt.Sprint(i)}))
		require.Equal(t, http.StatusServiceUnavailable, resp.StatusCode, msg)
		require.Equal(t, "2", resp.Header.Get("Retry-After"))
	}
	time.Sleep(1100 * time.Millisecond) // readiness is cached for a second
	ready, err = http.Get(f.srv.URL + "/-/ready")
	require.NoError(t, err)
	ready.Body.Close()
	require.Equal(t, http.StatusServiceUnavailable, ready.StatusCode)
}

func TestOverloadAnswers503(t *testing.T) {
	for _, tc := range []struct {
		name   string
		args   []string
		status int
	}{
		{"default: every client retries 503", nil, http.StatusServiceUnavailable},
		{"429 when asked for", []string{"-limits.overload-status=429"}, http.StatusTooManyRequests},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, func(c *Config) {
				c.MaxBodyBytes = 4 << 10
				c.MaxInflightBytes = 8 << 10
				fs := flag.NewFlagSet("t", flag.ContinueOnError)
				fs.IntVar(&c.OverloadStatus, "limits.overload-status", c.OverloadStatus, "")
				require.NoError(t, fs.Parse(tc.args))
			})
			body := writeRequest(t, []string{"__name__", "up", "cluster", "a"})
			// Other requests in flight hold most of the budget.
			release, err := f.gw.reserve(8<<10 - 16)
			require.NoError(t, err)
			resp, msg := f.post(t, body)
			require.Equal(t, tc.status, resp.StatusCode, msg)
			require.Equal(t, "2", resp.Header.Get("Retry-After"))
			require.Contains(t, msg, "overloaded")
			release()
			resp, msg = f.post(t, body)
			require.Equal(t, http.StatusNoContent, resp.StatusCode, msg)
			require.Len(t, testenv.ReadTopic(t, f.kafka.Addr, "tributary.metrics"), 1, "only the accepted request reaches Kafka")
		})
	}
}

func TestClusterLabelIsBounded(t *testing.T) {
	cfg := defaultConfig(t, "-metrics.max-clusters=100")
	reg := prometheus.NewRegistry()
	gw := New(cfg, nil, reg, reg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	for i := 0; i < 128<<10; i++ {
		c := fmt.Sprint("hostile-", i)
		gw.metrics.items.WithLabelValues("metrics", c).Inc()
		gw.metrics.lineBytes.WithLabelValues(c).Add(10)
	}
	gw.metrics.items.WithLabelValues("logs", "hostile-5").Inc() // admitted clusters stay themselves

	srv := httptest.NewServer(gw.Handler())
	defer srv.Close()
	resp, err := http.Get(srv.URL + "/metrics")
	require.NoError(t, err)
	defer resp.Body.Close()
	text, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	count := func(prefix string) int {
		return strings.Count(string(text), "\n"+prefix)
	}
	require.Equal(t, 102, count(`tributary_gateway_items_received_total{cluster="`), "100 clusters and _other for signal metrics, one for logs")
	require.Equal(t, 101, count(`tributary_gateway_log_line_bytes_total{`))
	require.Contains(t, string(text), `tributary_gateway_items_received_total{cluster="_other",signal="metrics"} 130972`)
	require.Contains(t, string(text), `tributary_gateway_items_received_total{cluster="hostile-5",signal="logs"} 1`)
	require.Contains(t, string(text), `tributary_gateway_metrics_cluster_overflow_total 261944`)
}
