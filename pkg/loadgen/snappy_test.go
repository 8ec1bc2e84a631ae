package loadgen

import (
	"bytes"
	"math/rand"
	"testing"

	"github.com/golang/snappy"
	"github.com/stretchr/testify/require"
)

func TestEncodeHolesRoundTrip(t *testing.T) {
	rnd := rand.New(rand.NewSource(3))
	repetitive := bytes.Repeat([]byte(`{__name__="http_requests_total", namespace="checkout", pod="api-1"} `), 3000)
	random := make([]byte, 50000)
	rnd.Read(random)
	for _, tc := range []struct {
		name  string
		src   []byte
		holes []span
	}{
		{"empty", nil, nil},
		{"no holes", repetitive, nil},
		{"holes in repeated text", repetitive, everyN(len(repetitive), 100, 15)},
		{"adjacent holes", repetitive, []span{{0, 4}, {4, 4}, {8, 1}, {500, 12}, {len(repetitive) - 3, 3}}},
		{"random bytes", random, everyN(len(random), 333, 12)},
		{"beyond the 64 KiB window", append(append([]byte(nil), random...), random...), everyN(2*len(random), 10000, 6)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			enc, offsets, err := encodeHoles(tc.src, tc.holes)
			require.NoError(t, err)
			dec, err := snappy.Decode(nil, enc)
			require.NoError(t, err)
			require.Equal(t, len(tc.src), len(dec))
			require.True(t, bytes.Equal(tc.src, dec), "decoded body differs")

			// Rewriting the holes in the compressed body changes exactly
			// those bytes of the decoded body.
			want := bytes.Clone(tc.src)
			for i, h := range tc.holes {
				patch := make([]byte, h.n)
				rnd.Read(patch)
				copy(want[h.start:], patch)
				copy(enc[offsets[i]:], patch)
			}
			dec, err = snappy.Decode(nil, enc)
			require.NoError(t, err)
			require.True(t, bytes.Equal(want, dec), "patched body decodes to something else")
		})
	}
}

func TestEncodeHolesRefusesBadHoles(t *testing.T) {
	src := make([]byte, 100)
	for _, holes := range [][]span{{{90, 20}}, {{10, 5}, {12, 5}}, {{20, 1}, {10, 1}}, {{5, 0}}} {
		_, _, err := encodeHoles(src, holes)
		require.Error(t, err, "%v", holes)
	}
}

// The bodies must compress like a real client's, or the receiver's
// decompression cost and Kafka's bytes would be off.
func TestEncodeHolesCompressesLikeSnappy(t *testing.T) {
	bodies, err := RemoteWriteBodies(SeriesConfig{Series: 2000, SeriesPerRequest: 2000, Labels: 10, Clusters: 1})
	require.NoError(t, err)
	raw, err := snappy.Decode(nil, bodies[0].Data)
	require.NoError(t, err)
	ours, ref := len(bodies[0].Data), len(snappy.Encode(nil, raw))
	t.Logf("raw %d bytes, snappy %d (%.1fx), with holes %d (%.1fx)", len(raw), ref, float64(len(raw))/float64(ref), ours, float64(len(raw))/float64(ours))
	// Timestamps and values are literals in ours, while snappy may match
	// them: a little larger is expected, a lot larger is a bug.
	require.Less(t, float64(ours), 1.25*float64(ref))
}

func everyN(size, every, n int) []span {
	var out []span
	for s := 7; s+n <= size; s += every {
		out = append(out, span{s, n})
	}
	return out
}
