package gateway

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang/snappy"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kmsg"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	resourcepb "go.opentelemetry.io/proto/otlp/resource/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	grpccodes "google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	grpcstatus "google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/IBM/sarama"

	"github.com/tributary-io/tributary/internal/testenv"
	"github.com/tributary-io/tributary/pkg/otlp"
	"github.com/tributary-io/tributary/pkg/record"
	recordpb "github.com/tributary-io/tributary/proto/record/v1"
)

// serveOTLPGRPC serves the gateway's OTLP gRPC server on a free loopback
// port until the test ends.
func (f *fixture) serveOTLPGRPC(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	srv := f.gw.GRPCServer()
	done := make(chan struct{})
	go func() { srv.Serve(ln); close(done) }()
	t.Cleanup(func() { srv.Stop(); <-done })
	return ln.Addr().String()
}

func (f *fixture) postOTLP(t *testing.T, body []byte, headers ...string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, f.srv.URL+"/v1/traces", bytes.NewReader(body))
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/x-protobuf")
	for i := 0; i < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	msg, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp, msg
}

// sdkTracer is a tracer provider of the real OpenTelemetry SDK exporting
// to exp, that also records what it exported.
func sdkTracer(t *testing.T, exp sdktrace.SpanExporter, attrs ...attribute.KeyValue) (*sdktrace.TracerProvider, *tracetest.InMemoryExporter) {
	t.Helper()
	mem := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(
		sdktrace.WithResource(resource.NewSchemaless(attrs...)),
		sdktrace.WithBatcher(exp),
		sdktrace.WithSyncer(mem),
	)
	t.Cleanup(func() { tp.Shutdown(context.Background()) })
	return tp, mem
}

// makeSpans makes a small trace: a server span with a child that has an
// event, attributes of every type, an error status and a link.
func makeSpans(tp trace.TracerProvider, service string, n int) {
	tr := tp.Tracer("tributary/test", trace.WithInstrumentationVersion("1.2.3"))
	for i := 0; i < n; i++ {
		ctx, root := tr.Start(context.Background(), fmt.Sprintf("GET /%s/%d", service, i), trace.WithSpanKind(trace.SpanKindServer),
			trace.WithAttributes(attribute.String("http.request.method", "GET"), attribute.Int("http.response.status_code", 200)))
		_, child := tr.Start(ctx, "SELECT items", trace.WithSpanKind(trace.SpanKindClient),
			trace.WithLinks(trace.Link{SpanContext: root.SpanContext(), Attributes: []attribute.KeyValue{attribute.Bool("same.trace", true)}}),
			trace.WithAttributes(attribute.Float64("db.rows", 1.5), attribute.StringSlice("db.tables", []string{"a", "b"})))
		child.AddEvent("retry", trace.WithAttributes(attribute.Int64("attempt", 2)))
		child.SetStatus(codes.Error, "deadlock")
		child.End()
		root.End()
	}
}

// spanRecord is a span as read back from Kafka, with its record's facts.
type spanRecord struct {
	cluster, key, resourceCluster, service string
	span                                   *tracepb.Span
}

// readSpans decodes every record of tributary.spans as a sink does.
func readSpans(t *testing.T, addr string) (map[string]spanRecord, int) {
	t.Helper()
	out := map[string]spanRecord{}
	msgs := testenv.ReadTopic(t, addr, "tributary.spans")
	for _, m := range msgs {
		env, err := record.Parse(m.Headers)
		require.NoError(t, err)
		require.Equal(t, recordpb.Signal_SIGNAL_SPANS, env.GetSignal())
		require.Equal(t, record.ContentTypeTraces, env.GetContentType())
		require.Equal(t, record.EncodingSnappy, env.GetContentEncoding())
		require.Equal(t, env.GetCluster(), string(m.Key), "key = cluster")
		raw, err := snappy.Decode(nil, m.Value)
		require.NoError(t, err)
		var req coltracepb.ExportTraceServiceRequest
		require.NoError(t, proto.Unmarshal(raw, &req))
		items := 0
		for _, rs := range req.ResourceSpans {
			var cluster, service string
			for _, kv := range rs.Resource.GetAttributes() {
				switch kv.Key {
				case otlp.ClusterAttribute:
					cluster = kv.Value.GetStringValue()
				case "service.name":
					service = kv.Value.GetStringValue()
				}
			}
			require.Equal(t, env.GetCluster(), cluster, "one cluster per record, on every resource")
			for _, ss := range rs.ScopeSpans {
				require.Equal(t, "tributary/test", ss.Scope.GetName())
				require.Equal(t, "1.2.3", ss.Scope.GetVersion())
				for _, s := range ss.Spans {
					items++
					out[hex.EncodeToString(s.SpanId)] = spanRecord{cluster: env.GetCluster(), key: string(m.Key), resourceCluster: cluster, service: service, span: s}
				}
			}
		}
		require.Equal(t, uint64(items), env.GetItems(), "items header = span count")
	}
	return out, len(msgs)
}

