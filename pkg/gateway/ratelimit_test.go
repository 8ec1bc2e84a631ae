package gateway

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/grafana/loki/pkg/push"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"
	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	grpccodes "google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	grpcstatus "google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/tributary-io/tributary/internal/testenv"
	"github.com/tributary-io/tributary/pkg/record"
)

// limitsFile writes a limits file for the test and returns its path.
func limitsFile(t *testing.T, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "limits.yaml")
	require.NoError(t, os.WriteFile(path, []byte(content), 0o600))
	return path
}

func (f *fixture) refusedCount(signal, cluster, reason string) float64 {
	return testutil.ToFloat64(f.gw.refused.vec.vec.WithLabelValues(signal, cluster, reason))
}

// seriesFor is a remote-write body of n series (one sample each) of cluster.
func seriesFor(t *testing.T, cluster string, n int) []byte {
	series := make([][]string, n)
	for i := range series {
		series[i] = []string{"__name__", "up", "cluster", cluster, "i", fmt.Sprint(i)}
	}
	return writeRequest(t, series...)
}

// lines is a Loki push body with one stream of cluster holding the lines.
func lines(t *testing.T, cluster string, lines ...string) []byte {
	now := time.Now()
	s := push.Stream{Labels: fmt.Sprintf(`{app="a", cluster=%q}`, cluster)}
	for i, l := range lines {
		s.Entries = append(s.Entries, push.Entry{Timestamp: now.Add(time.Duration(i)), Line: l})
	}
	return lokiProto(t, s)
}

func spansOf(t *testing.T, cluster string, n int) []byte {
	spans := make([]*tracepb.Span, n)
	for i := range spans {
		spans[i] = validSpan(byte(i + 1))
	}
	return otlpRequestBody(t, cluster, spans...)
}

func retryInfo(err error) time.Duration {
	for _, d := range grpcstatus.Convert(err).Details() {
		if ri, ok := d.(*errdetails.RetryInfo); ok {
			return ri.RetryDelay.AsDuration()
		}
	}
	return 0
}

