// Package prometheus is the ingester sink for Prometheus remote-write 1.0
// backends (Prometheus, Mimir, Cortex, Thanos, VictoriaMetrics).
//
// Record values are snappy-compressed WriteRequests. Concatenated protobuf
// messages of one type form a valid message whose repeated fields are the
// union, so a batch becomes one request by decoding the records, appending
// them, and compressing once: no protobuf is unmarshalled.
package prometheus

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/golang/snappy"

	"github.com/tributary-io/tributary/pkg/ingester"
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
	cfg    Config
	client *http.Client
	bufs   sync.Pool // *[]byte
}

// New returns a sink posting to cfg.URL.
func New(cfg Config, client *http.Client) *Sink {
	if client == nil {
		client = &http.Client{Transport: http.DefaultTransport.(*http.Transport).Clone()}
	}
	return &Sink{cfg: cfg, client: client}
}

// Write implements ingester.Sink.
func (s *Sink) Write(ctx context.Context, recs []ingester.Record) error {
	bp, _ := s.bufs.Get().(*[]byte)
	if bp == nil {
		bp = new([]byte)
	}
	defer s.bufs.Put(bp)
	raw, err := s.concat((*bp)[:0], recs)
	*bp = raw[:0]
	if err != nil {
		return ingester.Permanent(err)
	}
	body := snappy.Encode(nil, raw)
	return s.post(ctx, body, recs[0].Envelope.GetTenant())
}

// concat appends the decoded record values to dst.
func (s *Sink) concat(dst []byte, recs []ingester.Record) ([]byte, error) {
	for _, r := range recs {
		n, err := snappy.DecodedLen(r.Value)
		if err != nil {
			return dst, fmt.Errorf("record %d: snappy: %w", r.Offset, err)
		}
		if n > s.cfg.MaxDecodedBytes {
			return dst, fmt.Errorf("record %d decodes to %d bytes, over the limit of %d", r.Offset, n, s.cfg.MaxDecodedBytes)
		}
		start := len(dst)
		dst = slices.Grow(dst, n)[:start+n]
		if _, err := snappy.Decode(dst[start:], r.Value); err != nil {
			return dst[:start], fmt.Errorf("record %d: snappy: %w", r.Offset, err)
		}
	}
	return dst, nil
}

func (s *Sink) post(ctx context.Context, body []byte, tenant string) error {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.cfg.URL, bytes.NewReader(body))
	if err != nil {
		return ingester.Permanent(err)
	}
	req.Header.Set("Content-Encoding", "snappy")
	req.Header.Set("Content-Type", "application/x-protobuf")
	req.Header.Set("X-Prometheus-Remote-Write-Version", "0.1.0")
	req.Header.Set("User-Agent", "tributary-ingester")
	if tenant == "" {
		tenant = s.cfg.DefaultTenant
	}
	if s.cfg.TenantHeader != "" && tenant != "" {
		req.Header.Set(s.cfg.TenantHeader, tenant)
	}
	switch {
	case s.cfg.BearerToken != "":
		req.Header.Set("Authorization", "Bearer "+s.cfg.BearerToken)
	case s.cfg.BasicAuthUser != "":
		req.SetBasicAuth(s.cfg.BasicAuthUser, s.cfg.BasicAuthPass)
	}
	resp, err := s.client.Do(req)
	if err != nil {
		return fmt.Errorf("remote write: %w", err)
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	_, _ = io.Copy(io.Discard, resp.Body)
	return ingester.HTTPResult("remote write", resp, strings.TrimSpace(string(msg)))
}
