package elasticsearch

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"hash/fnv"
	"math"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/golang/snappy"
	"github.com/stretchr/testify/require"
	tracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	resourcepb "go.opentelemetry.io/proto/otlp/resource/v1"
	otlptrace "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/proto"

	"github.com/tributary-io/tributary/internal/testenv"
	"github.com/tributary-io/tributary/pkg/ingester"
	recordpb "github.com/tributary-io/tributary/proto/record/v1"
)

func jaegerTestConfig(addresses string) JaegerConfig {
	var c JaegerConfig
	c.RegisterFlags("jaeger.", flag.NewFlagSet("test", flag.PanicOnError))
	c.Addresses = addresses
	c.Timeout = 10 * time.Second
	return c
}

func newJaegerSink(t testing.TB, cfg JaegerConfig) *JaegerSink {
	t.Helper()
	s, err := NewJaeger(context.Background(), cfg, testLog(t))
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, s.Close(context.Background())) })
	return s
}

func str(k, v string) *commonpb.KeyValue {
	return &commonpb.KeyValue{Key: k, Value: &commonpb.AnyValue{Value: &commonpb.AnyValue_StringValue{StringValue: v}}}
}

func anyKV(k string, v *commonpb.AnyValue) *commonpb.KeyValue {
	return &commonpb.KeyValue{Key: k, Value: v}
}

func spanRecord(t testing.TB, offset int64, cluster string, req *tracepb.ExportTraceServiceRequest) ingester.Record {
	t.Helper()
	raw, err := proto.Marshal(req)
	require.NoError(t, err)
	return ingester.Record{
		Topic: "tributary.spans", Partition: 1, Offset: offset, Key: []byte(cluster),
		Value:    snappy.Encode(nil, raw),
		Envelope: &recordpb.Envelope{Cluster: cluster, Signal: recordpb.Signal_SIGNAL_SPANS},
	}
}

func hexID(s string) []byte {
	b := make([]byte, len(s)/2)
	for i := range b {
		v, _ := strconv.ParseUint(s[2*i:2*i+2], 16, 8)
		b[i] = byte(v)
	}
	return b
}

var (
	testTraceID = "0af7651916cd43dd8448eb211c80319c"
	testRootID  = "b7ad6b7169203331"
	testChildID = "00f067aa0ba902b7"
	otherTrace  = "4bf92f3577b34da6a3ce929d0e0e4736"
	t0          = time.Date(2026, 11, 28, 23, 59, 59, 999_999_000, time.UTC) // the child starts a day later
)