// requireIntact checks that every span the SDK exported is in Kafka,
// unchanged, under cluster.
func requireIntact(t *testing.T, got map[string]spanRecord, sent tracetest.SpanStubs, cluster, service string) {
	t.Helper()
	require.NotEmpty(t, sent)
	for _, want := range sent {
		r, ok := got[want.SpanContext.SpanID().String()]
		require.True(t, ok, "span %s of %s missing", want.SpanContext.SpanID(), service)
		require.Equal(t, cluster, r.cluster)
		require.Equal(t, service, r.service)
		s := r.span
		require.Equal(t, want.SpanContext.TraceID().String(), hex.EncodeToString(s.TraceId))
		if want.Parent.IsValid() {
			require.Equal(t, want.Parent.SpanID().String(), hex.EncodeToString(s.ParentSpanId))
		} else {
			require.Empty(t, s.ParentSpanId)
		}
		require.Equal(t, want.Name, s.Name)
		require.Equal(t, uint64(want.StartTime.UnixNano()), s.StartTimeUnixNano)
		require.Equal(t, uint64(want.EndTime.UnixNano()), s.EndTimeUnixNano)
		require.Equal(t, int32(want.SpanKind), int32(s.Kind))
		require.Equal(t, attrMap(want.Attributes), protoAttrMap(s.Attributes))
		require.Len(t, s.Events, len(want.Events))
		for i, e := range want.Events {
			require.Equal(t, e.Name, s.Events[i].Name)
			require.Equal(t, attrMap(e.Attributes), protoAttrMap(s.Events[i].Attributes))
		}
		require.Len(t, s.Links, len(want.Links))
		for i, l := range want.Links {
			require.Equal(t, l.SpanContext.SpanID().String(), hex.EncodeToString(s.Links[i].SpanId))
		}
		if want.Status.Code == codes.Error {
			require.Equal(t, tracepb.Status_STATUS_CODE_ERROR, s.Status.GetCode())
			require.Equal(t, want.Status.Description, s.Status.GetMessage())
		}
	}
}

func attrMap(kvs []attribute.KeyValue) map[string]string {
	m := map[string]string{}
	for _, kv := range kvs {
		m[string(kv.Key)] = kv.Value.Emit()
	}
	return m
}

func protoAttrMap(kvs []*commonpb.KeyValue) map[string]string {
	m := map[string]string{}
	for _, kv := range kvs {
		v := kv.Value
		var s string
		switch x := v.Value.(type) {
		case *commonpb.AnyValue_StringValue:
			s = x.StringValue
		case *commonpb.AnyValue_IntValue:
			s = fmt.Sprint(x.IntValue)
		case *commonpb.AnyValue_DoubleValue:
			s = fmt.Sprint(x.DoubleValue)
		case *commonpb.AnyValue_BoolValue:
			s = fmt.Sprint(x.BoolValue)
		case *commonpb.AnyValue_ArrayValue:
			var parts []string
			for _, e := range x.ArrayValue.Values {
				parts = append(parts, fmt.Sprintf("%q", e.GetStringValue()))
			}
			s = "[" + strings.Join(parts, ",") + "]"
		}
		m[kv.Key] = s
	}
	return m
}

