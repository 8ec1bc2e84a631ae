package loadgen

import (
	"context"
	"encoding/hex"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"
)

var testSpans = SpanConfig{Bodies: 6, SpansPerRequest: 40, SpansPerTrace: 10, Attributes: 10, Clusters: 2}

func decodeTraces(t *testing.T, data []byte) *coltracepb.ExportTraceServiceRequest {
	t.Helper()
	var req coltracepb.ExportTraceServiceRequest
	require.NoError(t, proto.Unmarshal(data, &req))
	return &req
}

func resourceAttr(rs *tracepb.ResourceSpans, key string) string {
	for _, kv := range rs.GetResource().GetAttributes() {
		if kv.GetKey() == key {
			return kv.GetValue().GetStringValue()
		}
	}
	return ""
}

// checkSpans checks one decoded body as a receiver would see it, and
// returns its span IDs.
func checkSpans(t *testing.T, b *Body, req *coltracepb.ExportTraceServiceRequest, sent time.Time) map[string]bool {
	t.Helper()
	require.Len(t, req.GetResourceSpans(), 1)
	rs := req.GetResourceSpans()[0]
	require.Equal(t, b.Cluster, resourceAttr(rs, "k8s.cluster.name"))
	require.NotEmpty(t, resourceAttr(rs, "service.name"))
	spans := rs.GetScopeSpans()[0].GetSpans()
	require.Len(t, spans, testSpans.SpansPerRequest)
	require.Equal(t, testSpans.SpansPerRequest, b.Items)
	ids := map[string]bool{}
	byID := map[string]*tracepb.Span{}
	for _, s := range spans {
		require.Len(t, s.GetTraceId(), 16)
		require.Len(t, s.GetSpanId(), 8)
		require.Len(t, s.GetAttributes(), testSpans.Attributes)
		require.GreaterOrEqual(t, s.GetEndTimeUnixNano(), s.GetStartTimeUnixNano())
		end := time.Unix(0, int64(s.GetEndTimeUnixNano()))
		require.WithinRange(t, end, sent.Add(-3*time.Second), sent.Add(time.Millisecond), "span end near the send")
		ids[string(s.GetSpanId())] = true
		byID[string(s.GetSpanId())] = s
	}
	require.Len(t, ids, len(spans), "span IDs are unique")
	roots := 0
	for _, s := range spans {
		if len(s.GetParentSpanId()) == 0 {
			roots++
			continue
		}
		parent := byID[string(s.GetParentSpanId())]
		require.NotNil(t, parent, "parent %s of a child is in the body", hex.EncodeToString(s.GetParentSpanId()))
		require.Equal(t, parent.GetTraceId(), s.GetTraceId())
	}
	require.Equal(t, testSpans.SpansPerRequest/testSpans.SpansPerTrace, roots)
	return ids
}

// Every send of a body is new spans: new IDs (parents still matching) and
// times at the send, in a body the official protos decode.
func TestOTLPBodies(t *testing.T) {
	bodies, err := OTLPBodies(testSpans)
	require.NoError(t, err)
	require.Len(t, bodies, testSpans.Bodies)
	clusters := map[string]bool{}
	all := map[string]bool{}
	for _, b := range bodies {
		clusters[b.Cluster] = true
		for round := range 3 {
			now := time.Now().Add(time.Duration(round) * time.Second)
			b.Stamp(now)
			ids := checkSpans(t, b, decodeTraces(t, b.Data), now)
			for id := range ids {
				require.False(t, all[id], "span ID repeated across sends or bodies")
				all[id] = true
			}
		}
	}
	require.Len(t, clusters, testSpans.Clusters)

	// Larger shapes (the bench's, an SDK's largest batch) find every field.
	for _, c := range []SpanConfig{
		{Bodies: 64, SpansPerRequest: 100, SpansPerTrace: 10, Attributes: 10, Clusters: 3},
		{Bodies: 8, SpansPerRequest: 512, SpansPerTrace: 1, Attributes: len(spanAttributes), Clusters: 1},
	} {
		_, err := OTLPBodies(c)
		require.NoError(t, err, "%+v", c)
	}
}

// traceServer is an OTLP gRPC and HTTP receiver built on the official
// service definition, counting the spans it decoded.
type traceServer struct {
	coltracepb.UnimplementedTraceServiceServer
	mu    sync.Mutex
	spans int
}

func (s *traceServer) add(req *coltracepb.ExportTraceServiceRequest) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, rs := range req.GetResourceSpans() {
		for _, ss := range rs.GetScopeSpans() {
			s.spans += len(ss.GetSpans())
		}
	}
}

func (s *traceServer) Export(_ context.Context, req *coltracepb.ExportTraceServiceRequest) (*coltracepb.ExportTraceServiceResponse, error) {
	s.add(req)
	return &coltracepb.ExportTraceServiceResponse{}, nil
}

func (s *traceServer) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.spans
}

// The load tool's OTLP modes deliver every span they count to a receiver
// that decodes them with the official protos, over gRPC and HTTP.
func TestRunOTLP(t *testing.T) {
	for _, mode := range []string{ModeOTLPGRPC, ModeOTLPHTTP} {
		t.Run(mode, func(t *testing.T) {
			srv := &traceServer{}
			var target string
			if mode == ModeOTLPGRPC {
				ln, err := net.Listen("tcp", "127.0.0.1:0")
				require.NoError(t, err)
				g := grpc.NewServer()
				coltracepb.RegisterTraceServiceServer(g, srv)
				go g.Serve(ln)
				t.Cleanup(g.Stop)
				target = ln.Addr().String()
			} else {
				h := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					body, err := io.ReadAll(r.Body)
					if r.URL.Path != "/v1/traces" || r.Header.Get("Content-Type") != "application/x-protobuf" || err != nil {
						http.Error(w, "bad request", http.StatusBadRequest)
						return
					}
					var req coltracepb.ExportTraceServiceRequest
					if err := proto.Unmarshal(body, &req); err != nil {
						http.Error(w, err.Error(), http.StatusBadRequest)
						return
					}
					srv.add(&req)
					w.Header().Set("Content-Type", "application/x-protobuf")
					w.WriteHeader(http.StatusOK)
				}))
				t.Cleanup(h.Close)
				target = h.URL
			}
			cfg := Config{Mode: mode, Target: target, Concurrency: 3, Duration: 300 * time.Millisecond, Timeout: 5 * time.Second,
				Payload: ModeRemoteWrite, Metrics: SeriesConfig{Clusters: 2}, Spans: testSpans}
			res, err := Run(context.Background(), cfg, slog.New(slog.DiscardHandler))
			require.NoError(t, err)
			require.Zero(t, res.Errors, "%v", res.StatusCodes)
			require.Positive(t, res.Spans)
			// Requests in the window are counted, and the server saw at
			// least those (the warm-up is zero: nothing before them).
			require.Equal(t, int64(srv.count()), res.Spans)
			require.Positive(t, res.SpansPerSec)
		})
	}
}
