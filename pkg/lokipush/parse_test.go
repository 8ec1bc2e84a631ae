package lokipush

import (
	"bytes"
	"compress/flate"
	"compress/gzip"
	"fmt"
	"math/rand"
	"net/http"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/golang/snappy"
	"github.com/grafana/loki/pkg/push"
	"github.com/stretchr/testify/require"

	"github.com/tributary-io/tributary/pkg/reject"
)

const (
	ctProto = "application/x-protobuf"
	ctJSON  = "application/json"
)

func entry(ns int64, line string, meta ...string) push.Entry {
	e := push.Entry{Timestamp: time.Unix(0, ns).UTC(), Line: line}
	for i := 0; i < len(meta); i += 2 {
		e.StructuredMetadata = append(e.StructuredMetadata, push.LabelAdapter{Name: meta[i], Value: meta[i+1]})
	}
	return e
}

func stream(labels string, entries ...push.Entry) push.Stream {
	return push.Stream{Labels: labels, Entries: entries}
}

func protoBody(t testing.TB, streams ...push.Stream) []byte {
	raw, err := (&push.PushRequest{Streams: streams}).Marshal()
	require.NoError(t, err)
	return snappy.Encode(nil, raw)
}

func gzipped(b []byte) []byte {
	var buf bytes.Buffer
	w := gzip.NewWriter(&buf)
	_, _ = w.Write(b)
	_ = w.Close()
	return buf.Bytes()
}

func deflated(b []byte) []byte {
	var buf bytes.Buffer
	w, _ := flate.NewWriter(&buf, flate.DefaultCompression)
	_, _ = w.Write(b)
	_ = w.Close()
	return buf.Bytes()
}

// decode reads a batch back the way the ingester and Loki do.
func decode(t testing.TB, b Batch) push.PushRequest {
	t.Helper()
	raw, err := snappy.Decode(nil, b.Value)
	require.NoError(t, err)
	var req push.PushRequest
	require.NoError(t, req.Unmarshal(raw))
	entries, lineBytes := 0, 0
	for _, s := range req.Streams {
		for _, e := range s.Entries {
			entries++
			lineBytes += len(e.Line)
		}
	}
	require.Equal(t, entries, b.Entries, "Batch.Entries")
	require.Equal(t, lineBytes, b.LineBytes, "Batch.LineBytes")
	return req
}

type wantBatch struct {
	cluster string
	streams []push.Stream
}

