package otlp

import (
	"bytes"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/golang/snappy"
	"github.com/stretchr/testify/require"
	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	resourcepb "go.opentelemetry.io/proto/otlp/resource/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/proto"

	"github.com/tributary-io/tributary/pkg/reject"
)

func str(k, v string) *commonpb.KeyValue {
	return &commonpb.KeyValue{Key: k, Value: &commonpb.AnyValue{Value: &commonpb.AnyValue_StringValue{StringValue: v}}}
}

// span is a valid span; n makes its IDs unique.
func span(n int) *tracepb.Span {
	return &tracepb.Span{
		TraceId:           []byte{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, byte(n + 1)},
		SpanId:            []byte{1, 2, 3, 4, 5, 6, byte(n >> 8), byte(n + 1)},
		ParentSpanId:      []byte{9, 9, 9, 9, 9, 9, 9, 9},
		Name:              fmt.Sprintf("GET /item/%d", n),
		Kind:              tracepb.Span_SPAN_KIND_SERVER,
		StartTimeUnixNano: 1_700_000_000_000_000_000,
		EndTimeUnixNano:   1_700_000_000_250_000_000,
		Attributes:        []*commonpb.KeyValue{str("http.request.method", "GET"), {Key: "http.response.status_code", Value: &commonpb.AnyValue{Value: &commonpb.AnyValue_IntValue{IntValue: 200}}}},
		Events:            []*tracepb.Span_Event{{TimeUnixNano: 1_700_000_000_100_000_000, Name: "cache miss", Attributes: []*commonpb.KeyValue{str("key", "k")}}},
		Links:             []*tracepb.Span_Link{{TraceId: bytes.Repeat([]byte{7}, 16), SpanId: bytes.Repeat([]byte{8}, 8)}},
		Status:            &tracepb.Status{Code: tracepb.Status_STATUS_CODE_OK},
	}
}

// resource holds spans for a service; cluster "" leaves k8s.cluster.name out.
func resource(cluster, service string, spans ...*tracepb.Span) *tracepb.ResourceSpans {
	attrs := []*commonpb.KeyValue{str("service.name", service)}
	if cluster != "" {
		attrs = append(attrs, str(ClusterAttribute, cluster))
	}
	return &tracepb.ResourceSpans{
		Resource:   &resourcepb.Resource{Attributes: attrs},
		ScopeSpans: []*tracepb.ScopeSpans{{Scope: &commonpb.InstrumentationScope{Name: "test", Version: "1"}, Spans: spans}},
		SchemaUrl:  "https://opentelemetry.io/schemas/1.26.0",
	}
}

func marshal(t testing.TB, rs ...*tracepb.ResourceSpans) []byte {
	t.Helper()
	b, err := proto.Marshal(&coltracepb.ExportTraceServiceRequest{ResourceSpans: rs})
	require.NoError(t, err)
	return b
}

// decodeBatch is what a sink reads: the record value as the official protos.
func decodeBatch(t testing.TB, b Batch) *coltracepb.ExportTraceServiceRequest {
	t.Helper()
	raw, err := snappy.Decode(nil, b.Value)
	require.NoError(t, err)
	var req coltracepb.ExportTraceServiceRequest
	require.NoError(t, proto.Unmarshal(raw, &req))
	return &req
}

func clusterOf(r *resourcepb.Resource) []string {
	var out []string
	for _, kv := range r.GetAttributes() {
		if kv.GetKey() == ClusterAttribute {
			out = append(out, kv.GetValue().GetStringValue())
		}
	}
	return out
}

func withCluster(rs *tracepb.ResourceSpans, cluster string) *tracepb.ResourceSpans {
	rs = proto.Clone(rs).(*tracepb.ResourceSpans)
	rs.Resource.Attributes = append(rs.Resource.Attributes, str(ClusterAttribute, cluster))
	return rs
}

