package otlp

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"testing"

	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"

	"github.com/tributary-io/tributary/pkg/reject"
)

// fuzzLimits are small enough that fuzzed inputs hit every limit and the
// record split.
func fuzzLimits() Limits {
	return Limits{MaxDecodedBytes: 1 << 20, MaxRecordBytes: 1024, MaxAttributes: 8, MaxAttributeKeyLen: 32, MaxAttributeValueLen: 64, MaxEvents: 4, MaxLinks: 4, MaxClusters: 4}
}

// checkParsed is what every accepted request must give the sinks: records
// that the official protos decode, within the record limit, each resource
// carrying its record's cluster once, and only spans that pass validation.
func checkParsed(t *testing.T, batches []Batch, err error, lim Limits) {
	if err != nil {
		_, ok := reject.Status(err)
		require.True(t, ok, "every refusal carries a status: %v", err)
		require.Empty(t, batches)
		return
	}
	for _, b := range batches {
		require.LessOrEqual(t, len(b.Value), lim.MaxRecordBytes)
		req := decodeBatch(t, b)
		spans := 0
		for _, rs := range req.ResourceSpans {
			require.Equal(t, []string{b.Cluster}, clusterOf(rs.Resource))
			for _, ss := range rs.ScopeSpans {
				for _, s := range ss.Spans {
					spans++
					require.True(t, validID(s.TraceId, 16) && validID(s.SpanId, 8), "IDs of a kept span")
					require.True(t, len(s.ParentSpanId) == 0 || validID(s.ParentSpanId, 8))
					require.GreaterOrEqual(t, s.EndTimeUnixNano, s.StartTimeUnixNano)
					require.LessOrEqual(t, len(s.Attributes), lim.MaxAttributes)
					require.LessOrEqual(t, len(s.Events), lim.MaxEvents)
					require.LessOrEqual(t, len(s.Links), lim.MaxLinks)
				}
			}
		}
		require.Equal(t, spans, b.Spans)
	}
}

func fuzzSeeds(t testing.TB) [][]byte {
	big := resource("", "api", span(1), span(2), span(3), span(4), span(5), span(6))
	return [][]byte{
		marshal(t, resource("a", "api", span(1))),
		marshal(t, resource("", "web", span(1), span(2)), resource("b", "db", span(3))),
		marshal(t, big),
		protoAppendUnknown(marshal(t, resource("a", "api", span(1)))),
		marshal(t, resource("a", "api", span(1)), resource("", "idle")),
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range fuzzSeeds(f) {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		lim := fuzzLimits()
		var p Parser
		batches, err := p.Parse(body, "", lim) // resources without a cluster are refused
		checkParsed(t, batches, err, lim)
		batches, err = p.Parse(body, "dflt", lim)
		checkParsed(t, batches, err, lim)
		if err == nil && len(batches) == 1 && batches[0].Forwarded {
			dec := decodeBatch(t, batches[0])
			var orig coltracepb.ExportTraceServiceRequest
			require.NoError(t, proto.Unmarshal(body, &orig))
			require.True(t, proto.Equal(&orig, dec), "forwarded as received")
		}
	})
}

func FuzzParseJSON(f *testing.F) {
	for _, s := range fuzzSeeds(f) {
		var req coltracepb.ExportTraceServiceRequest
		require.NoError(f, proto.Unmarshal(s, &req))
		js, err := protojson.Marshal(&req)
		require.NoError(f, err)
		f.Add(js) // base64 IDs: refused as not hex
		f.Add(hexIDs(f, &req, js))
	}
	f.Add([]byte(`{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"5B8EFFF798038103D269B633813FC60C","spanId":"EEE19B7EC3C1B174","kind":2,"startTimeUnixNano":"1544712660000000000","endTimeUnixNano":"1544712661000000000"}]}]}]}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		lim := fuzzLimits()
		var p Parser
		batches, err := p.ParseJSON(body, "dflt", lim)
		checkParsed(t, batches, err, lim)
	})
}

// hexIDs rewrites a protojson encoding's base64 IDs as OTLP/JSON's hex.
func hexIDs(t testing.TB, req *coltracepb.ExportTraceServiceRequest, js []byte) []byte {
	for _, rs := range req.ResourceSpans {
		for _, ss := range rs.ScopeSpans {
			for _, s := range ss.Spans {
				for _, id := range [][]byte{s.TraceId, s.SpanId, s.ParentSpanId} {
					js = replaceID(js, id)
				}
				for _, l := range s.Links {
					js = replaceID(js, l.TraceId)
					js = replaceID(js, l.SpanId)
				}
			}
		}
	}
	return js
}

func replaceID(js, id []byte) []byte {
	if len(id) == 0 {
		return js
	}
	enc := []byte(`"` + base64.StdEncoding.EncodeToString(id) + `"`)
	return bytes.ReplaceAll(js, enc, []byte(`"`+hex.EncodeToString(id)+`"`))
}

// FuzzFastPaths holds the walk's fast paths to the general decoding they
// shortcut: readField's one-byte fields, checkKeyValue's key-then-value
// and checkAnyValue's short string must read and judge any bytes exactly
// as readFieldSlow, checkKeyValueWalk and checkAnyValueWalk do.
func FuzzFastPaths(f *testing.F) {
	for _, s := range fuzzSeeds(f) {
		f.Add(s)
	}
	kv, err := proto.Marshal(str("http.route", "/api/v1/items/{id}"))
	require.NoError(f, err)
	f.Add(kv)
	f.Add(kv[len(kv)-20:]) // the AnyValue
	f.Add([]byte{0x0a, 0x01, 0xff, 0x12, 0x03, 0x0a, 0x01, 0x80})
	f.Add([]byte{0x0a, 0x00, 0x12, 0x02, 0x18, 0x05})
	f.Add([]byte{0x41, 1, 2, 3, 4, 5, 6, 7, 8})
	f.Add([]byte("\n\n0000000000\x12\x12000000000000000000")) // a key, then a malformed value
	f.Add([]byte{0x12, 0xc8, 0x01})                           // a two-byte length past the end
	f.Add([]byte{0x18, 0xc8, 0x81, 0x01})                     // a three-byte varint
	f.Fuzz(func(t *testing.T, b []byte) {
		fast, fastErr := readField(b, 0, 0)
		slow, slowErr := readFieldSlow(b, 0, 0)
		require.Equal(t, slowErr, fastErr)
		require.Equal(t, slow, fast)
		p := Parser{lim: fuzzLimits()}
		fkv, fastErr := p.checkKeyValue(b, 0, 0)
		skv, slowErr := p.checkKeyValueWalk(b, 0, 0)
		require.Equal(t, slowErr, fastErr)
		require.Equal(t, skv, fkv)
		fstr, fisStr, fprob, fastErr := p.checkAnyValue(b, 0, 0)
		sstr, sisStr, sprob, slowErr := p.checkAnyValueWalk(b, 0, 0)
		require.Equal(t, slowErr, fastErr)
		require.Equal(t, []any{sstr, sisStr, sprob}, []any{fstr, fisStr, fprob})
	})
}
