package elasticsearch

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"math"
	"strconv"

	tracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	otlptrace "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/proto"

	"github.com/tributary-io/tributary/pkg/ingester"
)

// Jaeger's span document, from one OTLP span (field by field, the rules of
// Jaeger v2's own Elasticsearch writer):
//
//	traceID, spanID      32 / 16 lowercase hex digits (exact term queries)
//	parentSpanID         16 hex digits; left out for a root span
//	operationName        span name
//	flags                OTLP span flags (W3C trace flags; left out if 0)
//	references           parent as CHILD_OF first; links FOLLOWS_FROM (or
//	                     CHILD_OF if the link says opentracing.ref_type=child_of)
//	startTime, duration  microseconds; startTimeMillis epoch milliseconds
//	tags                 otel.scope.name/version, the span attributes,
//	                     span.kind (client, server, producer, consumer,
//	                     internal), error=true for status ERROR or
//	                     otel.status_code=OK, otel.status_description,
//	                     w3c.tracestate
//	logs                 one per event: {timestamp µs, fields}, the event
//	                     name as field "event" unless an attribute has that key
//	process              serviceName from service.name
//	                     ("OTLPResourceNoServiceName" if none), tags from
//	                     the other resource attributes, with
//	                     k8s.cluster.name = the record's cluster if missing
//
// Every tag is {key, type, value}; type is string, bool, int64, float64 or
// binary and value is always a JSON string (bool "true", int64 "42",
// float64 "0.5" or "NaN", binary as hex, arrays and maps as JSON text of
// type string). Jaeger's reader accepts both typed and string values and
// parses the string by the type; strings keep int64 exact for JSON
// readers, and give one value field one type, which the keyword mapping
// stores anyway and which servers that map fields from the first value
// they see (ZincSearch) need.
//
// The service document is {serviceName, operationName}, _id the 64-bit
// FNV-1a of serviceName followed by operationName in hex: Jaeger's own id,
// so that documents of both writers overwrite each other.
type jaegerSpan struct {
	TraceID         string          `json:"traceID"`
	SpanID          string          `json:"spanID"`
	ParentSpanID    string          `json:"parentSpanID,omitempty"`
	Flags           uint32          `json:"flags,omitempty"`
	OperationName   string          `json:"operationName"`
	References      []jaegerRef     `json:"references"`
	StartTime       uint64          `json:"startTime"`
	StartTimeMillis uint64          `json:"startTimeMillis"`
	Duration        uint64          `json:"duration"`
	Tags            []jaegerKV      `json:"tags"`
	Logs            []jaegerLog     `json:"logs"`
	Process         json.RawMessage `json:"process"`
}

type jaegerRef struct {
	RefType string `json:"refType"`
	TraceID string `json:"traceID"`
	SpanID  string `json:"spanID"`
}

type jaegerKV struct {
	Key   string `json:"key"`
	Type  string `json:"type"`
	Value string `json:"value"`
}

type jaegerLog struct {
	Timestamp uint64     `json:"timestamp"`
	Fields    []jaegerKV `json:"fields"`
}

type jaegerProcess struct {
	ServiceName string     `json:"serviceName"`
	Tags        []jaegerKV `json:"tags"`
}

type jaegerService struct {
	ServiceName   string `json:"serviceName"`
	OperationName string `json:"operationName"`
}

const (
	noServiceName  = "OTLPResourceNoServiceName"
	clusterAttr    = "k8s.cluster.name"
	serviceAttr    = "service.name"
	eventNameField = "event"
	refTypeAttr    = "opentracing.ref_type"
)

var spanKinds = map[otlptrace.Span_SpanKind]string{
	otlptrace.Span_SPAN_KIND_CLIENT:   "client",
	otlptrace.Span_SPAN_KIND_SERVER:   "server",
	otlptrace.Span_SPAN_KIND_PRODUCER: "producer",
	otlptrace.Span_SPAN_KIND_CONSUMER: "consumer",
	otlptrace.Span_SPAN_KIND_INTERNAL: "internal",
}