func TestForwardsAsReceived(t *testing.T) {
	raw := marshal(t, resource("a", "api", span(1), span(2)), resource("a", "db", span(3)))
	var p Parser
	batches, err := p.Parse(raw, "", DefaultLimits())
	require.NoError(t, err)
	require.Nil(t, p.Refused())
	require.Len(t, batches, 1)
	require.True(t, batches[0].Forwarded)
	require.Equal(t, "a", batches[0].Cluster)
	require.Equal(t, 3, batches[0].Spans)
	dec, err := snappy.Decode(nil, batches[0].Value)
	require.NoError(t, err)
	require.Equal(t, raw, dec, "the request's bytes, unchanged")
}

// The gateway hands the parser to the next request before Kafka has the
// records: a record value must stay what it was through later calls.
func TestValuesOutliveTheNextParse(t *testing.T) {
	first := marshal(t, resource("a", "api", span(1), span(2)))
	rewritten := marshal(t, resource("", "web", span(3)), resource("b", "db", span(4)))
	var p Parser
	fwd, err := p.Parse(first, "", DefaultLimits())
	require.NoError(t, err)
	require.Len(t, fwd, 1)
	kept := fwd[0].Value
	rw, err := p.Parse(rewritten, "dflt", DefaultLimits())
	require.NoError(t, err)
	require.Len(t, rw, 2)
	keptRW := []Batch{rw[0], rw[1]}
	wantRW := []*coltracepb.ExportTraceServiceRequest{decodeBatch(t, rw[0]), decodeBatch(t, rw[1])}
	_, err = p.Parse(marshal(t, resource("c", "other", span(5), span(6), span(7))), "", DefaultLimits())
	require.NoError(t, err)
	_, err = p.Parse(rewritten, "x", DefaultLimits())
	require.NoError(t, err)

	dec, err := snappy.Decode(nil, kept)
	require.NoError(t, err)
	require.Equal(t, first, dec, "the forwarded record after three more calls")
	for i, b := range keptRW {
		require.True(t, proto.Equal(wantRW[i], decodeBatch(t, b)), "rewritten record %d after two more calls", i)
	}
}

func TestSplitsByClusterAndSetsTheAttribute(t *testing.T) {
	noCluster := resource("", "web", span(1), span(2))
	inB := resource("b", "api", span(3))
	alsoNoCluster := resource("", "worker", span(4))
	raw := marshal(t, noCluster, inB, alsoNoCluster)
	var p Parser
	batches, err := p.Parse(raw, "dflt", DefaultLimits())
	require.NoError(t, err)
	require.Nil(t, p.Refused())
	require.Len(t, batches, 2)
	require.Equal(t, "dflt", batches[0].Cluster, "clusters in first-seen order")
	require.Equal(t, 3, batches[0].Spans)
	require.False(t, batches[0].Forwarded)
	want := &coltracepb.ExportTraceServiceRequest{ResourceSpans: []*tracepb.ResourceSpans{withCluster(noCluster, "dflt"), withCluster(alsoNoCluster, "dflt")}}
	require.True(t, proto.Equal(want, decodeBatch(t, batches[0])), "spans intact, cluster attribute added")
	require.Equal(t, "b", batches[1].Cluster)
	require.True(t, proto.Equal(&coltracepb.ExportTraceServiceRequest{ResourceSpans: []*tracepb.ResourceSpans{inB}}, decodeBatch(t, batches[1])))
}

func TestResourceWithoutResourceField(t *testing.T) {
	rs := &tracepb.ResourceSpans{ScopeSpans: []*tracepb.ScopeSpans{{Spans: []*tracepb.Span{span(1)}}}}
	var p Parser
	batches, err := p.Parse(marshal(t, rs), "c", DefaultLimits())
	require.NoError(t, err)
	require.Len(t, batches, 1)
	got := decodeBatch(t, batches[0])
	require.Equal(t, []string{"c"}, clusterOf(got.ResourceSpans[0].Resource))
}