func TestParse(t *testing.T) {
	jsonBody := `{"streams": [
		{"stream": {"app": "api", "namespace": "prod"},
		 "values": [["1700000000000000001", "first line"],
		            ["1700000000000000002", "second \"quoted\" \u00e9 line", {"trace_id": "abc", "a": "z"}],
		            null,
		            ["-1500000000", "before the epoch", {}, "ignored", 42]]},
		{"stream": {"cluster": "eu-2", "app": "web"}, "values": [["5", "x"]]},
		{"stream": {"app": "empty"}, "values": []},
		null,
		{"stream": {"app": "api", "pod": "", "namespace": "prod"}, "values": [["6", "y", {"k": "v\nw"}]], "unknown": {"deep": [1, 2.5e3, true, null]}}
	], "extra": "ignored"}`
	jsonWant := []wantBatch{
		{cluster: "dflt", streams: []push.Stream{
			stream(`{app="api", cluster="dflt", namespace="prod"}`,
				entry(1700000000000000001, "first line"),
				entry(1700000000000000002, "second \"quoted\" é line", "trace_id", "abc", "a", "z"),
				entry(-1500000000, "before the epoch")),
			stream(`{app="api", cluster="dflt", namespace="prod"}`, entry(6, "y", "k", "v\nw")),
		}},
		{cluster: "eu-2", streams: []push.Stream{stream(`{app="web", cluster="eu-2"}`, entry(5, "x"))}},
	}

	tests := []struct {
		name           string
		body           []byte
		ct, ce, dflt   string
		lim            func(*Limits)
		want           []wantBatch
		wantSameAsBody bool
	}{
		{
			name: "protobuf with cluster is forwarded as received",
			body: protoBody(t,
				stream(`{cluster="eu-1", app="api"}`, entry(1, "a"), entry(2, "b", "trace_id", "t1")),
				stream(`{app="web",cluster="eu-1"}`, entry(3, "c")),
			),
			ct: ctProto, dflt: "dflt",
			want: []wantBatch{{cluster: "eu-1", streams: []push.Stream{
				stream(`{cluster="eu-1", app="api"}`, entry(1, "a"), entry(2, "b", "trace_id", "t1")),
				stream(`{app="web",cluster="eu-1"}`, entry(3, "c")),
			}}},
			wantSameAsBody: true,
		},
		{
			name: "protobuf without content type or with snappy encoding is the same",
			body: protoBody(t, stream(`{cluster="eu-1", app="api"}`, entry(1, "a"))),
			ce:   "snappy",
			want: []wantBatch{{cluster: "eu-1", streams: []push.Stream{
				stream(`{cluster="eu-1", app="api"}`, entry(1, "a")),
			}}},
			wantSameAsBody: true,
		},
		{
			name: "protobuf without cluster gets the default, labels rendered canonically",
			body: protoBody(t,
				stream(`{namespace="prod", app="api", pod=""}`, entry(1, "a", "k", "v")),
				stream(`{cluster="dflt", app="web"}`, entry(2, "b")),
			),
			ct: ctProto, dflt: "dflt",
			want: []wantBatch{{cluster: "dflt", streams: []push.Stream{
				stream(`{app="api", cluster="dflt", namespace="prod"}`, entry(1, "a", "k", "v")),
				stream(`{cluster="dflt", app="web"}`, entry(2, "b")),
			}}},
		},
		{
			name: "an empty cluster value is an absent cluster label",
			body: protoBody(t, stream(`{cluster="", app="api"}`, entry(1, "a"))),
			ct:   ctProto, dflt: "dflt",
			want: []wantBatch{{cluster: "dflt", streams: []push.Stream{
				stream(`{app="api", cluster="dflt"}`, entry(1, "a")),
			}}},
		},
		{
			name: "protobuf mixing clusters is split, order kept",
			body: protoBody(t,
				stream(`{cluster="b", app="1"}`, entry(1, "b1"), entry(2, "b2")),
				stream(`{cluster="a", app="2"}`, entry(3, "a1")),
				stream(`{app="3"}`, entry(4, "d1")),
				stream(`{cluster="b", app="4"}`, entry(5, "b3")),
				stream(`{cluster="a", app="5"}`),
			),
			ct: ctProto, dflt: "a",
			want: []wantBatch{
				{cluster: "b", streams: []push.Stream{
					stream(`{cluster="b", app="1"}`, entry(1, "b1"), entry(2, "b2")),
					stream(`{cluster="b", app="4"}`, entry(5, "b3")),
				}},
				{cluster: "a", streams: []push.Stream{
					stream(`{cluster="a", app="2"}`, entry(3, "a1")),
					stream(`{app="3", cluster="a"}`, entry(4, "d1")),
				}},
			},
		},
		{
			name: "empty streams are accepted and not forwarded",
			body: protoBody(t, stream(`{app="x"}`), stream(`{cluster="c", app="y"}`, entry(1, "a"))),
			ct:   ctProto,
			want: []wantBatch{{cluster: "c", streams: []push.Stream{stream(`{app="x"}`), stream(`{cluster="c", app="y"}`, entry(1, "a"))}}},
			// The fast path forwards the empty stream too; Loki skips it.
			wantSameAsBody: true,
		},
		{
			name: "only empty streams: nothing to write",
			body: protoBody(t, stream(`{app="x"}`), stream(``)),
			ct:   ctProto,
		},
		{
			name: "service_name does not count towards the label limit",
			body: protoBody(t, stream(`{a="1", b="2", service_name="s"}`, entry(1, "a"))),
			ct:   ctProto, dflt: "d",
			lim:  func(l *Limits) { l.MaxLabelNamesPerStream = 3 },
			want: []wantBatch{{cluster: "d", streams: []push.Stream{stream(`{a="1", b="2", cluster="d", service_name="s"}`, entry(1, "a"))}}},
		},
		{
			name: "limits at their bound are accepted",
			body: protoBody(t, stream(`{cluster="c", `+strings.Repeat("n", 8)+`="`+strings.Repeat("v", 8)+`"}`,
				entry(1, strings.Repeat("l", 16), "k", strings.Repeat("m", 7), "detected_level", "warn"))),
			ct: ctProto,
			lim: func(l *Limits) {
				l.MaxLabelNamesPerStream, l.MaxLabelNameLen, l.MaxLabelValueLen, l.MaxLineBytes = 2, 8, 8, 16
				l.MaxStructuredMetadataBytes, l.MaxStructuredMetadataEntries = 8, 2
			},
			want: []wantBatch{{cluster: "c", streams: []push.Stream{stream(`{cluster="c", `+strings.Repeat("n", 8)+`="`+strings.Repeat("v", 8)+`"}`,
				entry(1, strings.Repeat("l", 16), "k", strings.Repeat("m", 7), "detected_level", "warn"))}}},
			wantSameAsBody: true,
		},
		{
			name: "gzip protobuf",
			body: gzipped(protoBody(t, stream(`{app="api"}`, entry(1, "a")))),
			ct:   ctProto, ce: "gzip", dflt: "d",
			want: []wantBatch{{cluster: "d", streams: []push.Stream{stream(`{app="api", cluster="d"}`, entry(1, "a"))}}},
		},
		{name: "JSON", body: []byte(jsonBody), ct: ctJSON, dflt: "dflt", want: jsonWant},
		{name: "JSON with charset", body: []byte(jsonBody), ct: "application/json; charset=utf-8", dflt: "dflt", want: jsonWant},
		{name: "JSON without content type", body: []byte(" \n" + jsonBody + "\n"), dflt: "dflt", want: jsonWant},
		{name: "gzip JSON", body: gzipped([]byte(jsonBody)), ct: ctJSON, ce: "gzip", dflt: "dflt", want: jsonWant},
		{name: "deflate JSON", body: deflated([]byte(jsonBody)), ct: ctJSON, ce: "deflate", dflt: "dflt", want: jsonWant},
		{
			name: "JSON: repeated keys, last wins",
			body: []byte(`{"streams": [{"stream": {"a": "1"}, "values": [["1", "x"]]}],
				"streams": [{"values": [["1", "lost"]], "stream": {"a": "1", "a": "2", "cluster": "c"}, "values": [["2", "y"]]}]}`),
			ct:   ctJSON,
			want: []wantBatch{{cluster: "c", streams: []push.Stream{stream(`{a="2", cluster="c"}`, entry(2, "y"))}}},
		},
		{
			name: "JSON: escapes as encoding/json decodes them",
			body: []byte(`{"streams": [{"stream": {"cluster": "c"}, "values": [["1", "\ud83d\ude00 \ud800 \/ \b\f\n\r\t \u0041 ` + "\xff" + `"]]}]}`),
			ct:   ctJSON,
			want: []wantBatch{{cluster: "c", streams: []push.Stream{stream(`{cluster="c"}`, entry(1, "😀 \uFFFD / \b\f\n\r\t A \uFFFD"))}}},
		},
		{
			name: "JSON: an entry with only a timestamp has an empty line, as in Loki",
			body: []byte(`{"streams": [{"stream": {"cluster": "c"}, "values": [["1"]]}]}`),
			ct:   ctJSON,
			want: []wantBatch{{cluster: "c", streams: []push.Stream{stream(`{cluster="c"}`, entry(1, ""))}}},
		},
		{
			name: "JSON: only empty streams",
			body: []byte(`{"streams": [{"stream": {"a": "b"}}, {"stream": {"a": "b"}, "values": null}]}`),
			ct:   ctJSON,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			lim := testLimits()
			if tc.lim != nil {
				tc.lim(&lim)
			}
			body := bytes.Clone(tc.body)
			got, err := Parse(body, tc.ct, tc.ce, lim, Options{DefaultCluster: tc.dflt})
			require.NoError(t, err)
			require.Len(t, got, len(tc.want))
			for i, w := range tc.want {
				require.Equal(t, w.cluster, got[i].Cluster)
				req := decode(t, got[i])
				require.Equal(t, w.streams, req.Streams)
			}
			if tc.wantSameAsBody {
				require.Same(t, &body[0], &got[0].Value[0], "fast path must forward the body itself")
				require.Len(t, got[0].Value, len(body))
			} else if len(got) > 0 {
				require.NotSame(t, &body[0], &got[0].Value[0])
			}
		})
	}
}

