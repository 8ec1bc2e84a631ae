package gateway

import (
	"bufio"
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/golang/snappy"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/prometheus/prompb"
	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kmsg"

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
	return newFixtureOn(t, testenv.Kafka(t, 4), mutate)
}

// newFixtureOn is newFixture on a broker the test has set up (controls
// that must be in place before the gateway first asks Kafka).
func newFixtureOn(t *testing.T, k *testenv.KafkaCluster, mutate func(*Config)) *fixture {
	t.Helper()
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
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { gw.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
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
		ts := prompb.TimeSeries{Samples: []prompb.Sample{{Value: float64(i), Timestamp: time.Now().UnixMilli()}}}
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
		{"unknown remote-write proto", good, []string{"Content-Type", "application/x-protobuf;proto=io.prometheus.write.v3.Request"}, 415, "want prometheus.WriteRequest (remote-write 1.0) or io.prometheus.write.v2.Request (2.0)"},
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
	t.Parallel() // it waits on Kafka timeouts and the readiness loop, not the CPU
	f := newFixture(t, nil)
	f.waitReady(t, http.StatusOK, 10*time.Second)

	f.kafka.Close()
	for i := 0; i < 3; i++ {
		resp, msg := f.post(t, writeRequest(t, []string{"__name__", "up", "cluster", fmt.Sprint(i)}))
		require.Equal(t, http.StatusServiceUnavailable, resp.StatusCode, msg)
		require.Equal(t, "2", resp.Header.Get("Retry-After"))
	}
	code, _, _ := f.ready(t)
	require.Equal(t, http.StatusServiceUnavailable, code, "a failed produce makes the gateway unready at once")
}

// ready fetches /-/ready.
func (f *fixture) ready(t *testing.T) (code int, msg string, took time.Duration) {
	t.Helper()
	start := time.Now()
	resp, err := http.Get(f.srv.URL + "/-/ready")
	require.NoError(t, err)
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body), time.Since(start)
}

// waitReady polls /-/ready until it answers want, asserting that every
// answer comes within a second whatever Kafka does.
func (f *fixture) waitReady(t *testing.T, want int, within time.Duration) string {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		code, msg, took := f.ready(t)
		require.Less(t, took, time.Second, "/-/ready must not wait on Kafka")
		if code == want {
			return msg
		}
		require.True(t, time.Now().Before(deadline), "/-/ready still %d (%s) after %s, want %d", code, msg, within, want)
		time.Sleep(100 * time.Millisecond)
	}
}

// freeze makes the broker swallow requests of key without answering until
// the returned function is called.
func freeze(k *testenv.KafkaCluster, key kmsg.Key) (thaw func()) {
	var off atomic.Bool
	k.ControlKey(int16(key), func(kmsg.Request) (kmsg.Response, error, bool) {
		k.KeepControl()
		return nil, nil, !off.Load()
	})
	return func() { off.Store(true) }
}

func TestReadyAnswersAtOnceWhileKafkaIsFrozen(t *testing.T) {
	f := newFixture(t, nil)
	f.waitReady(t, http.StatusOK, 10*time.Second)
	thaw := freeze(f.kafka, kmsg.Metadata)
	frozen := time.Now()
	msg := f.waitReady(t, http.StatusServiceUnavailable, 4*time.Second) // ~2 s: readyInterval + readyTimeout
	require.Contains(t, msg, "metadata")
	t.Logf("unready %s after the freeze: %s", time.Since(frozen), msg)
	thaw()
	f.waitReady(t, http.StatusOK, 20*time.Second)
}

// TestReadyChecksGoOnWhileShardCheckWaits: the shard table's check, once
// Kafka first answers, asks for the other topics' metadata; while that
// waits on Kafka the readiness checks must go on. They stopped there, so
// that a Kafka freezing at that moment left /-/ready at 200.
func TestReadyChecksGoOnWhileShardCheckWaits(t *testing.T) {
	t.Parallel() // it waits on the readiness loop, not the CPU
	k := testenv.Kafka(t, 4)
	var off atomic.Bool
	k.ControlKey(int16(kmsg.Metadata), func(req kmsg.Request) (kmsg.Response, error, bool) {
		for _, tp := range req.(*kmsg.MetadataRequest).Topics {
			if tp.Topic != nil && *tp.Topic == "tributary.logs" && !off.Load() {
				k.KeepControl()
				return nil, nil, true // never answered: the shard check waits
			}
		}
		return nil, nil, false
	})
	t.Cleanup(func() { off.Store(true) })
	f := newFixtureOn(t, k, nil)
	f.waitReady(t, http.StatusOK, 10*time.Second)
	thaw := freeze(f.kafka, kmsg.Metadata)
	defer thaw()
	msg := f.waitReady(t, http.StatusServiceUnavailable, 4*time.Second)
	require.Contains(t, msg, "metadata")
}

