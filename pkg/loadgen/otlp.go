package loadgen

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"math/rand"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	resourcepb "go.opentelemetry.io/proto/otlp/resource/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// SpanConfig shapes OTLP trace load.
type SpanConfig struct {
	// Bodies is how many distinct requests are built; each send re-stamps
	// one with new trace and span IDs and times, so no span repeats.
	Bodies          int `yaml:"bodies"`
	SpansPerRequest int `yaml:"spans_per_request"`
	SpansPerTrace   int `yaml:"spans_per_trace"`
	Attributes      int `yaml:"attributes"`
	Clusters        int `yaml:"clusters"`
}

// Validate checks the shape.
func (c SpanConfig) Validate() error {
	switch {
	case c.Bodies <= 0 || c.SpansPerRequest <= 0 || c.SpansPerTrace <= 0:
		return fmt.Errorf("span-bodies, spans-per-request and spans-per-trace must be positive")
	case c.Attributes < 0 || c.Attributes > len(spanAttributes):
		return fmt.Errorf("span-attributes must be 0 to %d", len(spanAttributes))
	case c.Clusters <= 0:
		return fmt.Errorf("clusters must be positive")
	}
	return nil
}

// spanAttributes are what an instrumented HTTP service and its database
// client put on spans (OpenTelemetry semantic conventions); a span gets
// the first -span-attributes of them.
var spanAttributes = []func(r *rand.Rand, i int) *commonpb.KeyValue{
	func(r *rand.Rand, i int) *commonpb.KeyValue {
		return strAttr("http.request.method", []string{"GET", "POST", "PUT", "DELETE"}[r.Intn(4)])
	},
	func(r *rand.Rand, i int) *commonpb.KeyValue {
		return strAttr("http.route", "/api/v1/"+[]string{"items", "orders", "users", "carts"}[i%4]+"/{id}")
	},
	func(r *rand.Rand, i int) *commonpb.KeyValue {
		return strAttr("url.path", "/api/v1/"+[]string{"items", "orders", "users", "carts"}[i%4]+"/"+strconv.Itoa(r.Intn(100000)))
	},
	func(r *rand.Rand, i int) *commonpb.KeyValue {
		return intAttr("http.response.status_code", []int64{200, 200, 200, 201, 404, 500}[r.Intn(6)])
	},
	func(r *rand.Rand, i int) *commonpb.KeyValue {
		return strAttr("server.address", "svc-"+strconv.Itoa(i%8)+".shop.svc")
	},
	func(r *rand.Rand, i int) *commonpb.KeyValue { return intAttr("server.port", 8080) },
	func(r *rand.Rand, i int) *commonpb.KeyValue { return strAttr("network.protocol.version", "1.1") },
	func(r *rand.Rand, i int) *commonpb.KeyValue { return strAttr("url.scheme", "http") },
	func(r *rand.Rand, i int) *commonpb.KeyValue {
		return strAttr("client.address", fmt.Sprintf("10.%d.%d.%d", r.Intn(256), r.Intn(256), 1+r.Intn(254)))
	},
	func(r *rand.Rand, i int) *commonpb.KeyValue {
		return strAttr("user_agent.original", "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36")
	},
	func(r *rand.Rand, i int) *commonpb.KeyValue { return strAttr("db.system.name", "postgresql") },
	func(r *rand.Rand, i int) *commonpb.KeyValue {
		return strAttr("db.query.text", "SELECT id, name, price FROM items WHERE id = $1")
	},
	func(r *rand.Rand, i int) *commonpb.KeyValue { return boolAttr("cache.hit", r.Intn(2) == 0) },
	func(r *rand.Rand, i int) *commonpb.KeyValue {
		return intAttr("messaging.batch.message_count", int64(r.Intn(50)))
	},
}

func strAttr(k, v string) *commonpb.KeyValue {
	return &commonpb.KeyValue{Key: k, Value: &commonpb.AnyValue{Value: &commonpb.AnyValue_StringValue{StringValue: v}}}
}

