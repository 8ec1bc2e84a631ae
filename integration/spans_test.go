package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/tributary-io/tributary/internal/testenv"
)

// startJaegerIngester runs an ingester with only the jaeger consumer,
// writing to the Zinc server z.
func startJaegerIngester(t *testing.T, kafkaAddr string, z *testenv.ZincServer, extra ...string) *ingesterProc {
	t.Helper()
	port := testenv.FreePort(t)
	args := append([]string{
		"-http.listen-addr=" + testenv.Addr(port),
		"-kafka.brokers=" + kafkaAddr,
		"-jaeger.addresses=" + z.ESURL, "-jaeger.username=" + z.User, "-jaeger.password=" + z.Password,
		"-jaeger.batch.max-delay=50ms", "-jaeger.backoff.max=1s", "-jaeger.flush-timeout=5s",
	}, extra...)
	p := testenv.StartProcess(t, "ingester", testenv.Binary(t, "ingester"), args)
	url := "http://" + testenv.Addr(port)
	testenv.WaitHTTP(t, p, url+"/-/healthy", 30*time.Second)
	return &ingesterProc{Process: p, URL: url}
}

// sentTrace is what one cluster's SDKs sent, as the SDK recorded it.
type sentTrace struct {
	cluster string
	spans   []sdktrace.ReadOnlySpan
}

// sendTraces sends, through exporter kind "grpc" or "http" of the real
// OpenTelemetry Go SDK, one trace of cluster across two services:
// frontend's server span, its internal child with an event and a link,
// and cart's server span (an error) under frontend's client span, the
// parent passed between the two providers as a remote span context.
func sendTraces(t *testing.T, gw *gatewayProc, grpcAddr, kind, cluster string, t0 time.Time) sentTrace {
	t.Helper()
	ctx := context.Background()
	rec := tracetest.NewSpanRecorder()
	provider := func(service string) *sdktrace.TracerProvider {
		var exp sdktrace.SpanExporter
		var err error
		if kind == "grpc" {
			exp, err = otlptracegrpc.New(ctx, otlptracegrpc.WithEndpoint(grpcAddr), otlptracegrpc.WithInsecure(),
				otlptracegrpc.WithCompressor("gzip"))
		} else {
			exp, err = otlptracehttp.New(ctx, otlptracehttp.WithEndpointURL(gw.URL+"/v1/traces"),
				otlptracehttp.WithCompression(otlptracehttp.GzipCompression))
		}
		require.NoError(t, err)
		return sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp), sdktrace.WithSpanProcessor(rec),
			sdktrace.WithResource(resource.NewSchemaless(
				attribute.String("service.name", service), attribute.String("k8s.cluster.name", cluster),
				attribute.String("host.name", "node-"+kind))))
	}
	front, cart := provider("frontend"), provider("cart")

	at := func(ms int) trace.SpanStartEventOption {
		return trace.WithTimestamp(t0.Add(time.Duration(ms) * time.Millisecond))
	}
	end := func(ms int) trace.SpanEndOption {
		return trace.WithTimestamp(t0.Add(time.Duration(ms) * time.Millisecond))
	}
	ft := front.Tracer("shop/frontend", trace.WithInstrumentationVersion("1.4.2"))
	rootCtx, root := ft.Start(ctx, "GET /checkout", trace.WithSpanKind(trace.SpanKindServer), at(0),
		trace.WithAttributes(attribute.String("http.method", "GET"), attribute.Int("http.status_code", 200),
			attribute.Bool("cache.hit", true), attribute.Float64("load", 0.75)))
	root.SetStatus(codes.Ok, "")

	_, render := ft.Start(rootCtx, "render", trace.WithSpanKind(trace.SpanKindInternal), at(1),
		trace.WithLinks(trace.Link{SpanContext: trace.NewSpanContext(trace.SpanContextConfig{
			TraceID: trace.TraceID{0xab, 1}, SpanID: trace.SpanID{0xcd, 2}, TraceFlags: trace.FlagsSampled})}))
	render.AddEvent("template loaded", trace.WithTimestamp(t0.Add(2*time.Millisecond)), trace.WithAttributes(attribute.String("template", "cart.html")))
	render.End(end(3))

	callCtx, call := ft.Start(rootCtx, "cart.get", trace.WithSpanKind(trace.SpanKindClient), at(4))
	remote := trace.ContextWithRemoteSpanContext(ctx, trace.SpanContextFromContext(callCtx))
	_, serve := cart.Tracer("shop/cart").Start(remote, "GET /cart", trace.WithSpanKind(trace.SpanKindServer), at(5))
	serve.SetStatus(codes.Error, "cart store down")
	serve.End(end(9))
	call.End(end(10))
	root.End(end(12))

	for _, tp := range []*sdktrace.TracerProvider{front, cart} {
		require.NoError(t, tp.ForceFlush(ctx))
		require.NoError(t, tp.Shutdown(ctx))
	}
	spans := rec.Ended()
	require.Len(t, spans, 4)
	return sentTrace{cluster: cluster, spans: spans}
}

