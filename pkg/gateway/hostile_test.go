package gateway

import (
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"fmt"
	"io"
	"net/http"
	"runtime"
	runtimemetrics "runtime/metrics"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang/snappy"
	"github.com/grafana/loki/pkg/push"
	"github.com/prometheus/prometheus/prompb"
	writev2 "github.com/prometheus/prometheus/prompb/io/prometheus/write/v2"
	"github.com/stretchr/testify/require"
	collogspb "go.opentelemetry.io/proto/otlp/collector/logs/v1"
	colmetricspb "go.opentelemetry.io/proto/otlp/collector/metrics/v1"
	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	logspb "go.opentelemetry.io/proto/otlp/logs/v1"
	metricspb "go.opentelemetry.io/proto/otlp/metrics/v1"
	resourcepb "go.opentelemetry.io/proto/otlp/resource/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/tributary-io/tributary/internal/testenv"
)

// A message of every endpoint, built from n series (streams, spans): the
// cluster of series i, and the value of one more label (attribute).
type hostileMessage func(t *testing.T, n int, cluster func(i int) string, value string) []byte

// invalidUTF8 replaces the placeholder of the same length in encoded
// messages: the OTLP encoders refuse to write invalid UTF-8 themselves.
const (
	utf8Placeholder = "PLACEHOLDER"
	invalidUTF8     = "\xff\xfe\xfd\xc3\x28\xa0\xa1\xe2\x28\xa1\x80"
)

// hostileEndpoint is one way into the gateway.
type hostileEndpoint struct {
	name       string
	path       string // HTTP path; "" for OTLP gRPC
	grpcMethod string
	headers    []string
	snappy     bool // the body is a snappy block
	json       bool
	message    hostileMessage
	wrongWire  []byte // the request's repeated top-level message field as a varint
}

func remoteWriteV1(t *testing.T, n int, cluster func(int) string, value string) []byte {
	req := &prompb.WriteRequest{Timeseries: make([]prompb.TimeSeries, n)}
	now := time.Now().UnixMilli()
	for i := range req.Timeseries {
		req.Timeseries[i] = prompb.TimeSeries{
			Labels:  []prompb.Label{{Name: "__name__", Value: "up"}, {Name: "cluster", Value: cluster(i)}, {Name: "i", Value: strconv.Itoa(i)}, {Name: "x", Value: value}},
			Samples: []prompb.Sample{{Value: 1, Timestamp: now}},
		}
	}
	raw, err := req.Marshal()
	require.NoError(t, err)
	return raw
}

func remoteWriteV2(t *testing.T, n int, cluster func(int) string, value string) []byte {
	st := writev2.NewSymbolTable()
	req := &writev2.Request{Timeseries: make([]writev2.TimeSeries, n)}
	now := time.Now().UnixMilli()
	for i := range req.Timeseries {
		var refs []uint32
		for _, s := range []string{"__name__", "up", "cluster", cluster(i), "i", strconv.Itoa(i), "x", value} {
			refs = append(refs, st.Symbolize(s))
		}
		req.Timeseries[i] = writev2.TimeSeries{LabelsRefs: refs, Samples: []writev2.Sample{{Value: 1, Timestamp: now}}}
	}
	req.Symbols = st.Symbols()
	raw, err := req.Marshal()
	require.NoError(t, err)
	return raw
}

func lokiProtobuf(t *testing.T, n int, cluster func(int) string, value string) []byte {
	req := &push.PushRequest{Streams: make([]push.Stream, n)}
	now := time.Now()
	for i := range req.Streams {
		req.Streams[i] = push.Stream{
			Labels:  fmt.Sprintf(`{cluster=%q, i="%d", x="%s"}`, cluster(i), i, value),
			Entries: []push.Entry{{Timestamp: now, Line: "line"}},
		}
	}
	raw, err := req.Marshal()
	require.NoError(t, err)
	return raw
}

