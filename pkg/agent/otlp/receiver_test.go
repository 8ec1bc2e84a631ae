package otlp

import (
	"bytes"
	"compress/gzip"
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	spb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/tributary-io/tributary/pkg/k8s"
)

var testPod = k8s.PodInfo{Namespace: "shop", Name: "cart-7d9f", UID: "uid-cart", Node: "node-a", IPs: []string{"127.0.0.1"}}

// sendWithSDK sends spans named names through the OpenTelemetry SDK's
// exporter exp, with the resource attributes attrs, and shuts it down
// (which flushes).
func sendWithSDK(t *testing.T, exp sdktrace.SpanExporter, attrs []attribute.KeyValue, names ...string) {
	t.Helper()
	tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp), sdktrace.WithResource(resource.NewSchemaless(attrs...)))
	tr := tp.Tracer("relay-test")
	for _, n := range names {
		_, span := tr.Start(context.Background(), n)
		span.End()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	require.NoError(t, tp.Shutdown(ctx))
}

// The SDK's gRPC and HTTP exporters send through the relay: every span
// reaches the gateway with the agent's cluster (replacing the sender's),
// the pod attributes of the sender's address, and the attributes the
// sender set itself.
func TestRelaySDKGRPCAndHTTP(t *testing.T) {
	gw := startGateway(t)
	r := startRelay(t, gw.URL, Config{Batch: BatchConfig{Timeout: modelMillis(50)}}, fakePods{[]k8s.PodInfo{testPod}}, 0)
	ctx := context.Background()

	grpcExp, err := otlptracegrpc.New(ctx, otlptracegrpc.WithEndpoint(r.GRPCAddr()), otlptracegrpc.WithInsecure())
	require.NoError(t, err)
	sendWithSDK(t, grpcExp, []attribute.KeyValue{
		attribute.String("service.name", "cart"),
		attribute.String("k8s.cluster.name", "someone-else"),
		attribute.String("k8s.pod.name", "set-by-sender"),
	}, "grpc-1", "grpc-2")

	httpExp, err := otlptracehttp.New(ctx, otlptracehttp.WithEndpoint(r.HTTPAddr()), otlptracehttp.WithInsecure(), otlptracehttp.WithCompression(otlptracehttp.GzipCompression))
	require.NoError(t, err)
	sendWithSDK(t, httpExp, []attribute.KeyValue{attribute.String("service.name", "cart")}, "http-1")

	require.Eventually(t, func() bool { return len(gw.received()) == 3 }, 10*time.Second, 20*time.Millisecond)
	got := gw.byName()
	for _, n := range []string{"grpc-1", "grpc-2"} {
		require.Equal(t, map[string]string{
			"service.name": "cart", "k8s.cluster.name": "agentclust", "k8s.pod.name": "set-by-sender",
			"k8s.namespace.name": "shop", "k8s.pod.uid": "uid-cart", "k8s.node.name": "node-a",
		}, got[n].resource, n)
	}
	require.Equal(t, map[string]string{
		"service.name": "cart", "k8s.cluster.name": "agentclust", "k8s.pod.name": "cart-7d9f",
		"k8s.namespace.name": "shop", "k8s.pod.uid": "uid-cart", "k8s.node.name": "node-a",
	}, got["http-1"].resource)
	require.Equal(t, 3.0, r.counter(t, "tributary_agent_otlp_received_items_total", "signal", "traces"))
	require.Equal(t, 3.0, r.counter(t, "tributary_agent_otlp_relayed_items_total", "signal", "traces"))
	require.Equal(t, 2.0, r.counter(t, "tributary_agent_otlp_k8s_enrichment_total", "outcome", "hit"))
	require.Equal(t, 1.0, r.counter(t, "tributary_agent_otlp_cluster_replaced_total"))
	require.Equal(t, 1.0, r.counter(t, "tributary_agent_otlp_requests_total", "protocol", "grpc", "code", "OK"))
	require.Equal(t, 1.0, r.counter(t, "tributary_agent_otlp_requests_total", "protocol", "http", "code", "200"))
}

