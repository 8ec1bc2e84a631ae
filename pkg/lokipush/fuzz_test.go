package lokipush

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"

	"github.com/golang/snappy"
	"github.com/grafana/loki/pkg/push"

	"github.com/tributary-io/tributary/pkg/reject"
)

func fuzzLimits() Limits {
	lim := testLimits()
	lim.MaxDecodedBytes = 1 << 20
	lim.MaxRecordBytes = 400 // small, so that splitting is exercised
	lim.MaxLabelNamesPerStream = 4
	lim.MaxLineBytes = 1000
	return lim
}

// FuzzParseProtobuf feeds arbitrary protobuf (snappy-compressed by the
// harness unless raw) to Parse. It must never panic and must refuse only with
// a 4xx; what it accepts gogo must decode too, with the same entries, and
// each record must be a valid single-cluster PushRequest under the size
// limit that Parse forwards unchanged.
func FuzzParseProtobuf(f *testing.F) {
	for _, req := range []push.PushRequest{
		{Streams: []push.Stream{stream(`{cluster="a", app="x"}`, entry(1, "l1", "k", "v"), entry(2, "l2"))}},
		{Streams: []push.Stream{stream(`{app="x"}`, entry(1, "l1")), stream(`{cluster="b", app="y"}`, entry(-5, "l2"))}, Format: "loki"},
		// Accepted in part: one line over fuzzLimits' 1000 bytes.
		{Streams: []push.Stream{stream(`{cluster="a"}`, entry(1, "ok"), entry(2, strings.Repeat("x", 1001)))}},
	} {
		raw, _ := req.Marshal()
		f.Add(raw, false)
	}
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 0x07, 0}, true)
	f.Fuzz(func(t *testing.T, data []byte, raw bool) {
		body := data
		if !raw {
			body = snappy.Encode(nil, data)
		}
		lim := fuzzLimits()
		got, err := Parse(body, ctProto, "", lim, Options{DefaultCluster: "dflt"})
		if err != nil {
			mustBe4xx(t, err)
			if got == nil {
				return
			}
			// Accepted in part: a 400 naming the refusals, and records
			// that hold some of the input's lines.
			if status, _ := reject.Status(err); status != 400 || !strings.Contains(err.Error(), "entries refused") {
				t.Fatalf("batches returned with %v", err)
			}
		}
		partial := err != nil
		decoded, err := snappy.Decode(nil, body)
		if err != nil {
			t.Fatalf("accepted a body snappy refuses: %v", err)
		}
		var in push.PushRequest
		if err := in.Unmarshal(decoded); err != nil {
			t.Fatalf("accepted a request gogo refuses: %v", err)
		}
		var want []string
		for _, s := range in.Streams {
			for _, e := range s.Entries {
				want = append(want, e.Line)
			}
		}
		checkBatches(t, got, lim, want, partial)
	})
}

