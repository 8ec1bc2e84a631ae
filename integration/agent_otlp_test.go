package integration

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/golang/snappy"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/sdk/instrumentation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/tributary-io/tributary/internal/testenv"
	"github.com/tributary-io/tributary/pkg/record"
)

// relayedSpan is a span as read back from tributary.spans.
type relayedSpan struct {
	traceID, spanID, parentID string
	name                      string
	attrs                     map[string]string // the span's, as strings
	resource                  map[string]string
	cluster                   string // the record's envelope
}

// readRelayedSpans decodes every record of tributary.spans: envelope
// headers, snappy, ExportTraceServiceRequest (the span record contract).
// Spans are keyed by span ID; a span ID seen twice fails the test.
func readRelayedSpans(t *testing.T, kafkaAddr string) map[string]relayedSpan {
	t.Helper()
	out := map[string]relayedSpan{}
	for _, m := range testenv.ReadTopic(t, kafkaAddr, "tributary.spans") {
		require.Equal(t, record.ContentTypeTraces, testenv.Header(m, record.HeaderContentType))
		require.Equal(t, record.EncodingSnappy, testenv.Header(m, record.HeaderEncoding))
		raw, err := snappy.Decode(nil, m.Value)
		require.NoError(t, err)
		req := &coltracepb.ExportTraceServiceRequest{}
		require.NoError(t, proto.Unmarshal(raw, req))
		for _, rs := range req.ResourceSpans {
			res := map[string]string{}
			for _, kv := range rs.GetResource().GetAttributes() {
				res[kv.Key] = kv.GetValue().GetStringValue()
			}
			for _, ss := range rs.ScopeSpans {
				for _, s := range ss.Spans {
					attrs := map[string]string{}
					for _, kv := range s.Attributes {
						attrs[kv.Key] = anyString(kv.GetValue().GetStringValue(), kv.GetValue().GetIntValue())
					}
					id := fmt.Sprintf("%x", s.SpanId)
					_, dup := out[id]
					require.False(t, dup, "span %s (%s) is in Kafka twice", id, s.Name)
					out[id] = relayedSpan{
						traceID: fmt.Sprintf("%x", s.TraceId), spanID: id, parentID: fmt.Sprintf("%x", s.ParentSpanId),
						name: s.Name, attrs: attrs, resource: res, cluster: string(m.Key),
					}
				}
			}
		}
	}
	return out
}

func anyString(s string, i int64) string {
	if s != "" {
		return s
	}
	return fmt.Sprint(i)
}

// sdkSpan is what the SDK recorded of a span it exported.
func sdkSpanParent(s sdktrace.ReadOnlySpan) string {
	if !s.Parent().IsValid() {
		return ""
	}
	return s.Parent().SpanID().String()
}

// fromAddr is a dialer whose connections come from the loopback address ip,
// so the agent sees them as coming from the pod that has that IP.
func fromAddr(ip string) *net.Dialer {
	return &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}, Timeout: 5 * time.Second}
}

// runPodOnNode creates a running pod in namespace ns on node with podIP.
func runPodOnNode(t *testing.T, kube *testenv.Kube, ns, node, name, podIP string) *corev1.Pod {
	t.Helper()
	return kube.RunPod(t, &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: map[string]string{"app": name}},
		Spec:       corev1.PodSpec{NodeName: node, Containers: []corev1.Container{{Name: "app", Image: "example/app"}}},
		Status:     corev1.PodStatus{PodIP: podIP},
	})
}

// otlpAgentConfig writes the file of an agent without scrape jobs whose
// OTLP receivers listen on the given ports; kube is a kubernetes section
// (or empty), otlpExtra more keys of the otlp section.
func otlpAgentConfig(t *testing.T, cluster, gwURL, dir string, grpcPort, httpPort int, kube, otlpExtra string) string {
	t.Helper()
	cfg := agentConfig(cluster, gwURL, filepath.Join(dir, "wal")) + kube + fmt.Sprintf(`otlp:
  grpc_listen_addr: %s
  http_listen_addr: %s
  min_backoff: 50ms
  max_backoff: 500ms
  batch:
    timeout: 100ms
`, testenv.Addr(grpcPort), testenv.Addr(httpPort)) + otlpExtra
	path := filepath.Join(dir, "agent.yml")
	writeFile(t, path, cfg)
	return path
}