// jaegerEncoder turns span records into documents. It is not safe for
// concurrent use.
type jaegerEncoder struct {
	names    jaegerIndexNames
	maxBytes int

	buf     bytes.Buffer  // all bodies of one batch, new for each
	json    *json.Encoder // into buf
	decoded []byte
	days    map[uint64]string // "2006-01-02" by day number since the epoch
	doc     jaegerSpan        // reused between spans
	scratch bytes.Buffer      // process JSON and nested attribute values
	// perRecord is the body bytes per record of the last batch: the next
	// buffer is allocated at about its final size (growing one by
	// doubling, each step cleared and copied, was 40% of the encoding).
	perRecord int
}

func newJaegerEncoder(names jaegerIndexNames, maxDecodedBytes int) *jaegerEncoder {
	e := &jaegerEncoder{names: names, maxBytes: maxDecodedBytes, days: make(map[uint64]string)}
	// Empty lists are written as [], not null.
	e.doc.References, e.doc.Tags, e.doc.Logs = []jaegerRef{}, []jaegerKV{}, []jaegerLog{}
	e.json = json.NewEncoder(&e.buf)
	e.json.SetEscapeHTML(false)
	return e
}

// encode returns the span documents of recs, and a service document for
// each (day, service, operation) that cache does not hold, with the cache
// keys to remember once they are indexed. Bodies share one new buffer,
// owned by the documents. An error names the record that cannot be
// decoded; retrying cannot help.
func (e *jaegerEncoder) encode(recs []ingester.Record, cache *serviceCache) ([]document, []string, error) {
	e.buf = *bytes.NewBuffer(make([]byte, 0, e.perRecord*len(recs)*9/8))
	type span struct{ start, end int }
	var (
		spans   []span
		docs    []document
		keys    []string
		pending = map[string]bool{} // service documents of this batch
	)
	for i := range recs {
		r := &recs[i]
		name := recordName(r)
		req, err := e.decode(r.Value)
		if err != nil {
			return nil, nil, fmt.Errorf("record %s: %w", name, err)
		}
		n := 0
		for ri, rs := range req.GetResourceSpans() {
			service, process, err := e.process(rs, r.Envelope.GetCluster())
			if err != nil {
				return nil, nil, fmt.Errorf("record %s: resource %d: %w", name, ri, err)
			}
			for _, ss := range rs.GetScopeSpans() {
				for _, sp := range ss.GetSpans() {
					if err := e.span(sp, ss.GetScope(), process); err != nil {
						return nil, nil, fmt.Errorf("record %s: span %d: %w", name, n, err)
					}
					day := e.day(sp.GetStartTimeUnixNano())
					start := e.buf.Len()
					if err := e.json.Encode(&e.doc); err != nil {
						return nil, nil, fmt.Errorf("record %s: span %d: %w", name, n, err)
					}
					body := e.buf.Bytes()[start : e.buf.Len()-1] // Encode adds a newline
					spans = append(spans, span{start, e.buf.Len() - 1})
					docs = append(docs, document{rec: name, entry: n, index: e.names.span + day, id: spanDocID(&e.doc, body)})

					svc := jaegerService{ServiceName: service, OperationName: sp.GetName()}
					id := serviceDocID(svc)
					index := e.names.service + day
					if key := index + "/" + id; !pending[key] && !cache.has(key) {
						pending[key] = true
						keys = append(keys, key)
						start := e.buf.Len()
						if err := e.json.Encode(svc); err != nil {
							return nil, nil, fmt.Errorf("record %s: span %d: %w", name, n, err)
						}
						spans = append(spans, span{start, e.buf.Len() - 1})
						docs = append(docs, document{rec: name, entry: n, index: index, id: id})
					}
					n++
				}
			}
		}
	}
	b := e.buf.Bytes()
	for i, s := range spans {
		docs[i].body = b[s.start:s.end]
	}
	if len(recs) > 0 {
		e.perRecord = len(b) / len(recs)
	}
	return docs, keys, nil
}

