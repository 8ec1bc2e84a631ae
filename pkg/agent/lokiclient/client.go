// Package lokiclient pushes Loki push requests (protobuf, snappy) from the
// agent to the gateway's /loki/api/v1/push, retrying until the gateway
// acknowledges them. The logs tailer and the events watcher both send
// through it.
package lokiclient

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/golang/snappy"
	"github.com/grafana/loki/pkg/push"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/tributary-io/tributary/pkg/agent/gatewayhttp"
	"github.com/tributary-io/tributary/pkg/agent/metrics"
)

// ErrRefused marks a push the gateway refused for ever (a 4xx other than
// 408 and 429): sending it again gets the same answer. The gateway may have
// accepted the rest of the request (it answers 400 for a batch with some
// invalid lines after writing the valid ones), so the caller counts the
// request as done and moves on.
var ErrRefused = errors.New("refused by the gateway")

// maxErrorBody is how much of a refusal's body goes into the error: the
// gateway's reason fits; a proxy's HTML page is cut.
const maxErrorBody = 1 << 10

// Client pushes to the gateway. Safe for concurrent use.
type Client struct {
	url       string
	http      *http.Client
	component string
	log       *slog.Logger
	// MinBackoff and MaxBackoff bound the waits between retries (see
	// gatewayhttp.Backoff); set them before the first Push.
	MinBackoff, MaxBackoff time.Duration

	requests *prometheus.CounterVec
	retries  prometheus.Counter
	sent     prometheus.Counter
	refused  prometheus.Counter
}

// New builds a client for the gateway section. component labels the
// self-metrics (e.g. "logs", "events"):
//
//	tributary_agent_push_requests_total{component,code}   every attempt; code is the HTTP status or "error"
//	tributary_agent_push_retries_total{component}          attempts that are retried
//	tributary_agent_push_entries_total{component,outcome}  entries acknowledged ("sent") or refused ("refused")
//
// Several clients (one per component) share the collectors on one registry.
func New(gw metrics.GatewayConfig, component string, reg prometheus.Registerer, log *slog.Logger) (*Client, error) {
	if err := gw.Validate(); err != nil {
		return nil, fmt.Errorf("gateway: %w", err)
	}
	hc, err := gatewayhttp.Client(gw)
	if err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	requests := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "tributary_agent_push_requests_total",
		Help: "Loki push requests to the gateway, by component and HTTP status (\"error\" for a network error or timeout).",
	}, []string{"component", "code"})
	retries := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "tributary_agent_push_retries_total",
		Help: "Loki push attempts that failed with a retryable answer (408, 429, 5xx, network error) and are tried again.",
	}, []string{"component"})
	entries := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "tributary_agent_push_entries_total",
		Help: "Log entries pushed to the gateway, by outcome: sent (acknowledged: in Kafka) or refused (a 4xx; the gateway may have kept the valid part of the request).",
	}, []string{"component", "outcome"})
	if reg != nil {
		requests = register(reg, requests)
		retries = register(reg, retries)
		entries = register(reg, entries)
	}
	return &Client{
		url:        strings.TrimSuffix(gw.URL, "/") + "/loki/api/v1/push",
		http:       hc,
		component:  component,
		log:        log.With("component", component),
		MinBackoff: gatewayhttp.DefaultMinBackoff,
		MaxBackoff: gatewayhttp.DefaultMaxBackoff,
		requests:   requests,
		retries:    retries.WithLabelValues(component),
		sent:       entries.WithLabelValues(component, "sent"),
		refused:    entries.WithLabelValues(component, "refused"),
	}, nil
}

// register registers c, or returns the collector already registered under
// its name (another component's client).
func register(reg prometheus.Registerer, c *prometheus.CounterVec) *prometheus.CounterVec {
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if existing, ok := are.ExistingCollector.(*prometheus.CounterVec); ok {
				return existing
			}
		}
		panic(err)
	}
	return c
}

// Push posts req to the gateway and retries 408, 429, 5xx and network
// errors with backoff (honouring Retry-After) until a 2xx or ctx ends.
//
// It returns nil only after a 2xx: the gateway acknowledged, the entries
// are in Kafka. A 4xx other than 408/429 returns an error wrapping
// ErrRefused with the gateway's message; the caller must not retry it.
// Otherwise the error is ctx's: nothing is known about the last attempt,
// the caller keeps the entries to send them again.
func (c *Client) Push(ctx context.Context, req *push.PushRequest) error {
	raw, err := req.Marshal()
	if err != nil {
		return fmt.Errorf("encode push request: %w", err)
	}
	body := snappy.Encode(nil, raw)
	n := 0
	for _, s := range req.Streams {
		n += len(s.Entries)
	}
	b := gatewayhttp.Backoff{Min: c.MinBackoff, Max: c.MaxBackoff}
	for {
		resp, msg, err := c.post(ctx, body)
		switch {
		case err == nil && resp.StatusCode/100 == 2:
			c.sent.Add(float64(n))
			return nil
		case err == nil && !gatewayhttp.Retryable(resp.StatusCode):
			c.refused.Add(float64(n))
			return fmt.Errorf("push %d entries: %w: %s: %s", n, ErrRefused, resp.Status, msg)
		}
		if ctx.Err() != nil {
			return fmt.Errorf("push %d entries: %w (last attempt: %v)", n, ctx.Err(), describe(resp, msg, err))
		}
		wait := b.Next(resp)
		c.retries.Inc()
		c.log.Warn("push to the gateway failed; retrying", "entries", n, "answer", describe(resp, msg, err), "in", wait)
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("push %d entries: %w (last attempt: %v)", n, ctx.Err(), describe(resp, msg, err))
		case <-t.C:
		}
	}
}

// post makes one attempt; resp's body is read (msg: its start) and closed.
func (c *Client) post(ctx context.Context, body []byte) (*http.Response, string, error) {
	hreq, err := http.NewRequestWithContext(ctx, http.MethodPost, c.url, bytes.NewReader(body))
	if err != nil {
		return nil, "", err
	}
	hreq.Header.Set("Content-Type", "application/x-protobuf")
	hreq.Header.Set("User-Agent", "tributary-agent")
	resp, err := c.http.Do(hreq)
	if err != nil {
		c.requests.WithLabelValues(c.component, "error").Inc()
		return nil, "", err
	}
	defer resp.Body.Close()
	c.requests.WithLabelValues(c.component, strconv.Itoa(resp.StatusCode)).Inc()
	head, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
	// Drain a little more so the connection can be reused.
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	return resp, strings.TrimSpace(string(head)), nil
}

func describe(resp *http.Response, msg string, err error) string {
	if err != nil {
		return err.Error()
	}
	if resp == nil {
		return "none"
	}
	return resp.Status + ": " + msg
}