// The real OpenTelemetry SDK, over OTLP/HTTP and OTLP/gRPC (gzip on both),
// sends spans of two clusters: one names its cluster in k8s.cluster.name,
// the other in the cluster header. Every span arrives in tributary.spans,
// one cluster per record, key = cluster, unchanged.
func TestOTLPFromSDKExporters(t *testing.T) {
	f := newFixture(t, nil)
	grpcAddr := f.serveOTLPGRPC(t)
	ctx := context.Background()

	httpExp, err := otlptracehttp.New(ctx, otlptracehttp.WithEndpointURL(f.srv.URL+"/v1/traces"), otlptracehttp.WithCompression(otlptracehttp.GzipCompression))
	require.NoError(t, err)
	grpcExp, err := otlptracegrpc.New(ctx, otlptracegrpc.WithEndpoint(grpcAddr), otlptracegrpc.WithInsecure(), otlptracegrpc.WithCompressor("gzip"),
		otlptracegrpc.WithHeaders(map[string]string{"X-Tributary-Cluster": "west"}))
	require.NoError(t, err)
	grpcExp2, err := otlptracegrpc.New(ctx, otlptracegrpc.WithEndpoint(grpcAddr), otlptracegrpc.WithInsecure())
	require.NoError(t, err)

	east, eastSent := sdkTracer(t, httpExp, attribute.String("service.name", "checkout"), attribute.String("k8s.cluster.name", "east"))
	west, westSent := sdkTracer(t, grpcExp, attribute.String("service.name", "payments"))
	east2, east2Sent := sdkTracer(t, grpcExp2, attribute.String("service.name", "cart"), attribute.String("k8s.cluster.name", "east"))
	makeSpans(east, "checkout", 5)
	makeSpans(west, "payments", 5)
	makeSpans(east2, "cart", 3)
	for _, tp := range []*sdktrace.TracerProvider{east, west, east2} {
		require.NoError(t, tp.ForceFlush(ctx))
	}

	got, records := readSpans(t, f.kafka.Addr)
	require.Len(t, got, 26)
	require.Equal(t, 3, records, "one record per export: each is one cluster")
	requireIntact(t, got, eastSent.GetSpans(), "east", "checkout")
	requireIntact(t, got, westSent.GetSpans(), "west", "payments")
	requireIntact(t, got, east2Sent.GetSpans(), "east", "cart")

	// The export that named its cluster was forwarded as received; the
	// others got the attribute added.
	require.Equal(t, 2.0, testutil.ToFloat64(f.gw.metrics.records.WithLabelValues("spans", "forwarded")))
	require.Equal(t, 1.0, testutil.ToFloat64(f.gw.metrics.records.WithLabelValues("spans", "reencoded")))
	require.Equal(t, 16.0, testutil.ToFloat64(f.gw.metrics.items.vec.WithLabelValues("spans", "east")))
	require.Equal(t, 10.0, testutil.ToFloat64(f.gw.metrics.items.vec.WithLabelValues("spans", "west")))
	require.Equal(t, 3.0, testutil.ToFloat64(f.gw.metrics.requests.WithLabelValues("spans", "200")))
}

// otlpRequestBody is an ExportTraceServiceRequest of one resource (cluster
// "" leaves k8s.cluster.name out) with the given spans.
func otlpRequestBody(t testing.TB, cluster string, spans ...*tracepb.Span) []byte {
	attrs := []*commonpb.KeyValue{{Key: "service.name", Value: &commonpb.AnyValue{Value: &commonpb.AnyValue_StringValue{StringValue: "svc"}}}}
	if cluster != "" {
		attrs = append(attrs, &commonpb.KeyValue{Key: otlp.ClusterAttribute, Value: &commonpb.AnyValue{Value: &commonpb.AnyValue_StringValue{StringValue: cluster}}})
	}
	b, err := proto.Marshal(&coltracepb.ExportTraceServiceRequest{ResourceSpans: []*tracepb.ResourceSpans{{
		Resource:   &resourcepb.Resource{Attributes: attrs},
		ScopeSpans: []*tracepb.ScopeSpans{{Scope: &commonpb.InstrumentationScope{Name: "tributary/test", Version: "1.2.3"}, Spans: spans}},
	}}})
	require.NoError(t, err)
	return b
}

func validSpan(n byte) *tracepb.Span {
	return &tracepb.Span{
		TraceId: bytes.Repeat([]byte{n}, 16), SpanId: bytes.Repeat([]byte{n}, 8), Name: "op",
		StartTimeUnixNano: uint64(time.Now().UnixNano()), EndTimeUnixNano: uint64(time.Now().UnixNano()),
	}
}

func gzipBytes(b []byte) []byte {
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	zw.Write(b)
	zw.Close()
	return buf.Bytes()
}

func decodeStatus(t *testing.T, resp *http.Response, body []byte) *status.Status {
	t.Helper()
	var st status.Status
	if strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
		require.NoError(t, protojson.Unmarshal(body, &st), string(body))
	} else {
		require.Equal(t, "application/x-protobuf", resp.Header.Get("Content-Type"))
		require.NoError(t, proto.Unmarshal(body, &st))
	}
	return &st
}