func (e *jaegerEncoder) decode(value []byte) (*tracepb.ExportTraceServiceRequest, error) {
	raw, err := unsnappy(&e.decoded, value, e.maxBytes)
	if err != nil {
		return nil, err
	}
	var req tracepb.ExportTraceServiceRequest
	if err := proto.Unmarshal(raw, &req); err != nil {
		return nil, fmt.Errorf("trace export request: %w", err)
	}
	return &req, nil
}

// process is the service name and the "process" JSON of a resource.
func (e *jaegerEncoder) process(rs *otlptrace.ResourceSpans, cluster string) (string, json.RawMessage, error) {
	p := jaegerProcess{ServiceName: noServiceName, Tags: []jaegerKV{}}
	hasCluster := false
	for _, a := range rs.GetResource().GetAttributes() {
		switch a.GetKey() {
		case serviceAttr:
			if s := e.valueString(a.GetValue()); s != "" {
				p.ServiceName = s
			}
			continue
		case clusterAttr:
			hasCluster = true
		}
		p.Tags = append(p.Tags, e.kv(a))
	}
	if !hasCluster && cluster != "" {
		p.Tags = append(p.Tags, jaegerKV{Key: clusterAttr, Type: "string", Value: cluster})
	}
	body, err := json.Marshal(p)
	return p.ServiceName, body, err
}

