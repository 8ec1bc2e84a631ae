package lokipush

import (
	"fmt"
	"math/rand"
	"testing"
	"time"

	"github.com/golang/snappy"
	"github.com/grafana/loki/pkg/push"
)

// benchStreams builds a realistic push: streams × entries of ~200-byte lines
// (half logfmt, half JSON logs, which JSON bodies must escape), six labels
// per stream and a trace_id on every other entry.
func benchStreams(streams, entries int, withCluster bool) []push.Stream {
	rnd := rand.New(rand.NewSource(42))
	out := make([]push.Stream, 0, streams)
	ns := int64(1700000000000000000)
	for i := 0; i < streams; i++ {
		labels := fmt.Sprintf(`{app="svc-%d", container="main", job="prod/svc-%d", namespace="prod", node="node-%d", pod="svc-%d-7d9f8b6c5-%05d"}`,
			i%20, i%20, i%7, i%20, rnd.Intn(99999))
		if withCluster {
			labels = fmt.Sprintf(`{app="svc-%d", cluster="eu-west-1", container="main", namespace="prod", node="node-%d", pod="svc-%d-7d9f8b6c5-%05d"}`,
				i%20, i%7, i%20, rnd.Intn(99999))
		}
		s := push.Stream{Labels: labels}
		for j := 0; j < entries; j++ {
			ns += int64(rnd.Intn(1e6))
			var line string
			if j%2 == 0 {
				line = fmt.Sprintf(`level=info ts=2024-05-01T12:00:%02d.%06dZ caller=handler.go:%d msg="request served" method=GET path=/api/v1/items/%d status=200 duration=%dms bytes=%d user_agent="Go-http-client/1.1"`,
					j%60, rnd.Intn(1e6), rnd.Intn(500), rnd.Intn(1e6), rnd.Intn(900), rnd.Intn(1e5))
			} else {
				line = fmt.Sprintf(`{"level":"warn","ts":"2024-05-01T12:00:%02d.%06dZ","caller":"db/pool.go:%d","msg":"slow query","query_id":"%016x","rows":%d,"elapsed_ms":%d}`,
					j%60, rnd.Intn(1e6), rnd.Intn(500), rnd.Uint64(), rnd.Intn(1e4), rnd.Intn(5000))
			}
			e := push.Entry{Timestamp: time.Unix(0, ns).UTC(), Line: line}
			if j%2 == 1 {
				e.StructuredMetadata = push.LabelsAdapter{{Name: "trace_id", Value: fmt.Sprintf("%032x", rnd.Uint64())}}
			}
			s.Entries = append(s.Entries, e)
		}
		out = append(out, s)
	}
	return out
}

func benchProtoBody(streams, entries int, withCluster bool) []byte {
	raw, err := (&push.PushRequest{Streams: benchStreams(streams, entries, withCluster)}).Marshal()
	if err != nil {
		panic(err)
	}
	return snappy.Encode(nil, raw)
}

func lineBytes(streams []push.Stream) int64 {
	n := 0
	for _, s := range streams {
		for _, e := range s.Entries {
			n += len(e.Line)
		}
	}
	return int64(n)
}

func benchParse(b *testing.B, body []byte, ct string, lines int64, wantRecords int) {
	lim := testLimits()
	b.SetBytes(lines)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		bs, err := Parse(body, ct, "", lim, Options{DefaultCluster: "eu-west-1"})
		if err != nil || len(bs) != wantRecords {
			b.Fatal(err, len(bs))
		}
	}
}

// BenchmarkParseProtobuf is the fast path: validated, forwarded as received.
func BenchmarkParseProtobuf(b *testing.B) {
	streams := benchStreams(100, 10, true)
	benchParse(b, benchProtoBody(100, 10, true), ctProto, lineBytes(streams), 1)
}

// BenchmarkParseProtobufRewrite adds the default cluster to every stream.
func BenchmarkParseProtobufRewrite(b *testing.B) {
	streams := benchStreams(100, 10, false)
	benchParse(b, benchProtoBody(100, 10, false), ctProto, lineBytes(streams), 1)
}

func BenchmarkParseJSON(b *testing.B) {
	streams := benchStreams(100, 10, false)
	benchParse(b, jsonOf(streams), ctJSON, lineBytes(streams), 1)
}

func BenchmarkParseLabels(b *testing.B) {
	in := `{app="svc-1", cluster="eu-west-1", container="main", namespace="prod", node="node-3", pod="svc-1-7d9f8b6c5-01234"}`
	var scratch [16]labelPair
	b.SetBytes(int64(len(in)))
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		if _, err := parseLabels(in, scratch[:0]); err != nil {
			b.Fatal(err)
		}
	}
}