// lokiJSON writes the value as it is (invalid UTF-8 stays invalid).
func lokiJSON(_ *testing.T, n int, cluster func(int) string, value string) []byte {
	var b bytes.Buffer
	b.WriteString(`{"streams":[`)
	ts := time.Now().UnixNano()
	for i := 0; i < n; i++ {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"stream":{"cluster":%q,"i":"%d","x":"%s"},"values":[["%d","line"]]}`, cluster(i), i, value, ts)
	}
	b.WriteString(`]}`)
	return b.Bytes()
}

func otlpString(k, v string) *commonpb.KeyValue {
	return &commonpb.KeyValue{Key: k, Value: &commonpb.AnyValue{Value: &commonpb.AnyValue_StringValue{StringValue: v}}}
}

// byCluster calls add for each run of consecutive items of one cluster,
// with the run's resource.
func byCluster(n int, cluster func(int) string, add func(res *resourcepb.Resource, from, to int)) {
	for from := 0; from < n; {
		to := from + 1
		for to < n && cluster(to) == cluster(from) {
			to++
		}
		add(&resourcepb.Resource{Attributes: []*commonpb.KeyValue{otlpString("service.name", "svc"), otlpString("k8s.cluster.name", cluster(from))}}, from, to)
		from = to
	}
}

// otlpTraces, otlpMetrics and otlpLogs carry the extra value as an
// attribute of every span, data point or log record; invalid UTF-8 goes
// in as the placeholder (the protobuf encoders refuse it).
func otlpTraces(n int, cluster func(int) string, value string) proto.Message {
	req := &coltracepb.ExportTraceServiceRequest{}
	now := uint64(time.Now().UnixNano())
	byCluster(n, cluster, func(res *resourcepb.Resource, from, to int) {
		ss := &tracepb.ScopeSpans{}
		for i := from; i < to; i++ {
			id := binary.BigEndian.AppendUint64(nil, uint64(i)+1)
			ss.Spans = append(ss.Spans, &tracepb.Span{
				TraceId: append(id, id...), SpanId: id, Name: "op", StartTimeUnixNano: now, EndTimeUnixNano: now + 1000,
				Attributes: []*commonpb.KeyValue{otlpString("x", value)},
			})
		}
		req.ResourceSpans = append(req.ResourceSpans, &tracepb.ResourceSpans{Resource: res, ScopeSpans: []*tracepb.ScopeSpans{ss}})
	})
	return req
}

func otlpMetrics(n int, cluster func(int) string, value string) proto.Message {
	req := &colmetricspb.ExportMetricsServiceRequest{}
	now := uint64(time.Now().UnixNano())
	byCluster(n, cluster, func(res *resourcepb.Resource, from, to int) {
		g := &metricspb.Gauge{}
		for i := from; i < to; i++ {
			g.DataPoints = append(g.DataPoints, &metricspb.NumberDataPoint{
				Attributes:   []*commonpb.KeyValue{otlpString("i", strconv.Itoa(i)), otlpString("x", value)},
				TimeUnixNano: now, Value: &metricspb.NumberDataPoint_AsDouble{AsDouble: 1},
			})
		}
		req.ResourceMetrics = append(req.ResourceMetrics, &metricspb.ResourceMetrics{Resource: res, ScopeMetrics: []*metricspb.ScopeMetrics{{
			Metrics: []*metricspb.Metric{{Name: "up", Data: &metricspb.Metric_Gauge{Gauge: g}}},
		}}})
	})
	return req
}

func otlpLogs(n int, cluster func(int) string, value string) proto.Message {
	req := &collogspb.ExportLogsServiceRequest{}
	now := uint64(time.Now().UnixNano())
	byCluster(n, cluster, func(res *resourcepb.Resource, from, to int) {
		sl := &logspb.ScopeLogs{}
		for i := from; i < to; i++ {
			sl.LogRecords = append(sl.LogRecords, &logspb.LogRecord{
				TimeUnixNano: now, Body: &commonpb.AnyValue{Value: &commonpb.AnyValue_StringValue{StringValue: "line"}},
				Attributes: []*commonpb.KeyValue{otlpString("i", strconv.Itoa(i)), otlpString("x", value)},
			})
		}
		req.ResourceLogs = append(req.ResourceLogs, &logspb.ResourceLogs{Resource: res, ScopeLogs: []*logspb.ScopeLogs{sl}})
	})
	return req
}

// otlpMessage encodes build's request as protobuf or JSON.
func otlpMessage(build func(int, func(int) string, string) proto.Message, json bool) hostileMessage {
	return func(t *testing.T, n int, cluster func(int) string, value string) []byte {
		m := build(n, cluster, strings.ReplaceAll(value, invalidUTF8, utf8Placeholder))
		var raw []byte
		var err error
		if json {
			raw, err = protojson.Marshal(m)
		} else {
			raw, err = proto.Marshal(m)
		}
		require.NoError(t, err)
		return bytes.ReplaceAll(raw, []byte(utf8Placeholder), []byte(invalidUTF8))
	}
}

var hostileEndpoints = []hostileEndpoint{
	{name: "remote-write 1.0", path: "/api/v1/write", headers: []string{"Content-Type", "application/x-protobuf", "Content-Encoding", "snappy"},
		snappy: true, message: remoteWriteV1, wrongWire: []byte{0x08, 0x01}},
	{name: "remote-write 2.0", path: "/api/v1/write", headers: []string{"Content-Type", "application/x-protobuf;proto=io.prometheus.write.v2.Request", "Content-Encoding", "snappy"},
		snappy: true, message: remoteWriteV2, wrongWire: []byte{0x28, 0x01}},
	{name: "loki protobuf", path: "/loki/api/v1/push", headers: []string{"Content-Type", "application/x-protobuf"},
		snappy: true, message: lokiProtobuf, wrongWire: []byte{0x08, 0x01}},
	{name: "loki json", path: "/loki/api/v1/push", headers: []string{"Content-Type", "application/json"}, json: true, message: lokiJSON},
	{name: "otlp http traces protobuf", path: "/v1/traces", headers: []string{"Content-Type", "application/x-protobuf"},
		message: otlpMessage(otlpTraces, false), wrongWire: []byte{0x08, 0x01}},
	{name: "otlp http traces json", path: "/v1/traces", headers: []string{"Content-Type", "application/json"}, json: true, message: otlpMessage(otlpTraces, true)},
	{name: "otlp grpc traces", grpcMethod: "/opentelemetry.proto.collector.trace.v1.TraceService/Export", message: otlpMessage(otlpTraces, false), wrongWire: []byte{0x08, 0x01}},
	{name: "otlp http metrics protobuf", path: "/v1/metrics", headers: []string{"Content-Type", "application/x-protobuf"},
		message: otlpMessage(otlpMetrics, false), wrongWire: []byte{0x08, 0x01}},
	{name: "otlp http metrics json", path: "/v1/metrics", headers: []string{"Content-Type", "application/json"}, json: true, message: otlpMessage(otlpMetrics, true)},
	{name: "otlp grpc metrics", grpcMethod: "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export", message: otlpMessage(otlpMetrics, false), wrongWire: []byte{0x08, 0x01}},
	{name: "otlp http logs protobuf", path: "/v1/logs", headers: []string{"Content-Type", "application/x-protobuf"},
		message: otlpMessage(otlpLogs, false), wrongWire: []byte{0x08, 0x01}},
	{name: "otlp http logs json", path: "/v1/logs", headers: []string{"Content-Type", "application/json"}, json: true, message: otlpMessage(otlpLogs, true)},
	{name: "otlp grpc logs", grpcMethod: "/opentelemetry.proto.collector.logs.v1.LogsService/Export", message: otlpMessage(otlpLogs, false), wrongWire: []byte{0x08, 0x01}},
}

// heapAllowance is how far the heap may grow during one request beyond
// the in-flight budget. The budget bounds what the gateway holds of a
// request's bytes; the allowance covers what it builds beside them (the
// parsers' indexes, the records of an accepted 100k-series request and
// their copies in the in-process broker) and the garbage the collector
// lets pile up between cycles: 123 MiB at most was measured (a 100k-series
// remote-write 2.0 request). A decoder that believed a header (4 GiB) or
// inflated a bomb (1 GiB) goes far beyond it.
func (e hostileEndpoint) heapAllowance() uint64 {
	if strings.HasPrefix(e.name, "otlp") && strings.Contains(e.name, "metrics") {
		// FINDING (reported): OTLP metrics decode into objects outside
		// the budget: +314 MiB measured for 100,000 data points of
		// distinct clusters in one 5 MB gRPC message.
		return 384 << 20
	}
	return 128 << 20
}

// hostileCase is one malformed or oversized request to one endpoint: the
// body as sent, whether it is gzip-compressed, and the answer wanted.
type hostileCase struct {
	name   string
	body   []byte
	gzip   bool
	status int        // HTTP endpoints
	code   codes.Code // OTLP gRPC
	reason string     // in the answer's message
}

func gzipped(b []byte) []byte {
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	_, _ = zw.Write(b)
	_ = zw.Close()
	return buf.Bytes()
}

// spaceBomb is ~1 MiB of gzip that inflates to 1 GiB of spaces.
func spaceBomb(t *testing.T) []byte {
	var buf bytes.Buffer
	zw, err := gzip.NewWriterLevel(&buf, gzip.BestCompression)
	require.NoError(t, err)
	spaces := bytes.Repeat([]byte{' '}, 1<<20)
	for range 1024 {
		_, _ = zw.Write(spaces)
	}
	require.NoError(t, zw.Close())
	return buf.Bytes()
}

// hostileCases builds the table of one endpoint. Every answer is a 4xx
// (or its gRPC equivalent) but two: 100,000 well-formed series are split
// into records and accepted, as the design promises for a request too
// large for one record.
func hostileCases(t *testing.T, e hostileEndpoint, bomb []byte) []hostileCase {
	one := func(int) string { return "hostile" }
	each := func(i int) string { return "c" + strconv.Itoa(i) }
	wrap := func(raw []byte) []byte {
		if e.snappy {
			return snappy.Encode(nil, raw)
		}
		return raw
	}
	valid := wrap(e.message(t, 10, one, "v"))
	var cs []hostileCase
	add := func(c hostileCase) {
		if c.code == 0 && c.status != 0 {
			c.code = grpcCodeOf(c.status)
		}
		cs = append(cs, c)
	}
	if e.snappy {
		add(hostileCase{name: "truncated snappy", body: valid[:len(valid)/2], status: 400, reason: "snappy"})
		// Snappy lengths are 32-bit: 4 GiB itself is not a legal header,
		// 4 GiB - 1 is, and must be refused before anything is allocated.
		add(hostileCase{name: "snappy header declaring 4 GiB", body: []byte{0x80, 0x80, 0x80, 0x80, 0x10, 0x00, 'x'}, status: 400, reason: "corrupt input"})
		add(hostileCase{name: "snappy header declaring 4 GiB - 1", body: []byte{0xff, 0xff, 0xff, 0xff, 0x0f, 0x00, 'x'}, status: 413, reason: "33554432"})
	} else {
		full := gzipped(e.message(t, 10, one, "v"))
		add(hostileCase{name: "truncated gzip", body: full[:len(full)/2], gzip: true, status: 400})
	}
	if e.path == "" {
		// The gRPC frame's length prefix declares 4 GiB - 1.
		add(hostileCase{name: "grpc frame declaring 4 GiB", body: nil, code: codes.ResourceExhausted})
	}
	if strings.HasPrefix(e.name, "remote-write") {
		add(hostileCase{name: "gzip bomb", body: bomb, gzip: true, status: 415, reason: "remote-write bodies are snappy"})
	} else {
		add(hostileCase{name: "gzip bomb", body: bomb, gzip: true, status: 413})
	}
	if e.wrongWire != nil {
		add(hostileCase{name: "protobuf with wrong wire types", body: wrap(e.wrongWire), status: 400})
	}
	if e.json {
		huge := "1" + strings.Repeat("0", 1<<20)
		top, doc := jsonShapes[e.path][0], jsonShapes[e.path][1]
		doc = strings.Replace(doc, "NUMBER", huge, 1)
		add(hostileCase{name: "json with a 1 MB number", body: []byte(doc), status: 400})
		add(hostileCase{name: "json with 1e999999", body: []byte(strings.Replace(doc, huge, "1e999999", 1)), status: 400})
		deep := strings.Repeat("[", 10_000) + strings.Repeat("]", 10_000)
		add(hostileCase{name: "json nested 10k deep", body: []byte(`{"` + top + `":` + deep + `}`), status: 400})
	}
	add(hostileCase{name: "non-UTF-8 label", body: wrap(e.message(t, 1, one, invalidUTF8)), status: 400})
	add(hostileCase{name: "1 MB label value", body: wrap(e.message(t, 1, one, strings.Repeat("v", 1<<20))), status: 400})
	add(hostileCase{name: "100k series", body: wrap(e.message(t, 100_000, one, "v")), status: 200})
	add(hostileCase{name: "one cluster per series", body: wrap(e.message(t, 100_000, each, "v")), status: 400, reason: "distinct clusters"})
	for i, c := range cs {
		if w, ok := hostileExceptions[e.name+"/"+c.name]; ok {
			cs[i].status, cs[i].code, cs[i].reason = w.status, w.code, w.reason
		}
	}
	return cs
}

// hostileExceptions are the answers that differ from the rule above, and
// why.
var hostileExceptions = map[string]hostileCase{
	// As Loki (encoding/json semantics): invalid UTF-8 in a JSON string
	// becomes U+FFFD, so the label that reaches Kafka is valid UTF-8.
	"loki json/non-UTF-8 label": {status: 200},
	// 100,000 spans, data points or log records as OTLP/JSON are 17-39 MB:
	// over the 16 MiB body limit before anything is parsed.
	"otlp http traces json/100k series":             {status: 413, reason: "exceeds the limit"},
	"otlp http traces json/one cluster per series":  {status: 413, reason: "exceeds the limit"},
	"otlp http metrics json/one cluster per series": {status: 413, reason: "exceeds the limit"},
	"otlp http logs json/100k series":               {status: 413, reason: "exceeds the limit"},
	"otlp http logs json/one cluster per series":    {status: 413, reason: "exceeds the limit"},
	// 100,000 data points as OTLP/JSON (~15 MB), and one 5 MB message of
	// 100,000 data points in distinct clusters, cost more than the whole
	// in-flight budget (128 MiB here) by the metrics decoder's estimate:
	// 413 / RESOURCE_EXHAUSTED without RetryInfo, before anything is
	// decoded (a 503 here was retried in vain).
	"otlp http metrics json/100k series":                {status: 413, reason: "whole in-flight budget"},
	"otlp http metrics protobuf/one cluster per series": {status: 413, reason: "whole in-flight budget"},
	"otlp grpc metrics/one cluster per series":          {code: codes.ResourceExhausted, reason: "whole in-flight budget"},
	// grpc-go answers a frame it cannot inflate itself, before the
	// service sees it, with INTERNAL: not retryable for OTLP exporters
	// either, so the client drops the batch as it would on a 4xx.
	"otlp grpc traces/truncated gzip":  {code: codes.Internal, reason: "decompressed data"},
	"otlp grpc metrics/truncated gzip": {code: codes.Internal, reason: "decompressed data"},
	"otlp grpc logs/truncated gzip":    {code: codes.Internal, reason: "decompressed data"},
	// OTLP metrics refuse the one invalid data point by partial success
	// (200, rejected_data_points 1), where traces answer 400 when no span
	// is left: both tell the exporter not to retry.
	"otlp http metrics protobuf/non-UTF-8 label":  {status: 200, reason: "not valid UTF-8"},
	"otlp http metrics protobuf/1 MB label value": {status: 200, reason: "longer than 4096 bytes"},
	"otlp http metrics json/non-UTF-8 label":      {status: 200, reason: "not valid UTF-8"},
	"otlp http metrics json/1 MB label value":     {status: 200, reason: "longer than 4096 bytes"},
	"otlp grpc metrics/non-UTF-8 label":           {code: codes.OK},
	"otlp grpc metrics/1 MB label value":          {code: codes.OK},
	// FINDING (reported): an OTLP log record whose attribute value is
	// not UTF-8 is accepted whole.
	"otlp http logs protobuf/non-UTF-8 label": {status: 200},
	"otlp http logs json/non-UTF-8 label":     {status: 200},
	"otlp grpc logs/non-UTF-8 label":          {code: codes.OK},
}

// jsonShapes is, per JSON endpoint, the top-level key and a request with
// NUMBER where a timestamp goes.
var jsonShapes = map[string][2]string{
	"/loki/api/v1/push": {"streams", `{"streams":[{"stream":{"cluster":"c"},"values":[[NUMBER,"x"]]}]}`},
	"/v1/traces":        {"resourceSpans", `{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"0102030405060708090a0b0c0d0e0f10","spanId":"0102030405060708","name":"op","startTimeUnixNano":NUMBER}]}]}]}`},
	"/v1/metrics":       {"resourceMetrics", `{"resourceMetrics":[{"scopeMetrics":[{"metrics":[{"name":"up","gauge":{"dataPoints":[{"timeUnixNano":NUMBER,"asDouble":1}]}}]}]}]}`},
	"/v1/logs":          {"resourceLogs", `{"resourceLogs":[{"scopeLogs":[{"logRecords":[{"timeUnixNano":NUMBER}]}]}]}`},
}

// grpcCodeOf is the OTLP gRPC answer to an HTTP status.
func grpcCodeOf(status int) codes.Code {
	switch status {
	case 200:
		return codes.OK
	case 413:
		return codes.ResourceExhausted
	}
	return codes.InvalidArgument
}

// send delivers one case to endpoint e and returns the HTTP status (or the
// gRPC code) and the message.
func (f *fixture) sendHostile(t *testing.T, e hostileEndpoint, grpcAddr string, c hostileCase) (int, codes.Code, string) {
	t.Helper()
	if e.path == "" {
		code, msg := rawGRPCExport(t, grpcAddr, e.grpcMethod, c)
		return 0, code, msg
	}
	req, err := http.NewRequest(http.MethodPost, f.srv.URL+e.path, bytes.NewReader(c.body))
	require.NoError(t, err)
	for i := 0; i < len(e.headers); i += 2 {
		req.Header.Set(e.headers[i], e.headers[i+1])
	}
	if c.gzip {
		req.Header.Set("Content-Encoding", "gzip")
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	msg, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, 0, string(msg)
}

// rawGRPCExport speaks gRPC's framing over cleartext HTTP/2 by hand, so the
// frame can carry anything: bytes no client library would send, a gzip
// bomb, or a length prefix of 4 GiB.
func rawGRPCExport(t *testing.T, addr, method string, c hostileCase) (codes.Code, string) {
	t.Helper()
	var protos http.Protocols
	protos.SetUnencryptedHTTP2(true)
	client := &http.Client{Transport: &http.Transport{Protocols: &protos}, Timeout: time.Minute}
	frame := []byte{0, 0, 0, 0, 0}
	if c.gzip {
		frame[0] = 1
	}
	binary.BigEndian.PutUint32(frame[1:], uint32(len(c.body)))
	if c.body == nil {
		binary.BigEndian.PutUint32(frame[1:], 1<<32-1)
	}
	req, err := http.NewRequest(http.MethodPost, "http://"+addr+method,
		bytes.NewReader(append(frame, c.body...)))
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/grpc")
	req.Header.Set("TE", "trailers")
	if c.gzip {
		req.Header.Set("Grpc-Encoding", "gzip")
	}
	resp, err := client.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	st, msg := resp.Trailer.Get("Grpc-Status"), resp.Trailer.Get("Grpc-Message")
	if st == "" { // a trailers-only answer
		st, msg = resp.Header.Get("Grpc-Status"), resp.Header.Get("Grpc-Message")
	}
	n, err := strconv.Atoi(st)
	require.NoError(t, err, "grpc-status %q (HTTP %d)", st, resp.StatusCode)
	return codes.Code(n), msg
}

// heapWatch samples the live heap (runtime/metrics, no stop-the-world)
// every millisecond until stopped, and keeps the peak.
type heapWatch struct {
	peak atomic.Uint64
	stop chan struct{}
	done chan struct{}
}

func liveHeap() uint64 {
	s := []runtimemetrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	runtimemetrics.Read(s)
	return s[0].Value.Uint64()
}

func watchHeap() *heapWatch {
	w := &heapWatch{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(w.done)
		for {
			if h := liveHeap(); h > w.peak.Load() {
				w.peak.Store(h)
			}
			select {
			case <-w.stop:
				return
			case <-time.After(time.Millisecond):
			}
		}
	}()
	return w
}

func (w *heapWatch) Stop() uint64 {
	close(w.stop)
	<-w.done
	return w.peak.Load()
}

// Hostile input on every endpoint: each malformed or oversized request
// gets its 4xx (or gRPC InvalidArgument / ResourceExhausted), no record
// of a refused request reaches Kafka, the heap stays within the in-flight budget plus
// a fixed allowance, and a well-behaved client writing at the same time is
// acknowledged every time.
func TestHostileInput(t *testing.T) {
	// Every body and decoded copy is reserved from this budget before it
	// is allocated (the largest single case: a 16 MiB body + 32 MiB
	// decoded), so the good client is never refused for memory.
	const inflight = 128 << 20
	f := newFixture(t, func(c *Config) { c.MaxInflightBytes = inflight })
	grpcAddr := f.serveOTLPGRPC(t)
	bomb := spaceBomb(t)

	// The other client: a small valid remote-write request, again and
	// again, for as long as the table runs.
	good := snappy.Encode(nil, remoteWriteV1(t, 10, func(int) string { return "good" }, "v"))
	var goodOK, goodOther atomic.Int64
	var goodLast atomic.Value
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			resp, msg := f.post(t, good)
			if resp.StatusCode == http.StatusNoContent {
				goodOK.Add(1)
			} else {
				goodOther.Add(1)
				goodLast.Store(fmt.Sprintf("%d %s", resp.StatusCode, msg))
			}
			time.Sleep(20 * time.Millisecond)
		}
	}()

	var worst uint64
	var worstCase string
	for _, e := range hostileEndpoints {
		// One endpoint's table at a time: the bodies of all of them would
		// raise the live heap, and with it how much garbage the collector
		// lets accumulate, blurring what one request costs.
		for _, c := range hostileCases(t, e, bomb) {
			t.Run(e.name+"/"+c.name, func(t *testing.T) {
				runtime.GC()
				base := liveHeap()
				heap := watchHeap()
				status, code, msg := f.sendHostile(t, e, grpcAddr, c)
				if peak := heap.Stop(); peak > base {
					t.Logf("heap +%d MiB", (peak-base)>>20)
					if peak-base > worst {
						worst, worstCase = peak-base, e.name+"/"+c.name
					}
					require.LessOrEqual(t, peak-base, uint64(inflight+e.heapAllowance()), "heap beyond the in-flight budget + %d MiB", e.heapAllowance()>>20)
				}
				if e.path == "" {
					require.Equal(t, c.code, code, msg)
				} else {
					if status/100 == 2 {
						status = 200
					}
					require.Equal(t, c.status, status, msg)
				}
				require.Contains(t, msg, c.reason)
			})
		}
	}
	close(stop)
	wg.Wait()
	t.Logf("largest heap growth during one request: %d MiB (%s); the other client: %d acknowledged, %d not",
		worst>>20, worstCase, goodOK.Load(), goodOther.Load())
	require.Zero(t, goodOther.Load(), "the well-behaved client was refused: %v", goodLast.Load())
	require.Positive(t, goodOK.Load())
	require.Zero(t, f.gw.inflight.Load(), "every reservation released")
	for _, topic := range []string{"tributary.metrics", "tributary.logs", "tributary.spans"} {
		for _, r := range testenv.ReadTopic(t, f.kafka.Addr, topic) {
			require.Contains(t, []string{"good", "hostile"}, string(r.Key), "a record of a refused request in %s", topic)
		}
	}
}