// A full queue answers what the OTLP spec asks for, so the sender keeps
// its data and backs off: gRPC UNAVAILABLE with a RetryInfo, HTTP 503 with
// Retry-After. The queue never holds more than max_queue_bytes; once the
// gateway is back everything accepted arrives.
func TestRelayQueueFullAsksToRetry(t *testing.T) {
	gw := startGateway(t)
	gw.setAnswer(func(*coltracepb.ExportTraceServiceRequest) (int, proto.Message) {
		return http.StatusServiceUnavailable, &spb.Status{Message: "kafka away"}
	})
	const maxQueue = 4096
	r := startRelay(t, gw.URL, Config{
		MaxQueueBytes: maxQueue, MaxRequestBytes: 2048, RetryAfter: modelMillis(3000),
		Batch:      BatchConfig{Timeout: modelMillis(10)},
		MinBackoff: modelMillis(10), MaxBackoff: modelMillis(50),
	}, nil, 2*time.Second)

	conn, err := grpc.NewClient(r.GRPCAddr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	defer conn.Close()
	client := coltracepb.NewTraceServiceClient(conn)

	accepted := 0
	var grpcRefusal *status.Status
	for i := 0; grpcRefusal == nil && i < 1000; i++ {
		_, err := client.Export(context.Background(), traceRequestOf(nil, fmt.Sprint("g", i)))
		if err != nil {
			grpcRefusal = status.Convert(err)
			break
		}
		accepted++
		require.LessOrEqual(t, r.budget.load(), maxQueue)
	}
	require.NotNil(t, grpcRefusal, "the queue never filled")
	require.Equal(t, codes.Unavailable, grpcRefusal.Code(), grpcRefusal.Message())
	require.Contains(t, grpcRefusal.Message(), "otlp.max_queue_bytes")
	var retry *errdetails.RetryInfo
	for _, d := range grpcRefusal.Details() {
		if ri, ok := d.(*errdetails.RetryInfo); ok {
			retry = ri
		}
	}
	require.NotNil(t, retry, "no RetryInfo in %v", grpcRefusal.Details())
	require.Equal(t, 3*time.Second, retry.GetRetryDelay().AsDuration())

	resp, body := postHTTP(t, r.HTTPAddr(), traceRequestOf(nil, "h"))
	require.Equal(t, http.StatusServiceUnavailable, resp.StatusCode)
	require.Equal(t, "3", resp.Header.Get("Retry-After"))
	var st spb.Status
	require.NoError(t, proto.Unmarshal(body, &st))
	require.Equal(t, int32(codes.Unavailable), st.Code)
	require.LessOrEqual(t, r.counter(t, "tributary_agent_otlp_queue_bytes"), float64(maxQueue))
	require.Greater(t, r.counter(t, "tributary_agent_otlp_refused_items_total", "reason", "queue_full"), 1.0)
	require.Eventually(t, func() bool { return r.counter(t, "tributary_agent_otlp_send_retries_total") > 0 }, 5*time.Second, 10*time.Millisecond,
		"the outage never met a send")

	gw.setAnswer(nil)
	require.Eventually(t, func() bool { return len(gw.received()) == accepted }, 10*time.Second, 20*time.Millisecond)
	require.Len(t, gw.byName(), accepted, "a span arrived twice")
	require.Eventually(t, func() bool { return r.budget.load() == 0 }, 5*time.Second, 10*time.Millisecond)
	require.Equal(t, 0.0, r.counter(t, "tributary_agent_otlp_dropped_items_total"))
}

// A gateway refusal (400) of a batch is retried request by request, so
// only the sender request the gateway refuses is dropped, and counted.
func TestRelayRefusedBatchIsolatesTheBadRequest(t *testing.T) {
	gw := startGateway(t)
	gw.setAnswer(func(req *coltracepb.ExportTraceServiceRequest) (int, proto.Message) {
		for _, rs := range req.ResourceSpans {
			for _, ss := range rs.ScopeSpans {
				for _, s := range ss.Spans {
					if strings.HasPrefix(s.Name, "poison") {
						return http.StatusBadRequest, &spb.Status{Code: int32(codes.InvalidArgument), Message: "attribute too long"}
					}
				}
			}
		}
		return http.StatusOK, &coltracepb.ExportTraceServiceResponse{}
	})
	// One batch for all three requests: a long timeout, flushed at stop.
	r := startRelay(t, gw.URL, Config{Batch: BatchConfig{Timeout: modelMillis(3_600_000)}}, nil, 0)
	for _, names := range [][]string{{"a1", "a2"}, {"poison1", "poison2", "poison3"}, {"b1"}} {
		resp, _ := postHTTP(t, r.HTTPAddr(), traceRequestOf(nil, names...))
		require.Equal(t, http.StatusOK, resp.StatusCode)
	}
	r.stop(t)
	got := gw.byName()
	require.Len(t, got, 3)
	for _, n := range []string{"a1", "a2", "b1"} {
		require.Contains(t, got, n)
	}
	require.Equal(t, 3.0, r.counter(t, "tributary_agent_otlp_dropped_items_total", "reason", "gateway_refused"))
	require.Equal(t, 3.0, r.counter(t, "tributary_agent_otlp_relayed_items_total"))
	require.Equal(t, 4.0, r.counter(t, "tributary_agent_otlp_send_requests_total", "code", "400")+r.counter(t, "tributary_agent_otlp_send_requests_total", "code", "200"),
		"want the batch (400), then each request alone (200, 400, 200)")
	require.Contains(t, r.pipes[traces].lastError(), "attribute too long")
	var page strings.Builder
	r.Status(&page)
	require.Contains(t, page.String(), "receivers:  grpc "+r.GRPCAddr()+", http "+r.HTTPAddr())
	require.Contains(t, page.String(), "queue:      0 of 67108864 bytes")
	require.Contains(t, page.String(), "400 Bad Request: attribute too long")
	require.Contains(t, page.String(), "k8s attrs:  off")
}

// A 2xx with partial_success from the gateway counts the refused spans as
// dropped and the rest as relayed.
func TestRelayGatewayPartialSuccess(t *testing.T) {
	gw := startGateway(t)
	gw.setAnswer(func(*coltracepb.ExportTraceServiceRequest) (int, proto.Message) {
		return http.StatusOK, &coltracepb.ExportTraceServiceResponse{PartialSuccess: &coltracepb.ExportTracePartialSuccess{RejectedSpans: 2, ErrorMessage: "too many attributes"}}
	})
	r := startRelay(t, gw.URL, Config{Batch: BatchConfig{Timeout: modelMillis(10)}}, nil, 0)
	resp, _ := postHTTP(t, r.HTTPAddr(), traceRequestOf(nil, "s1", "s2", "s3", "s4", "s5"))
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Eventually(t, func() bool { return r.counter(t, "tributary_agent_otlp_relayed_items_total") == 3 }, 5*time.Second, 10*time.Millisecond)
	require.Equal(t, 2.0, r.counter(t, "tributary_agent_otlp_dropped_items_total", "reason", "gateway_partial"))
}

// Spans the gateway would refuse for their IDs or times are answered as a
// partial success to the sender; the rest of its request is relayed.
func TestRelayInvalidSpansPartialSuccess(t *testing.T) {
	gw := startGateway(t)
	r := startRelay(t, gw.URL, Config{Batch: BatchConfig{Timeout: modelMillis(10)}}, nil, 0)
	req := traceRequestOf(nil, "good", "zero-trace", "short-span", "backwards", "good2")
	spans := req.ResourceSpans[0].ScopeSpans[0].Spans
	spans[1].TraceId = make([]byte, 16)
	spans[2].SpanId = []byte{1, 2, 3}
	spans[3].EndTimeUnixNano = spans[3].StartTimeUnixNano - 1

	resp, body := postHTTP(t, r.HTTPAddr(), req)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	var answer coltracepb.ExportTraceServiceResponse
	require.NoError(t, proto.Unmarshal(body, &answer))
	require.Equal(t, int64(3), answer.GetPartialSuccess().GetRejectedSpans())
	require.Contains(t, answer.GetPartialSuccess().GetErrorMessage(), "3 invalid of 5")
	require.Contains(t, answer.GetPartialSuccess().GetErrorMessage(), "trace ID")

	require.Eventually(t, func() bool { return len(gw.received()) == 2 }, 5*time.Second, 10*time.Millisecond)
	got := gw.byName()
	require.Contains(t, got, "good")
	require.Contains(t, got, "good2")
	require.Equal(t, 3.0, r.counter(t, "tributary_agent_otlp_refused_items_total", "reason", "invalid"))

	// Nothing valid at all: still a partial success, nothing queued.
	req = traceRequestOf(nil, "bad")
	req.ResourceSpans[0].ScopeSpans[0].Spans[0].SpanId = make([]byte, 8)
	resp, body = postHTTP(t, r.HTTPAddr(), req)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.NoError(t, proto.Unmarshal(body, &answer))
	require.Equal(t, int64(1), answer.GetPartialSuccess().GetRejectedSpans())
	require.Contains(t, answer.GetPartialSuccess().GetErrorMessage(), "span ID")
}

// OTLP/HTTP: JSON with hex IDs and gzip bodies decode; wrong method,
// content type, encoding, malformed and oversized bodies get the status
// the spec gives them, with a google.rpc.Status in the request's encoding.
func TestHTTPReceiver(t *testing.T) {
	gw := startGateway(t)
	r := startRelay(t, gw.URL, Config{MaxRequestBytes: 4096, Batch: BatchConfig{Timeout: modelMillis(10)}}, nil, 0)
	url := "http://" + r.HTTPAddr() + "/v1/traces"
	good, err := proto.Marshal(traceRequestOf(map[string]string{"service.name": "z"}, "gz"))
	require.NoError(t, err)
	gz := func(b []byte) []byte {
		var buf bytes.Buffer
		zw := gzip.NewWriter(&buf)
		_, _ = zw.Write(b)
		_ = zw.Close()
		return buf.Bytes()
	}
	const jsonBody = `{"resourceSpans":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"js"}}]},
		"scopeSpans":[{"spans":[{"traceId":"5b8efff798038103d269b633813fc60c","spanId":"eee19b7ec3c1b174","name":"json-span",
		"kind":2,"startTimeUnixNano":"1700000000000000000","endTimeUnixNano":"1700000000100000000"}]}]}]}`

	for _, tc := range []struct {
		name, method, ct, enc string
		body                  []byte
		want                  int
		wantMsg               string
	}{
		{"protobuf gzip", http.MethodPost, contentProtobuf, "gzip", gz(good), http.StatusOK, ""},
		{"json", http.MethodPost, "application/json; charset=utf-8", "", []byte(jsonBody), http.StatusOK, ""},
		{"get", http.MethodGet, contentProtobuf, "", nil, http.StatusMethodNotAllowed, ""},
		{"text", http.MethodPost, "text/plain", "", good, http.StatusUnsupportedMediaType, "Content-Type"},
		{"zstd", http.MethodPost, contentProtobuf, "zstd", good, http.StatusUnsupportedMediaType, "Content-Encoding"},
		{"garbage protobuf", http.MethodPost, contentProtobuf, "", []byte{0x0a, 0xff, 0xff}, http.StatusBadRequest, "decode OTLP traces"},
		{"garbage json", http.MethodPost, contentJSON, "", []byte(`{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"zz"}]}]}]}`), http.StatusBadRequest, "OTLP/JSON"},
		{"broken gzip", http.MethodPost, contentProtobuf, "gzip", []byte("not gzip"), http.StatusBadRequest, "gzip"},
		{"too large", http.MethodPost, contentProtobuf, "", make([]byte, 5000), http.StatusRequestEntityTooLarge, "otlp.max_request_bytes"},
		{"gzip bomb", http.MethodPost, contentProtobuf, "gzip", gz(make([]byte, 1<<20)), http.StatusRequestEntityTooLarge, "otlp.max_request_bytes"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, err := http.NewRequest(tc.method, url, bytes.NewReader(tc.body))
			require.NoError(t, err)
			req.Header.Set("Content-Type", tc.ct)
			if tc.enc != "" {
				req.Header.Set("Content-Encoding", tc.enc)
			}
			resp, err := http.DefaultClient.Do(req)
			require.NoError(t, err)
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			require.Equal(t, tc.want, resp.StatusCode, string(body))
			if tc.wantMsg != "" {
				var st spb.Status
				if strings.HasPrefix(tc.ct, contentJSON) {
					require.NoError(t, protojson.Unmarshal(body, &st), "error body is not a google.rpc.Status in JSON")
				} else {
					require.NoError(t, proto.Unmarshal(body, &st), "error body is not a google.rpc.Status")
				}
				require.Contains(t, st.Message, tc.wantMsg)
			}
		})
	}
	require.Eventually(t, func() bool { return len(gw.received()) == 2 }, 5*time.Second, 10*time.Millisecond)
	got := gw.byName()
	require.Equal(t, "5b8efff798038103d269b633813fc60c", fmt.Sprintf("%x", got["json-span"].traceID))
	require.Equal(t, "js", got["json-span"].resource["service.name"])
	require.Contains(t, got, "gz")
}

