package spanmetrics

import (
	"fmt"
	"sort"
	"strings"
	"unicode/utf8"

	"github.com/golang/snappy"
	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/proto"

	"github.com/tributary-io/tributary/pkg/ingester"
	"github.com/tributary-io/tributary/pkg/record"
)

// bounds are the upper bounds (le, in milliseconds) of the duration
// histogram: the spanmetrics connector's defaults, so that dashboards and
// Jaeger's Monitor tab read the same buckets.
var bounds = []float64{2, 4, 6, 8, 10, 50, 100, 200, 400, 800, 1000, 1400, 2000, 5000, 10_000, 15_000}

// nBuckets counts the buckets with +Inf.
const nBuckets = 17

// key identifies a label set within a partition.
type key struct {
	cluster, service, span, kind, status string
}

// hist is the calls and duration histogram of one label set. Buckets are
// not cumulative here; the request makes them so.
type hist struct {
	buckets [nBuckets]uint64
	sum     float64 // milliseconds
}

func (h *hist) observe(ms float64) {
	h.buckets[sort.SearchFloat64s(bounds, ms)]++
	h.sum += ms
}

func (h *hist) add(o *hist) {
	for i := range h.buckets {
		h.buckets[i] += o.buckets[i]
	}
	h.sum += o.sum
}

func (h *hist) count() uint64 {
	var n uint64
	for _, b := range h.buckets {
		n += b
	}
	return n
}

// batch is what a batch of span records adds.
type batch struct {
	sets  map[key]*hist
	spans map[string]uint64 // per cluster
	// noService counts spans whose resource has no service.name: the
	// connector skips them, and so do we.
	noService uint64
}

// Span kind and status code values as the connector names them; an
// unknown value is an empty label (left out), as there.
var (
	kindNames = map[tracepb.Span_SpanKind]string{
		tracepb.Span_SPAN_KIND_UNSPECIFIED: "SPAN_KIND_UNSPECIFIED",
		tracepb.Span_SPAN_KIND_INTERNAL:    "SPAN_KIND_INTERNAL",
		tracepb.Span_SPAN_KIND_SERVER:      "SPAN_KIND_SERVER",
		tracepb.Span_SPAN_KIND_CLIENT:      "SPAN_KIND_CLIENT",
		tracepb.Span_SPAN_KIND_PRODUCER:    "SPAN_KIND_PRODUCER",
		tracepb.Span_SPAN_KIND_CONSUMER:    "SPAN_KIND_CONSUMER",
	}
	statusNames = map[tracepb.Status_StatusCode]string{
		tracepb.Status_STATUS_CODE_UNSET: "STATUS_CODE_UNSET",
		tracepb.Status_STATUS_CODE_OK:    "STATUS_CODE_OK",
		tracepb.Status_STATUS_CODE_ERROR: "STATUS_CODE_ERROR",
	}
)

// maxLabelValue bounds service and span names in labels, in bytes. Mimir
// and Cortex refuse a request with a label value over 2048 bytes
// (-validation.max-length-label-value): a 400 for the whole write. Names
// this long are generated, not chosen; cutting them merges label sets
// that differ only past the cut.
const maxLabelValue = 1024

// decode aggregates recs. A record that does not decode is an error
// naming its offset; nothing of the batch is used then.
func decode(recs []ingester.Record, maxDecoded int) (*batch, error) {
	b := &batch{sets: map[key]*hist{}, spans: map[string]uint64{}}
	req := &coltracepb.ExportTraceServiceRequest{}
	var buf []byte
	for i := range recs {
		r := &recs[i]
		if ct := r.Envelope.GetContentType(); ct != "" && ct != record.ContentTypeTraces {
			return nil, fmt.Errorf("record %d: content type %q, want %q", r.Offset, ct, record.ContentTypeTraces)
		}
		n, err := snappy.DecodedLen(r.Value)
		if err != nil {
			return nil, fmt.Errorf("record %d: %w", r.Offset, err)
		}
		if n > maxDecoded {
			return nil, fmt.Errorf("record %d decodes to %d bytes, more than -spanmetrics.max-decoded-bytes %d", r.Offset, n, maxDecoded)
		}
		if buf, err = snappy.Decode(buf[:cap(buf)], r.Value); err != nil {
			return nil, fmt.Errorf("record %d: %w", r.Offset, err)
		}
		req.Reset()
		if err := proto.Unmarshal(buf, req); err != nil {
			return nil, fmt.Errorf("record %d: %w", r.Offset, err)
		}
		b.add(r.Envelope.GetCluster(), req)
	}
	return b, nil
}

// add counts the spans of req; cluster is the record's (the resource
// attribute k8s.cluster.name when the envelope has none).
func (b *batch) add(cluster string, req *coltracepb.ExportTraceServiceRequest) {
	for _, rs := range req.GetResourceSpans() {
		var service, resCluster string
		var hasService bool
		for _, kv := range rs.GetResource().GetAttributes() {
			switch kv.GetKey() {
			case "service.name":
				service, hasService = kv.GetValue().GetStringValue(), true
			case "k8s.cluster.name":
				resCluster = kv.GetValue().GetStringValue()
			}
		}
		c := cluster
		if c == "" {
			c = resCluster
		}
		c = labelValue(c)
		if !hasService {
			for _, ss := range rs.GetScopeSpans() {
				b.noService += uint64(len(ss.GetSpans()))
			}
			continue
		}
		service = labelValue(service)
		for _, ss := range rs.GetScopeSpans() {
			for _, sp := range ss.GetSpans() {
				k := key{cluster: c, service: service, span: labelValue(sp.GetName()),
					kind: kindNames[sp.GetKind()], status: statusNames[sp.GetStatus().GetCode()]}
				h := b.sets[k]
				if h == nil {
					h = &hist{}
					b.sets[k] = h
				}
				// As the connector: an end before the start is 0 ms.
				ms := 0.0
				if s, e := sp.GetStartTimeUnixNano(), sp.GetEndTimeUnixNano(); e > s {
					ms = float64(e-s) / 1e6
				}
				h.observe(ms)
				b.spans[c]++
			}
		}
	}
}

// labelValue is s as valid UTF-8 of at most maxLabelValue bytes.
func labelValue(s string) string {
	if !utf8.ValidString(s) {
		s = strings.ToValidUTF8(s, "\uFFFD")
	}
	if len(s) <= maxLabelValue {
		return s
	}
	cut := maxLabelValue
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut]
}