// The real OpenTelemetry SDK sends traces from two pods of the agent's
// node (gRPC from one, HTTP from the other, each from its pod IP) through
// the agent to the real gateway: every span is in tributary.spans intact
// (IDs, parent, name, attributes), under the agent's cluster, with the
// Kubernetes attributes of the real apiserver's pod objects, and with the
// resource attributes the sender set itself kept.
func TestAgentOTLPRelayAddsPodAttributes(t *testing.T) {
	t.Parallel()
	k := testenv.Kafka(t, 2)
	kube := sharedKube.Get(t)
	ns := kube.CreateNamespace(t)
	nodeA, nodeB := ns+"-node-a", ns+"-node-b"
	checkout := runPodOnNode(t, kube, ns, nodeA, "checkout-1", "127.0.0.77")
	web := runPodOnNode(t, kube, ns, nodeA, "web-1", "127.0.0.78")
	// A pod of another node with the same IP must not be seen by this
	// node's agent (the informer is node-scoped): were it, ByIP would see
	// two pods and name none.
	runPodOnNode(t, kube, ns, nodeB, "elsewhere", "127.0.0.77")
	gw := startGateway(t, k.Addr)

	dir := t.TempDir()
	grpcPort, httpPort := testenv.FreePort(t), testenv.FreePort(t)
	cfg := otlpAgentConfig(t, "relayclust", gw.URL, dir, grpcPort, httpPort, fmt.Sprintf(`kubernetes:
  kubeconfig: %s
  node_name: %s
`, kube.Kubeconfig, nodeA), "")
	ag := startAgent(t, cfg, testenv.FreePort(t))

	ctx := context.Background()
	grpcExp, err := otlptracegrpc.New(ctx, otlptracegrpc.WithEndpoint(testenv.Addr(grpcPort)), otlptracegrpc.WithInsecure(),
		otlptracegrpc.WithDialOption(grpc.WithContextDialer(func(ctx context.Context, addr string) (net.Conn, error) {
			return fromAddr("127.0.0.77").DialContext(ctx, "tcp", addr)
		})))
	require.NoError(t, err)
	httpExp, err := otlptracehttp.New(ctx, otlptracehttp.WithEndpoint(testenv.Addr(httpPort)), otlptracehttp.WithInsecure(),
		otlptracehttp.WithHTTPClient(&http.Client{Transport: &http.Transport{DialContext: fromAddr("127.0.0.78").DialContext}}))
	require.NoError(t, err)

	var sent []sdktrace.ReadOnlySpan
	send := func(exp sdktrace.SpanExporter, service string, extra ...attribute.KeyValue) {
		rec := tracetest.NewSpanRecorder()
		tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp), sdktrace.WithSpanProcessor(rec),
			sdktrace.WithResource(resource.NewSchemaless(append([]attribute.KeyValue{attribute.String("service.name", service)}, extra...)...)))
		tr := tp.Tracer("agent-otlp-test")
		for i := range 3 {
			pctx, parent := tr.Start(ctx, service+"-request", trace.WithSpanKind(trace.SpanKindServer), trace.WithAttributes(attribute.Int("request", i)))
			_, child := tr.Start(pctx, service+"-db", trace.WithAttributes(attribute.String("db.system", "postgresql")))
			child.End()
			parent.End()
		}
		sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		require.NoError(t, tp.Shutdown(sctx))
		sent = append(sent, rec.Ended()...)
	}
	// The checkout service names its own namespace and claims another
	// cluster: the namespace is kept, the cluster is the agent's.
	send(grpcExp, "checkout", attribute.String("k8s.namespace.name", "payments"), attribute.String("k8s.cluster.name", "not-mine"))
	send(httpExp, "web")
	require.Len(t, sent, 12)

	var got map[string]relayedSpan
	testenv.Eventually(t, 60*time.Second, func() error {
		got = readRelayedSpans(t, k.Addr)
		if len(got) != len(sent) {
			return fmt.Errorf("%d spans in Kafka, want %d", len(got), len(sent))
		}
		return nil
	})
	pods := map[string]*corev1.Pod{"checkout": checkout, "web": web}
	for _, s := range sent {
		r, ok := got[s.SpanContext().SpanID().String()]
		require.True(t, ok, "span %s missing", s.Name())
		require.Equal(t, s.SpanContext().TraceID().String(), r.traceID, s.Name())
		require.Equal(t, s.Name(), r.name)
		want := sdkSpanParent(s)
		if want == "" {
			require.Empty(t, r.parentID, s.Name())
		} else {
			require.Equal(t, want, r.parentID, s.Name())
		}
		for _, kv := range s.Attributes() {
			require.Equal(t, kv.Value.Emit(), r.attrs[string(kv.Key)], "%s attribute %s", s.Name(), kv.Key)
		}
		service := strings.TrimSuffix(strings.TrimSuffix(s.Name(), "-request"), "-db")
		pod := pods[service]
		wantNS := pod.Namespace
		if service == "checkout" {
			wantNS = "payments" // the sender's own
		}
		require.Equal(t, "relayclust", r.cluster, "record key")
		require.Equal(t, map[string]string{
			"service.name": service, "k8s.cluster.name": "relayclust", "k8s.namespace.name": wantNS,
			"k8s.pod.name": pod.Name, "k8s.pod.uid": string(pod.UID), "k8s.node.name": nodeA,
		}, r.resource, s.Name())
	}
	require.Equal(t, 12.0, ag.metric(t, "tributary_agent_otlp_relayed_items_total"))
	require.Equal(t, 0.0, ag.metric(t, `tributary_agent_otlp_k8s_enrichment_total{outcome="miss",signal="traces"}`))
	require.Equal(t, 1.0, ag.metric(t, "tributary_agent_otlp_cluster_replaced_total"))
}