// A cluster over its rate gets 429 with Retry-After = the seconds until
// its bucket holds the request (RESOURCE_EXHAUSTED with RetryInfo over
// gRPC); a request larger than the burst gets 413 naming the burst; other
// clusters are not affected; each refusal is counted by cluster and reason.
func TestRateLimits(t *testing.T) {
	path := limitsFile(t, `
clusters:
  noisy:
    samples_per_second: 1
    samples_burst: 10
    log_bytes_per_second: 10
    log_bytes_burst: 100
    spans_per_second: 1
    spans_burst: 3
  slow:
    spans_per_second: 0.1
    spans_burst: 3
`)
	f := newFixture(t, func(c *Config) { c.LimitsFile = path })

	t.Run("remote-write", func(t *testing.T) {
		resp, msg := f.post(t, seriesFor(t, "noisy", 10))
		require.Equal(t, http.StatusNoContent, resp.StatusCode, msg)
		resp, msg = f.post(t, seriesFor(t, "noisy", 10))
		require.Equal(t, http.StatusTooManyRequests, resp.StatusCode, msg)
		require.Equal(t, "10", resp.Header.Get("Retry-After"), "10 samples at 1/s")
		require.Contains(t, msg, `cluster "noisy" is over its rate limit samples_per_second=1`)
		resp, msg = f.post(t, seriesFor(t, "quiet", 1000))
		require.Equal(t, http.StatusNoContent, resp.StatusCode, msg)
		// The bucket is empty: a request naming noisy in its header is
		// refused before its body is read (garbage would be a 400).
		resp, msg = f.post(t, []byte("not snappy"), "X-Tributary-Cluster", "noisy")
		require.Equal(t, http.StatusTooManyRequests, resp.StatusCode, msg)
		require.NotEmpty(t, resp.Header.Get("Retry-After"))
		resp, msg = f.post(t, seriesFor(t, "noisy", 11))
		require.Equal(t, http.StatusRequestEntityTooLarge, resp.StatusCode, msg)
		require.Contains(t, msg, "samples_burst=10")
		require.Empty(t, resp.Header.Get("Retry-After"), "413: not to be retried")

		require.Equal(t, 2.0, f.refusedCount("metrics", "noisy", "samples_per_second"))
		require.Equal(t, 1.0, f.refusedCount("metrics", "noisy", "samples_burst"))
		require.Zero(t, f.refusedCount("metrics", "quiet", "samples_per_second"))
		items := map[string]uint64{}
		for _, r := range testenv.ReadTopic(t, f.kafka.Addr, "tributary.metrics") {
			env, err := record.Parse(r.Headers)
			require.NoError(t, err)
			items[env.GetCluster()] += env.GetItems()
		}
		require.Equal(t, map[string]uint64{"noisy": 10, "quiet": 1000}, items, "only the admitted requests were written")
	})

	t.Run("loki push", func(t *testing.T) {
		hundred := strings.Repeat("x", 100)
		code, msg := f.push(t, lines(t, "noisy", hundred[:60], hundred[:40]))
		require.Equal(t, http.StatusNoContent, code, msg)
		req, err := http.NewRequest(http.MethodPost, f.srv.URL+"/loki/api/v1/push", strings.NewReader(string(lines(t, "noisy", hundred[:50]))))
		require.NoError(t, err)
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		resp.Body.Close()
		require.Equal(t, http.StatusTooManyRequests, resp.StatusCode)
		require.Equal(t, "5", resp.Header.Get("Retry-After"), "50 line bytes at 10/s")
		code, msg = f.push(t, lines(t, "quiet", hundred, hundred))
		require.Equal(t, http.StatusNoContent, code, msg)
		code, msg = f.push(t, lines(t, "noisy", hundred+"x"))
		require.Equal(t, http.StatusRequestEntityTooLarge, code, msg)
		require.Contains(t, msg, "log_bytes_burst=100")
		require.Equal(t, 1.0, f.refusedCount("logs", "noisy", "log_bytes_per_second"))
		require.Equal(t, 1.0, f.refusedCount("logs", "noisy", "log_bytes_burst"))
	})

	t.Run("otlp http", func(t *testing.T) {
		resp, body := f.postOTLP(t, spansOf(t, "noisy", 3))
		require.Equal(t, http.StatusOK, resp.StatusCode, string(body))
		resp, body = f.postOTLP(t, spansOf(t, "noisy", 2))
		require.Equal(t, http.StatusTooManyRequests, resp.StatusCode, string(body))
		require.Equal(t, "2", resp.Header.Get("Retry-After"), "2 spans at 1/s")
		st := decodeStatus(t, resp, body)
		require.Equal(t, int32(grpccodes.ResourceExhausted), st.Code)
		require.Contains(t, st.Message, "spans_per_second=1")
		resp, body = f.postOTLP(t, spansOf(t, "quiet", 50))
		require.Equal(t, http.StatusOK, resp.StatusCode, string(body))
	})

	t.Run("otlp grpc", func(t *testing.T) {
		conn, client := grpcClient(t, f.serveOTLPGRPC(t))
		ctx := context.Background()
		var req coltracepb.ExportTraceServiceRequest
		require.NoError(t, proto.Unmarshal(spansOf(t, "slow", 3), &req))
		_, err := client.Export(ctx, &req)
		require.NoError(t, err)
		_, err = client.Export(ctx, &req)
		require.Equal(t, grpccodes.ResourceExhausted, grpcstatus.Code(err), "%v", err)
		require.Contains(t, grpcstatus.Convert(err).Message(), "spans_per_second=0.1")
		require.Equal(t, 30*time.Second, retryInfo(err), "3 spans at 0.1/s")

		// Named in metadata while the bucket is empty: refused before
		// gRPC reads the message (garbage would be INVALID_ARGUMENT).
		garbage := []byte("this is not protobuf at all")
		var out []byte
		err = conn.Invoke(metadata.AppendToOutgoingContext(ctx, "x-tributary-cluster", "noisy"),
			"/opentelemetry.proto.collector.trace.v1.TraceService/Export", &garbage, &out, grpc.ForceCodec(rawCodec{}))
		require.Equal(t, grpccodes.ResourceExhausted, grpcstatus.Code(err), "%v", err)
		require.NotZero(t, retryInfo(err), "with RetryInfo: to be retried")

		require.NoError(t, proto.Unmarshal(spansOf(t, "noisy", 4), &req))
		_, err = client.Export(ctx, &req)
		require.Equal(t, grpccodes.ResourceExhausted, grpcstatus.Code(err), "%v", err)
		require.Contains(t, grpcstatus.Convert(err).Message(), "spans_burst=3")
		require.Zero(t, retryInfo(err), "beyond the burst: no RetryInfo, not to be retried")

		require.NoError(t, proto.Unmarshal(spansOf(t, "quiet", 4), &req))
		_, err = client.Export(ctx, &req)
		require.NoError(t, err)
		require.Equal(t, 2.0, f.refusedCount("spans", "noisy", "spans_per_second"), "one over HTTP, one over gRPC")
		require.Equal(t, 1.0, f.refusedCount("spans", "slow", "spans_per_second"))
		require.Equal(t, 1.0, f.refusedCount("spans", "noisy", "spans_burst"))
	})
}