func TestRefusesInvalidSpansKeepsTheRest(t *testing.T) {
	lim := DefaultLimits()
	lim.MaxAttributes = 3
	lim.MaxAttributeValueLen = 100
	lim.MaxAttributeKeyLen = 30
	lim.MaxEvents = 2
	lim.MaxLinks = 2
	bad := []struct {
		name, reason, msg string
		mutate            func(*tracepb.Span)
	}{
		{"short trace id", "invalid_id", "trace_id must be 16 bytes", func(s *tracepb.Span) { s.TraceId = s.TraceId[:8] }},
		{"no trace id", "invalid_id", "trace_id must be 16 bytes", func(s *tracepb.Span) { s.TraceId = nil }},
		{"zero trace id", "invalid_id", "trace_id is all zero", func(s *tracepb.Span) { s.TraceId = make([]byte, 16) }},
		{"zero span id", "invalid_id", "span_id is all zero", func(s *tracepb.Span) { s.SpanId = make([]byte, 8) }},
		{"long span id", "invalid_id", "span_id must be 8 bytes", func(s *tracepb.Span) { s.SpanId = make([]byte, 16) }},
		{"short parent", "invalid_id", "parent_span_id", func(s *tracepb.Span) { s.ParentSpanId = []byte{1, 2} }},
		{"zero parent", "invalid_id", "parent_span_id is all zero", func(s *tracepb.Span) { s.ParentSpanId = make([]byte, 8) }},
		{"bad link", "invalid_id", "a link's span_id must be 8 bytes; has 0", func(s *tracepb.Span) { s.Links[0].SpanId = nil }},
		{"end before start", "invalid_time", "before start", func(s *tracepb.Span) { s.EndTimeUnixNano = s.StartTimeUnixNano - 1 }},
		{"too many attributes", "limit", "max-attributes", func(s *tracepb.Span) {
			s.Attributes = append(s.Attributes, str("a", "1"), str("b", "2"))
		}},
		{"too many event attributes", "limit", "max-attributes", func(s *tracepb.Span) {
			s.Events[0].Attributes = append(s.Events[0].Attributes, str("a", "1"), str("b", "2"), str("c", "3"))
		}},
		{"too many events", "limit", "max-events", func(s *tracepb.Span) {
			s.Events = append(s.Events, s.Events[0], s.Events[0])
		}},
		{"too many links", "limit", "max-links", func(s *tracepb.Span) {
			s.Links = append(s.Links, s.Links[0], s.Links[0])
		}},
		{"long value", "limit", "max-attribute-value-length", func(s *tracepb.Span) { s.Attributes[0] = str("k", strings.Repeat("v", 101)) }},
		{"long bytes value", "limit", "max-attribute-value-length", func(s *tracepb.Span) {
			s.Attributes[0] = &commonpb.KeyValue{Key: "k", Value: &commonpb.AnyValue{Value: &commonpb.AnyValue_BytesValue{BytesValue: make([]byte, 101)}}}
		}},
		{"long array value", "limit", "max-attribute-value-length", func(s *tracepb.Span) {
			var vals []*commonpb.AnyValue
			for i := 0; i < 20; i++ {
				vals = append(vals, &commonpb.AnyValue{Value: &commonpb.AnyValue_StringValue{StringValue: "0123456789"}})
			}
			s.Attributes[0] = &commonpb.KeyValue{Key: "k", Value: &commonpb.AnyValue{Value: &commonpb.AnyValue_ArrayValue{ArrayValue: &commonpb.ArrayValue{Values: vals}}}}
		}},
		{"long key", "limit", "max-attribute-key-length", func(s *tracepb.Span) { s.Attributes[0] = str(strings.Repeat("k", 31), "v") }},
		{"empty key", "limit", "empty key", func(s *tracepb.Span) { s.Attributes[0] = str("", "v") }},
		{"long name", "limit", "name of 101 bytes", func(s *tracepb.Span) { s.Name = strings.Repeat("n", 101) }},
		{"deep value", "limit", "nests deeper", func(s *tracepb.Span) {
			v := &commonpb.AnyValue{Value: &commonpb.AnyValue_IntValue{IntValue: 1}}
			for i := 0; i < maxValueDepth+1; i++ {
				v = &commonpb.AnyValue{Value: &commonpb.AnyValue_ArrayValue{ArrayValue: &commonpb.ArrayValue{Values: []*commonpb.AnyValue{v}}}}
			}
			s.Attributes[0] = &commonpb.KeyValue{Key: "k", Value: v}
		}},
	}
	for _, tc := range bad {
		t.Run(tc.name, func(t *testing.T) {
			b := span(2)
			tc.mutate(b)
			raw := marshal(t, resource("a", "api", span(1), b, span(3)))
			var p Parser
			batches, err := p.Parse(raw, "", lim)
			require.NoError(t, err)
			rf := p.Refused()
			require.NotNil(t, rf)
			require.Equal(t, 1, rf.Spans)
			require.Contains(t, rf.Message(), tc.msg)
			require.Contains(t, rf.Message(), "span 1 ")
			reasons := map[string]int{}
			rf.ByReason(func(r string, n int) { reasons[r] = n })
			require.Equal(t, map[string]int{tc.reason: 1}, reasons)
			require.Len(t, batches, 1)
			require.Equal(t, 2, batches[0].Spans)
			got := decodeBatch(t, batches[0])
			want := &coltracepb.ExportTraceServiceRequest{ResourceSpans: []*tracepb.ResourceSpans{resource("a", "api", span(1), span(3))}}
			require.True(t, proto.Equal(want, got), "the valid spans, intact")
		})
	}
}

