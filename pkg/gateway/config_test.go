package gateway

import (
	"flag"
	"io"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tributary-io/tributary/pkg/kafka"
)

func defaultConfig(t *testing.T, args ...string) Config {
	t.Helper()
	var cfg Config
	fs := flag.NewFlagSet("gateway", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	cfg.RegisterFlags(fs)
	require.NoError(t, fs.Parse(append([]string{"-kafka.brokers=127.0.0.1:9092"}, args...)))
	return cfg
}

func TestConfigLinger(t *testing.T) {
	cfg := defaultConfig(t)
	require.Equal(t, kafka.DefaultLinger, cfg.Producer.Linger)
	require.NoError(t, cfg.Validate())

	cfg = defaultConfig(t, "-kafka.linger=0")
	require.NoError(t, cfg.Validate(), "0 sends at once")

	cfg = defaultConfig(t, "-kafka.linger=-1ms")
	require.ErrorContains(t, cfg.Validate(), "kafka.linger")

	// A linger as long as the ack timeout would time every request out.
	cfg = defaultConfig(t, "-kafka.linger=10s", "-kafka.ack-timeout=10s")
	require.Equal(t, 10*time.Second, cfg.Producer.Linger)
	require.ErrorContains(t, cfg.Validate(), "kafka.linger")
}

func TestConfigOverloadAndMetricClusters(t *testing.T) {
	cfg := defaultConfig(t)
	require.Equal(t, 503, cfg.OverloadStatus, "stock Prometheus retries 503, not 429")
	require.Equal(t, 1000, cfg.MaxMetricClusters)
	require.NoError(t, cfg.Validate())

	cfg = defaultConfig(t, "-limits.overload-status=429")
	require.NoError(t, cfg.Validate())
	cfg = defaultConfig(t, "-limits.overload-status=500")
	require.ErrorContains(t, cfg.Validate(), "limits.overload-status")
	cfg = defaultConfig(t, "-metrics.max-clusters=0")
	require.ErrorContains(t, cfg.Validate(), "metrics.max-clusters")
}

func TestConfigSpans(t *testing.T) {
	cfg := defaultConfig(t)
	require.Equal(t, "tributary.spans", cfg.SpansTopic)
	require.Equal(t, ":4317", cfg.OTLPGRPC.ListenAddr)
	require.Equal(t, 128, cfg.Spans.MaxAttributes)
	require.NoError(t, cfg.Validate())

	off := defaultConfig(t, "-otlp.grpc.listen-addr=")
	require.NoError(t, off.Validate(), "empty turns gRPC off")
	for _, tc := range []struct{ flag, msg string }{
		{"-topic.spans=", "topic.spans"},
		{"-otlp.grpc.max-recv-msg-size=0", "otlp.grpc.max-recv-msg-size"},
		{"-otlp.grpc.max-recv-msg-size=40000000", "otlp.grpc.max-recv-msg-size"},
		{"-limits.spans.max-record-bytes=999000", "limits.spans.max-record-bytes"},
		{"-limits.spans.max-attributes=0", "limits.spans"},
	} {
		c := defaultConfig(t, tc.flag)
		require.ErrorContains(t, c.Validate(), tc.msg, tc.flag)
	}
}