// span fills e.doc from sp.
func (e *jaegerEncoder) span(sp *otlptrace.Span, scope *commonpb.InstrumentationScope, process json.RawMessage) error {
	d := &e.doc
	traceID, spanID := sp.GetTraceId(), sp.GetSpanId()
	if len(traceID) != 16 || allZero(traceID) {
		return fmt.Errorf("trace ID %x: want 16 bytes, not all zero", traceID)
	}
	if len(spanID) != 8 || allZero(spanID) {
		return fmt.Errorf("span ID %x: want 8 bytes, not all zero", spanID)
	}
	d.TraceID = hex.EncodeToString(traceID)
	d.SpanID = hex.EncodeToString(spanID)
	d.ParentSpanID = ""
	d.References = d.References[:0]
	switch parent := sp.GetParentSpanId(); {
	case len(parent) == 0:
	case len(parent) != 8:
		return fmt.Errorf("parent span ID %x: want 8 bytes", parent)
	case allZero(parent): // some SDKs' way of saying "no parent"
	default:
		d.ParentSpanID = hex.EncodeToString(parent)
		d.References = append(d.References, jaegerRef{RefType: "CHILD_OF", TraceID: d.TraceID, SpanID: d.ParentSpanID})
	}
	for _, l := range sp.GetLinks() {
		// A link Jaeger could not parse would fail the whole trace in its
		// reader; the span is kept without it.
		if len(l.GetTraceId()) != 16 || len(l.GetSpanId()) != 8 {
			continue
		}
		ref := jaegerRef{RefType: "FOLLOWS_FROM", TraceID: hex.EncodeToString(l.GetTraceId()), SpanID: hex.EncodeToString(l.GetSpanId())}
		for _, a := range l.GetAttributes() {
			if a.GetKey() == refTypeAttr && a.GetValue().GetStringValue() == "child_of" {
				ref.RefType = "CHILD_OF"
			}
		}
		if d.ParentSpanID != "" && ref.TraceID == d.TraceID && ref.SpanID == d.ParentSpanID {
			d.References[0].RefType = ref.RefType // the parent, linked too: one reference, the link's type
			continue
		}
		d.References = append(d.References, ref)
	}
	d.Flags = sp.GetFlags()
	d.OperationName = sp.GetName()
	start, end := sp.GetStartTimeUnixNano(), sp.GetEndTimeUnixNano()
	d.StartTime = start / 1e3
	d.StartTimeMillis = start / 1e6
	d.Duration = 0
	if end > start {
		d.Duration = (end - start) / 1e3
	}

	d.Tags = d.Tags[:0]
	if n := scope.GetName(); n != "" {
		d.Tags = append(d.Tags, jaegerKV{Key: "otel.scope.name", Type: "string", Value: n})
	}
	if v := scope.GetVersion(); v != "" {
		d.Tags = append(d.Tags, jaegerKV{Key: "otel.scope.version", Type: "string", Value: v})
	}
	for _, a := range sp.GetAttributes() {
		d.Tags = append(d.Tags, e.kv(a))
	}
	if k, ok := spanKinds[sp.GetKind()]; ok {
		d.Tags = append(d.Tags, jaegerKV{Key: "span.kind", Type: "string", Value: k})
	}
	switch sp.GetStatus().GetCode() {
	case otlptrace.Status_STATUS_CODE_ERROR:
		d.Tags = append(d.Tags, jaegerKV{Key: "error", Type: "bool", Value: "true"})
	case otlptrace.Status_STATUS_CODE_OK:
		d.Tags = append(d.Tags, jaegerKV{Key: "otel.status_code", Type: "string", Value: "OK"})
	}
	if m := sp.GetStatus().GetMessage(); m != "" {
		d.Tags = append(d.Tags, jaegerKV{Key: "otel.status_description", Type: "string", Value: m})
	}
	if ts := sp.GetTraceState(); ts != "" {
		d.Tags = append(d.Tags, jaegerKV{Key: "w3c.tracestate", Type: "string", Value: ts})
	}

	d.Logs = d.Logs[:0]
	for _, ev := range sp.GetEvents() {
		l := jaegerLog{Timestamp: ev.GetTimeUnixNano() / 1e3, Fields: make([]jaegerKV, 0, len(ev.GetAttributes())+1)}
		if ev.GetName() != "" && !hasKey(ev.GetAttributes(), eventNameField) {
			l.Fields = append(l.Fields, jaegerKV{Key: eventNameField, Type: "string", Value: ev.GetName()})
		}
		for _, a := range ev.GetAttributes() {
			l.Fields = append(l.Fields, e.kv(a))
		}
		d.Logs = append(d.Logs, l)
	}
	d.Process = process
	return nil
}

func (e *jaegerEncoder) day(startNanos uint64) string {
	n := startNanos / (86400 * 1e9)
	s, ok := e.days[n]
	if !ok {
		if len(e.days) >= 1000 { // spans of many days: bounded anyway
			clear(e.days)
		}
		s = spanDay(startNanos)
		e.days[n] = s
	}
	return s
}

// kv is an attribute as a Jaeger tag (see jaegerSpan for the types).
func (e *jaegerEncoder) kv(a *commonpb.KeyValue) jaegerKV {
	v := a.GetValue()
	switch x := v.GetValue().(type) {
	case *commonpb.AnyValue_BoolValue:
		return jaegerKV{Key: a.GetKey(), Type: "bool", Value: strconv.FormatBool(x.BoolValue)}
	case *commonpb.AnyValue_IntValue:
		return jaegerKV{Key: a.GetKey(), Type: "int64", Value: strconv.FormatInt(x.IntValue, 10)}
	case *commonpb.AnyValue_DoubleValue:
		return jaegerKV{Key: a.GetKey(), Type: "float64", Value: formatFloat(x.DoubleValue)}
	case *commonpb.AnyValue_BytesValue:
		return jaegerKV{Key: a.GetKey(), Type: "binary", Value: hex.EncodeToString(x.BytesValue)}
	}
	return jaegerKV{Key: a.GetKey(), Type: "string", Value: e.valueString(v)}
}

