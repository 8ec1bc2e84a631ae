package gateway

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
)

// benchSpans is an SDK's default batch: 512 spans of ~10 attributes.
func benchSpans(b *testing.B, cluster string) []byte {
	str := func(k, v string) *commonpb.KeyValue {
		return &commonpb.KeyValue{Key: k, Value: &commonpb.AnyValue{Value: &commonpb.AnyValue_StringValue{StringValue: v}}}
	}
	var spans []*tracepb.Span
	for i := 0; i < 512; i++ {
		s := validSpan(byte(i%250 + 1))
		s.SpanId[0] = byte(i >> 8)
		s.Name = "GET /api/v1/items/{id}"
		s.Kind = tracepb.Span_SPAN_KIND_SERVER
		s.Attributes = []*commonpb.KeyValue{
			str("http.request.method", "GET"), str("http.route", "/api/v1/items/{id}"), str("url.path", fmt.Sprintf("/api/v1/items/%d", i)),
			str("server.address", "items.shop.svc.cluster.local"), str("user_agent.original", "Mozilla/5.0 (X11; Linux x86_64)"),
			str("network.protocol.version", "1.1"), str("client.address", "10.1.2.3"), str("db.system", "postgresql"),
			str("db.statement", "SELECT id, name, price FROM items WHERE id = $1"),
			{Key: "http.response.status_code", Value: &commonpb.AnyValue{Value: &commonpb.AnyValue_IntValue{IntValue: 200}}},
		}
		spans = append(spans, s)
	}
	return otlpRequestBody(b, cluster, spans...)
}

func benchOTLP(b *testing.B, body []byte, headers ...string) {
	h := benchGateway(b)
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		req := httptest.NewRequest(http.MethodPost, "/v1/traces", bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/x-protobuf")
		for i := 0; i < len(headers); i += 2 {
			req.Header.Set(headers[i], headers[i+1])
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		if w.Code != http.StatusOK {
			b.Fatalf("status %d: %s", w.Code, w.Body)
		}
	}
	b.ReportMetric(float64(512*b.N)/b.Elapsed().Seconds(), "spans/s")
}

// BenchmarkOTLPHTTP: POST /v1/traces → validated records with envelope;
// "forward" names its cluster (written as received), "rewrite" takes it
// from the header, "gzip" is "forward" compressed as SDKs send it.
func BenchmarkOTLPHTTP(b *testing.B) {
	b.Run("forward", func(b *testing.B) { benchOTLP(b, benchSpans(b, "prod-eu-1")) })
	b.Run("rewrite", func(b *testing.B) { benchOTLP(b, benchSpans(b, ""), "X-Tributary-Cluster", "c") })
	b.Run("gzip", func(b *testing.B) {
		benchOTLP(b, gzipBytes(benchSpans(b, "prod-eu-1")), "Content-Encoding", "gzip")
	})
}

// BenchmarkOTLPGRPC: TraceService/Export over loopback (the client sends
// the encoded request as is) → validated records with envelope, from 8
// concurrent callers over 2 connections. spans/cpu-s counts the process
// (client, server and GC): compare it between runs, not with the gateway's
// own figure.
func BenchmarkOTLPGRPC(b *testing.B) {
	var cfg Config
	fs := flag.NewFlagSet("b", flag.ContinueOnError)
	cfg.RegisterFlags(fs)
	if err := fs.Parse(nil); err != nil {
		b.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	gw := New(cfg, ackingProducer{}, reg, reg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	srv := gw.GRPCServer()
	go srv.Serve(ln)
	defer srv.Stop()
	var conns []*grpc.ClientConn
	for range 2 {
		c, err := grpc.NewClient(ln.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()),
			grpc.WithDefaultCallOptions(grpc.ForceCodec(rawCodec{})))
		if err != nil {
			b.Fatal(err)
		}
		defer c.Close()
		conns = append(conns, c)
	}
	body := benchSpans(b, "prod-eu-1")
	const method = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	cpu0 := processCPU(b)
	calls := make(chan struct{})
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			for range calls {
				req, resp := body, []byte(nil)
				if err := conns[i%len(conns)].Invoke(context.Background(), method, &req, &resp); err != nil {
					b.Error(err)
				}
			}
		})
	}
	for b.Loop() {
		calls <- struct{}{}
	}
	close(calls)
	wg.Wait()
	b.ReportMetric(float64(512*b.N)/b.Elapsed().Seconds(), "spans/s")
	if cpu := processCPU(b) - cpu0; cpu > 0 {
		b.ReportMetric(float64(512*b.N)/cpu.Seconds(), "spans/cpu-s")
	}
}

// processCPU is the CPU time (user + system) of the process: on a shared
// machine the wall clock counts the time the benchmark waited for a core
// too.
func processCPU(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