// jaegerKVs reads a list of Jaeger {key, type, value} tags.
func jaegerKVs(v any) map[string][2]string {
	out := map[string][2]string{}
	list, _ := v.([]any)
	for _, e := range list {
		m, _ := e.(map[string]any)
		k, _ := m["key"].(string)
		typ, _ := m["type"].(string)
		out[k] = [2]string{typ, fmt.Sprint(m["value"])}
	}
	return out
}

// wantTag is an SDK attribute as a Jaeger tag: type and value as text.
func wantTag(kv attribute.KeyValue) [2]string {
	switch kv.Value.Type() {
	case attribute.BOOL:
		return [2]string{"bool", strconv.FormatBool(kv.Value.AsBool())}
	case attribute.INT64:
		return [2]string{"int64", strconv.FormatInt(kv.Value.AsInt64(), 10)}
	case attribute.FLOAT64:
		return [2]string{"float64", strconv.FormatFloat(kv.Value.AsFloat64(), 'f', -1, 64)}
	}
	return [2]string{"string", kv.Value.Emit()}
}

var wantKinds = map[trace.SpanKind]string{
	trace.SpanKindServer: "server", trace.SpanKindClient: "client", trace.SpanKindInternal: "internal",
}

// checkSpanDoc compares a span document with the span the SDK recorded.
func checkSpanDoc(d map[string]any, sp sdktrace.ReadOnlySpan, cluster string) error {
	sc := sp.SpanContext()
	if d["traceID"] != sc.TraceID().String() || d["operationName"] != sp.Name() {
		return fmt.Errorf("traceID %v operationName %v", d["traceID"], d["operationName"])
	}
	if got, want := d["startTime"], float64(sp.StartTime().UnixMicro()); got != want {
		return fmt.Errorf("startTime %v, want %v", got, want)
	}
	if got, want := d["duration"], float64(sp.EndTime().Sub(sp.StartTime()).Microseconds()); got != want {
		return fmt.Errorf("duration %v, want %v", got, want)
	}
	if got, want := d["startTimeMillis"], float64(sp.StartTime().UnixMilli()); got != want {
		return fmt.Errorf("startTimeMillis %v, want %v", got, want)
	}
	refs, _ := d["references"].([]any)
	var wantRefs []any
	if p := sp.Parent(); p.IsValid() {
		if d["parentSpanID"] != p.SpanID().String() {
			return fmt.Errorf("parentSpanID %v, want %s", d["parentSpanID"], p.SpanID())
		}
		wantRefs = append(wantRefs, map[string]any{"refType": "CHILD_OF", "traceID": sc.TraceID().String(), "spanID": p.SpanID().String()})
	} else if _, ok := d["parentSpanID"]; ok {
		return fmt.Errorf("root span with parentSpanID %v", d["parentSpanID"])
	}
	for _, l := range sp.Links() {
		wantRefs = append(wantRefs, map[string]any{"refType": "FOLLOWS_FROM", "traceID": l.SpanContext.TraceID().String(), "spanID": l.SpanContext.SpanID().String()})
	}
	if fmt.Sprint(refs) != fmt.Sprint(wantRefs) {
		return fmt.Errorf("references %v, want %v", refs, wantRefs)
	}

	tags := jaegerKVs(d["tags"])
	want := map[string][2]string{
		"otel.scope.name": {"string", sp.InstrumentationScope().Name},
		"span.kind":       {"string", wantKinds[sp.SpanKind()]},
	}
	if v := sp.InstrumentationScope().Version; v != "" {
		want["otel.scope.version"] = [2]string{"string", v}
	}
	for _, kv := range sp.Attributes() {
		want[string(kv.Key)] = wantTag(kv)
	}
	switch sp.Status().Code {
	case codes.Error:
		want["error"] = [2]string{"bool", "true"}
		want["otel.status_description"] = [2]string{"string", sp.Status().Description}
	case codes.Ok:
		want["otel.status_code"] = [2]string{"string", "OK"}
	}
	if fmt.Sprint(tags) != fmt.Sprint(want) {
		return fmt.Errorf("tags %v, want %v", tags, want)
	}

	logs, _ := d["logs"].([]any)
	if len(logs) != len(sp.Events()) {
		return fmt.Errorf("%d logs, want %d events", len(logs), len(sp.Events()))
	}
	for i, ev := range sp.Events() {
		l, _ := logs[i].(map[string]any)
		wantFields := map[string][2]string{"event": {"string", ev.Name}}
		for _, kv := range ev.Attributes {
			wantFields[string(kv.Key)] = wantTag(kv)
		}
		if l["timestamp"] != float64(ev.Time.UnixMicro()) || fmt.Sprint(jaegerKVs(l["fields"])) != fmt.Sprint(wantFields) {
			return fmt.Errorf("log %d: %v, want event %v", i, l, ev)
		}
	}

	proc, _ := d["process"].(map[string]any)
	svc, _ := sp.Resource().Set().Value("service.name")
	if proc["serviceName"] != svc.AsString() {
		return fmt.Errorf("process.serviceName %v, want %s", proc["serviceName"], svc.AsString())
	}
	ptags := jaegerKVs(proc["tags"])
	if ptags["k8s.cluster.name"] != [2]string{"string", cluster} || ptags["host.name"][0] != "string" {
		return fmt.Errorf("process.tags %v lack the cluster %s or host.name", ptags, cluster)
	}
	if _, ok := ptags["service.name"]; ok {
		return fmt.Errorf("process.tags %v repeat service.name", ptags)
	}
	return nil
}