// At shutdown the relay stops receiving, then sends what it holds (the
// open batch included) before Run returns.
func TestRelayShutdownFlushes(t *testing.T) {
	gw := startGateway(t)
	r := startRelay(t, gw.URL, Config{Batch: BatchConfig{Timeout: modelMillis(3_600_000)}}, nil, 10*time.Second)
	for i := range 5 {
		resp, _ := postHTTP(t, r.HTTPAddr(), traceRequestOf(nil, fmt.Sprint("s", i)))
		require.Equal(t, http.StatusOK, resp.StatusCode)
	}
	require.Empty(t, gw.received())
	r.stop(t)
	require.Len(t, gw.byName(), 5)
	require.Equal(t, 0, r.budget.load())
	_, err := http.Post("http://"+r.HTTPAddr()+"/v1/traces", contentProtobuf, nil)
	require.Error(t, err, "still receiving after shutdown")
}

// With the gateway away, shutdown gives up after the flush deadline and
// counts what it drops.
func TestRelayShutdownDeadline(t *testing.T) {
	t.Parallel()
	gw := startGateway(t)
	gw.setAnswer(func(*coltracepb.ExportTraceServiceRequest) (int, proto.Message) {
		return http.StatusServiceUnavailable, &spb.Status{}
	})
	r := startRelay(t, gw.URL, Config{Batch: BatchConfig{Timeout: modelMillis(10)}, MinBackoff: modelMillis(10), MaxBackoff: modelMillis(100)}, nil, time.Second)
	for i := range 4 {
		resp, _ := postHTTP(t, r.HTTPAddr(), traceRequestOf(nil, fmt.Sprint("s", i), "x"))
		require.Equal(t, http.StatusOK, resp.StatusCode)
	}
	start := time.Now()
	r.stop(t)
	require.Less(t, time.Since(start), 8*time.Second)
	require.Equal(t, 8.0, r.counter(t, "tributary_agent_otlp_dropped_items_total", "reason", "shutdown"))
	require.Equal(t, 0.0, r.counter(t, "tributary_agent_otlp_relayed_items_total"))
	require.Equal(t, 0, r.budget.load())
}

