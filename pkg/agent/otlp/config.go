package otlp

import (
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/prometheus/common/model"
)

// Config is the agent's otlp section. Absent: no receiver.
type Config struct {
	// GRPCListenAddr serves OTLP gRPC (default :4317, the OTLP port every
	// SDK uses by default); "off" turns it off.
	GRPCListenAddr string `yaml:"grpc_listen_addr"`
	// HTTPListenAddr serves OTLP HTTP (default :4318); "off" turns it off.
	HTTPListenAddr string `yaml:"http_listen_addr"`
	// MaxRequestBytes bounds one export request, uncompressed (413 /
	// RESOURCE_EXHAUSTED above). Default 4 MiB: gRPC's own default receive
	// limit, what a gRPC sender already expects of a server.
	MaxRequestBytes int `yaml:"max_request_bytes"`
	// MaxQueueBytes bounds what the agent holds: accepted requests not yet
	// acknowledged by the gateway, encoded. When it is spent the receiver
	// answers UNAVAILABLE / 503 with a retry delay, so senders keep their
	// data and back off instead of the agent growing.
	MaxQueueBytes int `yaml:"max_queue_bytes"`
	// RetryAfter is the delay suggested to senders when the queue is full.
	RetryAfter model.Duration `yaml:"retry_after"`
	// Batch bounds each request to the gateway.
	Batch BatchConfig `yaml:"batch"`
	// MaxConcurrentSends is how many requests to the gateway may be in
	// flight at once.
	MaxConcurrentSends int `yaml:"max_concurrent_sends"`
	// MinBackoff and MaxBackoff bound the wait between retries to the
	// gateway; a Retry-After from the gateway wins (up to MaxBackoff).
	MinBackoff model.Duration `yaml:"min_backoff"`
	MaxBackoff model.Duration `yaml:"max_backoff"`
	// Compression of requests to the gateway: gzip (default) or none.
	Compression string `yaml:"compression"`
}

// BatchConfig bounds a request to the gateway: it is sent when it holds
// MaxItems items or MaxBytes bytes, or when its oldest item has waited
// Timeout. A single sender request larger than MaxBytes goes alone.
type BatchConfig struct {
	MaxItems int            `yaml:"max_items"`
	MaxBytes int            `yaml:"max_bytes"`
	Timeout  model.Duration `yaml:"timeout"`
}

// Off is the listen address that turns a receiver off.
const Off = "off"

// Defaults, and what they cost.
const (
	DefaultGRPCListenAddr  = ":4317"
	DefaultHTTPListenAddr  = ":4318"
	DefaultMaxRequestBytes = 4 << 20
	// 64 MiB is ~150k spans of ~400 B: a minute of a busy node's traffic
	// held through a gateway outage before senders are asked to wait.
	DefaultMaxQueueBytes = 64 << 20
	DefaultRetryAfter    = 2 * time.Second
	// 1 MiB: one Kafka record at the gateway (its default
	// kafka.max-message-bytes is 1 MB), so a batch is rarely split there.
	DefaultBatchMaxBytes = 1 << 20
	// The OpenTelemetry Collector batch processor's send_batch_size.
	DefaultBatchMaxItems = 8192
	// Spans are not read live to the second; 1 s of waiting turns many
	// small SDK exports (512 spans every 5 s per process) into few requests.
	DefaultBatchTimeout       = time.Second
	DefaultMaxConcurrentSends = 2
	DefaultMinBackoff         = 100 * time.Millisecond
	DefaultMaxBackoff         = 30 * time.Second
)

// Validate fills the defaults and checks the section.
func (c *Config) Validate() error {
	if c.GRPCListenAddr == "" {
		c.GRPCListenAddr = DefaultGRPCListenAddr
	}
	if c.HTTPListenAddr == "" {
		c.HTTPListenAddr = DefaultHTTPListenAddr
	}
	if c.GRPCListenAddr == Off && c.HTTPListenAddr == Off {
		return errors.New("grpc_listen_addr and http_listen_addr are both off: remove the otlp section instead")
	}
	for _, a := range []struct{ key, addr string }{{"grpc_listen_addr", c.GRPCListenAddr}, {"http_listen_addr", c.HTTPListenAddr}} {
		if a.addr == Off {
			continue
		}
		if _, _, err := net.SplitHostPort(a.addr); err != nil {
			return fmt.Errorf("%s %q: want host:port, :port or %q: %w", a.key, a.addr, Off, err)
		}
	}
	if _, port, _ := net.SplitHostPort(c.GRPCListenAddr); c.GRPCListenAddr != Off && port != "0" && c.GRPCListenAddr == c.HTTPListenAddr {
		return fmt.Errorf("grpc_listen_addr and http_listen_addr are both %s", c.GRPCListenAddr)
	}
	setDefault(&c.MaxRequestBytes, DefaultMaxRequestBytes)
	setDefault(&c.MaxQueueBytes, DefaultMaxQueueBytes)
	setDefault(&c.Batch.MaxBytes, DefaultBatchMaxBytes)
	setDefault(&c.Batch.MaxItems, DefaultBatchMaxItems)
	setDefault(&c.MaxConcurrentSends, DefaultMaxConcurrentSends)
	setDefaultDuration(&c.RetryAfter, DefaultRetryAfter)
	setDefaultDuration(&c.Batch.Timeout, DefaultBatchTimeout)
	setDefaultDuration(&c.MinBackoff, DefaultMinBackoff)
	setDefaultDuration(&c.MaxBackoff, DefaultMaxBackoff)
	switch c.Compression {
	case "":
		c.Compression = "gzip"
	case "gzip", "none":
	default:
		return fmt.Errorf("compression %q: want gzip or none", c.Compression)
	}
	switch {
	case c.MaxRequestBytes < 0, c.MaxQueueBytes < 0, c.Batch.MaxBytes < 0, c.Batch.MaxItems < 0, c.MaxConcurrentSends < 0:
		return errors.New("max_request_bytes, max_queue_bytes, batch.max_bytes, batch.max_items and max_concurrent_sends must be positive")
	case c.RetryAfter < 0, c.Batch.Timeout < 0, c.MinBackoff < 0:
		return errors.New("retry_after, batch.timeout and min_backoff must be positive")
	case c.MaxQueueBytes < c.MaxRequestBytes:
		// Otherwise a request of the largest allowed size could never be
		// taken and its sender would retry it for ever.
		return fmt.Errorf("max_queue_bytes (%d) must be at least max_request_bytes (%d)", c.MaxQueueBytes, c.MaxRequestBytes)
	case c.MaxBackoff < c.MinBackoff:
		return fmt.Errorf("max_backoff %s is below min_backoff %s", c.MaxBackoff, c.MinBackoff)
	}
	return nil
}

func setDefault(v *int, def int) {
	if *v == 0 {
		*v = def
	}
}

func setDefaultDuration(v *model.Duration, def time.Duration) {
	if *v == 0 {
		*v = model.Duration(def)
	}
}