func TestParseGzipProtobufIsNotReencoded(t *testing.T) {
	snappied := protoBody(t, stream(`{cluster="c", app="api"}`, entry(1, "a")))
	got, err := Parse(gzipped(snappied), ctProto, "gzip", testLimits(), Options{})
	require.NoError(t, err)
	require.Len(t, got, 1)
	require.Equal(t, snappied, got[0].Value)
}

// TestAppendEntryMatchesGogo checks the JSON path's entry encoder against
// gogo's Marshal, byte for byte.
func TestAppendEntryMatchesGogo(t *testing.T) {
	for _, e := range []push.Entry{
		entry(0, ""),
		entry(1, "a"),
		entry(-1, "before the epoch"),
		entry(-1_500_000_000, "x"),
		entry(1700000000123456789, strings.Repeat("l", 300), "trace_id", "abc", "", "", "k", ""),
		entry(-1<<63, "min"),
		entry(1<<63-1, "max"),
	} {
		t.Run(fmt.Sprint(e.Timestamp.UnixNano()), func(t *testing.T) {
			want, err := e.Marshal()
			require.NoError(t, err)
			var meta []labelPair
			for _, m := range e.StructuredMetadata {
				meta = append(meta, labelPair{m.Name, m.Value})
			}
			require.Equal(t, want, appendEntry(nil, e.Timestamp.UnixNano(), e.Line, meta))
		})
	}
}