// Per-request bounds come from the cluster's entry of the limits file when
// the cluster is known before parsing (here the cluster header), else from
// the file's defaults over the flags; a changed file applies without a
// restart.
func TestPerRequestLimitsPerCluster(t *testing.T) {
	t.Parallel() // waits for a reload
	path := limitsFile(t, `
defaults:
  max_series_per_request: 3
  max_streams_per_request: 2
clusters:
  small:
    max_series_per_request: 1
    max_streams_per_request: 1
    max_spans_per_request: 1
    max_label_value_length: 8
    max_line_bytes: 5
`)
	f := newFixture(t, func(c *Config) {
		c.LimitsFile = path
		c.LimitsPollInterval = 20 * time.Millisecond
	})
	small := []string{"X-Tributary-Cluster", "small"}
	big := []string{"X-Tributary-Cluster", "big"}
	two := writeRequest(t, []string{"__name__", "a"}, []string{"__name__", "b"})

	resp, msg := f.post(t, two, small...)
	require.Equal(t, http.StatusRequestEntityTooLarge, resp.StatusCode, msg)
	require.Contains(t, msg, `cluster "small": 2 in one request exceeds max_series_per_request=1`)
	resp, msg = f.post(t, two, big...)
	require.Equal(t, http.StatusNoContent, resp.StatusCode, msg)
	resp, msg = f.post(t, seriesFor(t, "big", 4))
	require.Equal(t, http.StatusRequestEntityTooLarge, resp.StatusCode, msg)
	require.Contains(t, msg, "max_series_per_request=3", "the defaults apply to clusters the file does not name")

	longValue := writeRequest(t, []string{"__name__", "a", "v", "123456789"})
	resp, msg = f.post(t, longValue, small...)
	require.Equal(t, http.StatusBadRequest, resp.StatusCode, msg)
	resp, msg = f.post(t, longValue, big...)
	require.Equal(t, http.StatusNoContent, resp.StatusCode, msg, "the flag's 4096 applies to big")

	code, msg := f.push(t, lines(t, "", "123456"), small...)
	require.Equal(t, http.StatusBadRequest, code, msg)
	require.Contains(t, msg, "line too long")
	code, msg = f.push(t, lines(t, "", "123456"), big...)
	require.Equal(t, http.StatusNoContent, code, msg)
	twoStreams := lokiProto(t,
		push.Stream{Labels: `{app="a"}`, Entries: []push.Entry{{Timestamp: time.Now(), Line: "x"}}},
		push.Stream{Labels: `{app="b"}`, Entries: []push.Entry{{Timestamp: time.Now(), Line: "y"}}})
	code, msg = f.push(t, twoStreams, small...)
	require.Equal(t, http.StatusRequestEntityTooLarge, code, msg)
	require.Contains(t, msg, "max_streams_per_request=1")
	code, msg = f.push(t, twoStreams, big...)
	require.Equal(t, http.StatusNoContent, code, msg)

	httpResp, body := f.postOTLP(t, spansOf(t, "", 2), small...)
	require.Equal(t, http.StatusRequestEntityTooLarge, httpResp.StatusCode, string(body))
	require.Contains(t, decodeStatus(t, httpResp, body).Message, "max_spans_per_request=1")
	httpResp, body = f.postOTLP(t, spansOf(t, "", 2), big...)
	require.Equal(t, http.StatusOK, httpResp.StatusCode, string(body))

	require.Equal(t, 1.0, f.refusedCount("metrics", "small", "max_series_per_request"))
	require.Equal(t, 1.0, f.refusedCount("metrics", "big", "max_series_per_request"))
	require.Equal(t, 1.0, f.refusedCount("metrics", "small", "invalid"))
	require.Equal(t, 1.0, f.refusedCount("logs", "small", "max_streams_per_request"))
	require.Equal(t, 1.0, f.refusedCount("spans", "small", "max_spans_per_request"))

	require.NoError(t, os.WriteFile(path, []byte("clusters:\n  small:\n    max_series_per_request: 2\n"), 0o600))
	require.Eventually(t, func() bool {
		resp, _ := f.post(t, two, small...)
		return resp.StatusCode == http.StatusNoContent
	}, 5*time.Second, 20*time.Millisecond, "the changed file applies without a restart")
	resp, msg = f.post(t, seriesFor(t, "big", 4))
	require.Equal(t, http.StatusNoContent, resp.StatusCode, "the new file has no defaults: %s", msg)

	require.NoError(t, os.WriteFile(path, []byte("clusters: {small: {max_series_per_request: -1}}\n"), 0o600))
	require.Eventually(t, func() bool {
		return strings.Contains(f.metricsText(t), `tributary_gateway_limits_reloads_total{outcome="error"} 1`)
	}, 5*time.Second, 20*time.Millisecond, "the invalid file was read")
	resp, msg = f.post(t, two, small...)
	require.Equal(t, http.StatusNoContent, resp.StatusCode, "the last good file stays in force: %s", msg)
	resp, msg = f.post(t, seriesFor(t, "small", 3))
	require.Equal(t, http.StatusRequestEntityTooLarge, resp.StatusCode, msg)
}