func TestOTLPHTTPRefusals(t *testing.T) {
	f := newFixture(t, func(c *Config) {
		c.MaxBodyBytes = 64 << 10
		c.Spans.MaxDecodedBytes = 256 << 10
		c.OTLPGRPC.MaxRecvMsgSize = 256 << 10
	})
	good := otlpRequestBody(t, "a", validSpan(1))
	badSpan := validSpan(2)
	badSpan.EndTimeUnixNano = badSpan.StartTimeUnixNano - 1
	for _, tc := range []struct {
		name    string
		body    []byte
		headers []string
		status  int
		reason  string
	}{
		{"garbage", []byte("this is not protobuf at all"), nil, 400, "malformed ExportTraceServiceRequest"},
		{"bad JSON", []byte(`{"resourceSpans":[{]`), []string{"Content-Type", "application/json"}, 400, "malformed OTLP/JSON"},
		{"no valid span", otlpRequestBody(t, "a", badSpan), nil, 400, "end_time_unix_nano"},
		{"no cluster", otlpRequestBody(t, "", validSpan(1)), nil, 400, "no k8s.cluster.name attribute"},
		{"content type", good, []string{"Content-Type", "text/plain"}, 415, "want application/x-protobuf or application/json"},
		{"encoding", good, []string{"Content-Encoding", "br"}, 415, "Content-Encoding"},
		{"bad gzip", good, []string{"Content-Encoding", "gzip"}, 400, "gzip"},
		{"gzip bomb", gzipBytes(make([]byte, 8<<20)), []string{"Content-Encoding", "gzip"}, 413, "exceeds the limit of 262144 bytes"},
		{"body too large", make([]byte, 100<<10), nil, 413, "exceeds the limit"},
		{"bad tenant", good, []string{"X-Scope-OrgID", "a/b"}, 400, "X-Scope-OrgID"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, body := f.postOTLP(t, tc.body, tc.headers...)
			require.Equal(t, tc.status, resp.StatusCode, string(body))
			st := decodeStatus(t, resp, body)
			require.Contains(t, st.Message, tc.reason)
			require.Equal(t, int32(grpcCode(tc.status)), st.Code)
		})
	}
	require.Empty(t, testenv.ReadTopic(t, f.kafka.Addr, "tributary.spans"), "nothing refused may reach Kafka")
	require.Equal(t, 2.0, testutil.ToFloat64(f.gw.metrics.refusedSpans.WithLabelValues("invalid_time"))+testutil.ToFloat64(f.gw.metrics.refusedSpans.WithLabelValues("no_cluster")))

	// Still serving: a valid request, then one with a span refused.
	resp, body := f.postOTLP(t, good)
	require.Equal(t, http.StatusOK, resp.StatusCode, string(body))
	var ok coltracepb.ExportTraceServiceResponse
	require.NoError(t, proto.Unmarshal(body, &ok))
	require.Nil(t, ok.PartialSuccess)

	resp, body = f.postOTLP(t, otlpRequestBody(t, "a", validSpan(3), badSpan, validSpan(4)))
	require.Equal(t, http.StatusOK, resp.StatusCode, "OTLP answers a partial success with 200")
	var partial coltracepb.ExportTraceServiceResponse
	require.NoError(t, proto.Unmarshal(body, &partial))
	require.Equal(t, int64(1), partial.GetPartialSuccess().GetRejectedSpans())
	require.Contains(t, partial.GetPartialSuccess().GetErrorMessage(), "span 1 (trace 0202")
	require.Contains(t, partial.GetPartialSuccess().GetErrorMessage(), "before start")

	got, _ := readSpans(t, f.kafka.Addr)
	require.Len(t, got, 3)
	for _, id := range []byte{1, 3, 4} {
		require.Contains(t, got, hex.EncodeToString(bytes.Repeat([]byte{id}, 8)))
	}
}

