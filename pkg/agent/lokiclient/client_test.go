package lokiclient

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/golang/snappy"
	"github.com/grafana/loki/pkg/push"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"

	"github.com/tributary-io/tributary/pkg/agent/metrics"
)

// gateway answers each push with the next of answers (the last one
// repeats); an answer of 0 drops the connection. It records when each
// request came and what it carried.
type gateway struct {
	*httptest.Server
	mu      sync.Mutex
	answers []func(w http.ResponseWriter)
	at      []time.Time
	bodies  []*push.PushRequest
}

// requests returns what the gateway received so far, and when.
func (g *gateway) requests() ([]*push.PushRequest, []time.Time) {
	g.mu.Lock()
	defer g.mu.Unlock()
	return append([]*push.PushRequest(nil), g.bodies...), append([]time.Time(nil), g.at...)
}

func status(code int, retryAfter string) func(w http.ResponseWriter) {
	return func(w http.ResponseWriter) {
		if retryAfter != "" {
			w.Header().Set("Retry-After", retryAfter)
		}
		if code == 0 {
			hj := w.(http.Hijacker)
			conn, _, _ := hj.Hijack()
			conn.Close()
			return
		}
		http.Error(w, http.StatusText(code)+" from the test gateway", code)
	}
}

func startGateway(t *testing.T, answers ...func(w http.ResponseWriter)) *gateway {
	g := &gateway{answers: answers}
	g.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		raw, err := io.ReadAll(r.Body)
		require.NoError(t, err)
		require.Equal(t, "/loki/api/v1/push", r.URL.Path)
		require.Equal(t, "application/x-protobuf", r.Header.Get("Content-Type"))
		dec, err := snappy.Decode(nil, raw)
		require.NoError(t, err)
		var req push.PushRequest
		require.NoError(t, req.Unmarshal(dec))
		g.mu.Lock()
		g.at = append(g.at, time.Now())
		g.bodies = append(g.bodies, &req)
		a := g.answers[min(len(g.at), len(g.answers))-1]
		g.mu.Unlock()
		a(w)
	}))
	t.Cleanup(g.Close)
	return g
}

func testRequest() *push.PushRequest {
	ts := time.Unix(1700000000, 123).UTC()
	return &push.PushRequest{Streams: []push.Stream{
		{Labels: `{cluster="c1", source="kubernetes-events"}`, Entries: []push.Entry{{Timestamp: ts, Line: "one"}, {Timestamp: ts, Line: "two"}}},
		{Labels: `{cluster="c1", source="other"}`, Entries: []push.Entry{{Timestamp: ts, Line: "three"}}},
	}}
}

// 503, a dropped connection and 429 with Retry-After are retried, the
// Retry-After is honoured, and the same request is sent each time.
func TestPushRetries(t *testing.T) {
	t.Parallel()
	g := startGateway(t,
		status(http.StatusServiceUnavailable, ""),
		status(0, ""),
		status(http.StatusTooManyRequests, "1"),
		status(http.StatusNoContent, ""),
	)
	reg := prometheus.NewRegistry()
	c, err := New(metrics.GatewayConfig{URL: g.URL}, "events", reg, nil)
	require.NoError(t, err)
	c.MinBackoff, c.MaxBackoff = 10*time.Millisecond, 5*time.Second
	req := testRequest()
	require.NoError(t, c.Push(context.Background(), req))

	bodies, at := g.requests()
	require.Len(t, bodies, 4)
	for _, b := range bodies {
		require.Equal(t, req.Streams[0].Labels, b.Streams[0].Labels)
		require.Equal(t, "one", b.Streams[0].Entries[0].Line)
		require.True(t, req.Streams[0].Entries[0].Timestamp.Equal(b.Streams[0].Entries[0].Timestamp))
		require.Equal(t, "three", b.Streams[1].Entries[0].Line)
	}
	require.GreaterOrEqual(t, at[3].Sub(at[2]), time.Second, "Retry-After: 1 honoured")
	require.Less(t, at[1].Sub(at[0]), time.Second, "without Retry-After the backoff starts small")

	require.Equal(t, 3.0, testutil.ToFloat64(c.retries))
	require.Equal(t, 3.0, testutil.ToFloat64(c.sent))
	require.Equal(t, 0.0, testutil.ToFloat64(c.refused))
	require.Equal(t, 1.0, testutil.ToFloat64(c.requests.WithLabelValues("events", "503")))
	require.Equal(t, 1.0, testutil.ToFloat64(c.requests.WithLabelValues("events", "error")))
	require.Equal(t, 1.0, testutil.ToFloat64(c.requests.WithLabelValues("events", "429")))
	require.Equal(t, 1.0, testutil.ToFloat64(c.requests.WithLabelValues("events", "204")))

	// A second client on the same registry shares the collectors.
	c2, err := New(metrics.GatewayConfig{URL: g.URL}, "logs", reg, nil)
	require.NoError(t, err)
	require.NoError(t, c2.Push(context.Background(), testRequest()))
	require.Equal(t, 3.0, testutil.ToFloat64(c2.sent))
}

// A 4xx other than 408/429 is a refusal: one attempt, ErrRefused with the
// gateway's message.
func TestPushRefused(t *testing.T) {
	t.Parallel()
	for _, code := range []int{http.StatusBadRequest, http.StatusRequestEntityTooLarge, http.StatusUnauthorized} {
		g := startGateway(t, status(code, ""))
		c, err := New(metrics.GatewayConfig{URL: g.URL}, "events", prometheus.NewRegistry(), nil)
		require.NoError(t, err)
		// A broken client would retry until ctx ends.
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		err = c.Push(ctx, testRequest())
		cancel()
		require.ErrorIs(t, err, ErrRefused)
		require.ErrorContains(t, err, "from the test gateway")
		bodies, _ := g.requests()
		require.Len(t, bodies, 1, "status %d not retried", code)
		require.Equal(t, 3.0, testutil.ToFloat64(c.refused))
		require.Equal(t, 0.0, testutil.ToFloat64(c.sent))
	}
}

// A gateway that stays down: Push keeps retrying until ctx ends and then
// returns ctx's error, not ErrRefused.
func TestPushUntilContextEnds(t *testing.T) {
	t.Parallel()
	g := startGateway(t, status(http.StatusServiceUnavailable, ""))
	c, err := New(metrics.GatewayConfig{URL: g.URL}, "events", prometheus.NewRegistry(), nil)
	require.NoError(t, err)
	c.MinBackoff, c.MaxBackoff = 10*time.Millisecond, 50*time.Millisecond
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	err = c.Push(ctx, testRequest())
	require.ErrorIs(t, err, context.DeadlineExceeded)
	require.False(t, errors.Is(err, ErrRefused))
	bodies, _ := g.requests()
	require.Greater(t, len(bodies), 3)
	require.Equal(t, 0.0, testutil.ToFloat64(c.sent))
}