// testTrace is one resource (service "checkout" of no cluster attribute)
// with a root server span and a client child that covers every rule of
// the conversion.
func testTrace() *tracepb.ExportTraceServiceRequest {
	root := &otlptrace.Span{
		TraceId: hexID(testTraceID), SpanId: hexID(testRootID), Name: "GET /cart", Flags: 0x101,
		Kind:              otlptrace.Span_SPAN_KIND_SERVER,
		StartTimeUnixNano: uint64(t0.UnixNano()), EndTimeUnixNano: uint64(t0.Add(1500 * time.Microsecond).UnixNano()),
		Attributes: []*commonpb.KeyValue{
			str("http.method", "GET"),
			anyKV("http.status_code", &commonpb.AnyValue{Value: &commonpb.AnyValue_IntValue{IntValue: 9007199254740993}}),
			anyKV("retry", &commonpb.AnyValue{Value: &commonpb.AnyValue_BoolValue{BoolValue: false}}),
			anyKV("ratio", &commonpb.AnyValue{Value: &commonpb.AnyValue_DoubleValue{DoubleValue: 0.25}}),
			anyKV("nan", &commonpb.AnyValue{Value: &commonpb.AnyValue_DoubleValue{DoubleValue: math.NaN()}}),
			anyKV("blob", &commonpb.AnyValue{Value: &commonpb.AnyValue_BytesValue{BytesValue: []byte{0xde, 0xad}}}),
			anyKV("list", &commonpb.AnyValue{Value: &commonpb.AnyValue_ArrayValue{ArrayValue: &commonpb.ArrayValue{Values: []*commonpb.AnyValue{
				{Value: &commonpb.AnyValue_StringValue{StringValue: "a<b"}}, {Value: &commonpb.AnyValue_IntValue{IntValue: 2}},
			}}}}),
			anyKV("empty", &commonpb.AnyValue{}),
		},
		Status: &otlptrace.Status{Code: otlptrace.Status_STATUS_CODE_OK},
		Events: []*otlptrace.Span_Event{
			{TimeUnixNano: uint64(t0.Add(time.Millisecond).UnixNano()), Name: "cache miss", Attributes: []*commonpb.KeyValue{str("key", "cart:42")}},
			{TimeUnixNano: uint64(t0.Add(time.Millisecond).UnixNano()), Name: "ignored", Attributes: []*commonpb.KeyValue{str("event", "named by attribute")}},
		},
	}
	childStart := t0.Add(2 * time.Microsecond)
	child := &otlptrace.Span{
		TraceId: hexID(testTraceID), SpanId: hexID(testChildID), ParentSpanId: hexID(testRootID), Name: "SELECT carts",
		Kind:              otlptrace.Span_SPAN_KIND_CLIENT,
		TraceState:        "congo=t61rcWkgMzE",
		StartTimeUnixNano: uint64(childStart.UnixNano()), EndTimeUnixNano: uint64(childStart.Add(700 * time.Microsecond).UnixNano()),
		Status: &otlptrace.Status{Code: otlptrace.Status_STATUS_CODE_ERROR, Message: "deadlock"},
		Links: []*otlptrace.Span_Link{
			{TraceId: hexID(otherTrace), SpanId: hexID("00000000000000a1")},
			{TraceId: hexID(otherTrace), SpanId: hexID("00000000000000a2"), Attributes: []*commonpb.KeyValue{str("opentracing.ref_type", "child_of")}},
			{TraceId: []byte{1, 2}, SpanId: hexID("00000000000000a3")}, // unreadable: dropped
		},
	}
	return &tracepb.ExportTraceServiceRequest{ResourceSpans: []*otlptrace.ResourceSpans{{
		Resource: &resourcepb.Resource{Attributes: []*commonpb.KeyValue{str("service.name", "checkout"), str("host.name", "node-1")}},
		ScopeSpans: []*otlptrace.ScopeSpans{{
			Scope: &commonpb.InstrumentationScope{Name: "shop/http", Version: "1.2.0"},
			Spans: []*otlptrace.Span{root},
		}, {
			Scope: &commonpb.InstrumentationScope{Name: "shop/db"},
			Spans: []*otlptrace.Span{child},
		}},
	}}}
}

// The documents Jaeger's schema asks for, written out by hand.
const (
	wantProcess = `{"serviceName":"checkout","tags":[
		{"key":"host.name","type":"string","value":"node-1"},
		{"key":"k8s.cluster.name","type":"string","value":"eu-1"}]}`
	wantRoot = `{
		"traceID":"0af7651916cd43dd8448eb211c80319c","spanID":"b7ad6b7169203331","flags":257,
		"operationName":"GET /cart","references":[],
		"startTime":1795910399999999,"startTimeMillis":1795910399999,"duration":1500,
		"tags":[
			{"key":"otel.scope.name","type":"string","value":"shop/http"},
			{"key":"otel.scope.version","type":"string","value":"1.2.0"},
			{"key":"http.method","type":"string","value":"GET"},
			{"key":"http.status_code","type":"int64","value":"9007199254740993"},
			{"key":"retry","type":"bool","value":"false"},
			{"key":"ratio","type":"float64","value":"0.25"},
			{"key":"nan","type":"float64","value":"NaN"},
			{"key":"blob","type":"binary","value":"dead"},
			{"key":"list","type":"string","value":"[\"a<b\",2]"},
			{"key":"empty","type":"string","value":""},
			{"key":"span.kind","type":"string","value":"server"},
			{"key":"otel.status_code","type":"string","value":"OK"}],
		"logs":[
			{"timestamp":1795910400000999,"fields":[{"key":"event","type":"string","value":"cache miss"},{"key":"key","type":"string","value":"cart:42"}]},
			{"timestamp":1795910400000999,"fields":[{"key":"event","type":"string","value":"named by attribute"}]}],
		"process":` + wantProcess + `}`
	wantChild = `{
		"traceID":"0af7651916cd43dd8448eb211c80319c","spanID":"00f067aa0ba902b7","parentSpanID":"b7ad6b7169203331",
		"operationName":"SELECT carts",
		"references":[
			{"refType":"CHILD_OF","traceID":"0af7651916cd43dd8448eb211c80319c","spanID":"b7ad6b7169203331"},
			{"refType":"FOLLOWS_FROM","traceID":"4bf92f3577b34da6a3ce929d0e0e4736","spanID":"00000000000000a1"},
			{"refType":"CHILD_OF","traceID":"4bf92f3577b34da6a3ce929d0e0e4736","spanID":"00000000000000a2"}],
		"startTime":1795910400000001,"startTimeMillis":1795910400000,"duration":700,
		"tags":[
			{"key":"otel.scope.name","type":"string","value":"shop/db"},
			{"key":"span.kind","type":"string","value":"client"},
			{"key":"error","type":"bool","value":"true"},
			{"key":"otel.status_description","type":"string","value":"deadlock"},
			{"key":"w3c.tracestate","type":"string","value":"congo=t61rcWkgMzE"}],
		"logs":[],
		"process":` + wantProcess + `}`
)