// requireSpansInZinc waits until every span of every trace is in the
// span indices exactly once (found by the exact traceID term query
// Jaeger's reader sends) as the document Jaeger's schema asks for.
func requireSpansInZinc(t *testing.T, z *testenv.ZincServer, sent []sentTrace) {
	t.Helper()
	testenv.Eventually(t, 90*time.Second, func() error {
		for _, st := range sent {
			traceID := st.spans[0].SpanContext().TraceID().String()
			docs, total, err := z.Search(t, "jaeger-span-*", map[string]any{
				"query": map[string]any{"term": map[string]any{"traceID": traceID}}, "size": 100,
			})
			if err != nil {
				return err
			}
			if total != len(st.spans) || len(docs) != len(st.spans) {
				return fmt.Errorf("trace %s of %s: %d documents, want its %d spans once each", traceID, st.cluster, total, len(st.spans))
			}
			bySpan := map[string]map[string]any{}
			for _, d := range docs {
				id, _ := d["spanID"].(string)
				bySpan[id] = d
			}
			for _, sp := range st.spans {
				d, ok := bySpan[sp.SpanContext().SpanID().String()]
				if !ok {
					return fmt.Errorf("span %s (%s) of %s missing", sp.SpanContext().SpanID(), sp.Name(), st.cluster)
				}
				if err := checkSpanDoc(d, sp, st.cluster); err != nil {
					t.Fatalf("span %s (%s) of %s: %v\n%v", sp.SpanContext().SpanID(), sp.Name(), st.cluster, err, d)
				}
			}
		}
		return nil
	})
}

func jaegerGet(t *testing.T, base, path string, into any) error {
	t.Helper()
	resp, err := http.Get(base + path)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %d %s", path, resp.StatusCode, body)
	}
	if err := json.Unmarshal(body, into); err != nil {
		return fmt.Errorf("GET %s: %w: %.300s", path, err, body)
	}
	return nil
}

// jaegerTrace is the part of Jaeger's /api/traces answer checked here.
type jaegerTrace struct {
	TraceID   string          `json:"traceID"`
	Spans     []jaegerAPISpan `json:"spans"`
	Processes map[string]struct {
		ServiceName string        `json:"serviceName"`
		Tags        []jaegerAPIKV `json:"tags"`
	} `json:"processes"`
}

type jaegerAPISpan struct {
	SpanID        string `json:"spanID"`
	OperationName string `json:"operationName"`
	ProcessID     string `json:"processID"`
	References    []struct {
		RefType string `json:"refType"`
		SpanID  string `json:"spanID"`
	} `json:"references"`
}

type jaegerAPIKV struct {
	Key   string `json:"key"`
	Value any    `json:"value"`
}