// spanBatch is n spans of ~10 attributes each (a realistic server span),
// with IDs unique to batch.
func spanBatch(batch, n int) []sdktrace.ReadOnlySpan {
	stubs := make(tracetest.SpanStubs, n)
	res := resource.NewSchemaless(attribute.String("service.name", "outage-svc"))
	start := time.Now().Add(-time.Second)
	for i := range stubs {
		tid := trace.TraceID{0xa0, byte(batch >> 8), byte(batch), byte(i >> 8), byte(i), 1}
		sid := trace.SpanID{0xb0, byte(batch >> 8), byte(batch), byte(i >> 8), byte(i), 1}
		stubs[i] = tracetest.SpanStub{
			Name:        fmt.Sprintf("op-%d-%d", batch, i),
			SpanContext: trace.NewSpanContext(trace.SpanContextConfig{TraceID: tid, SpanID: sid, TraceFlags: trace.FlagsSampled}),
			SpanKind:    trace.SpanKindServer,
			StartTime:   start, EndTime: start.Add(time.Duration(i+1) * time.Millisecond),
			Attributes: []attribute.KeyValue{
				attribute.String("http.request.method", "GET"), attribute.String("url.path", fmt.Sprintf("/api/v1/items/%d", i)),
				attribute.Int("http.response.status_code", 200), attribute.String("server.address", "shop.example.internal"),
				attribute.Int("server.port", 8080), attribute.String("network.protocol.version", "1.1"),
				attribute.String("user_agent.original", "Mozilla/5.0 (X11; Linux x86_64) test"),
				attribute.String("client.address", "10.0.0.1"), attribute.String("http.route", "/api/v1/items/{id}"),
				attribute.String("url.scheme", "http"),
			},
			Resource:             res,
			InstrumentationScope: instrumentation.Scope{Name: "outage-test"},
		}
	}
	return stubs.Snapshots()
}