// Strings that are not UTF-8 cannot be made with the protos (Marshal
// refuses them): write the bytes by hand.
func TestRefusesInvalidUTF8(t *testing.T) {
	for _, where := range []string{"name", "attribute value", "attribute key", "event name", "status message", "scope name", "resource attribute"} {
		t.Run(where, func(t *testing.T) {
			const marker = "\x01MARKER\x01"
			s := span(2)
			rs := resource("a", "api", span(1), s)
			switch where {
			case "name":
				s.Name = marker
			case "attribute value":
				s.Attributes[0] = str("k", marker)
			case "attribute key":
				s.Attributes[0] = str(marker, "v")
			case "event name":
				s.Events[0].Name = marker
			case "status message":
				s.Status.Message = marker
			case "scope name":
				rs.ScopeSpans[0].Scope.Name = marker
			case "resource attribute":
				rs.Resource.Attributes[0] = str("service.name", marker)
			}
			raw := bytes.Replace(marshal(t, rs), []byte(marker), []byte("\x01MARK\xffR\x01"), 1)
			var p Parser
			batches, err := p.Parse(raw, "", DefaultLimits())
			if where == "scope name" || where == "resource attribute" {
				require.Error(t, err, "every span of the scope or resource is refused: nothing valid")
				require.Contains(t, err.Error(), "not valid UTF-8")
				return
			}
			require.NoError(t, err)
			require.Equal(t, 1, p.Refused().Spans)
			require.Contains(t, p.Refused().Message(), "not valid UTF-8")
			require.Len(t, batches, 1)
			require.Equal(t, 1, batches[0].Spans)
			decodeBatch(t, batches[0]) // the sink's Unmarshal checks UTF-8
		})
	}
}