func intAttr(k string, v int64) *commonpb.KeyValue {
	return &commonpb.KeyValue{Key: k, Value: &commonpb.AnyValue{Value: &commonpb.AnyValue_IntValue{IntValue: v}}}
}

func boolAttr(k string, v bool) *commonpb.KeyValue {
	return &commonpb.KeyValue{Key: k, Value: &commonpb.AnyValue{Value: &commonpb.AnyValue_BoolValue{BoolValue: v}}}
}

// OTLPBodies builds Bodies OTLP ExportTraceServiceRequest bodies (binary
// protobuf, encoded with the official OTLP protos), each of one service of
// cluster k mod Clusters (k8s.cluster.name on its resource): traces of
// SpansPerTrace spans, a server root and its children, with Attributes
// attributes each, an exception event and error status on one span in 20.
func OTLPBodies(c SpanConfig) ([]*Body, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	rnd := rand.New(rand.NewSource(3))
	out := make([]*Body, 0, c.Bodies)
	for k := range c.Bodies {
		b, err := otlpBody(k, c, rnd)
		if err != nil {
			return nil, fmt.Errorf("OTLP body %d: %w", k, err)
		}
		out = append(out, b)
	}
	return out, nil
}

// spanHoles are a span's fields that change on every send.
type spanHoles struct {
	traceID, spanID, parentID []byte
	start, end                int64 // relative to the send time, ns
	event                     int64
}

func otlpBody(k int, c SpanConfig, rnd *rand.Rand) (*Body, error) {
	cluster := clusterName(k % c.Clusters)
	service := "svc-" + strconv.Itoa(k%8)
	ss := &tracepb.ScopeSpans{Scope: &commonpb.InstrumentationScope{Name: "go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp", Version: "0.61.0"}}
	var holes []spanHoles
	var traceID, rootID []byte
	for i := range c.SpansPerRequest {
		h := spanHoles{traceID: traceID, spanID: randomID(rnd, 8)}
		sp := &tracepb.Span{Name: "GET /api/v1/items/{id}", Kind: tracepb.Span_SPAN_KIND_SERVER}
		if i%c.SpansPerTrace == 0 {
			traceID, rootID = randomID(rnd, 16), h.spanID
			h.traceID = traceID
		} else {
			h.parentID = rootID
			sp.Name, sp.Kind = "SELECT shop.items", tracepb.Span_SPAN_KIND_CLIENT
			sp.ParentSpanId = rootID
		}
		sp.TraceId, sp.SpanId = h.traceID, h.spanID
		// Durations of 1-200 ms, ending up to 2 s before the send. The
		// sub-millisecond part of each time is 3i+1 below a whole
		// millisecond (start and end, whole milliseconds apart) or 3i
		// (event): no two time fields of a
		// body have the same bytes, so each can be found in the encoding.
		dur := int64(1+rnd.Intn(200)) * int64(time.Millisecond)
		h.end = -int64(rnd.Intn(2000))*int64(time.Millisecond) - int64(3*i+1)
		h.start = h.end - dur
		sp.StartTimeUnixNano, sp.EndTimeUnixNano = placeholderTime(h.start), placeholderTime(h.end)
		for a := range c.Attributes {
			sp.Attributes = append(sp.Attributes, spanAttributes[a](rnd, i))
		}
		if i%20 == 19 {
			h.event = h.end - dur/2/int64(time.Millisecond)*int64(time.Millisecond) + 1
			sp.Events = []*tracepb.Span_Event{{Name: "exception", TimeUnixNano: placeholderTime(h.event), Attributes: []*commonpb.KeyValue{
				strAttr("exception.type", "*errors.errorString"), strAttr("exception.message", "connection reset by peer"),
			}}}
			sp.Status = &tracepb.Status{Code: tracepb.Status_STATUS_CODE_ERROR, Message: "connection reset by peer"}
		}
		ss.Spans = append(ss.Spans, sp)
		holes = append(holes, h)
	}
	req := &coltracepb.ExportTraceServiceRequest{ResourceSpans: []*tracepb.ResourceSpans{{
		Resource: &resourcepb.Resource{Attributes: []*commonpb.KeyValue{
			strAttr("service.name", service), strAttr("service.version", "1.4."+strconv.Itoa(k%5)),
			strAttr("k8s.cluster.name", cluster), strAttr("k8s.namespace.name", "shop"),
			strAttr("k8s.pod.name", fmt.Sprintf("%s-%08x-%05d", service, rnd.Uint32(), k)), strAttr("k8s.node.name", "node-"+strconv.Itoa(k%16)),
			strAttr("telemetry.sdk.name", "opentelemetry"), strAttr("telemetry.sdk.language", "go"), strAttr("telemetry.sdk.version", "1.37.0"),
		}},
		ScopeSpans: []*tracepb.ScopeSpans{ss},
	}}}
	data, err := proto.MarshalOptions{Deterministic: true}.Marshal(req)
	if err != nil {
		return nil, err
	}
	st, err := newSpanStamper(data, holes)
	if err != nil {
		return nil, err
	}
	b := &Body{Data: data, ContentType: "application/x-protobuf", Cluster: cluster, Items: c.SpansPerRequest, stamper: st}
	b.Stamp(time.Now())
	return b, nil
}