// Until the node's pods are listed the relay would add no pod attributes:
// senders are asked to retry instead of getting spans without them.
func TestRelayWaitsForThePodList(t *testing.T) {
	gw := startGateway(t)
	r := startRelay(t, gw.URL, Config{Batch: BatchConfig{Timeout: modelMillis(10)}}, fakePods{[]k8s.PodInfo{testPod}}, 0)
	r.podsSynced.Store(false)
	require.False(t, r.Ready())
	resp, body := postHTTP(t, r.HTTPAddr(), traceRequestOf(nil, "early"))
	require.Equal(t, http.StatusServiceUnavailable, resp.StatusCode)
	require.NotEmpty(t, resp.Header.Get("Retry-After"))
	var st spb.Status
	require.NoError(t, proto.Unmarshal(body, &st))
	require.Contains(t, st.Message, "not yet listed")
	require.Equal(t, 1.0, r.counter(t, "tributary_agent_otlp_refused_items_total", "reason", "not_ready"))

	r.podsSynced.Store(true)
	resp, _ = postHTTP(t, r.HTTPAddr(), traceRequestOf(nil, "later"))
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Eventually(t, func() bool { return len(gw.received()) == 1 }, 5*time.Second, 10*time.Millisecond)
	require.Equal(t, "cart-7d9f", gw.byName()["later"].resource["k8s.pod.name"])
}
