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
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/golang/snappy"

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
	// MaxRequestDecodedBytes bounds one request after decompression: a
	// batch is sent as several requests, a record is cut at its
	// top-level fields.
	MaxRequestDecodedBytes int
	// ItemOverhead is what the backend is expected to add per item (the
	// envelope's count: samples, log entries) when it re-encodes a
	// request, counted against MaxRequestDecodedBytes.
	ItemOverhead int
	// EmptyRefusal is the status with which the backend refuses an empty
	// request after it checked URL and credentials (Loki: 422, "at least
	// one valid stream is required"); Probe takes it as success. 0: none.
	EmptyRefusal int
	// FlagPrefix ("loki.") and ExampleURL name the flags to check in the
	// error of a misconfigured sink.
	FlagPrefix string
	ExampleURL string
	Client     *http.Client
}

// Write implements ingester.Sink: recs (one tenant) as one request, or as
// several in record order when together they decode to more than
// MaxRequestDecodedBytes. A record that does not decode is a Permanent
// error and nothing is sent.
func (p *Pusher) Write(ctx context.Context, recs []ingester.Record) error {
	if len(recs) == 0 {
		return nil
	}
	if err := check(recs, p.MaxDecodedBytes); err != nil {
		return ingester.Permanent(err)
	}
	tenant := recs[0].Envelope.GetTenant()
	start, total := 0, 0
	for i := range recs {
		n := p.size(&recs[i])
		if i > start && total+n > p.MaxRequestDecodedBytes {
			if err := p.send(ctx, recs[start:i], tenant); err != nil {
				return err
			}
			start, total = i, 0
		}
		total += n
	}
	return p.send(ctx, recs[start:], tenant)
}

// send posts checked records whose decoded total is within
// MaxRequestDecodedBytes, or one record that alone is not: that one is
// decoded and cut into several requests.
func (p *Pusher) send(ctx context.Context, recs []ingester.Record, tenant string) error {
	if len(recs) == 1 && p.size(&recs[0]) > p.MaxRequestDecodedBytes {
		raw, err := snappy.Decode(nil, recs[0].Value)
		if err != nil {
			return ingester.Permanent(fmt.Errorf("record %d: %w", recs[0].Offset, err))
		}
		parts, err := cut(raw, p.MaxRequestDecodedBytes, p.ItemOverhead)
		if err != nil {
			return ingester.Permanent(fmt.Errorf("record %d: %w", recs[0].Offset, err))
		}
		for _, body := range parts {
			if _, err := p.post(ctx, body, tenant); err != nil {
				return err
			}
		}
		return nil
	}
	// The body is not pooled: the transport may read it after Do returns.
	body, err := spliceChecked(recs)
	if err != nil {
		return ingester.Permanent(err)
	}
	if body == nil {
		return nil // only empty messages: nothing to store
	}
	_, err = p.post(ctx, body, tenant)
	return err
}

// size is what a checked record counts against MaxRequestDecodedBytes.
func (p *Pusher) size(r *ingester.Record) int {
	return decodedLen(r.Value) + p.ItemOverhead*int(min(r.Envelope.GetItems(), 1<<24))
}

// emptyMessage is a snappy block of an empty protobuf message: an empty
// WriteRequest or PushRequest.
var emptyMessage = []byte{0}

// Probe implements ingester.Prober: it posts an empty request, with the
// credentials and default tenant of a write, which stores nothing
// (Prometheus answers 204, Loki 422 after its URL and tenant checks). So it
// fails exactly when a write would for reasons other than the data:
// unreachable, overloaded, wrong URL or refused credentials (those wrap
// ingester.ErrMisconfigured). Call it at start-up to report a
// misconfigured sink before the first record arrives.
func (p *Pusher) Probe(ctx context.Context) error {
	code, err := p.post(ctx, emptyMessage, "")
	if err != nil && p.EmptyRefusal != 0 && code == p.EmptyRefusal {
		return nil
	}
	return err
}

// post sends one request; code is the response status, 0 without one.
func (p *Pusher) post(ctx context.Context, body []byte, tenant string) (code int, err error) {
	ctx, cancel := context.WithTimeout(ctx, p.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, p.URL, bytes.NewReader(body))
	if err != nil {
		return 0, ingester.Permanent(err)
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
		return 0, fmt.Errorf("%s: %w", p.What, err)
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
	_, _ = io.Copy(io.Discard, resp.Body)
	err = ingester.HTTPResult(p.What, resp, strings.TrimSpace(string(msg)))
	if errors.Is(err, ingester.ErrMisconfigured) {
		err = fmt.Errorf("%s: %w", p.hint(resp.StatusCode), err)
	}
	return resp.StatusCode, err
}

// hint tells the operator what to check when the sink answers that it is
// misconfigured.
func (p *Pusher) hint(code int) string {
	f := "-" + p.FlagPrefix
	switch code {
	case http.StatusNotFound, http.StatusMethodNotAllowed:
		return fmt.Sprintf("check %surl %q (the full endpoint, e.g. %s)", f, p.URL, p.ExampleURL)
	default:
		return fmt.Sprintf("check the credentials for %surl %q (%sbasic-auth.username/password, %sbearer-token, %sdefault-tenant)", f, p.URL, f, f, f)
	}
}