// checkJaegerTrace compares what Jaeger's query API returns for a trace
// with what the SDK sent: every span, its parent, its service and cluster.
func checkJaegerTrace(tr jaegerTrace, st sentTrace) error {
	if len(tr.Spans) != len(st.spans) {
		return fmt.Errorf("trace %s: %d spans, want %d", tr.TraceID, len(tr.Spans), len(st.spans))
	}
	for _, sp := range st.spans {
		i := slices.IndexFunc(tr.Spans, func(s jaegerAPISpan) bool { return s.SpanID == sp.SpanContext().SpanID().String() })
		if i < 0 {
			return fmt.Errorf("span %s (%s) missing", sp.SpanContext().SpanID(), sp.Name())
		}
		got := tr.Spans[i]
		if got.OperationName != sp.Name() {
			return fmt.Errorf("span %s: operation %q, want %q", got.SpanID, got.OperationName, sp.Name())
		}
		if p := sp.Parent(); p.IsValid() {
			if len(got.References) == 0 || got.References[0].RefType != "CHILD_OF" || got.References[0].SpanID != p.SpanID().String() {
				return fmt.Errorf("span %s: references %v, want CHILD_OF %s first", got.SpanID, got.References, p.SpanID())
			}
		}
		proc := tr.Processes[got.ProcessID]
		svc, _ := sp.Resource().Set().Value("service.name")
		if proc.ServiceName != svc.AsString() {
			return fmt.Errorf("span %s: service %q, want %q", got.SpanID, proc.ServiceName, svc.AsString())
		}
		if !slices.ContainsFunc(proc.Tags, func(kv jaegerAPIKV) bool { return kv.Key == "k8s.cluster.name" && kv.Value == st.cluster }) {
			return fmt.Errorf("span %s: process tags %v lack k8s.cluster.name=%s", got.SpanID, proc.Tags, st.cluster)
		}
	}
	return nil
}

// Traces of two clusters from the real OpenTelemetry Go SDK (OTLP gRPC
// for one, OTLP/HTTP for the other) through the real gateway, Kafka and
// the ingester's jaeger consumer into ZincSearch: every span comes back
// by trace ID as Jaeger's document (parent reference, tags, process), and
// Jaeger v2's own query service, reading that ZincSearch, returns the
// traces, the services and their operations.
func TestSpansToJaeger(t *testing.T) {
	t.Parallel()
	k := testenv.Kafka(t, 1) // waitGroupAtEnd needs a record in every partition
	z := testenv.Zinc(t)
	grpcAddr := testenv.Addr(testenv.FreePort(t))
	gw := startGateway(t, k.Addr, "-otlp.grpc.listen-addr="+grpcAddr)
	ing := startJaegerIngester(t, k.Addr, z)

	t0 := time.Now().Add(-time.Minute).Truncate(time.Millisecond)
	sent := []sentTrace{
		sendTraces(t, gw, grpcAddr, "grpc", "east", t0),
		sendTraces(t, gw, grpcAddr, "http", "west", t0.Add(time.Second)),
	}
	requireSpansInZinc(t, z, sent)
	waitGroupAtEnd(t, k.Addr, "tributary-jaeger", "tributary.spans", 60*time.Second)
	requireNoDeadLetters(t, k.Addr)
	require.Zero(t, metricValue(t, ing.URL, "tributary_ingester_dlq_records_total", map[string]string{"sink": "jaeger"}))

	j := testenv.StartJaeger(t, z, "")
	for _, st := range sent {
		traceID := st.spans[0].SpanContext().TraceID().String()
		var resp struct {
			Data []jaegerTrace `json:"data"`
		}
		require.NoError(t, jaegerGet(t, j.URL, "/api/traces/"+traceID, &resp))
		require.Len(t, resp.Data, 1, "trace %s", traceID)
		require.NoError(t, checkJaegerTrace(resp.Data[0], st), "trace %s of %s", traceID, st.cluster)
	}

	var services struct {
		Data []string `json:"data"`
	}
	require.NoError(t, jaegerGet(t, j.URL, "/api/services", &services))
	slices.Sort(services.Data)
	require.Equal(t, []string{"cart", "frontend"}, services.Data)
	for svc, want := range map[string][]string{"frontend": {"GET /checkout", "cart.get", "render"}, "cart": {"GET /cart"}} {
		var ops struct {
			Data []string `json:"data"`
		}
		require.NoError(t, jaegerGet(t, j.URL, "/api/services/"+url.PathEscape(svc)+"/operations", &ops))
		slices.Sort(ops.Data)
		require.Equal(t, want, ops.Data, "operations of %s", svc)
	}
}
