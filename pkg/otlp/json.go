package otlp

import (
	"encoding/base64"
	"encoding/hex"

	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/tributary-io/tributary/pkg/reject"
)

// JSONCost is the memory ParseJSON may allocate for a body of n bytes
// besides the body itself: the body with its IDs rewritten, the decoded
// objects (protojson builds several times the JSON's size for small
// values) and their protobuf encoding. The gateway reserves it before
// calling.
func JSONCost(n int) int { return 4 * n }

// ParseJSON is Parse for OTLP/JSON: the body is decoded with protojson
// (the proto3 JSON mapping OTLP/JSON is defined by: field names in
// lowerCamelCase or as in the .proto, enums by name or number, 64-bit
// integers as strings or numbers, unknown fields ignored), after turning
// its trace and span IDs from hex, as OTLP/JSON writes them, into the
// base64 that proto3 JSON expects of bytes. The result is encoded to
// protobuf once and goes through Parse.
func (p *Parser) ParseJSON(body []byte, defaultCluster string, lim Limits) ([]Batch, error) {
	if lim.MaxDecodedBytes > 0 && len(body) > lim.MaxDecodedBytes {
		return nil, reject.TooLarge("JSON request of %d bytes exceeds the limit of %d (-limits.spans.max-decoded-bytes)", len(body), lim.MaxDecodedBytes)
	}
	fixed, err := hexIDsToBase64(body)
	if err != nil {
		return nil, err
	}
	var req coltracepb.ExportTraceServiceRequest
	if err := (protojson.UnmarshalOptions{DiscardUnknown: true}).Unmarshal(fixed, &req); err != nil {
		return nil, reject.BadRequest("malformed OTLP/JSON ExportTraceServiceRequest: %v", err)
	}
	raw, err := proto.Marshal(&req)
	if err != nil {
		return nil, reject.BadRequest("OTLP/JSON ExportTraceServiceRequest: %v", err)
	}
	return p.Parse(raw, defaultCluster, lim)
}

// isIDKey reports whether a JSON object key names a trace or span ID
// (Span, Span.Link; in both spellings protojson accepts). The trace
// schema has no other object keys that a sender chooses (attribute keys
// are values of "key"), so a key with one of these names is an ID.
func isIDKey(k []byte) bool {
	switch string(k) {
	case "traceId", "spanId", "parentSpanId", "trace_id", "span_id", "parent_span_id":
		return true
	}
	return false
}

// hexIDsToBase64 returns body with the string values of ID keys turned from
// hex into base64; body itself when it has none. It scans the JSON text
// only as far as strings go: the structure is left to protojson, which
// refuses what is not JSON.
func hexIDsToBase64(body []byte) ([]byte, error) {
	var out []byte
	copied := 0 // body[:copied] is in out
	for i := 0; i < len(body); {
		if body[i] != '"' {
			i++
			continue
		}
		end := stringEnd(body, i)
		if end < 0 {
			break // unterminated: protojson says so
		}
		key := body[i+1 : end-1]
		colon := skipSpace(body, end)
		if colon >= len(body) || body[colon] != ':' || !isIDKey(key) {
			i = end
			continue
		}
		v := skipSpace(body, colon+1)
		if v >= len(body) || body[v] != '"' {
			i = end // not a string: protojson refuses it
			continue
		}
		vend := stringEnd(body, v)
		if vend < 0 {
			break
		}
		id := body[v+1 : vend-1]
		if out == nil {
			out = make([]byte, 0, len(body))
		}
		out = append(out, body[copied:v+1]...)
		decoded, err := hex.AppendDecode(nil, id)
		if err != nil || len(decoded) > 16 {
			return nil, reject.BadRequest("OTLP/JSON %s %q is not a hex trace or span ID", key, shortString(id))
		}
		out = base64.StdEncoding.AppendEncode(out, decoded)
		out = append(out, '"')
		copied, i = vend, vend
	}
	if out == nil {
		return body, nil
	}
	return append(out, body[copied:]...), nil
}

// stringEnd returns the index after the JSON string starting at b[i] (a
// quote), or -1 if it does not end.
func stringEnd(b []byte, i int) int {
	for j := i + 1; j < len(b); j++ {
		switch b[j] {
		case '\\':
			j++
		case '"':
			return j + 1
		}
	}
	return -1
}

func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

func shortString(b []byte) string {
	if len(b) > 40 {
		return string(b[:40]) + "…"
	}
	return string(b)
}