func TestNoClusterRefusesTheResource(t *testing.T) {
	raw := marshal(t, resource("", "web", span(1), span(2)), resource("a", "api", span(3)))
	var p Parser
	batches, err := p.Parse(raw, "", DefaultLimits())
	require.NoError(t, err)
	require.Equal(t, 2, p.Refused().Spans)
	require.Contains(t, p.Refused().Message(), "resource 0: no k8s.cluster.name attribute")
	require.Len(t, batches, 1)
	require.Equal(t, "a", batches[0].Cluster)
	require.Equal(t, 1, batches[0].Spans)

	_, err = p.Parse(marshal(t, resource("", "web", span(1))), "", DefaultLimits())
	status, ok := reject.Status(err)
	require.True(t, ok)
	require.Equal(t, http.StatusBadRequest, status, "nothing valid: the whole request is refused")
	require.Contains(t, err.Error(), "1 span refused: resource 0: no k8s.cluster.name")
}

// A resource without spans and without a cluster is dropped, not
// forwarded: every resource written names its cluster.
func TestDropsEmptyResourceWithoutCluster(t *testing.T) {
	empty := &tracepb.ResourceSpans{Resource: &resourcepb.Resource{Attributes: []*commonpb.KeyValue{str("service.name", "idle")}}}
	var p Parser
	batches, err := p.Parse(marshal(t, resource("a", "api", span(1)), empty), "", DefaultLimits())
	require.NoError(t, err)
	require.Len(t, batches, 1)
	require.False(t, batches[0].Forwarded)
	got := decodeBatch(t, batches[0])
	require.Len(t, got.ResourceSpans, 1)
	require.Equal(t, []string{"a"}, clusterOf(got.ResourceSpans[0].Resource))
}

func TestRefusesBadClusterAttribute(t *testing.T) {
	twice := resource("a", "api", span(1))
	twice.Resource.Attributes = append(twice.Resource.Attributes, str(ClusterAttribute, "b"))
	notString := resource("", "api", span(1))
	notString.Resource.Attributes = append(notString.Resource.Attributes, &commonpb.KeyValue{Key: ClusterAttribute, Value: &commonpb.AnyValue{Value: &commonpb.AnyValue_IntValue{IntValue: 3}}})
	for name, rs := range map[string]*tracepb.ResourceSpans{
		"twice":      twice,
		"not string": notString,
		"empty":      withCluster(resource("", "api", span(1)), ""),
		"too long":   resource(strings.Repeat("c", 257), "api", span(1)),
	} {
		var p Parser
		_, err := p.Parse(marshal(t, rs), "d", DefaultLimits())
		require.Error(t, err, name)
		require.Contains(t, err.Error(), ClusterAttribute, name)
	}
}

func TestRefusesMalformedWhole(t *testing.T) {
	good := marshal(t, resource("a", "api", span(1)))
	for _, tc := range []struct {
		name string
		body []byte
		msg  string
	}{
		{"truncated", good[:len(good)-3], "malformed"},
		{"garbage", []byte("not protobuf at all, no"), "malformed"},
		{"wrong wire type", []byte{0x08, 0x01}, "resource_spans has wire type 0"},
		{"wrong wire type deep", marshal(t, &tracepb.ResourceSpans{ScopeSpans: []*tracepb.ScopeSpans{{Spans: []*tracepb.Span{{Name: "x"}}}}})[:0], ""},
	} {
		if tc.msg == "" {
			continue
		}
		var p Parser
		_, err := p.Parse(tc.body, "c", DefaultLimits())
		status, ok := reject.Status(err)
		require.True(t, ok, tc.name)
		require.Equal(t, http.StatusBadRequest, status, tc.name)
		require.Contains(t, err.Error(), tc.msg, tc.name)
	}
	// A span whose start time is a varint (it is fixed64).
	s := []byte{0x0a, 0x10}
	s = append(s, bytes.Repeat([]byte{1}, 16)...)
	s = append(s, 0x38, 0x05) // field 7, varint
	scope := append([]byte{0x12, byte(len(s))}, s...)
	rs := append([]byte{0x12, byte(len(scope))}, scope...)
	req := append([]byte{0x0a, byte(len(rs))}, rs...)
	var p Parser
	_, err := p.Parse(req, "c", DefaultLimits())
	require.ErrorContains(t, err, "Span time has wire type 0")
}