func TestParseKeepsFormat(t *testing.T) {
	raw, err := (&push.PushRequest{Streams: []push.Stream{stream(`{app="a"}`, entry(1, "x"))}, Format: "otlp"}).Marshal()
	require.NoError(t, err)
	got, err := Parse(snappy.Encode(nil, raw), ctProto, "", testLimits(), Options{DefaultCluster: "d"})
	require.NoError(t, err)
	require.Len(t, got, 1)
	require.Equal(t, "otlp", decode(t, got[0]).Format)
}

// TestParseSplitsLargeRequests checks that a request too large for one
// record is cut into records under the limit that carry every entry exactly
// once and in order, cutting streams between entries where needed.
func TestParseSplitsLargeRequests(t *testing.T) {
	rnd := rand.New(rand.NewSource(1))
	line := func() string { return noise(rnd, 50+rnd.Intn(300)) }
	var streams []push.Stream
	ns := int64(0)
	for i, n := range []int{3, 120, 1, 40, 7} {
		labels := fmt.Sprintf(`{app="s%d"}`, i)
		if i%2 == 1 {
			labels = fmt.Sprintf(`{app="s%d", cluster="other"}`, i)
		}
		s := stream(labels)
		for j := 0; j < n; j++ {
			ns++
			s.Entries = append(s.Entries, entry(ns, line(), "i", fmt.Sprint(j)))
		}
		streams = append(streams, s)
	}
	for _, format := range []string{ctProto, ctJSON} {
		for _, max := range []int{1200, 4000, 20000, 1 << 20} {
			t.Run(fmt.Sprintf("%s/max=%d", format, max), func(t *testing.T) {
				lim := testLimits()
				lim.MaxRecordBytes = max
				body := protoBody(t, streams...)
				if format == ctJSON {
					body = jsonOf(streams)
				}
				got, err := Parse(body, format, "", lim, Options{DefaultCluster: "d"})
				require.NoError(t, err)

				// Per cluster, the streams' entries in record order must be
				// the request's, each once.
				want := map[string][]string{}
				for _, s := range streams {
					c := "d"
					if strings.Contains(s.Labels, "other") {
						c = "other"
					}
					for _, e := range s.Entries {
						want[c] = append(want[c], e.Line)
					}
				}
				have := map[string][]string{}
				seenCluster := []string{}
				for _, b := range got {
					require.LessOrEqual(t, len(b.Value), max)
					if len(seenCluster) == 0 || seenCluster[len(seenCluster)-1] != b.Cluster {
						require.NotContains(t, seenCluster, b.Cluster, "a cluster's records are contiguous")
						seenCluster = append(seenCluster, b.Cluster)
					}
					for _, s := range decode(t, b).Streams {
						require.Contains(t, s.Labels, `cluster="`+b.Cluster+`"`)
						require.NotEmpty(t, s.Entries)
						for _, e := range s.Entries {
							have[b.Cluster] = append(have[b.Cluster], e.Line)
						}
					}
				}
				require.Equal(t, want, have)
				if max < 20000 {
					require.Greater(t, len(got), 2)
				} else if max == 1<<20 {
					require.Len(t, got, 2)
				}
			})
		}
	}
}

// jsonOf renders streams as a Loki JSON push body.
func jsonOf(streams []push.Stream) []byte {
	var b strings.Builder
	b.WriteString(`{"streams":[`)
	for i, s := range streams {
		if i > 0 {
			b.WriteByte(',')
		}
		ps, _ := parseLabels(s.Labels, nil)
		b.WriteString(`{"stream":{`)
		for j, p := range ps {
			if j > 0 {
				b.WriteByte(',')
			}
			fmt.Fprintf(&b, "%q:%q", p.name, p.value)
		}
		b.WriteString(`},"values":[`)
		for j, e := range s.Entries {
			if j > 0 {
				b.WriteByte(',')
			}
			fmt.Fprintf(&b, `["%d",%q`, e.Timestamp.UnixNano(), e.Line)
			if len(e.StructuredMetadata) > 0 {
				b.WriteString(",{")
				for k, m := range e.StructuredMetadata {
					if k > 0 {
						b.WriteByte(',')
					}
					fmt.Fprintf(&b, "%q:%q", m.Name, m.Value)
				}
				b.WriteByte('}')
			}
			b.WriteByte(']')
		}
		b.WriteString(`]}`)
	}
	b.WriteString(`]}`)
	return []byte(b.String())
}

