// Package prometheus is the ingester sink for Prometheus remote-write 1.0
// backends (Prometheus, Mimir, Cortex, Thanos, VictoriaMetrics).
//
// Record values are snappy-compressed WriteRequests; a batch becomes one
// request without unmarshalling (see package snappypush).
package prometheus

import (
	"errors"
	"flag"
	"fmt"
	"net/http"
	"net/url"
	"time"

	"github.com/tributary-io/tributary/pkg/sink/snappypush"
)

// Config of the remote-write endpoint.
type Config struct {
	URL             string        `yaml:"url"`
	Timeout         time.Duration `yaml:"timeout"`
	BasicAuthUser   string        `yaml:"basic_auth_user"`
	BasicAuthPass   string        `yaml:"basic_auth_password"`
	BearerToken     string        `yaml:"bearer_token"`
	TenantHeader    string        `yaml:"tenant_header"`
	DefaultTenant   string        `yaml:"default_tenant"`
	MaxDecodedBytes int           `yaml:"max_decoded_bytes"`
}

// RegisterFlags registers the flags under prefix (e.g. "prometheus.").
func (c *Config) RegisterFlags(prefix string, fs *flag.FlagSet) {
	fs.StringVar(&c.URL, prefix+"url", "", "Remote-write URL, e.g. http://prometheus:9090/api/v1/write. Empty: sink disabled.")
	fs.DurationVar(&c.Timeout, prefix+"timeout", 30*time.Second, "Timeout of one remote-write request.")
	fs.StringVar(&c.BasicAuthUser, prefix+"basic-auth.username", "", "Basic auth user.")
	fs.StringVar(&c.BasicAuthPass, prefix+"basic-auth.password", "", "Basic auth password.")
	fs.StringVar(&c.BearerToken, prefix+"bearer-token", "", "Bearer token.")
	fs.StringVar(&c.TenantHeader, prefix+"tenant-header", "X-Scope-OrgID", "Header that carries the record's tenant to multi-tenant backends. Empty: not sent.")
	fs.StringVar(&c.DefaultTenant, prefix+"default-tenant", "", "Tenant for records without one.")
	fs.IntVar(&c.MaxDecodedBytes, prefix+"max-decoded-bytes", 64<<20, "Refuse (dead-letter) a record that decodes to more than this.")
}

// Validate checks the configuration.
func (c *Config) Validate() error {
	u, err := url.Parse(c.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("prometheus.url %q is not an http(s) URL", c.URL)
	}
	if c.BearerToken != "" && c.BasicAuthUser != "" {
		return errors.New("prometheus: set basic auth or bearer token, not both")
	}
	return nil
}

// Sink writes batches of records as remote-write requests.
type Sink struct {
	*snappypush.Pusher
}

// New returns a sink posting to cfg.URL. A nil client means a default one.
func New(cfg Config, client *http.Client) *Sink {
	if client == nil {
		client = &http.Client{Transport: http.DefaultTransport.(*http.Transport).Clone()}
	}
	return &Sink{&snappypush.Pusher{
		What: "remote write", URL: cfg.URL, Timeout: cfg.Timeout,
		Headers: http.Header{
			"Content-Encoding":                  {"snappy"},
			"Content-Type":                      {"application/x-protobuf"},
			"X-Prometheus-Remote-Write-Version": {"0.1.0"},
		},
		TenantHeader: cfg.TenantHeader, DefaultTenant: cfg.DefaultTenant,
		BasicAuthUser: cfg.BasicAuthUser, BasicAuthPass: cfg.BasicAuthPass, BearerToken: cfg.BearerToken,
		MaxDecodedBytes: cfg.MaxDecodedBytes, Client: client,
	}}
}