func jsonValue(t *testing.T, s string) any {
	t.Helper()
	var v any
	require.NoError(t, json.Unmarshal([]byte(s), &v), s)
	return v
}

func fnvHex(s string) string {
	h := fnv.New64a()
	h.Write([]byte(s))
	return strconv.FormatUint(h.Sum64(), 16)
}

// sentOps is every operation the fake received, in order (the bulk
// indexer's workers may split one Write into several requests).
func sentOps(f *fakeES) []bulkOp {
	var ops []bulkOp
	for _, b := range f.sent() {
		ops = append(ops, b...)
	}
	return ops
}

func TestJaegerDocuments(t *testing.T) {
	f, srv := newFakeES(t)
	cfg := jaegerTestConfig(srv.URL)
	cfg.IndexPrefix = "prod"
	s := newJaegerSink(t, cfg)
	require.NoError(t, s.Write(context.Background(), []ingester.Record{spanRecord(t, 7, "eu-1", testTrace())}))

	byIndex := map[string][]bulkOp{}
	for _, op := range sentOps(f) {
		require.Equal(t, "index", op.Action)
		byIndex[op.Index] = append(byIndex[op.Index], op)
	}
	// The root started on the 28th (UTC), the child 2 µs later on the 29th.
	require.Len(t, byIndex["prod-jaeger-span-2026-11-28"], 1)
	require.Len(t, byIndex["prod-jaeger-span-2026-11-29"], 1)
	root, child := byIndex["prod-jaeger-span-2026-11-28"][0], byIndex["prod-jaeger-span-2026-11-29"][0]
	rootJSON, _ := json.Marshal(root.Doc)
	childJSON, _ := json.Marshal(child.Doc)
	require.JSONEq(t, wantRoot, string(rootJSON))
	require.JSONEq(t, wantChild, string(childJSON))
	require.Regexp(t, "^"+testTraceID+"_"+testRootID+"_[0-9a-f]{16}$", root.ID)
	require.Regexp(t, "^"+testTraceID+"_"+testChildID+"_[0-9a-f]{16}$", child.ID)

	// One service document per (day, service, operation), Jaeger's id.
	require.ElementsMatch(t, []bulkOp{
		{Action: "index", Index: "prod-jaeger-service-2026-11-28", ID: fnvHex("checkoutGET /cart"),
			Doc: map[string]any{"serviceName": "checkout", "operationName": "GET /cart"}},
		{Action: "index", Index: "prod-jaeger-service-2026-11-29", ID: fnvHex("checkoutSELECT carts"),
			Doc: map[string]any{"serviceName": "checkout", "operationName": "SELECT carts"}},
	}, append(byIndex["prod-jaeger-service-2026-11-28"], byIndex["prod-jaeger-service-2026-11-29"]...))
	require.Len(t, byIndex, 4)
}