// OTLP/JSON as the spec writes it (hex IDs, enums as numbers, 64-bit
// integers as strings), plain and gzip; the answer is JSON too.
func TestOTLPHTTPJSON(t *testing.T) {
	f := newFixture(t, nil)
	body := `{"resourceSpans":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"web"}}]},
	  "scopeSpans":[{"scope":{"name":"tributary/test","version":"1.2.3"},"spans":[
	  {"traceId":"5B8EFFF798038103D269B633813FC60C","spanId":"EEE19B7EC3C1B174","name":"ok","kind":2,
	   "startTimeUnixNano":"1544712660000000000","endTimeUnixNano":"1544712661000000000"},
	  {"traceId":"5B8EFFF798038103D269B633813FC60C","spanId":"EEE19B7EC3C1B175","name":"backwards",
	   "startTimeUnixNano":"1544712661000000000","endTimeUnixNano":"1544712660000000000"}]}]}]}`
	for _, gz := range []bool{false, true} {
		b, headers := []byte(body), []string{"Content-Type", "application/json", "X-Tributary-Cluster", "c1"}
		if gz {
			b, headers = gzipBytes(b), append(headers, "Content-Encoding", "gzip")
		}
		resp, out := f.postOTLP(t, b, headers...)
		require.Equal(t, http.StatusOK, resp.StatusCode, string(out))
		require.Equal(t, "application/json", resp.Header.Get("Content-Type"))
		var r coltracepb.ExportTraceServiceResponse
		require.NoError(t, protojson.Unmarshal(out, &r), string(out))
		require.Equal(t, int64(1), r.GetPartialSuccess().GetRejectedSpans())
	}
	got, _ := readSpans(t, f.kafka.Addr)
	require.Len(t, got, 1)
	s := got["eee19b7ec3c1b174"]
	require.Equal(t, "c1", s.cluster)
	require.Equal(t, "5b8efff798038103d269b633813fc60c", hex.EncodeToString(s.span.TraceId))
	require.Equal(t, tracepb.Span_SPAN_KIND_SERVER, s.span.Kind)

	resp, out := f.postOTLP(t, []byte(`{"resourceSpans":`), "Content-Type", "application/json")
	require.Equal(t, http.StatusBadRequest, resp.StatusCode)
	require.Contains(t, decodeStatus(t, resp, out).Message, "malformed OTLP/JSON")
}

// rawCodec sends bytes as they are, to put malformed protobuf on the wire.
type rawCodec struct{}

func (rawCodec) Marshal(v any) ([]byte, error) { return *(v.(*[]byte)), nil }
func (rawCodec) Unmarshal(data []byte, v any) error {
	*(v.(*[]byte)) = append([]byte(nil), data...)
	return nil
}
func (rawCodec) Name() string { return "proto" }

func grpcClient(t *testing.T, addr string) (*grpc.ClientConn, coltracepb.TraceServiceClient) {
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	t.Cleanup(func() { conn.Close() })
	return conn, coltracepb.NewTraceServiceClient(conn)
}

func TestOTLPGRPCRefusals(t *testing.T) {
	f := newFixture(t, func(c *Config) { c.OTLPGRPC.MaxRecvMsgSize = 64 << 10 })
	conn, client := grpcClient(t, f.serveOTLPGRPC(t))
	ctx := context.Background()
	const method = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"

	garbage := []byte("this is not protobuf at all")
	var out []byte
	err := conn.Invoke(ctx, method, &garbage, &out, grpc.ForceCodec(rawCodec{}))
	require.Equal(t, grpccodes.InvalidArgument, grpcstatus.Code(err), "%v", err)
	require.Contains(t, grpcstatus.Convert(err).Message(), "malformed ExportTraceServiceRequest")

	badSpan := validSpan(2)
	badSpan.TraceId = badSpan.TraceId[:4]
	var none coltracepb.ExportTraceServiceRequest
	require.NoError(t, proto.Unmarshal(otlpRequestBody(t, "a", badSpan), &none))
	_, err = client.Export(ctx, &none)
	require.Equal(t, grpccodes.InvalidArgument, grpcstatus.Code(err))
	require.Contains(t, grpcstatus.Convert(err).Message(), "trace_id must be 16 bytes")

	var noCluster coltracepb.ExportTraceServiceRequest
	require.NoError(t, proto.Unmarshal(otlpRequestBody(t, "", validSpan(1)), &noCluster))
	_, err = client.Export(ctx, &noCluster)
	require.Equal(t, grpccodes.InvalidArgument, grpcstatus.Code(err))
	_, err = client.Export(metadata.AppendToOutgoingContext(ctx, "x-tributary-cluster", "from-metadata"), &noCluster)
	require.NoError(t, err, "the cluster header travels as gRPC metadata")

	big := validSpan(3)
	big.Name = strings.Repeat("n", 60<<10)
	big.Attributes = []*commonpb.KeyValue{{Key: "k", Value: &commonpb.AnyValue{Value: &commonpb.AnyValue_StringValue{StringValue: strings.Repeat("v", 10<<10)}}}}
	var tooBig coltracepb.ExportTraceServiceRequest
	require.NoError(t, proto.Unmarshal(otlpRequestBody(t, "a", big), &tooBig))
	_, err = client.Export(ctx, &tooBig)
	require.Equal(t, grpccodes.ResourceExhausted, grpcstatus.Code(err), "%v", err)
	require.Empty(t, grpcstatus.Convert(err).Details(), "no RetryInfo: not to be retried")

	_, err = client.Export(metadata.AppendToOutgoingContext(ctx, "x-scope-orgid", "a/b"), &noCluster)
	require.Equal(t, grpccodes.InvalidArgument, grpcstatus.Code(err))

	// Still serving; a request with an invalid span is a partial success.
	var mixed coltracepb.ExportTraceServiceRequest
	require.NoError(t, proto.Unmarshal(otlpRequestBody(t, "a", validSpan(4), badSpan), &mixed))
	resp, err := client.Export(ctx, &mixed)
	require.NoError(t, err)
	require.Equal(t, int64(1), resp.GetPartialSuccess().GetRejectedSpans())
	require.Contains(t, resp.GetPartialSuccess().GetErrorMessage(), "trace_id must be 16 bytes")

	got, _ := readSpans(t, f.kafka.Addr)
	require.Len(t, got, 2)
	require.Equal(t, "from-metadata", got[hex.EncodeToString(bytes.Repeat([]byte{1}, 8))].cluster)
	require.Equal(t, "a", got[hex.EncodeToString(bytes.Repeat([]byte{4}, 8))].cluster)
	require.Equal(t, 4.0, testutil.ToFloat64(f.gw.metrics.requests.WithLabelValues("spans", "400")), "gRPC refusals counted under their HTTP status")
}