func TestEmptyRequestIsFine(t *testing.T) {
	var p Parser
	batches, err := p.Parse(nil, "", DefaultLimits())
	require.NoError(t, err)
	require.Empty(t, batches)
}

func TestTooManyClusters(t *testing.T) {
	var rss []*tracepb.ResourceSpans
	for i := 0; i < 5; i++ {
		rss = append(rss, resource(fmt.Sprint("c", i), "api", span(i)))
	}
	lim := DefaultLimits()
	lim.MaxClusters = 4
	var p Parser
	_, err := p.Parse(marshal(t, rss...), "", lim)
	require.ErrorContains(t, err, "more than 4 distinct clusters")
}

func TestTooLargeDecoded(t *testing.T) {
	lim := DefaultLimits()
	lim.MaxDecodedBytes = 100
	var p Parser
	_, err := p.Parse(marshal(t, resource("a", "api", span(1), span(2))), "", lim)
	status, _ := reject.Status(err)
	require.Equal(t, http.StatusRequestEntityTooLarge, status)
	_, err = p.ParseJSON(make([]byte, 101), "", lim)
	status, _ = reject.Status(err)
	require.Equal(t, http.StatusRequestEntityTooLarge, status)
}

// A request larger than a record is cut between spans; every record fits,
// and together they hold every span once, in order, each resource and
// scope repeated where it was cut.
func TestSplitsLargeRequests(t *testing.T) {
	lim := DefaultLimits()
	lim.MaxRecordBytes = 4096
	var spans []*tracepb.Span
	for i := 0; i < 200; i++ {
		spans = append(spans, span(i))
	}
	rs := resource("", "api", spans...)
	rs.ScopeSpans = append(rs.ScopeSpans, &tracepb.ScopeSpans{Scope: &commonpb.InstrumentationScope{Name: "second"}, Spans: []*tracepb.Span{span(500), span(501)}})
	var p Parser
	batches, err := p.Parse(marshal(t, rs, resource("", "db", span(600))), "a", lim)
	require.NoError(t, err)
	require.Greater(t, len(batches), 10)
	var got []*tracepb.Span
	total := 0
	for _, b := range batches {
		require.LessOrEqual(t, len(b.Value), lim.MaxRecordBytes)
		req := decodeBatch(t, b)
		n := 0
		for _, r := range req.ResourceSpans {
			require.Equal(t, []string{"a"}, clusterOf(r.Resource))
			for _, ss := range r.ScopeSpans {
				require.NotEmpty(t, ss.Spans)
				require.NotNil(t, ss.Scope)
				got = append(got, ss.Spans...)
				n += len(ss.Spans)
			}
		}
		require.Equal(t, n, b.Spans)
		total += b.Spans
	}
	require.Equal(t, 203, total)
	want := append(append(spans, span(500), span(501)), span(600))
	require.Len(t, got, len(want))
	for i := range want {
		require.True(t, proto.Equal(want[i], got[i]), "span %d", i)
	}
}

func TestRefusesSpanLargerThanARecord(t *testing.T) {
	lim := DefaultLimits()
	lim.MaxRecordBytes = 4096
	big := span(2)
	for i := 0; i < 100; i++ {
		big.Attributes = append(big.Attributes, str(fmt.Sprint("k", i), strings.Repeat("v", 60)))
	}
	var p Parser
	batches, err := p.Parse(marshal(t, resource("a", "api", span(1), big)), "", lim)
	require.NoError(t, err)
	require.Equal(t, 1, p.Refused().Spans)
	require.Contains(t, p.Refused().Message(), "max-record-bytes")
	require.Len(t, batches, 1)
	require.Equal(t, 1, batches[0].Spans)
}

