package main

import (
	"bytes"
	"context"
	"net"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"
	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/grpc"
)

// traceSink is an OTLP gRPC TraceService that keeps what it receives.
type traceSink struct {
	coltracepb.UnimplementedTraceServiceServer
	mu    sync.Mutex
	spans map[string][]*tracepb.Span // by service.name
}

func (s *traceSink) Export(_ context.Context, req *coltracepb.ExportTraceServiceRequest) (*coltracepb.ExportTraceServiceResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, rs := range req.ResourceSpans {
		svc := ""
		for _, kv := range rs.GetResource().GetAttributes() {
			if kv.Key == "service.name" {
				svc = kv.GetValue().GetStringValue()
			}
		}
		for _, ss := range rs.ScopeSpans {
			s.spans[svc] = append(s.spans[svc], ss.Spans...)
		}
	}
	return &coltracepb.ExportTraceServiceResponse{}, nil
}

// tracegen sends whole traces: every trace has its four spans over the
// three services, linked parent to child, all flushed before it returns.
func TestTracegen(t *testing.T) {
	sink := &traceSink{spans: map[string][]*tracepb.Span{}}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	srv := grpc.NewServer()
	coltracepb.RegisterTraceServiceServer(srv, sink)
	go srv.Serve(ln)
	defer srv.Stop()

	var out bytes.Buffer
	require.NoError(t, runMain([]string{"tracegen", "-endpoint=" + ln.Addr().String(), "-rate=20", "-duration=1s", "-service-prefix=t"}, &out))
	require.Contains(t, out.String(), "traces sent")

	sink.mu.Lock()
	defer sink.mu.Unlock()
	front, cart, db := sink.spans["t-frontend"], sink.spans["t-cart"], sink.spans["t-postgres"]
	require.NotEmpty(t, front)
	traces := len(front) / 2
	require.Len(t, front, 2*traces)
	require.Len(t, cart, traces)
	require.Len(t, db, traces)
	byID := map[string]*tracepb.Span{}
	for _, list := range [][]*tracepb.Span{front, cart, db} {
		for _, s := range list {
			byID[string(s.SpanId)] = s
		}
	}
	roots := 0
	for _, s := range byID {
		if len(s.ParentSpanId) == 0 {
			roots++
			require.Equal(t, "GET /checkout", s.Name)
			continue
		}
		parent, ok := byID[string(s.ParentSpanId)]
		require.True(t, ok, "span %s has a parent that was not sent", s.Name)
		require.Equal(t, parent.TraceId, s.TraceId)
	}
	require.Equal(t, traces, roots)
	require.True(t, strings.Contains(out.String(), "last trace ID"))
}
