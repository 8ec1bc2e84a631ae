package otlp

import (
	"bytes"
	"compress/gzip"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/model"
	"github.com/stretchr/testify/require"
	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	resourcepb "go.opentelemetry.io/proto/otlp/resource/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/proto"

	"github.com/tributary-io/tributary/pkg/agent/metrics"
	"github.com/tributary-io/tributary/pkg/k8s"
)

// fakeGateway is an OTLP/HTTP /v1/traces endpoint that decodes what the
// relay sends. answer decides the reply to each request (nil: 200).
type fakeGateway struct {
	*httptest.Server
	mu       sync.Mutex
	requests int
	spans    []gotSpan
	answer   func(req *coltracepb.ExportTraceServiceRequest) (int, proto.Message)
}

// gotSpan is a span as the gateway received it, with its resource's
// attributes.
type gotSpan struct {
	name     string
	traceID  []byte
	resource map[string]string
}

func startGateway(t *testing.T) *fakeGateway {
	t.Helper()
	g := &fakeGateway{}
	g.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/v1/traces" || r.Header.Get("Content-Type") != contentProtobuf {
			http.Error(w, "wrong path or content type", http.StatusNotFound)
			return
		}
		var body io.Reader = r.Body
		if r.Header.Get("Content-Encoding") == "gzip" {
			zr, err := gzip.NewReader(r.Body)
			if err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			body = zr
		}
		raw, err := io.ReadAll(body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		req := &coltracepb.ExportTraceServiceRequest{}
		if err := proto.Unmarshal(raw, req); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		g.mu.Lock()
		g.requests++
		answer := g.answer
		g.mu.Unlock()
		code, msg := http.StatusOK, proto.Message(&coltracepb.ExportTraceServiceResponse{})
		if answer != nil {
			code, msg = answer(req)
		}
		if code/100 == 2 {
			g.record(req)
		}
		out, _ := proto.Marshal(msg)
		w.Header().Set("Content-Type", contentProtobuf)
		if code == http.StatusServiceUnavailable {
			w.Header().Set("Retry-After", "0")
		}
		w.WriteHeader(code)
		_, _ = w.Write(out)
	}))
	t.Cleanup(g.Close)
	return g
}

func (g *fakeGateway) record(req *coltracepb.ExportTraceServiceRequest) {
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, rs := range req.ResourceSpans {
		attrs := map[string]string{}
		for _, kv := range rs.GetResource().GetAttributes() {
			attrs[kv.Key] = kv.GetValue().GetStringValue()
		}
		for _, ss := range rs.ScopeSpans {
			for _, s := range ss.Spans {
				g.spans = append(g.spans, gotSpan{name: s.Name, traceID: s.TraceId, resource: attrs})
			}
		}
	}
}

func (g *fakeGateway) setAnswer(f func(*coltracepb.ExportTraceServiceRequest) (int, proto.Message)) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.answer = f
}

func (g *fakeGateway) received() []gotSpan {
	g.mu.Lock()
	defer g.mu.Unlock()
	return append([]gotSpan(nil), g.spans...)
}

// byName is the received spans by name.
func (g *fakeGateway) byName() map[string]gotSpan {
	m := map[string]gotSpan{}
	for _, s := range g.received() {
		m[s.name] = s
	}
	return m
}

// fakePods is a pod informer's lookups over fixed pods.
type fakePods struct{ pods []k8s.PodInfo }

func (f fakePods) ByUID(uid string) (k8s.PodInfo, bool) {
	for _, p := range f.pods {
		if p.UID == uid {
			return p, true
		}
	}
	return k8s.PodInfo{}, false
}

func (f fakePods) ByName(ns, name string) (k8s.PodInfo, bool) {
	for _, p := range f.pods {
		if p.Namespace == ns && p.Name == name {
			return p, true
		}
	}
	return k8s.PodInfo{}, false
}

func (f fakePods) ByIP(ip string) (k8s.PodInfo, bool) {
	for _, p := range f.pods {
		for _, a := range p.IPs {
			if a == ip {
				return p, true
			}
		}
	}
	return k8s.PodInfo{}, false
}

