// Package prometheus is the ingester sink for Prometheus remote-write 1.0
// backends (Prometheus, Mimir, Cortex, Thanos, VictoriaMetrics).
//
// Record values are snappy-compressed WriteRequests; a batch becomes one
// request without unmarshalling (see package snappypush).
package prometheus

import (
	"flag"
	"net/http"

	"github.com/tributary-io/tributary/pkg/sink/snappypush"
)

// Config of the remote-write endpoint.
type Config struct {
	snappypush.Config `yaml:",inline"`
	TenantHeader      string `yaml:"tenant_header"`
}

// RegisterFlags registers the flags under prefix (e.g. "prometheus.").
func (c *Config) RegisterFlags(prefix string, fs *flag.FlagSet) {
	c.Config.RegisterFlags(prefix, "Remote-write URL, e.g. "+exampleURL+".", "Tenant for records without one.", fs)
	fs.StringVar(&c.TenantHeader, prefix+"tenant-header", "X-Scope-OrgID", "Header that carries the record's tenant to multi-tenant backends. Empty: not sent.")
	// Prometheus itself sets no limit; Mimir and Cortex refuse requests
	// over 100 MiB decoded (distributor max_recv_msg_size), and
	// VictoriaMetrics over 32 MiB (-maxInsertRequestSize). 16 MiB stays
	// under all of them with room, and above what a default batch
	// (-prometheus.batch.max-bytes of 1 MiB compressed, ~5-10 MiB decoded)
	// holds, so batches are rarely split.
	fs.IntVar(&c.MaxRequestDecodedBytes, prefix+"max-request-decoded-bytes", 16<<20,
		"Largest remote-write request after decompression: a batch, or a record, decoding to more is sent as several requests. Keep it under the backend's limit (VictoriaMetrics: -maxInsertRequestSize, 32 MiB; Mimir: distributor max_recv_msg_size, 100 MiB).")
}

const exampleURL = "http://prometheus:9090/api/v1/write"

// Validate checks the configuration. An empty URL (sink disabled) is valid.
func (c *Config) Validate() error { return c.Config.Validate("prometheus.") }

// Sink writes batches of records as remote-write requests.
type Sink struct {
	*snappypush.Pusher
}

// New returns a sink posting to cfg.URL. A nil client means a default one.
func New(cfg Config, client *http.Client) *Sink {
	p := snappypush.New(cfg.Config, "remote write", http.Header{
		"Content-Encoding":                  {"snappy"},
		"Content-Type":                      {"application/x-protobuf"},
		"X-Prometheus-Remote-Write-Version": {"0.1.0"},
	}, cfg.TenantHeader, client)
	p.FlagPrefix, p.ExampleURL = "prometheus.", exampleURL
	return &Sink{p}
}
