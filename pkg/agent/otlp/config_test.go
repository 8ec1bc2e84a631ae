package otlp

import (
	"testing"
	"time"

	"github.com/prometheus/common/model"
	"github.com/stretchr/testify/require"
)

func TestConfigValidate(t *testing.T) {
	var c Config
	require.NoError(t, c.Validate())
	require.Equal(t, Config{
		GRPCListenAddr: ":4317", HTTPListenAddr: ":4318",
		MaxRequestBytes: 4 << 20, MaxQueueBytes: 64 << 20, RetryAfter: model.Duration(2 * time.Second),
		Batch:              BatchConfig{MaxItems: 8192, MaxBytes: 1 << 20, Timeout: model.Duration(time.Second)},
		MaxConcurrentSends: 2, MinBackoff: model.Duration(100 * time.Millisecond), MaxBackoff: model.Duration(30 * time.Second),
		Compression: "gzip",
	}, c)

	for _, tc := range []struct {
		name string
		cfg  Config
		want string
	}{
		{"both off", Config{GRPCListenAddr: "off", HTTPListenAddr: "off"}, "both off"},
		{"bad addr", Config{GRPCListenAddr: "4317"}, "grpc_listen_addr"},
		{"same addr", Config{GRPCListenAddr: ":9999", HTTPListenAddr: ":9999"}, "both :9999"},
		{"queue below request", Config{MaxQueueBytes: 1000, MaxRequestBytes: 2000}, "max_queue_bytes (1000) must be at least max_request_bytes (2000)"},
		{"compression", Config{Compression: "zstd"}, `compression "zstd"`},
		{"backoff", Config{MinBackoff: model.Duration(time.Minute), MaxBackoff: model.Duration(time.Second)}, "max_backoff"},
		{"negative", Config{MaxQueueBytes: -1}, "must be positive"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.cfg.Validate()
			require.Error(t, err)
			require.Contains(t, err.Error(), tc.want)
		})
	}
	c = Config{GRPCListenAddr: "off"}
	require.NoError(t, c.Validate())
	require.Equal(t, "off", c.GRPCListenAddr)
	require.Equal(t, ":4318", c.HTTPListenAddr)
}
