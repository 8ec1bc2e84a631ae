package metrics

import (
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"time"

	"github.com/prometheus/common/model"
	promconfig "github.com/prometheus/prometheus/config"
	"go.yaml.in/yaml/v3"
)

// Config is what the pipeline runs: the cluster, the WAL, and two
// Prometheus configurations (Full with every job, NodeOnly without the
// cluster-wide ones) that differ only in their scrape configs. Built by
// pkg/agent from the agent's file.
type Config struct {
	Cluster         string
	WAL             WALConfig
	Gateway         GatewayConfig
	ClusterWideJobs []string
	// Full and NodeOnly are Prometheus YAML documents; Prometheus's config
	// package parses them each time they are applied (its parsed Config
	// must not be copied).
	Full, NodeOnly string
}

// GatewayConfig is where and how the agent sends.
type GatewayConfig struct {
	// URL is the gateway's base URL; the agent posts to URL/api/v1/write.
	URL string `yaml:"url"`
	// BearerTokenFile holds the token sent as "Authorization: Bearer"; read
	// on every request, so a rotated token needs no restart.
	BearerTokenFile string    `yaml:"bearer_token_file"`
	TLS             TLSConfig `yaml:"tls"`
	// Timeout bounds one remote-write request (default 30s).
	Timeout model.Duration `yaml:"timeout"`
}

// TLSConfig for the connection to the gateway.
type TLSConfig struct {
	CAFile   string `yaml:"ca_file"`
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
	// InsecureSkipVerify turns off verification of the gateway's
	// certificate. Off by default; for tests only.
	InsecureSkipVerify bool `yaml:"insecure_skip_verify"`
}