// randomID is a random ID whose bytes are never all zero.
func randomID(rnd *rand.Rand, n int) []byte {
	id := make([]byte, n)
	for i := range id {
		id[i] = byte(1 + rnd.Intn(255))
	}
	return id
}

// timeBase is where placeholder times start: far from any real time and
// from every other field's bytes, so they can be found in the encoding.
const timeBase = int64(0x5A5A5A5A00000000)

func placeholderTime(rel int64) uint64 { return uint64(timeBase + rel) }

// spanStamper gives a body's spans new IDs and times on every send: the
// first 8 bytes of each trace ID and the first 4 of each span ID (in the
// span and in its children's parent_span_id) take the send's round, so
// every send is new spans with the same shape; times move to the send.
type spanStamper struct {
	traceIDs, spanIDs []int // offsets in the body
	times             []timeHole
	round             uint64
	lastNs            int64
}

type timeHole struct {
	off int
	rel int64
}

// newSpanStamper finds each hole's bytes in data: every ID and time must
// occur exactly as often as the spans put it there.
func newSpanStamper(data []byte, holes []spanHoles) (*spanStamper, error) {
	st := &spanStamper{}
	find := func(val []byte, want int) ([]int, error) {
		var offs []int
		for from := 0; ; {
			i := bytes.Index(data[from:], val)
			if i < 0 {
				break
			}
			offs = append(offs, from+i)
			from += i + 1
		}
		if len(offs) != want {
			return nil, fmt.Errorf("field % x found %d times in the encoding, want %d", val, len(offs), want)
		}
		return offs, nil
	}
	children := map[string]int{}
	perTrace := map[string]int{}
	for _, h := range holes {
		perTrace[string(h.traceID)]++
		if h.parentID != nil {
			children[string(h.parentID)]++
		}
	}
	seen := map[string]bool{}
	for _, h := range holes {
		if !seen[string(h.traceID)] {
			seen[string(h.traceID)] = true
			offs, err := find(h.traceID, perTrace[string(h.traceID)])
			if err != nil {
				return nil, err
			}
			st.traceIDs = append(st.traceIDs, offs...)
		}
		offs, err := find(h.spanID, 1+children[string(h.spanID)])
		if err != nil {
			return nil, err
		}
		st.spanIDs = append(st.spanIDs, offs...)
		rels := []int64{h.start, h.end}
		if h.event != 0 {
			rels = append(rels, h.event)
		}
		for _, rel := range rels {
			var v [8]byte
			binary.LittleEndian.PutUint64(v[:], placeholderTime(rel))
			offs, err := find(v[:], 1)
			if err != nil {
				return nil, err
			}
			st.times = append(st.times, timeHole{offs[0], rel})
		}
	}
	return st, nil
}