// valueString is v as text: strings as they are, scalars formatted,
// arrays and maps as JSON (bytes in them base64, as encoding/json writes
// them), an empty value as "".
func (e *jaegerEncoder) valueString(v *commonpb.AnyValue) string {
	switch x := v.GetValue().(type) {
	case *commonpb.AnyValue_StringValue:
		return x.StringValue
	case *commonpb.AnyValue_BoolValue:
		return strconv.FormatBool(x.BoolValue)
	case *commonpb.AnyValue_IntValue:
		return strconv.FormatInt(x.IntValue, 10)
	case *commonpb.AnyValue_DoubleValue:
		return formatFloat(x.DoubleValue)
	case *commonpb.AnyValue_BytesValue:
		return hex.EncodeToString(x.BytesValue)
	case *commonpb.AnyValue_ArrayValue, *commonpb.AnyValue_KvlistValue:
		e.scratch.Reset()
		enc := json.NewEncoder(&e.scratch)
		enc.SetEscapeHTML(false)
		if err := enc.Encode(rawValue(v)); err != nil {
			return "" // only non-finite floats, written as strings by rawValue
		}
		return string(bytes.TrimSuffix(e.scratch.Bytes(), []byte("\n")))
	}
	return ""
}

// rawValue is v as plain Go values for encoding/json.
func rawValue(v *commonpb.AnyValue) any {
	switch x := v.GetValue().(type) {
	case *commonpb.AnyValue_StringValue:
		return x.StringValue
	case *commonpb.AnyValue_BoolValue:
		return x.BoolValue
	case *commonpb.AnyValue_IntValue:
		return x.IntValue
	case *commonpb.AnyValue_DoubleValue:
		if math.IsNaN(x.DoubleValue) || math.IsInf(x.DoubleValue, 0) {
			return formatFloat(x.DoubleValue)
		}
		return x.DoubleValue
	case *commonpb.AnyValue_BytesValue:
		return base64.StdEncoding.EncodeToString(x.BytesValue)
	case *commonpb.AnyValue_ArrayValue:
		out := make([]any, 0, len(x.ArrayValue.GetValues()))
		for _, el := range x.ArrayValue.GetValues() {
			out = append(out, rawValue(el))
		}
		return out
	case *commonpb.AnyValue_KvlistValue:
		out := make(map[string]any, len(x.KvlistValue.GetValues()))
		for _, kv := range x.KvlistValue.GetValues() {
			out[kv.GetKey()] = rawValue(kv.GetValue())
		}
		return out
	}
	return nil
}

// formatFloat writes plain decimals where they stay short (what a user
// types in a tag search), exponents beyond, and NaN, +Inf, -Inf, which
// strconv.ParseFloat (Jaeger's reader) reads back.
func formatFloat(f float64) string {
	if math.Abs(f) < 1e21 {
		return strconv.FormatFloat(f, 'f', -1, 64)
	}
	return strconv.FormatFloat(f, 'g', -1, 64)
}

func hasKey(attrs []*commonpb.KeyValue, key string) bool {
	for _, a := range attrs {
		if a.GetKey() == key {
			return true
		}
	}
	return false
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// spanDocID is traceID_spanID_<64 bits of the body's SHA-256 in hex>, the
// form of Jaeger v2's ids: a replay or a client's retry overwrites, and a
// span resent with other content (another process, a correction) is a
// second document, as Jaeger's reader expects (it deduplicates spans).
func spanDocID(d *jaegerSpan, body []byte) string {
	sum := sha256.Sum256(body)
	return d.TraceID + "_" + d.SpanID + "_" + hex.EncodeToString(sum[:8])
}

// serviceDocID is Jaeger's id of a service document.
func serviceDocID(s jaegerService) string {
	h := fnv.New64a()
	h.Write([]byte(s.ServiceName))
	h.Write([]byte(s.OperationName))
	return strconv.FormatUint(h.Sum64(), 16)
}