// failSpansProduce makes the broker refuse the next n produce requests for
// tributary.spans, and counts them.
func failSpansProduce(k *testenv.KafkaCluster, n int32) *atomic.Int32 {
	var failed atomic.Int32
	k.ControlKey(int16(kmsg.Produce), func(req kmsg.Request) (kmsg.Response, error, bool) {
		k.KeepControl()
		if failed.Load() >= n {
			return nil, nil, false
		}
		resp := testenv.ProduceErrorResponse(req, "tributary.spans", int16(sarama.ErrInvalidRecord))
		if resp == nil {
			return nil, nil, false
		}
		failed.Add(1)
		return resp, nil, true
	})
	return &failed
}

// Kafka refusing writes: 503 with Retry-After and UNAVAILABLE with
// RetryInfo; the SDK exporters retry on their own and get through once
// Kafka is back, losing nothing.
func TestOTLPKafkaDownSDKRetries(t *testing.T) {
	t.Parallel()
	f := newFixture(t, func(c *Config) { c.RetryAfter = time.Second })
	grpcAddr := f.serveOTLPGRPC(t)
	f.waitReady(t, http.StatusOK, 10*time.Second)
	ctx := context.Background()

	failed := failSpansProduce(f.kafka, 1)
	resp, body := f.postOTLP(t, otlpRequestBody(t, "a", validSpan(1)))
	require.Equal(t, http.StatusServiceUnavailable, resp.StatusCode, string(body))
	require.Equal(t, "1", resp.Header.Get("Retry-After"))
	require.Contains(t, decodeStatus(t, resp, body).Message, "kafka unavailable")

	failed = failSpansProduce(f.kafka, 1)
	_, client := grpcClient(t, grpcAddr)
	var req coltracepb.ExportTraceServiceRequest
	require.NoError(t, proto.Unmarshal(otlpRequestBody(t, "a", validSpan(1)), &req))
	_, err := client.Export(ctx, &req)
	require.Equal(t, grpccodes.Unavailable, grpcstatus.Code(err), "%v", err)
	var delay time.Duration
	for _, d := range grpcstatus.Convert(err).Details() {
		if ri, ok := d.(*errdetails.RetryInfo); ok {
			delay = ri.RetryDelay.AsDuration()
		}
	}
	require.Equal(t, time.Second, delay, "RetryInfo carries -retry-after")
	require.Equal(t, int32(1), failed.Load())
	require.Empty(t, testenv.ReadTopic(t, f.kafka.Addr, "tributary.spans"))

	// The SDK exporters, with their retry on (quick intervals for the test).
	failed = failSpansProduce(f.kafka, 4)
	httpExp, err := otlptracehttp.New(ctx, otlptracehttp.WithEndpointURL(f.srv.URL+"/v1/traces"),
		otlptracehttp.WithRetry(otlptracehttp.RetryConfig{Enabled: true, InitialInterval: 100 * time.Millisecond, MaxInterval: time.Second, MaxElapsedTime: 30 * time.Second}))
	require.NoError(t, err)
	grpcExp, err := otlptracegrpc.New(ctx, otlptracegrpc.WithEndpoint(grpcAddr), otlptracegrpc.WithInsecure(),
		otlptracegrpc.WithRetry(otlptracegrpc.RetryConfig{Enabled: true, InitialInterval: 100 * time.Millisecond, MaxInterval: time.Second, MaxElapsedTime: 30 * time.Second}))
	require.NoError(t, err)
	viaHTTP, httpSent := sdkTracer(t, httpExp, attribute.String("service.name", "checkout"), attribute.String("k8s.cluster.name", "east"))
	viaGRPC, grpcSent := sdkTracer(t, grpcExp, attribute.String("service.name", "payments"), attribute.String("k8s.cluster.name", "west"))
	makeSpans(viaHTTP, "checkout", 3)
	makeSpans(viaGRPC, "payments", 3)
	flushCtx, cancel := context.WithTimeout(ctx, 40*time.Second)
	defer cancel()
	errs := make(chan error, 2)
	for _, tp := range []*sdktrace.TracerProvider{viaHTTP, viaGRPC} {
		go func() { errs <- tp.ForceFlush(flushCtx) }()
	}
	require.NoError(t, errors.Join(<-errs, <-errs))
	require.Equal(t, int32(4), failed.Load(), "the fault met the exports")

	got, _ := readSpans(t, f.kafka.Addr)
	requireIntact(t, got, httpSent.GetSpans(), "east", "checkout")
	requireIntact(t, got, grpcSent.GetSpans(), "west", "payments")
	require.Len(t, got, 12)
	require.GreaterOrEqual(t, testutil.ToFloat64(f.gw.metrics.requests.WithLabelValues("spans", "503")), 6.0)
}

