package snappypush

import (
	"bytes"
	"testing"

	"github.com/golang/snappy"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/tributary-io/tributary/pkg/ingester"
)

func recs(values ...[]byte) []ingester.Record {
	out := make([]ingester.Record, len(values))
	for i, v := range values {
		out[i] = ingester.Record{Offset: int64(i), Value: v}
	}
	return out
}

func TestSpliceDecodesToTheConcatenation(t *testing.T) {
	// Repetitive inputs, so that the blocks are full of back-references,
	// including long ones (copy2, and blocks over 64 KiB).
	a := bytes.Repeat([]byte("series{cluster=\"a\"} 1\n"), 5000)
	b := []byte("x")
	c := bytes.Repeat([]byte{0, 1, 2, 3, 4, 5, 6, 7}, 20000)
	body, err := splice(recs(snappy.Encode(nil, a), snappy.Encode(nil, nil), snappy.Encode(nil, b), snappy.Encode(nil, c)), 1<<20)
	require.NoError(t, err)
	got, err := snappy.Decode(nil, body)
	require.NoError(t, err)
	require.Equal(t, append(append(append([]byte{}, a...), b...), c...), got)

	body, err = splice(recs(snappy.Encode(nil, nil), snappy.Encode(nil, []byte{})), 1<<20)
	require.NoError(t, err)
	require.Nil(t, body, "nothing to send")
}

func TestSpliceRefusesWhatDecodeRefuses(t *testing.T) {
	good := snappy.Encode(nil, bytes.Repeat([]byte("abcd"), 100))
	for name, bad := range map[string][]byte{
		"empty":            {},
		"header only":      {0x05},
		"short literal":    {0x05, 0x10, 'a'},
		"offset too far":   {0x08, 0x00, 'a', 0x0d, 0x05}, // copy1 of 7 from 5 back, after 1 byte
		"zero offset":      {0x08, 0x00, 'a', 0x0d, 0x00},
		"longer than said": {0x01, 0x04, 'a', 'b'},
		"bad varint":       {0xff, 0xff, 0xff, 0xff, 0xff, 0xff},
	} {
		_, decErr := snappy.Decode(nil, bad)
		require.Error(t, decErr, name)
		_, err := splice(recs(good, bad), 1<<20)
		require.ErrorContains(t, err, "record 1", name)
	}
	_, err := splice(recs(good), 10)
	require.ErrorContains(t, err, "over the limit of 10")
}

// FuzzSplice: a record passes splice's check exactly when snappy.Decode
// accepts it, and a spliced batch decodes to the concatenation of its
// records' outputs, including a record whose back-references would reach
// into the previous one (refused: alone it does not decode).
func FuzzSplice(f *testing.F) {
	f.Add([]byte("hello hello hello hello"), []byte{0x08, 0x00, 'a', 0x0d, 0x05})
	f.Add(snappy.Encode(nil, bytes.Repeat([]byte("ab"), 300)), []byte("plain"))
	f.Add([]byte{}, []byte{0x00})
	f.Fuzz(func(t *testing.T, raw, maybeBlock []byte) {
		// snappy.Decode allocates the declared length before it checks
		// anything: a 5-byte input declaring 245 MB stalls the fuzzer.
		// Such inputs are only splice's limit check, tested above.
		if n, err := snappy.DecodedLen(maybeBlock); err == nil && n > 1<<24 {
			return
		}
		first := snappy.Encode(nil, raw)
		want, decErr := snappy.Decode(nil, maybeBlock)
		body, err := splice(recs(first, maybeBlock), 1<<24)
		if decErr != nil {
			if err == nil {
				t.Fatalf("splice accepted %x that snappy.Decode refuses (%v)", maybeBlock, decErr)
			}
			return
		}
		if err != nil {
			t.Fatalf("splice refused %x that snappy.Decode accepts: %v", maybeBlock, err)
		}
		expect := append(append([]byte{}, raw...), want...)
		if len(expect) == 0 {
			if body != nil {
				t.Fatalf("empty batch gave a body %x", body)
			}
			return
		}
		got, err := snappy.Decode(nil, body)
		if err != nil {
			t.Fatalf("spliced body does not decode: %v", err)
		}
		if !bytes.Equal(got, expect) {
			t.Fatalf("spliced body decodes to %q, want %q", got, expect)
		}
	})
}

// FuzzCut: cut either refuses a message or returns parts that are whole
// messages, within the bound unless a part is a single field, whose
// concatenation is the input.
func FuzzCut(f *testing.F) {
	f.Add(message(5, 300, 'a'), 1000, 0)
	f.Add(message(3, 300, 'a'), 100, 10)
	f.Add([]byte{0x0a, 0xff}, 10, 0)
	f.Fuzz(func(t *testing.T, raw []byte, max, overhead int) {
		if max <= 0 || overhead < 0 || overhead > 1<<20 {
			return
		}
		parts, err := cut(raw, max, overhead)
		if err != nil {
			return
		}
		var got []byte
		for _, p := range parts {
			b, err := snappy.Decode(nil, p)
			if err != nil {
				t.Fatalf("part does not decode: %v", err)
			}
			fields := 0
			for rest := b; len(rest) > 0; fields++ {
				_, _, n := protowire.ConsumeField(rest)
				if n < 0 {
					t.Fatalf("part %x is not whole fields", b)
				}
				rest = rest[n:]
			}
			if fields > 1 && len(b)+fields*overhead > max {
				t.Fatalf("part of %d bytes and %d fields over %d", len(b), fields, max)
			}
			got = append(got, b...)
		}
		if !bytes.Equal(got, raw) {
			t.Fatalf("parts join to %x, want %x", got, raw)
		}
	})
}