// Unknown fields (a newer OTLP) travel on; the sink's protos keep them
// as unknown fields.
func TestKeepsUnknownFields(t *testing.T) {
	raw := marshal(t, resource("a", "api", span(1)))
	raw = protoAppendUnknown(raw)
	var p Parser
	batches, err := p.Parse(raw, "", DefaultLimits())
	require.NoError(t, err)
	require.True(t, batches[0].Forwarded)
}

func protoAppendUnknown(b []byte) []byte {
	return append(b, 0xa2, 0x06, 0x03, 'n', 'e', 'w') // field 100, bytes "new"
}

func TestParseJSON(t *testing.T) {
	// As the OTLP/JSON spec's example writes it: hex IDs, enums as
	// numbers, 64-bit integers as strings, an unknown field.
	body := []byte(`{"resourceSpans":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"my.service"}}]},
	 "scopeSpans":[{"scope":{"name":"my.library","version":"1.0.0"},"spans":[{
	   "traceId":"5B8EFFF798038103D269B633813FC60C","spanId":"EEE19B7EC3C1B174","parentSpanId":"EEE19B7EC3C1B173",
	   "name":"I'm a server span","startTimeUnixNano":"1544712660000000000","endTimeUnixNano":"1544712661000000000",
	   "kind":2,"attributes":[{"key":"my.span.attr","value":{"stringValue":"some value"}}],
	   "links":[{"trace_id":"5b8efff798038103d269b633813fc60d","span_id":"eee19b7ec3c1b175"}],
	   "status":{"code":"STATUS_CODE_ERROR","message":"boom"},"futureField":{"x":1}}]}]}]}`)
	var p Parser
	batches, err := p.ParseJSON(body, "c1", DefaultLimits())
	require.NoError(t, err)
	require.Len(t, batches, 1)
	got := decodeBatch(t, batches[0]).ResourceSpans[0]
	require.Equal(t, []string{"c1"}, clusterOf(got.Resource))
	s := got.ScopeSpans[0].Spans[0]
	require.Equal(t, []byte{0x5b, 0x8e, 0xff, 0xf7, 0x98, 0x03, 0x81, 0x03, 0xd2, 0x69, 0xb6, 0x33, 0x81, 0x3f, 0xc6, 0x0c}, s.TraceId)
	require.Equal(t, []byte{0xee, 0xe1, 0x9b, 0x7e, 0xc3, 0xc1, 0xb1, 0x74}, s.SpanId)
	require.Equal(t, []byte{0xee, 0xe1, 0x9b, 0x7e, 0xc3, 0xc1, 0xb1, 0x73}, s.ParentSpanId)
	require.Equal(t, byte(0x75), s.Links[0].SpanId[7])
	require.Equal(t, uint64(1544712661000000000), s.EndTimeUnixNano)
	require.Equal(t, tracepb.Span_SPAN_KIND_SERVER, s.Kind)
	require.Equal(t, tracepb.Status_STATUS_CODE_ERROR, s.Status.Code)
	require.Equal(t, "some value", s.Attributes[0].Value.GetStringValue())

	for _, tc := range []struct{ name, body, msg string }{
		{"not hex", `{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"zz"}]}]}]}`, "not a hex"},
		{"not JSON", `{"resourceSpans":[`, "malformed OTLP/JSON"},
		{"bad number", `{"resourceSpans":[{"scopeSpans":[{"spans":[{"startTimeUnixNano":"soon"}]}]}]}`, "malformed OTLP/JSON"},
		{"bad span", `{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"00000000000000000000000000000000","spanId":"0102030405060708"}]}]}]}`, "trace_id is all zero"},
	} {
		_, err := p.ParseJSON([]byte(tc.body), "c1", DefaultLimits())
		status, _ := reject.Status(err)
		require.Equal(t, http.StatusBadRequest, status, tc.name)
		require.ErrorContains(t, err, tc.msg, tc.name)
	}
}