// OTLP's gRPC shutdown waits for an export held by Kafka, then answers it.
func TestOTLPGRPCGracefulStopDrains(t *testing.T) {
	t.Parallel()
	f := newFixture(t, nil)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	srv := f.gw.GRPCServer()
	served := make(chan struct{})
	go func() { srv.Serve(ln); close(served) }()
	_, client := grpcClient(t, ln.Addr().String())
	var req coltracepb.ExportTraceServiceRequest
	require.NoError(t, proto.Unmarshal(otlpRequestBody(t, "a", validSpan(1)), &req))
	_, err = client.Export(context.Background(), &req) // connected
	require.NoError(t, err)

	// Kafka answers the next produce a second late.
	f.kafka.ControlKey(int16(kmsg.Produce), func(kmsg.Request) (kmsg.Response, error, bool) {
		time.Sleep(time.Second)
		return nil, nil, false
	})
	answered := make(chan error, 1)
	go func() { _, err := client.Export(context.Background(), &req); answered <- err }()
	testenv.Eventually(t, 10*time.Second, func() error {
		if n := f.gw.inflight.Load(); n == 0 {
			return errors.New("export not in flight yet")
		}
		return nil
	})
	stopped := make(chan struct{})
	go func() { srv.GracefulStop(); close(stopped) }()
	select {
	case <-stopped:
		t.Fatal("GracefulStop returned with an export in flight")
	case <-time.After(300 * time.Millisecond):
	}
	require.NoError(t, <-answered, "the in-flight export is answered, not cut")
	<-stopped
	<-served
	_, records := readSpans(t, f.kafka.Addr)
	require.Equal(t, 2, records)
}

// OTLP shares the in-flight budget: a request whose decompressed body
// does not fit, or a gRPC export arriving while the budget could not take a
// message of -otlp.grpc.max-recv-msg-size, gets the overload answer with
// its retry hint, and nothing is written.
func TestOTLPInflightBudget(t *testing.T) {
	f := newFixture(t, func(c *Config) {
		c.MaxBodyBytes = 64 << 10
		c.MaxInflightBytes = 64 << 10
		c.OTLPGRPC.MaxRecvMsgSize = 32 << 10
	})
	_, client := grpcClient(t, f.serveOTLPGRPC(t))
	big := validSpan(1)
	big.Name = strings.Repeat("n", 40<<10)
	big.Attributes = []*commonpb.KeyValue{{Key: "k", Value: &commonpb.AnyValue{Value: &commonpb.AnyValue_StringValue{StringValue: strings.Repeat("v", 40<<10)}}}}
	body := otlpRequestBody(t, "a", big)

	// Decoded, it needs more than the whole budget: it could never pass,
	// so 413 without Retry-After, not a 503 retried in vain.
	resp, out := f.postOTLP(t, gzipBytes(body), "Content-Encoding", "gzip")
	require.Equal(t, http.StatusRequestEntityTooLarge, resp.StatusCode, string(out))
	require.Empty(t, resp.Header.Get("Retry-After"))
	require.Contains(t, decodeStatus(t, resp, out).Message, "whole in-flight budget")

	require.Zero(t, f.gw.inflight.Load(), "every reservation given back")
	require.Empty(t, testenv.ReadTopic(t, f.kafka.Addr, "tributary.spans"))

	// An HTTP export holds 40 KiB of the budget while Kafka takes a
	// second; a small gRPC export meanwhile is refused before its message
	// is read (40 KiB + 32 KiB > 64 KiB), answered once the budget is back.
	f.kafka.ControlKey(int16(kmsg.Produce), func(kmsg.Request) (kmsg.Response, error, bool) {
		time.Sleep(time.Second)
		return nil, nil, false
	})
	held := validSpan(2)
	held.Name = strings.Repeat("n", 40<<10)
	done := make(chan int, 1)
	go func() { resp, _ := f.postOTLP(t, otlpRequestBody(t, "a", held)); done <- resp.StatusCode }()
	testenv.Eventually(t, 5*time.Second, func() error {
		if n := f.gw.inflight.Load(); n < 40<<10 {
			return fmt.Errorf("%d bytes in flight", n)
		}
		return nil
	})
	var small coltracepb.ExportTraceServiceRequest
	require.NoError(t, proto.Unmarshal(otlpRequestBody(t, "a", validSpan(3)), &small))
	_, err := client.Export(context.Background(), &small)
	require.Equal(t, grpccodes.Unavailable, grpcstatus.Code(err), "%v", err)
	require.Len(t, grpcstatus.Convert(err).Details(), 1, "with RetryInfo")
	require.Equal(t, http.StatusOK, <-done)
	_, err = client.Export(context.Background(), &small)
	require.NoError(t, err)
	got, _ := readSpans(t, f.kafka.Addr)
	require.Len(t, got, 2)
}