// testRelay is a running relay on loopback ports.
type testRelay struct {
	*Relay
	reg    *prometheus.Registry
	cancel context.CancelFunc
	done   chan error
}

// startRelay runs a relay to gw with cfg (defaults filled, listeners on
// free loopback ports); pods, when not nil, stands in for the informer.
func startRelay(t *testing.T, gwURL string, cfg Config, pods podLookup, flush time.Duration) *testRelay {
	t.Helper()
	if cfg.GRPCListenAddr == "" {
		cfg.GRPCListenAddr = "127.0.0.1:0"
	}
	if cfg.HTTPListenAddr == "" {
		cfg.HTTPListenAddr = "127.0.0.1:0"
	}
	require.NoError(t, cfg.Validate())
	reg := prometheus.NewRegistry()
	r, err := New(Params{
		Config: cfg, Cluster: "agentclust", Node: "node-a",
		Gateway:       metrics.GatewayConfig{URL: gwURL},
		FlushDeadline: flush, Registerer: reg,
	})
	require.NoError(t, err)
	if pods != nil {
		r.enrich.pods = pods
	}
	ctx, cancel := context.WithCancel(context.Background())
	tr := &testRelay{Relay: r, reg: reg, cancel: cancel, done: make(chan error, 1)}
	go func() { tr.done <- r.Run(ctx) }()
	require.Eventually(t, r.Ready, 5*time.Second, 10*time.Millisecond)
	t.Cleanup(func() { tr.stop(t) })
	return tr
}

// stop ends Run and waits for it (idempotent).
func (tr *testRelay) stop(t *testing.T) {
	t.Helper()
	tr.cancel()
	select {
	case err, ok := <-tr.done:
		if ok {
			require.NoError(t, err)
			close(tr.done)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("Run did not return after its context ended")
	}
}

func (tr *testRelay) counter(t *testing.T, name string, labels ...string) float64 {
	t.Helper()
	families, err := tr.reg.Gather()
	require.NoError(t, err)
	sum := 0.0
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
	metric:
		for _, m := range f.GetMetric() {
			have := map[string]string{}
			for _, lp := range m.GetLabel() {
				have[lp.GetName()] = lp.GetValue()
			}
			for i := 0; i+1 < len(labels); i += 2 {
				if have[labels[i]] != labels[i+1] {
					continue metric
				}
			}
			sum += m.GetCounter().GetValue() + m.GetGauge().GetValue()
		}
	}
	return sum
}

// traceRequestOf builds an export request: one resource with attrs, one
// span per name, each in its own trace.
func traceRequestOf(attrs map[string]string, names ...string) *coltracepb.ExportTraceServiceRequest {
	res := &resourcepb.Resource{}
	for k, v := range attrs {
		res.Attributes = append(res.Attributes, &commonpb.KeyValue{Key: k, Value: stringValue(v)})
	}
	ss := &tracepb.ScopeSpans{Scope: &commonpb.InstrumentationScope{Name: "test"}}
	for i, n := range names {
		tid := bytes.Repeat([]byte{byte(i + 1)}, 16)
		ss.Spans = append(ss.Spans, &tracepb.Span{
			TraceId: tid, SpanId: []byte{1, 2, 3, 4, 5, 6, 7, byte(i + 1)}, Name: n,
			StartTimeUnixNano: 1_700_000_000_000_000_000, EndTimeUnixNano: 1_700_000_000_100_000_000,
		})
	}
	return &coltracepb.ExportTraceServiceRequest{ResourceSpans: []*tracepb.ResourceSpans{{Resource: res, ScopeSpans: []*tracepb.ScopeSpans{ss}}}}
}

// postHTTP posts req to the relay's OTLP/HTTP receiver as protobuf.
func postHTTP(t *testing.T, addr string, req proto.Message) (*http.Response, []byte) {
	t.Helper()
	raw, err := proto.Marshal(req)
	require.NoError(t, err)
	resp, err := http.Post("http://"+addr+"/v1/traces", contentProtobuf, bytes.NewReader(raw))
	require.NoError(t, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp, body
}

func modelMillis(ms int) model.Duration { return model.Duration(time.Duration(ms) * time.Millisecond) }