// FuzzParseJSON feeds arbitrary JSON bodies to Parse. It must never panic
// and must refuse only with a 4xx; what it accepts must be valid JSON whose
// entries and lines, as encoding/json decodes them, are exactly those of the
// records.
func FuzzParseJSON(f *testing.F) {
	f.Add([]byte(`{"streams": [{"stream": {"app": "x", "cluster": "a"}, "values": [["1", "line \"q\" \u00e9", {"k": "v"}], ["2", "l2"]]}]}`))
	f.Add([]byte(`{"streams": [{"stream": {"app": "x"}, "values": [["-1", "a"], null]}, null, {"stream": {"cluster": "b", "a": ""}, "values": [["3"]]}]}`))
	f.Add([]byte(`{"streams": [], "x": [1, -2.5e+3, true, false, null, {"y": "\ud83d\ude00"}]}`))
	f.Add([]byte(`{"streams": [{"stream": {"a": "1"}, "values": [["1", "ok"], ["2", "` + strings.Repeat("x", 1001) + `"]]}]}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		lim := fuzzLimits()
		got, err := Parse(body, ctJSON, "", lim, Options{DefaultCluster: "dflt"})
		if err != nil {
			mustBe4xx(t, err)
			if got == nil {
				return
			}
			// Accepted in part: a 400 naming the refusals, and records
			// that hold some of the input's lines.
			if status, _ := reject.Status(err); status != 400 || !strings.Contains(err.Error(), "entries refused") {
				t.Fatalf("batches returned with %v", err)
			}
		}
		partial := err != nil
		var doc map[string]any
		if err := json.Unmarshal(body, &doc); err != nil {
			t.Fatalf("accepted a body encoding/json refuses: %v", err)
		}
		var want []string
		streams, _ := doc["streams"].([]any)
		for _, s := range streams {
			s, _ := s.(map[string]any)
			values, _ := s["values"].([]any)
			for _, v := range values {
				v, ok := v.([]any)
				if !ok {
					continue // null
				}
				line := ""
				if len(v) > 1 {
					line = v[1].(string)
				}
				want = append(want, line)
			}
		}
		checkBatches(t, got, lim, want, partial)
	})
}

func mustBe4xx(t *testing.T, err error) {
	t.Helper()
	if status, ok := reject.Status(err); !ok || status < 400 || status > 499 {
		t.Fatalf("not a 4xx refusal: %v", err)
	}
}

// checkBatches checks records against the input's lines, in any order
// (splitting by cluster reorders across clusters): all of them, or some of
// them if the request was accepted in part.
func checkBatches(t *testing.T, got []Batch, lim Limits, want []string, partial bool) {
	t.Helper()
	var have []string
	for _, b := range got {
		if len(b.Value) > lim.MaxRecordBytes {
			t.Fatalf("record of %d bytes over the limit of %d", len(b.Value), lim.MaxRecordBytes)
		}
		raw, err := snappy.Decode(nil, b.Value)
		if err != nil {
			t.Fatal(err)
		}
		var req push.PushRequest
		if err := req.Unmarshal(raw); err != nil {
			t.Fatalf("record does not decode: %v", err)
		}
		n, l := 0, 0
		for _, s := range req.Streams {
			if len(s.Entries) == 0 {
				continue // forwarded as received on the fast path
			}
			ps, err := parseLabels(s.Labels, nil)
			if err != nil {
				t.Fatalf("record labels %q: %v", s.Labels, err)
			}
			if c := normalize(ps).cluster; c != b.Cluster {
				t.Fatalf("stream %q in the record of cluster %q", s.Labels, b.Cluster)
			}
			for _, e := range s.Entries {
				n++
				l += len(e.Line)
				have = append(have, e.Line)
			}
		}
		if n != b.Entries || l != b.LineBytes {
			t.Fatalf("batch says %d entries, %d line bytes; record has %d, %d", b.Entries, b.LineBytes, n, l)
		}

		// A record is itself acceptable input, needing no rewrite.
		again, err := Parse(b.Value, ctProto, "", lim, Options{})
		if err != nil {
			t.Fatalf("record refused: %v", err)
		}
		if len(again) != 1 || &again[0].Value[0] != &b.Value[0] || again[0].Entries != b.Entries || again[0].Cluster != b.Cluster {
			t.Fatalf("record not forwarded as is: %+v", again)
		}
	}
	slices.Sort(have)
	slices.Sort(want)
	if partial {
		left := slices.Clone(want)
		for _, l := range have {
			i := slices.Index(left, l)
			if i < 0 {
				t.Fatalf("record line %q not in the input %q", l, want)
			}
			left = slices.Delete(left, i, i+1)
		}
		if len(left) == 0 {
			t.Fatalf("every line accepted, yet some refused")
		}
		return
	}
	if !slices.Equal(have, want) {
		t.Fatalf("records hold lines %q; input has %q", have, want)
	}
}