// noise is an incompressible line.
func noise(rnd *rand.Rand, n int) string {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte('!' + rnd.Intn(90))
	}
	return string(b)
}

func TestParseRefuses(t *testing.T) {
	long := strings.Repeat("x", 300)
	rawProto := func(b ...byte) []byte { return snappy.Encode(nil, b) }
	// A stream {a="b"} with one entry whose payload is given.
	withEntry := func(entry ...byte) []byte {
		s := append([]byte{0x0a, 7}, `{a="b"}`...)
		s = append(s, 0x12, byte(len(entry)))
		s = append(s, entry...)
		return rawProto(append([]byte{0x0a, byte(len(s))}, s...)...)
	}
	tests := []struct {
		name       string
		body       []byte
		ct, ce     string
		dflt       string
		lim        func(*Limits)
		wantStatus int
		wantReason []string
	}{
		{name: "unknown encoding", body: []byte("x"), ce: "br", wantStatus: 415, wantReason: []string{`Content-Encoding "br" not supported`}},
		{name: "unparsable content type", body: []byte("x"), ct: "application/", wantStatus: 415, wantReason: []string{"Content-Type"}},
		{name: "not snappy", body: []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, ct: ctProto, wantStatus: 400, wantReason: []string{"snappy"}},
		{name: "corrupt snappy", body: []byte{10, 0xfe, 1, 2}, ct: ctProto, wantStatus: 400, wantReason: []string{"snappy"}},
		{name: "declared snappy length over the limit", body: []byte{0x80, 0x80, 0x80, 0x80, 0x08, 0}, ct: ctProto, wantStatus: 413, wantReason: []string{"2147483648"}},
		{name: "not gzip", body: []byte("{}"), ct: ctJSON, ce: "gzip", wantStatus: 400, wantReason: []string{"gzip"}},
		{
			name: "gzip over the limit", body: gzipped(make([]byte, 2<<20)), ct: ctJSON, ce: "gzip",
			lim: func(l *Limits) { l.MaxDecodedBytes = 1 << 20 }, wantStatus: 413, wantReason: []string{"1048576"},
		},
		{
			name: "JSON over the limit", body: []byte(`{"streams": []}`), ct: ctJSON,
			lim: func(l *Limits) { l.MaxDecodedBytes = 10 }, wantStatus: 413, wantReason: []string{"limit of 10"},
		},
		{name: "no streams", body: rawProto(), ct: ctProto, wantStatus: 422, wantReason: []string{"at least one valid stream"}},
		{name: "JSON no streams", body: []byte(`{"streams": []}`), ct: ctJSON, wantStatus: 422, wantReason: []string{"at least one valid stream"}},
		{name: "truncated protobuf", body: rawProto(0x0a, 10, 1), ct: ctProto, wantStatus: 400, wantReason: []string{"truncated"}},
		{name: "wrong wire type", body: rawProto(0x08, 1), ct: ctProto, wantStatus: 400, wantReason: []string{"wire type 0 for field streams"}},
		{name: "group", body: rawProto(0x0b, 0x0c), ct: ctProto, wantStatus: 400, wantReason: []string{"group"}},
		{name: "field 0", body: rawProto(0x02, 0), ct: ctProto, wantStatus: 400, wantReason: []string{"illegal field number 0", "at byte 0"}},
		{name: "unparsable labels", body: protoBody(t, stream(`{app="x"`, entry(1, "a"))), ct: ctProto, wantStatus: 400, wantReason: []string{`'{app="x"'`, "error parsing labels"}},
		{name: "unparsable labels of an empty stream", body: protoBody(t, stream(`{app!="x"}`)), ct: ctProto, wantStatus: 400, wantReason: []string{`'{app!="x"}'`, "error parsing labels"}},
		{name: "no labels", body: protoBody(t, stream(`{}`, entry(1, "a"))), ct: ctProto, dflt: "d", wantStatus: 400, wantReason: []string{"'{}'", "at least one label pair"}},
		{name: "no label string", body: protoBody(t, stream(``, entry(1, "a"))), ct: ctProto, dflt: "d", wantStatus: 400, wantReason: []string{"stream #0", "at least one label pair"}},
		{
			name: "label string longer than Loki parses", body: protoBody(t, stream(`{a="b"`+strings.Repeat(" ", 1<<24)+`}`, entry(1, "a"))), ct: ctProto, dflt: "d",
			lim: func(l *Limits) { l.MaxDecodedBytes = 32 << 20 }, wantStatus: 413, wantReason: []string{"labels of 16777223 bytes"},
		},
		{name: "only empty labels", body: protoBody(t, stream(`{a=""}`, entry(1, "a"))), ct: ctProto, dflt: "d", wantStatus: 400, wantReason: []string{"at least one label pair"}},
		{name: "duplicate label", body: protoBody(t, stream(`{cluster="c", a="1", a="2"}`, entry(1, "a"))), ct: ctProto, wantStatus: 400, wantReason: []string{`'{cluster="c", a="1", a="2"}'`, `duplicate label name: "a"`}},
		{
			name: "too many labels once the cluster is added", body: protoBody(t, stream(`{a="1", b="2", c="3"}`, entry(1, "a"))), ct: ctProto, dflt: "d",
			lim: func(l *Limits) { l.MaxLabelNamesPerStream = 3 }, wantStatus: 400, wantReason: []string{`'{a="1", b="2", c="3"}'`, "4 label names; limit 3"},
		},
		{name: "label name too long", body: protoBody(t, stream(`{cluster="c", `+strings.Repeat("n", 1025)+`="v"}`, entry(1, "a"))), ct: ctProto, wantStatus: 400, wantReason: []string{"label name too long: 1025 bytes, limit 1024"}},
		{name: "label value too long", body: protoBody(t, stream(`{cluster="c", a="`+strings.Repeat("v", 2049)+`"}`, entry(1, "a"))), ct: ctProto, wantStatus: 400, wantReason: []string{"label value too long: 2049 bytes, limit 2048", "…"}},
		{
			name: "default cluster too long", body: protoBody(t, stream(`{a="1"}`, entry(1, "a"))), ct: ctProto, dflt: long,
			lim: func(l *Limits) { l.MaxLabelValueLen = 100 }, wantStatus: 400, wantReason: []string{"default cluster"},
		},
		{
			name: "line too long", body: protoBody(t, stream(`{app="api", cluster="c"}`, entry(1, strings.Repeat("l", 101)))), ct: ctProto,
			lim: func(l *Limits) { l.MaxLineBytes = 100 }, wantStatus: 400, wantReason: []string{`stream '{app="api", cluster="c"}'`, "entry 0", "line too long: 101 bytes", "100"},
		},
		{
			name: "structured metadata too large", body: protoBody(t, stream(`{app="api", cluster="c"}`, entry(1, "x", "k", strings.Repeat("v", 10)))), ct: ctProto,
			lim: func(l *Limits) { l.MaxStructuredMetadataBytes = 10 }, wantStatus: 400, wantReason: []string{`'{app="api", cluster="c"}'`, "structured metadata too large: 11 bytes"},
		},
		{
			name: "too many structured metadata", body: protoBody(t, stream(`{app="api", cluster="c"}`, entry(1, "x", "a", "1", "b", "2", "c", "3"))), ct: ctProto,
			lim: func(l *Limits) { l.MaxStructuredMetadataEntries = 2 }, wantStatus: 400, wantReason: []string{"too many structured metadata labels: 3, limit 2"},
		},
		{name: "no cluster and no default", body: protoBody(t, stream(`{app="api"}`, entry(1, "a"))), ct: ctProto, wantStatus: 400, wantReason: []string{`'{app="api"}'`, "no cluster label and no default cluster"}},
		{name: "entry without timestamp", body: withEntry(0x12, 1, 'x'), ct: ctProto, dflt: "d", wantStatus: 400, wantReason: []string{`'{a="b"}'`, "entry 0", "no timestamp"}},
		{name: "nanos out of range", body: withEntry(0x0a, 6, 0x10, 0x80, 0x94, 0xeb, 0xdc, 0x03), ct: ctProto, dflt: "d", wantStatus: 400, wantReason: []string{`'{a="b"}'`, "invalid timestamp", "nanos 1000000000"}},
		{name: "negative nanos", body: withEntry(0x0a, 11, 0x10, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01), ct: ctProto, dflt: "d", wantStatus: 400, wantReason: []string{"nanos -1"}},
		{name: "seconds after year 9999", body: withEntry(0x0a, 7, 0x08, 0x80, 0x83, 0xd1, 0xff, 0xaf, 0x07), ct: ctProto, dflt: "d", wantStatus: 400, wantReason: []string{"seconds 253402300800"}},
		{name: "line with wrong wire type", body: withEntry(0x0a, 0, 0x10, 1), ct: ctProto, dflt: "d", wantStatus: 400, wantReason: []string{`'{a="b"}'`, "wire type 0 for field line"}},
		{name: "truncated structured metadata", body: withEntry(0x0a, 0, 0x1a, 2, 0x0a, 5), ct: ctProto, dflt: "d", wantStatus: 400, wantReason: []string{`'{a="b"}'`, "truncated"}},
		{
			name: "entry larger than a record", body: protoBody(t, stream(`{app="api", cluster="c"}`, entry(1, noise(rand.New(rand.NewSource(1)), 300)))), ct: ctProto,
			lim: func(l *Limits) { l.MaxRecordBytes = 100 }, wantStatus: 413, wantReason: []string{`'{app="api", cluster="c"}'`, "does not fit one record", "100 bytes compressed"},
		},
		{name: "stream name with a newline is quoted", body: protoBody(t, stream("{a=\"b\nc\"}", entry(1, "a"))), ct: ctProto, wantStatus: 400, wantReason: []string{`"{a=\"b\nc\"}"`}},

		{name: "JSON: not JSON", body: []byte(`{"streams": [}`), ct: ctJSON, wantStatus: 400, wantReason: []string{"offset 13"}},
		{name: "JSON: trailing data", body: []byte(`{"streams": []} {}`), ct: ctJSON, wantStatus: 400, wantReason: []string{"after the top-level object"}},
		{name: "JSON: not an object", body: []byte(`[]`), ct: ctJSON, wantStatus: 400, wantReason: []string{"expected an object"}},
		{name: "JSON: label value not a string", body: []byte(`{"streams": [{"stream": {"a": 1}}]}`), ct: ctJSON, wantStatus: 400, wantReason: []string{"stream #0", `label "a" must be a string`}},
		{name: "JSON: invalid label name", body: []byte(`{"streams": [{"stream": {"a.b": "1"}}]}`), ct: ctJSON, wantStatus: 400, wantReason: []string{`'{a.b="1"}'`, `invalid label name "a.b"`}},
		{name: "JSON: no labels", body: []byte(`{"streams": [{"values": [["1", "x"]]}]}`), ct: ctJSON, dflt: "d", wantStatus: 400, wantReason: []string{"stream #0", "at least one label pair"}},
		{name: "JSON: no cluster", body: []byte(`{"streams": [{"stream": {"a": "1"}, "values": [["1", "x"]]}]}`), ct: ctJSON, wantStatus: 400, wantReason: []string{`'{a="1"}'`, "no cluster label"}},
		{name: "JSON: missing timestamp", body: []byte(`{"streams": [{"stream": {"a": "1"}, "values": [[]]}]}`), ct: ctJSON, dflt: "d", wantStatus: 400, wantReason: []string{`'{a="1"}'`, "entry 0", "no timestamp"}},
		{name: "JSON: timestamp not numeric", body: []byte(`{"streams": [{"stream": {"a": "1"}, "values": [["1", "x"], ["12x", "y"]]}]}`), ct: ctJSON, dflt: "d", wantStatus: 400, wantReason: []string{`'{a="1"}'`, "entry 1", `timestamp "12x"`}},
		{name: "JSON: timestamp overflows", body: []byte(`{"streams": [{"stream": {"a": "1"}, "values": [["9223372036854775808", "x"]]}]}`), ct: ctJSON, dflt: "d", wantStatus: 400, wantReason: []string{"timestamp"}},
		{name: "JSON: timestamp with plus", body: []byte(`{"streams": [{"stream": {"a": "1"}, "values": [["+1", "x"]]}]}`), ct: ctJSON, dflt: "d", wantStatus: 400, wantReason: []string{"timestamp"}},
		{name: "JSON: timestamp as a number", body: []byte(`{"streams": [{"stream": {"a": "1"}, "values": [[1, "x"]]}]}`), ct: ctJSON, dflt: "d", wantStatus: 400, wantReason: []string{"stream #0 entry 0", "timestamp must be a string"}},
		{name: "JSON: line not a string", body: []byte(`{"streams": [{"stream": {"a": "1"}, "values": [["1", null]]}]}`), ct: ctJSON, dflt: "d", wantStatus: 400, wantReason: []string{"line must be a string"}},
		{name: "JSON: metadata value not a string", body: []byte(`{"streams": [{"stream": {"a": "1"}, "values": [["1", "x", {"k": 1}]]}]}`), ct: ctJSON, dflt: "d", wantStatus: 400, wantReason: []string{"stream #0 entry 0", `structured metadata "k" must be a string`}},
		{name: "JSON: entry not an array", body: []byte(`{"streams": [{"stream": {"a": "1"}, "values": ["1"]}]}`), ct: ctJSON, dflt: "d", wantStatus: 400, wantReason: []string{"expected an array"}},
		{
			name: "JSON: line too long", body: []byte(`{"streams": [{"stream": {"cluster": "c", "app": "api"}, "values": [["1", "` + long + `"]]}]}`), ct: ctJSON,
			lim: func(l *Limits) { l.MaxLineBytes = 100 }, wantStatus: 400, wantReason: []string{`'{app="api", cluster="c"}'`, "line too long: 300 bytes"},
		},
		{name: "JSON: control character", body: []byte("{\"streams\": [{\"stream\": {\"a\": \"\x01\"}}]}"), ct: ctJSON, wantStatus: 400, wantReason: []string{"control character"}},
		{name: "JSON: bad escape", body: []byte(`{"streams": [{"stream": {"a": "\x"}}]}`), ct: ctJSON, wantStatus: 400, wantReason: []string{"invalid escape"}},
		{name: "JSON: bad number", body: []byte(`{"x": 01, "streams": []}`), ct: ctJSON, wantStatus: 400, wantReason: []string{"expected"}},
		{name: "JSON: too deep", body: []byte(`{"x": ` + strings.Repeat("[", 10002) + strings.Repeat("]", 10002) + `}`), ct: ctJSON, wantStatus: 400, wantReason: []string{"nesting too deep"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			lim := testLimits()
			if tc.lim != nil {
				tc.lim(&lim)
			}
			got, err := Parse(tc.body, tc.ct, tc.ce, lim, Options{DefaultCluster: tc.dflt})
			require.Error(t, err)
			require.Nil(t, got)
			status, ok := reject.Status(err)
			require.True(t, ok, "not a reject error: %v", err)
			require.Equal(t, tc.wantStatus, status, err.Error())
			for _, r := range tc.wantReason {
				require.Contains(t, err.Error(), r)
			}
			require.NotContains(t, err.Error(), "\n", "one line")
		})
	}
}