func TestJaegerProcess(t *testing.T) {
	for _, tc := range []struct {
		name    string
		attrs   []*commonpb.KeyValue
		cluster string
		want    string
	}{
		{"no attributes", nil, "", `{"serviceName":"OTLPResourceNoServiceName","tags":[]}`},
		{"empty service name", []*commonpb.KeyValue{str("service.name", "")}, "", `{"serviceName":"OTLPResourceNoServiceName","tags":[]}`},
		{"cluster attribute kept, not repeated", []*commonpb.KeyValue{str("k8s.cluster.name", "from-sender"), str("service.name", "a")}, "eu-1",
			`{"serviceName":"a","tags":[{"key":"k8s.cluster.name","type":"string","value":"from-sender"}]}`},
		{"cluster from the record", []*commonpb.KeyValue{str("service.name", "a")}, "eu-1",
			`{"serviceName":"a","tags":[{"key":"k8s.cluster.name","type":"string","value":"eu-1"}]}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newJaegerEncoder(jaegerIndices(""), 1<<20)
			_, body, err := e.process(&otlptrace.ResourceSpans{Resource: &resourcepb.Resource{Attributes: tc.attrs}}, tc.cluster)
			require.NoError(t, err)
			require.JSONEq(t, tc.want, string(body))
		})
	}
}

func TestJaegerIndexPrefix(t *testing.T) {
	require.Equal(t, jaegerIndexNames{"jaeger-span-", "jaeger-service-"}, jaegerIndices(""))
	require.Equal(t, jaegerIndexNames{"prod-jaeger-span-", "prod-jaeger-service-"}, jaegerIndices("prod"))
	require.Equal(t, jaegerIndexNames{"prod-jaeger-span-", "prod-jaeger-service-"}, jaegerIndices("prod-"))

	c := jaegerTestConfig("http://es:9200")
	require.NoError(t, c.Validate())
	c.IndexPrefix = "Prod"
	require.ErrorContains(t, c.Validate(), "jaeger.index-prefix")
	c.IndexPrefix = "a,b"
	require.ErrorContains(t, c.Validate(), "jaeger.index-prefix")
	c = jaegerTestConfig("es:9200")
	require.ErrorContains(t, c.Validate(), "jaeger.addresses")
}

// Service documents are sent once per process, and only remembered once
// indexed: a failed write sends them again.
func TestJaegerServiceDocumentsOnce(t *testing.T) {
	f, srv := newFakeES(t)
	fail := true
	f.respond = func(ops []bulkOp) (int, string) {
		if fail {
			return http.StatusServiceUnavailable, `{"error":"down"}`
		}
		return http.StatusOK, bulkResponse(ops, func(bulkOp) string { return "" })
	}
	s := newJaegerSink(t, jaegerTestConfig(srv.URL))
	ctx := context.Background()
	rec := spanRecord(t, 1, "eu-1", testTrace())
	countServices := func(batch []bulkOp) int {
		n := 0
		for _, op := range batch {
			if strings.HasPrefix(op.Index, "jaeger-service-") {
				n++
			}
		}
		return n
	}

	write := func(recs ...ingester.Record) ([]bulkOp, error) {
		before := len(sentOps(f))
		err := s.Write(ctx, recs)
		return sentOps(f)[before:], err
	}

	sent, err := write(rec)
	require.Error(t, err)
	require.False(t, ingester.IsPermanent(err))
	require.Positive(t, countServices(sent), "failed write (the client itself retries a 503 a few times)")
	f.mu.Lock()
	fail = false
	f.mu.Unlock()
	sent, err = write(rec)
	require.NoError(t, err)
	require.Equal(t, 2, countServices(sent), "the retry sends the service documents again")
	first := sent
	sent, err = write(rec, spanRecord(t, 2, "eu-1", testTrace()))
	require.NoError(t, err)
	require.Equal(t, 0, countServices(sent), "written once per process")
	require.Len(t, sent, 4, "the spans are always written (overwritten on replay)")
	ids := func(ops []bulkOp) map[string]bool {
		m := map[string]bool{}
		for _, op := range ops {
			if strings.HasPrefix(op.Index, "jaeger-span-") {
				m[op.ID] = true
			}
		}
		return m
	}
	require.Equal(t, ids(first), ids(sent), "a replayed span overwrites: same _id")
	require.Len(t, ids(sent), 2)
}

func TestJaegerUndecodableRecordIsPermanent(t *testing.T) {
	withSpan := func(edit func(sp *otlptrace.Span)) *tracepb.ExportTraceServiceRequest {
		req := testTrace()
		edit(req.ResourceSpans[0].ScopeSpans[1].Spans[0])
		return req
	}
	for _, tc := range []struct {
		name string
		rec  func(t *testing.T) ingester.Record
		msg  string
	}{
		{"not snappy", func(t *testing.T) ingester.Record {
			r := spanRecord(t, 6, "eu-1", testTrace())
			r.Value = []byte("\xff\xff\xff\xff\xff plain")
			return r
		}, "snappy"},
		{"not a trace request", func(t *testing.T) ingester.Record {
			r := spanRecord(t, 6, "eu-1", testTrace())
			r.Value = snappy.Encode(nil, []byte("\x0a\xff\xff"))
			return r
		}, "trace export request"},
		{"short trace ID", func(t *testing.T) ingester.Record {
			return spanRecord(t, 6, "eu-1", withSpan(func(sp *otlptrace.Span) { sp.TraceId = sp.TraceId[:8] }))
		}, "trace ID"},
		{"zero span ID", func(t *testing.T) ingester.Record {
			return spanRecord(t, 6, "eu-1", withSpan(func(sp *otlptrace.Span) { sp.SpanId = make([]byte, 8) }))
		}, "span ID"},
		{"long parent ID", func(t *testing.T) ingester.Record {
			return spanRecord(t, 6, "eu-1", withSpan(func(sp *otlptrace.Span) { sp.ParentSpanId = make([]byte, 9) }))
		}, "parent span ID"},
		{"too large", func(t *testing.T) ingester.Record {
			r := spanRecord(t, 6, "eu-1", testTrace())
			r.Value = snappy.Encode(nil, make([]byte, 2<<20))
			return r
		}, "over the limit"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, srv := newFakeES(t)
			cfg := jaegerTestConfig(srv.URL)
			cfg.MaxDecodedBytes = 1 << 20
			s := newJaegerSink(t, cfg)
			err := s.Write(context.Background(), []ingester.Record{spanRecord(t, 5, "eu-1", testTrace()), tc.rec(t)})
			require.True(t, ingester.IsPermanent(err), "want permanent: %v", err)
			require.ErrorContains(t, err, "record tributary.spans/1/6")
			require.ErrorContains(t, err, tc.msg)
			require.Empty(t, f.sent(), "nothing is sent for a batch that cannot be decoded")
		})
	}
}

// A document the server refuses is a permanent error naming its record
// (dead-lettered by the consumer); a 429 is retried.
func TestJaegerRefusedDocument(t *testing.T) {
	f, srv := newFakeES(t)
	f.respond = func(ops []bulkOp) (int, string) {
		return http.StatusOK, bulkResponse(ops, func(op bulkOp) string {
			if op.Doc["spanID"] == testChildID {
				return errMapperParsing
			}
			return ""
		})
	}
	s := newJaegerSink(t, jaegerTestConfig(srv.URL))
	err := s.Write(context.Background(), []ingester.Record{spanRecord(t, 9, "eu-1", testTrace())})
	require.True(t, ingester.IsPermanent(err), "want permanent: %v", err)
	require.ErrorContains(t, err, "record tributary.spans/1/9 entry 1")

	f.mu.Lock()
	f.respond = func(ops []bulkOp) (int, string) {
		return http.StatusOK, bulkResponse(ops, func(bulkOp) string { return errRejected })
	}
	f.mu.Unlock()
	err = s.Write(context.Background(), []ingester.Record{spanRecord(t, 10, "eu-1", testTrace())})
	require.Error(t, err)
	require.False(t, ingester.IsPermanent(err))
}

func TestJaegerTemplates(t *testing.T) {
	t.Run("installed at start-up", func(t *testing.T) {
		f, srv := newFakeES(t)
		cfg := jaegerTestConfig(srv.URL)
		cfg.IndexPrefix = "prod"
		newJaegerSink(t, cfg)
		require.Len(t, f.templates, 2)
		var span, service map[string]any
		require.NoError(t, json.Unmarshal(f.templates["prod-jaeger-span"], &span))
		require.NoError(t, json.Unmarshal(f.templates["prod-jaeger-service"], &service))
		require.Equal(t, []any{"prod-jaeger-span-*"}, span["index_patterns"])
		require.Equal(t, []any{"prod-jaeger-service-*"}, service["index_patterns"])
		props := func(tmpl map[string]any) map[string]any {
			return tmpl["template"].(map[string]any)["mappings"].(map[string]any)["properties"].(map[string]any)
		}
		keyword := map[string]any{"type": "keyword", "ignore_above": 256.0}
		sp := props(span)
		for _, k := range []string{"traceID", "spanID", "parentSpanID", "operationName"} {
			require.Equal(t, keyword, sp[k], k)
		}
		require.Equal(t, map[string]any{"type": "long"}, sp["startTime"])
		require.Equal(t, map[string]any{"type": "long"}, sp["duration"])
		require.Equal(t, map[string]any{"type": "date", "format": "epoch_millis"}, sp["startTimeMillis"])
		require.Equal(t, "nested", sp["tags"].(map[string]any)["type"])
		require.Equal(t, "nested", sp["references"].(map[string]any)["type"])
		require.Equal(t, "nested", sp["logs"].(map[string]any)["type"])
		proc := sp["process"].(map[string]any)["properties"].(map[string]any)
		require.Equal(t, keyword, proc["serviceName"])
		require.Equal(t, "nested", proc["tags"].(map[string]any)["type"])
		require.Equal(t, map[string]any{"serviceName": keyword, "operationName": keyword}, props(service))
	})
	t.Run("not when turned off", func(t *testing.T) {
		f, srv := newFakeES(t)
		f.templateStatus = http.StatusBadRequest
		cfg := jaegerTestConfig(srv.URL)
		cfg.CreateTemplates = false
		s := newJaegerSink(t, cfg)
		require.NoError(t, s.Write(context.Background(), []ingester.Record{spanRecord(t, 1, "eu-1", testTrace())}))
		require.Empty(t, f.templates)
	})
	t.Run("refused names the flag", func(t *testing.T) {
		f, srv := newFakeES(t)
		f.templateStatus = http.StatusBadRequest
		_, err := NewJaeger(context.Background(), jaegerTestConfig(srv.URL), testLog(t))
		require.ErrorContains(t, err, "install index template jaeger-span: 400")
		require.ErrorContains(t, err, "-jaeger.create-templates=false")
	})
}

// FuzzJaegerEncode feeds arbitrary record values (Kafka is written by
// gateways, but a record is still outside input) to the span encoder: it
// returns documents of valid JSON or an error, never panics.
func FuzzJaegerEncode(f *testing.F) {
	raw, err := proto.Marshal(testTrace())
	if err != nil {
		f.Fatal(err)
	}
	f.Add(raw)
	f.Add([]byte{})
	f.Add([]byte("\x0a\x02\x12\x00"))
	f.Fuzz(func(t *testing.T, raw []byte) {
		e := newJaegerEncoder(jaegerIndices(""), 1<<20)
		rec := ingester.Record{Topic: "tributary.spans", Value: snappy.Encode(nil, raw), Envelope: &recordpb.Envelope{Cluster: "c"}}
		docs, _, err := e.encode([]ingester.Record{rec}, newServiceCache(10))
		if err != nil {
			return
		}
		for _, d := range docs {
			if !json.Valid(d.body) {
				t.Fatalf("invalid JSON document: %q", d.body)
			}
			if d.index == "" || d.id == "" {
				t.Fatalf("document without index or id: %+v", d)
			}
		}
	})
}

// Against the real ZincSearch: the templates are accepted, every span
// comes back by an exact term query on its traceID (the query Jaeger's
// reader sends) in the document written, the IDs and service names are
// mapped as keywords, and the service index answers the terms
// aggregations of Jaeger's service and operation lists.
func TestJaegerZinc(t *testing.T) {
	if testing.Short() {
		t.Skip("starts ZincSearch")
	}
	z := testenv.Zinc(t)
	ctx := context.Background()
	cfg := jaegerTestConfig(z.ESURL)
	cfg.Username, cfg.Password = z.User, z.Password
	s := newJaegerSink(t, cfg)
	require.NoError(t, s.Probe(ctx))

	other := testTrace()
	other.ResourceSpans[0].Resource.Attributes[0] = str("service.name", "payments")
	for _, ss := range other.ResourceSpans[0].ScopeSpans {
		for _, sp := range ss.Spans {
			sp.TraceId = hexID(otherTrace)
		}
	}
	require.NoError(t, s.Write(ctx, []ingester.Record{spanRecord(t, 1, "eu-1", testTrace()), spanRecord(t, 2, "eu-1", other)}))
	// A replay overwrites.
	require.NoError(t, s.Write(ctx, []ingester.Record{spanRecord(t, 1, "eu-1", testTrace())}))

	byTrace := func(traceID string) (map[string]string, error) {
		docs, total, err := z.Search(t, "jaeger-span-*", map[string]any{
			"query": map[string]any{"term": map[string]any{"traceID": traceID}}, "size": 100,
		})
		if err != nil {
			return nil, err
		}
		if total != 2 || len(docs) != 2 {
			return nil, fmt.Errorf("trace %s: %d hits (%d returned), want its 2 spans once each", traceID, total, len(docs))
		}
		out := map[string]string{}
		for _, d := range docs {
			delete(d, "_id")
			delete(d, "@timestamp") // Zinc's own (indexing time)
			b, _ := json.Marshal(d)
			out[d["spanID"].(string)] = string(b)
		}
		return out, nil
	}
	var spans map[string]string
	testenv.Eventually(t, 30*time.Second, func() (err error) {
		spans, err = byTrace(testTraceID)
		if err != nil {
			return err
		}
		_, err = byTrace(otherTrace)
		return err
	})
	require.JSONEq(t, wantRoot, spans[testRootID])
	require.JSONEq(t, wantChild, spans[testChildID])

	// The filters of Jaeger's trace search (which Zinc itself refuses, see
	// the README): service, operation and a startTime range select the
	// spans.
	docs, total, err := z.Search(t, "jaeger-span-*", map[string]any{"query": map[string]any{"bool": map[string]any{"must": []any{
		map[string]any{"term": map[string]any{"process.serviceName": "payments"}},
		map[string]any{"term": map[string]any{"operationName": "SELECT carts"}},
		map[string]any{"range": map[string]any{"startTime": map[string]any{"gte": t0.UnixMicro(), "lte": t0.Add(time.Millisecond).UnixMicro()}}},
	}}}})
	require.NoError(t, err)
	require.Equal(t, 1, total)
	require.Equal(t, otherTrace, docs[0]["traceID"])
	require.Equal(t, testChildID, docs[0]["spanID"])

	for _, index := range []string{"jaeger-span-2026-11-28", "jaeger-service-2026-11-29"} {
		status, body, err := z.Do(http.MethodGet, "/es/"+index+"/_mapping", "", nil)
		require.NoError(t, err)
		require.Equal(t, http.StatusOK, status, "%s", body)
		var m map[string]struct {
			Mappings map[string]any `json:"mappings"`
		}
		require.NoError(t, json.Unmarshal(body, &m), "%s", body)
		// Zinc answers with ES's nesting: process.serviceName is under
		// process.properties.
		typeOf := func(path string) string {
			node := m[index].Mappings
			for _, part := range strings.Split(path, ".") {
				props, _ := node["properties"].(map[string]any)
				node, _ = props[part].(map[string]any)
			}
			typ, _ := node["type"].(string)
			return typ
		}
		if strings.HasPrefix(index, "jaeger-span-") {
			for _, f := range []string{"traceID", "spanID", "operationName", "process.serviceName"} {
				require.Equal(t, "keyword", typeOf(f), "%s %s: %s", index, f, body)
			}
			require.Equal(t, "numeric", typeOf("startTime"))
			require.Equal(t, "date", typeOf("startTimeMillis"))
		} else {
			require.Equal(t, "keyword", typeOf("serviceName"), "%s", body)
			require.Equal(t, "keyword", typeOf("operationName"), "%s", body)
		}
	}

	terms := func(index string, query map[string]any, field string) ([]string, error) {
		req := map[string]any{"size": 0, "aggs": map[string]any{"names": map[string]any{"terms": map[string]any{"field": field, "size": 100}}}}
		if query != nil {
			req["query"] = query
		}
		b, _ := json.Marshal(req)
		status, body, err := z.Do(http.MethodPost, "/es/"+index+"/_search", "application/json", b)
		if err != nil || status != http.StatusOK {
			return nil, fmt.Errorf("%d %s %v", status, body, err)
		}
		var r struct {
			Aggregations map[string]struct {
				Buckets []struct {
					Key string `json:"key"`
				} `json:"buckets"`
			} `json:"aggregations"`
		}
		if err := json.Unmarshal(body, &r); err != nil {
			return nil, err
		}
		var out []string
		for _, b := range r.Aggregations["names"].Buckets {
			out = append(out, b.Key)
		}
		return out, nil
	}
	testenv.Eventually(t, 30*time.Second, func() error {
		services, err := terms("jaeger-service-*", nil, "serviceName")
		if err != nil {
			return err
		}
		ops, err := terms("jaeger-service-*", map[string]any{"term": map[string]any{"serviceName": "payments"}}, "operationName")
		if err != nil {
			return err
		}
		slices.Sort(services)
		slices.Sort(ops)
		if !slices.Equal(services, []string{"checkout", "payments"}) || !slices.Equal(ops, []string{"GET /cart", "SELECT carts"}) {
			return fmt.Errorf("services %q, operations of payments %q", services, ops)
		}
		return nil
	})
}
