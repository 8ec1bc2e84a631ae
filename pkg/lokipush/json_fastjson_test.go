package lokipush

import (
	"testing"

	"github.com/valyala/fastjson"
)

// fastjsonWalk fills p's streams, labels, entries and metadata from body
// with github.com/valyala/fastjson, as jsonParser.parse does by hand: the
// candidate library for the token layer (issue 17). It is not a full
// replacement: fastjson unescapes strings "best effort" (an unpaired
// surrogate stays "\ud800" where encoding/json and Loki read U+FFFD),
// accepts control characters and invalid UTF-8 in strings, and refuses
// nesting deeper than 300, all of which a replacement would have to check
// again in a further pass. It only measures the lower bound of its cost.
func fastjsonWalk(fp *fastjson.Parser, p *jsonParser, body []byte) error {
	doc, err := fp.ParseBytes(body)
	if err != nil {
		return err
	}
	top, err := doc.Object()
	if err != nil {
		return err
	}
	var streams *fastjson.Value
	top.Visit(func(k []byte, v *fastjson.Value) {
		if string(k) == "streams" { // the last one wins
			streams = v
		}
	})
	if streams == nil || streams.Type() == fastjson.TypeNull {
		return nil
	}
	list, err := streams.Array()
	if err != nil {
		return err
	}
	str := func(v *fastjson.Value) string {
		b, _ := v.StringBytes()
		return alias(b)
	}
	pairs := func(dst []labelPair, v *fastjson.Value) []labelPair {
		o, _ := v.Object()
		o.Visit(func(k []byte, v *fastjson.Value) {
			dst = append(dst, labelPair{name: alias(k), value: str(v)})
		})
		return dst
	}
	for _, sv := range list {
		if sv.Type() == fastjson.TypeNull {
			continue
		}
		so, err := sv.Object()
		if err != nil {
			return err
		}
		s := jsonStream{entriesFrom: len(p.entries), entriesTo: len(p.entries)}
		so.Visit(func(k []byte, v *fastjson.Value) {
			switch string(k) {
			case "stream":
				s.hasLabels, s.labelsFrom = true, len(p.labels)
				p.labels = pairs(p.labels, v)
				s.labelsTo = len(p.labels)
			case "values":
				s.entriesFrom = len(p.entries)
				vals, _ := v.Array()
				for _, ev := range vals {
					if ev.Type() == fastjson.TypeNull {
						continue
					}
					elems, _ := ev.Array()
					e := jsonEntry{metaFrom: len(p.meta), metaTo: len(p.meta)}
					for i, x := range elems {
						switch i {
						case 0:
							e.ts, e.hasTimestamp = str(x), true
						case 1:
							e.line = str(x)
						case 2:
							e.metaFrom = len(p.meta)
							p.meta = pairs(p.meta, x)
							e.metaTo = len(p.meta)
						}
					}
					p.entries = append(p.entries, e)
				}
				s.entriesTo = len(p.entries)
			}
		})
		p.streams = append(p.streams, s)
	}
	return nil
}

// BenchmarkJSONTokenLayer compares the hand-written token layer with
// fastjson doing the same walk, on BenchmarkParseJSON's body. Both fill the
// same slices that request() then validates and encodes.
func BenchmarkJSONTokenLayer(b *testing.B) {
	streams := benchStreams(100, 10, false)
	body := jsonOf(streams)
	b.Run("hand-written", func(b *testing.B) {
		b.SetBytes(lineBytes(streams))
		b.ReportAllocs()
		var p jsonParser
		for i := 0; i < b.N; i++ {
			p = jsonParser{b: body, opt: &Options{}, streams: p.streams[:0], labels: p.labels[:0], entries: p.entries[:0], meta: p.meta[:0]}
			if err := p.parse(); err != nil || len(p.entries) != 1000 {
				b.Fatal(err, len(p.entries))
			}
		}
	})
	b.Run("fastjson", func(b *testing.B) {
		b.SetBytes(lineBytes(streams))
		b.ReportAllocs()
		var fp fastjson.Parser
		var p jsonParser
		for i := 0; i < b.N; i++ {
			p = jsonParser{b: body, opt: &Options{}, streams: p.streams[:0], labels: p.labels[:0], entries: p.entries[:0], meta: p.meta[:0]}
			if err := fastjsonWalk(&fp, &p, body); err != nil || len(p.entries) != 1000 {
				b.Fatal(err, len(p.entries))
			}
		}
	})
}

// TestFastjsonWalkAgrees checks that the benchmark compares like with
// like: on the benchmark's body both walks fill the same slices.
func TestFastjsonWalkAgrees(t *testing.T) {
	body := jsonOf(benchStreams(20, 5, false))
	hand := jsonParser{b: body, opt: &Options{}}
	if err := hand.parse(); err != nil {
		t.Fatal(err)
	}
	var fp fastjson.Parser
	lib := jsonParser{b: body, opt: &Options{}}
	if err := fastjsonWalk(&fp, &lib, body); err != nil {
		t.Fatal(err)
	}
	if len(hand.entries) != 100 || len(hand.streams) != len(lib.streams) || len(hand.labels) != len(lib.labels) || len(hand.meta) != len(lib.meta) {
		t.Fatalf("sizes differ: %d/%d streams, %d/%d labels, %d/%d meta", len(hand.streams), len(lib.streams), len(hand.labels), len(lib.labels), len(hand.meta), len(lib.meta))
	}
	for i := range hand.entries {
		if hand.entries[i] != lib.entries[i] {
			t.Fatalf("entry %d: %+v vs %+v", i, hand.entries[i], lib.entries[i])
		}
	}
	for i := range hand.labels {
		if hand.labels[i] != lib.labels[i] {
			t.Fatalf("label %d: %+v vs %+v", i, hand.labels[i], lib.labels[i])
		}
	}
	for i := range hand.meta {
		if hand.meta[i] != lib.meta[i] {
			t.Fatalf("meta %d: %+v vs %+v", i, hand.meta[i], lib.meta[i])
		}
	}
}