// The gateway goes away while the SDK keeps sending. The agent holds at
// most otlp.max_queue_bytes (its gauge never passes it); once that is
// spent the SDK's exporters get the OTLP retryable answers (gRPC
// UNAVAILABLE, HTTP 503) and keep their spans. After the gateway returns,
// every span the agent accepted, and every span the SDK then sends again,
// is in tributary.spans exactly once.
func TestAgentOTLPGatewayOutage(t *testing.T) {
	t.Parallel()
	k := testenv.Kafka(t, 2)
	gwPort := testenv.FreePort(t)
	gw := startGateway(t, k.Addr, "-http.listen-addr="+testenv.Addr(gwPort))
	dir := t.TempDir()
	grpcPort, httpPort := testenv.FreePort(t), testenv.FreePort(t)
	const maxQueue = 256 << 10
	cfg := otlpAgentConfig(t, "outage", gw.URL, dir, grpcPort, httpPort, "",
		fmt.Sprintf("  max_queue_bytes: %d\n  max_request_bytes: 131072\n  retry_after: 1s\n", maxQueue))
	ag := startAgent(t, cfg, testenv.FreePort(t))

	ctx := context.Background()
	noRetry := otlptracegrpc.RetryConfig{Enabled: false}
	grpcExp, err := otlptracegrpc.New(ctx, otlptracegrpc.WithEndpoint(testenv.Addr(grpcPort)), otlptracegrpc.WithInsecure(), otlptracegrpc.WithRetry(noRetry))
	require.NoError(t, err)
	httpExp, err := otlptracehttp.New(ctx, otlptracehttp.WithEndpoint(testenv.Addr(httpPort)), otlptracehttp.WithInsecure(),
		otlptracehttp.WithRetry(otlptracehttp.RetryConfig{Enabled: false}))
	require.NoError(t, err)

	// Before the outage: the path works.
	require.NoError(t, grpcExp.ExportSpans(ctx, spanBatch(0, 10)))
	want := 10
	require.NoError(t, gw.Stop(30*time.Second))
	rssBefore := vmRSS(t, ag.PID())

	var refused [][]sdktrace.ReadOnlySpan
	grpcRefused, httpRefused := false, false
	for b := 1; b < 400 && !(grpcRefused && httpRefused); b++ {
		spans := spanBatch(b, 100)
		if b%2 == 0 {
			err = grpcExp.ExportSpans(ctx, spans)
			if err != nil {
				require.Equal(t, codes.Unavailable, status.Code(err), "gRPC refusal: %v", err)
				require.Contains(t, err.Error(), "otlp.max_queue_bytes")
				grpcRefused = true
			}
		} else {
			err = httpExp.ExportSpans(ctx, spans)
			if err != nil {
				require.Contains(t, err.Error(), "retry-able request failure", "HTTP refusal is not one the SDK retries")
				httpRefused = true
			}
		}
		if err != nil {
			refused = append(refused, spans)
		}
		want += len(spans)
		require.LessOrEqual(t, ag.metric(t, "tributary_agent_otlp_queue_bytes"), float64(maxQueue))
	}
	require.True(t, grpcRefused && httpRefused, "the queue never filled")
	// The first send may come a batch timeout after the queue filled.
	require.Eventually(t, func() bool { return ag.metric(t, "tributary_agent_otlp_send_retries_total") > 0 },
		30*time.Second, 100*time.Millisecond, "the outage never met a send")
	require.Greater(t, ag.metric(t, `tributary_agent_otlp_refused_items_total{reason="queue_full",signal="traces"}`), 0.0)
	t.Logf("agent RSS %d KiB before the outage, %d KiB with the queue full (max_queue_bytes %d KiB); %d spans refused",
		rssBefore>>10, vmRSS(t, ag.PID())>>10, maxQueue>>10, 100*len(refused))

	// The gateway returns; the SDK sends again what was refused (its
	// retry, here with the exporter's default retry on).
	startGateway(t, k.Addr, "-http.listen-addr="+testenv.Addr(gwPort))
	retryExp, err := otlptracegrpc.New(ctx, otlptracegrpc.WithEndpoint(testenv.Addr(grpcPort)), otlptracegrpc.WithInsecure())
	require.NoError(t, err)
	for _, spans := range refused {
		require.NoError(t, retryExp.ExportSpans(ctx, spans))
	}
	testenv.Eventually(t, 90*time.Second, func() error {
		if got := len(readRelayedSpans(t, k.Addr)); got != want {
			return fmt.Errorf("%d spans in Kafka, want %d", got, want)
		}
		return nil
	})
	for _, s := range readRelayedSpans(t, k.Addr) {
		require.Equal(t, "outage", s.cluster)
		require.Equal(t, "outage", s.resource["k8s.cluster.name"])
	}
	require.Equal(t, 0.0, ag.metric(t, "tributary_agent_otlp_dropped_items_total"))
	require.Equal(t, float64(want), ag.metric(t, "tributary_agent_otlp_relayed_items_total"))
	for _, e := range []sdktrace.SpanExporter{grpcExp, httpExp, retryExp} {
		require.NoError(t, e.Shutdown(ctx))
	}
}