func TestProduceTimeoutAnswers503AndUnready(t *testing.T) {
	t.Parallel() // it waits on Kafka timeouts and the readiness loop, not the CPU
	f := newFixture(t, nil)
	f.waitReady(t, http.StatusOK, 10*time.Second)
	resp, msg := f.post(t, writeRequest(t, []string{"__name__", "up", "cluster", "a"}))
	require.Equal(t, http.StatusNoContent, resp.StatusCode, msg)

	thaw := freeze(f.kafka, kmsg.Produce)
	start := time.Now()
	resp, msg = f.post(t, writeRequest(t, []string{"__name__", "up", "cluster", "a"}))
	require.Equal(t, http.StatusServiceUnavailable, resp.StatusCode, msg)
	require.Equal(t, "2", resp.Header.Get("Retry-After"))
	require.Less(t, time.Since(start), 5*time.Second, "bounded by -kafka.ack-timeout (3s)")
	// sarama asks for metadata on the connection that holds the frozen
	// produce, so either reason may show.
	code, _, _ := f.ready(t)
	require.Equal(t, http.StatusServiceUnavailable, code, "unready as soon as a produce failed")

	thaw()
	f.waitReady(t, http.StatusOK, 20*time.Second)
	testenv.Eventually(t, 20*time.Second, func() error {
		if resp, msg := f.post(t, writeRequest(t, []string{"__name__", "up", "cluster", "a"})); resp.StatusCode != http.StatusNoContent {
			return fmt.Errorf("%d %s", resp.StatusCode, msg)
		}
		return nil
	})
}

func TestFailedProduceMakesUnready(t *testing.T) {
	t.Parallel() // it waits on Kafka timeouts and the readiness loop, not the CPU
	f := newFixture(t, nil)
	f.waitReady(t, http.StatusOK, 10*time.Second)
	answerProduce(f.kafka, sarama.ErrInvalidRecord) // once; metadata still answers
	resp, msg := f.post(t, writeRequest(t, []string{"__name__", "up", "cluster", "a"}))
	require.Equal(t, http.StatusServiceUnavailable, resp.StatusCode, msg)
	code, body, _ := f.ready(t)
	require.Equal(t, http.StatusServiceUnavailable, code)
	require.Contains(t, body, "recent produce failed")
	require.Contains(t, body, sarama.ErrInvalidRecord.Error())
	f.waitReady(t, http.StatusOK, 10*time.Second)
	resp, msg = f.post(t, writeRequest(t, []string{"__name__", "up", "cluster", "a"}))
	require.Equal(t, http.StatusNoContent, resp.StatusCode, msg)
}

func TestRecordTooLargeForKafkaAnswers413(t *testing.T) {
	f := newFixture(t, nil)
	// The topic's max.message.bytes is below the record: Kafka answers
	// MESSAGE_TOO_LARGE.
	answerProduce(f.kafka, sarama.ErrMessageSizeTooLarge)
	resp, msg := f.post(t, writeRequest(t, []string{"__name__", "up", "cluster", "a"}))
	require.Equal(t, http.StatusRequestEntityTooLarge, resp.StatusCode, msg)
	require.Contains(t, msg, "kafka.max-message-bytes=1000000")
	require.Empty(t, resp.Header.Get("Retry-After"))
}

// answerProduce makes the broker answer the next produce request with code
// for every partition.
func answerProduce(k *testenv.KafkaCluster, code sarama.KError) {
	k.ControlKey(int16(kmsg.Produce), func(req kmsg.Request) (kmsg.Response, error, bool) {
		return testenv.ProduceErrorResponse(req, "", int16(code)), nil, true
	})
}

