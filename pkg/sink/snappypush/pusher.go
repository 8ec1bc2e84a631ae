// Package snappypush sends batches of records to backends whose push API
// takes one snappy-compressed protobuf message (Prometheus remote-write,
// Loki push).
//
// Record values are snappy-compressed messages of that same type.
// Concatenated protobuf messages of one type form a valid message whose
// repeated fields are the union, and snappy blocks can be spliced into one
// whose output is the concatenation of theirs (splice.go), so a batch
// becomes one request without decoding, unmarshalling or compressing
// anything; since a batch holds one partition's records in offset order,
// series and streams keep their order.
package snappypush

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/tributary-io/tributary/pkg/ingester"
)

// New returns a pusher for cfg; what names the call in errors ("loki
// push"), headers are sent with every request, tenantHeader carries the
// record's tenant ("" sends none). A nil client means a default one.
func New(cfg Config, what string, headers http.Header, tenantHeader string, client *http.Client) *Pusher {
	if client == nil {
		client = &http.Client{Transport: http.DefaultTransport.(*http.Transport).Clone()}
	}
	p := cfg.pusher()
	p.What, p.Headers, p.TenantHeader, p.Client = what, headers, tenantHeader, client
	return p
}

// Pusher posts batches to one URL. It is safe for concurrent use.
type Pusher struct {
	What            string // names the call in errors: "remote write", "loki push"
	URL             string // endpoint
	Timeout         time.Duration
	Headers         http.Header // sent with every request (content type, protocol version)
	TenantHeader    string      // carries the record's tenant; "" sends none
	DefaultTenant   string      // for records without a tenant
	BasicAuthUser   string
	BasicAuthPass   string
	BearerToken     string
	MaxDecodedBytes int // a record decoding to more is refused (Permanent)
	Client          *http.Client
}

// Write implements ingester.Sink: recs (one tenant) as one request. A record
// that does not decode is a Permanent error and nothing is sent.
func (p *Pusher) Write(ctx context.Context, recs []ingester.Record) error {
	if len(recs) == 0 {
		return nil
	}
	// The body is not pooled: the transport may read it after Do returns.
	body, err := splice(recs, p.MaxDecodedBytes)
	if err != nil {
		return ingester.Permanent(err)
	}
	if body == nil {
		return nil // only empty messages: nothing to store
	}
	return p.post(ctx, body, recs[0].Envelope.GetTenant())
}

func (p *Pusher) post(ctx context.Context, body []byte, tenant string) error {
	ctx, cancel := context.WithTimeout(ctx, p.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, p.URL, bytes.NewReader(body))
	if err != nil {
		return ingester.Permanent(err)
	}
	for k, v := range p.Headers {
		req.Header[k] = v
	}
	req.Header.Set("User-Agent", "tributary-ingester")
	if tenant == "" {
		tenant = p.DefaultTenant
	}
	if p.TenantHeader != "" && tenant != "" {
		req.Header.Set(p.TenantHeader, tenant)
	}
	switch {
	case p.BearerToken != "":
		req.Header.Set("Authorization", "Bearer "+p.BearerToken)
	case p.BasicAuthUser != "":
		req.SetBasicAuth(p.BasicAuthUser, p.BasicAuthPass)
	}
	resp, err := p.Client.Do(req)
	if err != nil {
		return fmt.Errorf("%s: %w", p.What, err)
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
	_, _ = io.Copy(io.Discard, resp.Body)
	return ingester.HTTPResult(p.What, resp, strings.TrimSpace(string(msg)))
}