func (f *fixture) metricsText(t *testing.T) string {
	t.Helper()
	resp, err := http.Get(f.srv.URL + "/metrics")
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return string(b)
}

// A limits file that does not load stops the start, naming the flag and
// what is wrong; later changes that do not load only keep the last good
// file (TestPerRequestLimitsPerCluster).
func TestConfigLimitsFile(t *testing.T) {
	cfg := defaultConfig(t)
	require.Empty(t, cfg.LimitsFile, "no per-cluster limits by default")
	require.Equal(t, 10*time.Second, cfg.LimitsPollInterval)

	good := limitsFile(t, "defaults: {samples_per_second: 100}\n")
	cfg = defaultConfig(t, "-limits.file="+good)
	require.NoError(t, cfg.Validate())
	cfg = defaultConfig(t, "-limits.file="+good, "-limits.file.poll-interval=0s")
	require.ErrorContains(t, cfg.Validate(), "limits.file.poll-interval")

	cfg = defaultConfig(t, "-limits.file="+limitsFile(t, "clusters: {prod: {samples_burst: -5}}\n"))
	require.ErrorContains(t, cfg.Validate(), "limits.file: parse")
	require.ErrorContains(t, cfg.Validate(), "clusters: prod: samples_burst is -5")
	cfg = defaultConfig(t, "-limits.file="+filepath.Join(t.TempDir(), "missing.yaml"))
	require.ErrorContains(t, cfg.Validate(), "limits.file: open")
}

// A request the rate admitted but Kafka did not take gives its tokens
// back: the client's retry after the 503 is not charged twice.
func TestRateRefundedWhenKafkaFails(t *testing.T) {
	path := limitsFile(t, "clusters: {slow: {spans_per_second: 0.01, spans_burst: 3}}\n")
	f := newFixture(t, func(c *Config) { c.LimitsFile = path })
	failed := failSpansProduce(f.kafka, 1)
	resp, body := f.postOTLP(t, spansOf(t, "slow", 3))
	require.Equal(t, http.StatusServiceUnavailable, resp.StatusCode, string(body))
	require.Equal(t, int32(1), failed.Load())
	resp, body = f.postOTLP(t, spansOf(t, "slow", 3))
	require.Equal(t, http.StatusOK, resp.StatusCode, "the retry pays what the failed request gave back: %s", body)
	resp, body = f.postOTLP(t, spansOf(t, "slow", 1))
	require.Equal(t, http.StatusTooManyRequests, resp.StatusCode, "the written request paid: %s", body)
}