func TestStartsBeforeKafka(t *testing.T) {
	t.Parallel() // it waits on Kafka timeouts and the readiness loop, not the CPU
	port := testenv.FreePort(t)
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	cfg := defaultConfig(t, "-kafka.brokers="+addr, "-kafka.timeout=1s", "-kafka.ack-timeout=3s", "-retry-after=2s")
	require.NoError(t, cfg.Validate())
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	reg := prometheus.NewRegistry()
	prod := kafka.Connect(cfg.Kafka, cfg.Producer, "gateway", reg, log)
	t.Cleanup(func() { prod.Close() })
	gw := New(cfg, prod, reg, reg, log)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { gw.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	srv := httptest.NewServer(gw.Handler())
	t.Cleanup(srv.Close)
	f := &fixture{srv: srv, gw: gw}

	msg := f.waitReady(t, http.StatusServiceUnavailable, 5*time.Second)
	require.Contains(t, msg, "kafka not connected")
	for _, path := range []string{"/-/healthy", "/metrics"} {
		resp, err := http.Get(srv.URL + path)
		require.NoError(t, err)
		resp.Body.Close()
		require.Equal(t, http.StatusOK, resp.StatusCode, path)
	}
	resp, body := f.post(t, writeRequest(t, []string{"__name__", "up", "cluster", "a"}))
	require.Equal(t, http.StatusServiceUnavailable, resp.StatusCode, body)
	require.Contains(t, body, "kafka")
	require.Equal(t, "2", resp.Header.Get("Retry-After"))

	// Kafka comes up only after an attempt failed: the gateway must retry.
	testenv.Eventually(t, 30*time.Second, func() error {
		if _, msg, _ := f.ready(t); !strings.Contains(msg, "connection refused") {
			return fmt.Errorf("no failed attempt yet: %s", msg)
		}
		return nil
	})
	k := testenv.Kafka(t, 2, kfake.Ports(port))
	f.waitReady(t, http.StatusOK, 40*time.Second)
	resp, body = f.post(t, writeRequest(t, []string{"__name__", "up", "cluster", "a"}))
	require.Equal(t, http.StatusNoContent, resp.StatusCode, body)
	require.Len(t, testenv.ReadTopic(t, k.Addr, "tributary.metrics"), 1)
}

func TestRefusalsLoggedAtInfoRateLimited(t *testing.T) {
	var buf syncBuffer
	log := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelInfo}))
	reg := prometheus.NewRegistry()
	gw := New(defaultConfig(t), nil, reg, reg, log) // refused before any produce
	srv := httptest.NewServer(gw.Handler())
	defer srv.Close()
	f := &fixture{srv: srv, gw: gw}
	for i := 0; i < 20; i++ {
		resp, msg := f.post(t, writeRequest(t, []string{"__name__", "up", "cluster", "a"}), "X-Scope-OrgID", "a/b")
		require.Equal(t, http.StatusBadRequest, resp.StatusCode, msg)
		resp, msg = f.post(t, []byte("not snappy"), "Content-Encoding", "gzip")
		require.Equal(t, http.StatusUnsupportedMediaType, resp.StatusCode, msg)
	}
	out := buf.String()
	require.Equal(t, 2, strings.Count(out, "\n"), "one line per status code:\n%s", out)
	require.Contains(t, out, `level=INFO msg="write refused" signal=metrics code=400 tenant=a/b`)
	require.Contains(t, out, `level=INFO msg="write refused" signal=metrics code=415`)
}

type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// A body cut short of its Content-Length is the client's fault: 400, not
// the 500 ("internal error") it used to get.
func TestTruncatedBodyAnswers400(t *testing.T) {
	f := newFixture(t, nil)
	conn, err := net.Dial("tcp", strings.TrimPrefix(f.srv.URL, "http://"))
	require.NoError(t, err)
	defer conn.Close()
	_, err = fmt.Fprintf(conn, "POST /api/v1/write HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-protobuf\r\nContent-Encoding: snappy\r\nContent-Length: 1000\r\n\r\n0123456789")
	require.NoError(t, err)
	require.NoError(t, conn.(*net.TCPConn).CloseWrite())
	require.NoError(t, conn.SetReadDeadline(time.Now().Add(10*time.Second)))
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	require.NoError(t, err)
	defer resp.Body.Close()
	msg, _ := io.ReadAll(resp.Body)
	require.Equal(t, http.StatusBadRequest, resp.StatusCode, string(msg))
	require.Contains(t, string(msg), "Content-Length")
}