// The gRPC health service says what /-/ready says.
func TestOTLPGRPCHealth(t *testing.T) {
	t.Parallel()
	f := newFixture(t, nil)
	conn, _ := grpcClient(t, f.serveOTLPGRPC(t))
	hc := healthpb.NewHealthClient(conn)
	waitHealth := func(want healthpb.HealthCheckResponse_ServingStatus, within time.Duration) {
		t.Helper()
		testenv.Eventually(t, within, func() error {
			for _, svc := range []string{"", "opentelemetry.proto.collector.trace.v1.TraceService"} {
				resp, err := hc.Check(context.Background(), &healthpb.HealthCheckRequest{Service: svc})
				if err != nil {
					return err
				}
				if resp.Status != want {
					return fmt.Errorf("%q is %s, want %s", svc, resp.Status, want)
				}
			}
			return nil
		})
	}
	waitHealth(healthpb.HealthCheckResponse_SERVING, 10*time.Second)
	thaw := freeze(f.kafka, kmsg.Metadata)
	waitHealth(healthpb.HealthCheckResponse_NOT_SERVING, 5*time.Second)
	thaw()
	waitHealth(healthpb.HealthCheckResponse_SERVING, 20*time.Second)
}

// One request mixing clusters becomes one record per cluster, each keyed
// by its cluster, with the tenant in the envelope.
func TestOTLPSplitsClusters(t *testing.T) {
	f := newFixture(t, nil)
	mixed := &coltracepb.ExportTraceServiceRequest{}
	for _, body := range [][]byte{otlpRequestBody(t, "a", validSpan(1)), otlpRequestBody(t, "", validSpan(2), validSpan(3)), otlpRequestBody(t, "a", validSpan(4))} {
		var part coltracepb.ExportTraceServiceRequest
		require.NoError(t, proto.Unmarshal(body, &part))
		mixed.ResourceSpans = append(mixed.ResourceSpans, part.ResourceSpans...)
	}
	body, err := proto.Marshal(mixed)
	require.NoError(t, err)
	resp, out := f.postOTLP(t, body, "X-Tributary-Cluster", "b", "X-Scope-OrgID", "team-1")
	require.Equal(t, http.StatusOK, resp.StatusCode, string(out))

	msgs := testenv.ReadTopic(t, f.kafka.Addr, "tributary.spans")
	require.Len(t, msgs, 2)
	items := map[string]string{}
	for _, m := range msgs {
		env, err := record.Parse(m.Headers)
		require.NoError(t, err)
		require.Equal(t, "team-1", env.GetTenant())
		items[string(m.Key)] = fmt.Sprint(env.GetItems())
	}
	require.Equal(t, map[string]string{"a": "2", "b": "2"}, items)
	got, _ := readSpans(t, f.kafka.Addr)
	for id, cluster := range map[byte]string{1: "a", 2: "b", 3: "b", 4: "a"} {
		require.Equal(t, cluster, got[hex.EncodeToString(bytes.Repeat([]byte{id}, 8))].cluster)
	}
}