func (s *spanStamper) stamp(data []byte, now time.Time) {
	ns := max(now.UnixNano(), s.lastNs+1)
	s.lastNs = ns
	s.round++
	for _, off := range s.traceIDs {
		binary.BigEndian.PutUint64(data[off:], s.round)
	}
	for _, off := range s.spanIDs {
		binary.BigEndian.PutUint32(data[off:], uint32(s.round))
	}
	for _, h := range s.times {
		binary.LittleEndian.PutUint64(data[h.off:], uint64(ns+h.rel))
	}
}

// traceServiceExport is the gRPC method of OTLP trace export.
const traceServiceExport = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"

// grpcSender calls TraceService/Export with the body's bytes as the
// request message (no encoding at send time), over a few connections, as
// an OpenTelemetry SDK or Collector exporter does over one.
type grpcSender struct {
	conns   []*grpc.ClientConn
	next    atomic.Uint64
	timeout time.Duration
	tenant  string
}

// grpcConns is how many connections the load is spread over: one HTTP/2
// connection's flow control would cap the rate below what the receiver
// takes.
const grpcConns = 4

func newGRPCSender(target, userAgent, tenant string, timeout time.Duration) (*grpcSender, error) {
	target = strings.TrimPrefix(strings.TrimPrefix(target, "http://"), "grpc://")
	s := &grpcSender{timeout: timeout, tenant: tenant}
	for range grpcConns {
		c, err := grpc.NewClient(target, grpc.WithTransportCredentials(insecure.NewCredentials()),
			grpc.WithDefaultCallOptions(grpc.ForceCodecV2(rawCodec{})), grpc.WithUserAgent(userAgent))
		if err != nil {
			s.Close()
			return nil, fmt.Errorf("otlp-grpc target %s: %w", target, err)
		}
		s.conns = append(s.conns, c)
	}
	return s, nil
}

func (s *grpcSender) Send(ctx context.Context, b *Body) (string, bool, error) {
	c := s.conns[s.next.Add(1)%uint64(len(s.conns))]
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	if s.tenant != "" {
		ctx = metadata.AppendToOutgoingContext(ctx, "X-Scope-OrgID", s.tenant)
	}
	var resp rawMessage
	err := c.Invoke(ctx, traceServiceExport, rawMessage(b.Data), &resp)
	if err != nil {
		return status.Code(err).String(), false, err
	}
	if rejected, msg := partialSuccess(resp); rejected > 0 {
		return "OK-partial", false, fmt.Errorf("%d spans rejected: %s", rejected, msg)
	}
	return "OK", true, nil
}

func (s *grpcSender) Close() error {
	for _, c := range s.conns {
		_ = c.Close()
	}
	return nil
}

// partialSuccess reads an ExportTraceServiceResponse.
func partialSuccess(resp []byte) (int64, string) {
	var r coltracepb.ExportTraceServiceResponse
	if proto.Unmarshal(resp, &r) != nil {
		return 0, ""
	}
	return r.GetPartialSuccess().GetRejectedSpans(), r.GetPartialSuccess().GetErrorMessage()
}

// rawMessage is a message already in its wire form.
type rawMessage []byte

// rawCodec sends and receives rawMessage as is. Its name is "proto", so
// the content type is the one every OTLP receiver expects.
type rawCodec struct{}

func (rawCodec) Marshal(v any) (mem.BufferSlice, error) {
	m, ok := v.(rawMessage)
	if !ok {
		return nil, fmt.Errorf("raw codec: cannot send %T", v)
	}
	return mem.BufferSlice{mem.SliceBuffer(m)}, nil
}

func (rawCodec) Unmarshal(data mem.BufferSlice, v any) error {
	p, ok := v.(*rawMessage)
	if !ok {
		return fmt.Errorf("raw codec: cannot receive into %T", v)
	}
	*p = data.Materialize()
	return nil
}

func (rawCodec) Name() string { return "proto" }