// Validate checks the gateway section.
func (c *GatewayConfig) Validate() error {
	if c.URL == "" {
		return errors.New("url: required (the gateway's base URL, e.g. https://gateway.example:8080)")
	}
	u, err := url.Parse(c.URL)
	if err != nil {
		return fmt.Errorf("url: %w", err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return fmt.Errorf("url %q: scheme must be http or https", c.URL)
	}
	if (c.TLS.CertFile == "") != (c.TLS.KeyFile == "") {
		return errors.New("tls: cert_file and key_file go together")
	}
	return nil
}

// WriteURL is the gateway's remote-write endpoint.
func (c *GatewayConfig) WriteURL() string {
	return strings.TrimSuffix(c.URL, "/") + "/api/v1/write"
}

// DefaultQueue is the remote-write queue_config the agent uses where the
// file leaves a key out. Prometheus's own defaults except:
var DefaultQueue = map[string]any{
	// The gateway answers 503 + Retry-After when overloaded and 429 only
	// for a per-cluster rate limit. A stock Prometheus drops 429'd data;
	// the agent instead keeps it in the WAL and retries after Retry-After:
	// a rate limit should slow a node down, not punch holes in its data
	// (the WAL's max_age still bounds how long it waits).
	"retry_on_http_429": true,
	// A fixed 2 shards: Prometheus cancels a shard's pending samples when it
	// reshards, which during a gateway outage drops samples the resume mark
	// may already have passed; min = max turns resharding off. 2 shards of
	// 2000 samples at 100 ms per request send 40k samples/s: 100k series
	// every 15 s is 6.7k/s, and a 4 h backlog drains in ~4 min at 10k
	// series (10M samples), ~50 min at 100k. Each shard costs ~2.4 MiB of
	// live heap whatever the series count (its 2000-entry send buffers and
	// batches; heap profile at 10k series, make bench BENCH_PHASES=agent),
	// so 4 shards were ~10 of the ~20 MiB live at 10k series; 2 measured
	// 2-4 MiB less RSS. Prometheus's up to 50 only add memory.
	"min_shards": 2,
	"max_shards": 2,
	// Backoff up to 30 s (Prometheus: 5 s): during a gateway outage every
	// shard retries; the gateway's Retry-After, when sent, wins.
	"max_backoff": "30s",
	// 0: never drop a sample for its age; the WAL's max_age bounds it.
	"sample_age_limit": "0s",
}

// RemoteWrite is the remote_write entry for the gateway, with queue (the
// file's queue section, or nil) over DefaultQueue.
func (c *GatewayConfig) RemoteWrite(queue *yaml.Node) (map[string]any, error) {
	q := map[string]any{}
	for k, v := range DefaultQueue {
		q[k] = v
	}
	if queue != nil {
		var user map[string]any
		if err := queue.Decode(&user); err != nil {
			return nil, err
		}
		for k, v := range user {
			q[k] = v
		}
	}
	rw := map[string]any{
		"url":          c.WriteURL(),
		"name":         "gateway",
		"queue_config": q,
		// The gateway takes samples; metadata-only requests would cost a
		// request per minute for nothing.
		"metadata_config": map[string]any{"send": false},
		// Prometheus drops the native histograms a scrape config with
		// scrape_native_histograms collects unless told to send them; the
		// gateway takes them.
		"send_native_histograms": true,
	}
	if c.Timeout != 0 {
		rw["remote_timeout"] = c.Timeout.String()
	}
	if c.BearerTokenFile != "" {
		rw["authorization"] = map[string]any{"type": "Bearer", "credentials_file": c.BearerTokenFile}
	}
	if c.TLS != (TLSConfig{}) {
		tls := map[string]any{"insecure_skip_verify": c.TLS.InsecureSkipVerify}
		if c.TLS.CAFile != "" {
			tls["ca_file"] = c.TLS.CAFile
		}
		if c.TLS.CertFile != "" {
			tls["cert_file"] = c.TLS.CertFile
			tls["key_file"] = c.TLS.KeyFile
		}
		rw["tls_config"] = tls
	}
	return rw, nil
}

// WALConfig is the write-ahead log on disk that keeps samples while the
// gateway is away.
type WALConfig struct {
	// Dir holds the WAL (in Dir/wal) and the resume mark.
	Dir string `yaml:"dir"`
	// MaxAge is the longest gateway outage survived: at each truncation,
	// samples older than MaxAge are dropped even if unsent.
	MaxAge model.Duration `yaml:"max_age"`
	// MinAge is kept behind what was sent, so a restart can resend.
	MinAge model.Duration `yaml:"min_age"`
	// TruncateFrequency is how often the WAL is checkpointed and old
	// segments deleted.
	TruncateFrequency model.Duration `yaml:"truncate_frequency"`
	// Compression of WAL records: snappy, zstd or none.
	Compression string `yaml:"compression"`
	// ResendMargin is how far before the last acknowledged timestamp a
	// restarted agent starts resending from the WAL. Samples reach the WAL
	// in scrape order, not timestamp order (a slow scrape commits after a
	// fast one that started later; shards send in parallel), so the
	// acknowledged timestamp is not a clean cut; resending a little twice is
	// harmless (the sink drops identical samples), missing some is not.
	ResendMargin model.Duration `yaml:"resend_margin"`
}

// Defaults for the WAL, and what they cost: ~8 B per sample with snappy
// (measured in make demo, series records included), so 10k series scraped
// every 15 s through a 4 h outage take ~80 MB of disk.
const (
	DefaultWALDir          = "data-agent"
	DefaultWALMaxAge       = 4 * time.Hour // Prometheus agent mode's default
	DefaultWALMinAge       = 5 * time.Minute
	DefaultWALTruncateFreq = 2 * time.Hour
	DefaultResendMargin    = 2 * time.Minute
)

// Validate fills defaults and checks the WAL section.
func (c *WALConfig) Validate() error {
	if c.Dir == "" {
		c.Dir = DefaultWALDir
	}
	if c.MaxAge == 0 {
		c.MaxAge = model.Duration(DefaultWALMaxAge)
	}
	if c.MinAge == 0 {
		c.MinAge = model.Duration(DefaultWALMinAge)
	}
	if c.TruncateFrequency == 0 {
		c.TruncateFrequency = model.Duration(DefaultWALTruncateFreq)
	}
	if c.ResendMargin == 0 {
		c.ResendMargin = model.Duration(DefaultResendMargin)
	}
	switch c.Compression {
	case "":
		c.Compression = "snappy"
	case "snappy", "zstd", "none":
	default:
		return fmt.Errorf("compression %q: want snappy, zstd or none", c.Compression)
	}
	if c.MinAge > c.MaxAge {
		return fmt.Errorf("min_age %s is above max_age %s", c.MinAge, c.MaxAge)
	}
	if c.TruncateFrequency > c.MaxAge {
		return fmt.Errorf("truncate_frequency %s is above max_age %s", c.TruncateFrequency, c.MaxAge)
	}
	return nil
}

// LoadPromConfig parses a Prometheus configuration the way Prometheus in
// agent mode does, including each scrape config's validation.
func LoadPromConfig(text string) (*promconfig.Config, error) {
	c, err := promconfig.Load(text, slog.New(slog.DiscardHandler))
	if err != nil {
		return nil, err
	}
	if _, err := c.GetScrapeConfigs(); err != nil {
		return nil, err
	}
	return c, nil
}

// CheckPromConfig reports whether text is a configuration LoadPromConfig
// accepts.
func CheckPromConfig(text string) error {
	_, err := LoadPromConfig(text)
	return err
}