// TestParseBoundsSnappyBeforeAllocating sends a tiny body that declares a
// huge decoded length: it must be refused without allocating that length.
func TestParseBoundsSnappyBeforeAllocating(t *testing.T) {
	body := []byte{0xff, 0xff, 0xff, 0xff, 0x07, 0} // declares 2 GiB
	lim := testLimits()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	_, err := Parse(body, ctProto, "", lim, Options{DefaultCluster: "d"})
	runtime.ReadMemStats(&after)
	status, _ := reject.Status(err)
	require.Equal(t, http.StatusRequestEntityTooLarge, status)
	require.Less(t, after.TotalAlloc-before.TotalAlloc, uint64(64<<10))
}

func TestParseFastPathAllocations(t *testing.T) {
	body := benchProtoBody(100, 10, true)
	lim := testLimits()
	_, _ = Parse(body, ctProto, "", lim, Options{DefaultCluster: "d"}) // warm the buffer pool
	allocs := testing.AllocsPerRun(50, func() {
		bs, err := Parse(body, ctProto, "", lim, Options{DefaultCluster: "d"})
		if err != nil || len(bs) != 1 || &bs[0].Value[0] != &body[0] {
			t.Fatal("not the fast path", err)
		}
	})
	require.LessOrEqual(t, allocs, 2.0) // the []Batch and its Cluster
}

func TestParseTimestamp(t *testing.T) {
	tests := []struct {
		in   string
		want int64
		ok   bool
	}{
		{"0", 0, true},
		{"1700000000000000001", 1700000000000000001, true},
		{"0007", 7, true},
		{"-1", -1, true},
		{"9223372036854775807", 1<<63 - 1, true},
		{"-9223372036854775808", -1 << 63, true},
		{"9223372036854775808", 0, false},
		{"-9223372036854775809", 0, false},
		{"99999999999999999999", 0, false},
		{"", 0, false},
		{"-", 0, false},
		{"+1", 0, false},
		{"1.5", 0, false},
		{"1e9", 0, false},
		{" 1", 0, false},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			got, ok := parseTimestamp(tc.in)
			require.Equal(t, tc.ok, ok)
			require.Equal(t, tc.want, got)
		})
	}
}

// testLimits are the default limits without the timestamp rules, for
// tests whose entries are stamped near the epoch.
func testLimits() Limits {
	lim := DefaultLimits()
	lim.RejectOldSamplesMaxAge, lim.CreationGracePeriod, lim.MaxEntryBehind = 0, 0, 0
	return lim
}
