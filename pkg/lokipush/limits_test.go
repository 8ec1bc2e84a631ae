package lokipush

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/golang/snappy"
	"github.com/grafana/loki/pkg/push"
	"github.com/stretchr/testify/require"

	"github.com/tributary-io/tributary/pkg/reject"
	"github.com/tributary-io/tributary/pkg/split"
)

// bothFormats runs f on the protobuf and the JSON body of streams.
func bothFormats(t *testing.T, streams []push.Stream, f func(t *testing.T, body []byte, ct string)) {
	t.Run("protobuf", func(t *testing.T) { f(t, protoBody(t, streams...), ctProto) })
	t.Run("JSON", func(t *testing.T) { f(t, jsonOf(streams), ctJSON) })
}

// linesOf returns the lines of the batches, in order, by cluster.
func linesOf(t *testing.T, got []Batch) map[string][]string {
	t.Helper()
	out := map[string][]string{}
	for _, b := range got {
		for _, s := range decode(t, b).Streams {
			for _, e := range s.Entries {
				out[b.Cluster] = append(out[b.Cluster], e.Line)
			}
		}
	}
	return out
}

func mustStatus(t *testing.T, err error, want int) string {
	t.Helper()
	require.Error(t, err)
	status, ok := reject.Status(err)
	require.True(t, ok, "not a reject error: %v", err)
	require.Equal(t, want, status, err.Error())
	require.NotContains(t, err.Error(), "\n", "one line")
	return err.Error()
}

// A push of 100,000 streams (~1.3 MB of snappy) decodes to ~12 MB, which
// Loki refuses as one gRPC message. Every record must stay under the
// decoded bound, and every entry must arrive once, in order.
func TestParseCutsRecordsByDecodedSize(t *testing.T) {
	now := time.Now()
	streams := make([]push.Stream, 100_000)
	var want []string
	for i := range streams {
		line := fmt.Sprintf("level=info msg=\"request served\" stream=%d", i)
		streams[i] = stream(fmt.Sprintf(`{app="svc-%d", cluster="c", pod="pod-%d"}`, i%50, i), entry(now.UnixNano(), line))
		want = append(want, line)
	}
	body := protoBody(t, streams...)
	raw, err := snappy.Decode(nil, body)
	require.NoError(t, err)
	lim := DefaultLimits()
	require.Greater(t, len(raw), 4*lim.MaxRecordDecodedBytes, "the request must need cutting by decoded size")
	require.Less(t, len(body), lim.MaxRecordBytes*2)

	got, err := Parse(body, ctProto, "", lim, Options{Now: now})
	require.NoError(t, err)
	require.Greater(t, len(got), 4)
	for i, b := range got {
		n, err := snappy.DecodedLen(b.Value)
		require.NoError(t, err)
		require.LessOrEqual(t, n, lim.MaxRecordDecodedBytes, "record %d", i)
		require.LessOrEqual(t, len(b.Value), lim.MaxRecordBytes, "record %d", i)
	}
	require.Equal(t, map[string][]string{"c": want}, linesOf(t, got))
}

// Loki's default age window: reject_old_samples_max_age 168h,
// creation_grace_period 10m; and "too far behind" within one stream of one
// request (max_chunk_age 2h / 2). The valid entries are kept.
func TestParseTimestampRules(t *testing.T) {
	now := time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)
	at := func(d time.Duration) int64 { return now.Add(d).UnixNano() }
	tests := []struct {
		name    string
		entries []push.Entry
		want    []string
		reason  []string
	}{
		{
			name:    "8 days old",
			entries: []push.Entry{entry(at(-time.Minute), "ok1"), entry(at(-8*24*time.Hour), "old"), entry(at(0), "ok2")},
			want:    []string{"ok1", "ok2"},
			reason:  []string{"1 of 3 entries refused", "entry 1", "timestamp too old: 2026-11-21T12:00:00Z", "oldest acceptable timestamp is: 2026-11-22T12:00:00Z", "reject_old_samples_max_age 168h"},
		},
		{
			name:    "1 h in the future",
			entries: []push.Entry{entry(at(time.Hour), "future"), entry(at(9*time.Minute), "ok")},
			want:    []string{"ok"},
			reason:  []string{"1 of 2 entries refused", "entry 0", "timestamp too new: 2026-11-29T13:00:00Z", "creation_grace_period 10m"},
		},
		{
			name:    "too far behind its stream",
			entries: []push.Entry{entry(at(-3*time.Hour), "first"), entry(at(0), "newest"), entry(at(-61*time.Minute), "behind"), entry(at(-59*time.Minute), "within")},
			want:    []string{"first", "newest", "within"},
			reason:  []string{"1 of 4 entries refused", "entry 2", "entry too far behind", "oldest acceptable timestamp is: 2026-11-29T11:00:00Z"},
		},
		{
			name:    "at the bounds",
			entries: []push.Entry{entry(at(-7*24*time.Hour), "oldest"), entry(at(10*time.Minute), "newest"), entry(at(-50*time.Minute), "an hour behind")},
			want:    []string{"oldest", "newest", "an hour behind"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			streams := []push.Stream{stream(`{app="api", cluster="c"}`, tc.entries...)}
			bothFormats(t, streams, func(t *testing.T, body []byte, ct string) {
				got, err := Parse(body, ct, "", DefaultLimits(), Options{Now: now})
				if tc.reason == nil {
					require.NoError(t, err)
				} else {
					msg := mustStatus(t, err, http.StatusBadRequest)
					for _, r := range tc.reason {
						require.Contains(t, msg, r)
					}
					require.Contains(t, msg, `stream '{app="api", cluster="c"}'`)
				}
				require.Equal(t, map[string][]string{"c": tc.want}, linesOf(t, got))
			})
		})
	}

	t.Run("disabled by zero", func(t *testing.T) {
		got, err := Parse(protoBody(t, stream(`{cluster="c"}`, entry(1, "1970"))), ctProto, "", testLimits(), Options{Now: now})
		require.NoError(t, err)
		require.Len(t, got, 1)
	})
}

// Loki stores the valid part of a batch and answers 400 for the rest: 10
// valid lines and one 300 KiB line (over max_line_size) store the 10.
func TestParsePartialAcceptance(t *testing.T) {
	now := time.Now()
	var entries []push.Entry
	var want []string
	for i := 0; i < 10; i++ {
		entries = append(entries, entry(now.Add(time.Duration(i)).UnixNano(), fmt.Sprintf("line %d", i)))
		want = append(want, fmt.Sprintf("line %d", i))
	}
	entries = append(entries[:5], append([]push.Entry{entry(now.UnixNano(), strings.Repeat("x", 300<<10))}, entries[5:]...)...)
	streams := []push.Stream{
		stream(`{app="api", cluster="c"}`, entries...),
		stream(`{app="bad", cluster="c", a="1", a="2"}`, entry(now.UnixNano(), "dup")), // duplicate label: the stream is refused
		stream(`{app="other"}`, entry(now.UnixNano(), "no cluster")),                   // no cluster and no default
	}
	bothFormats(t, streams[:1], func(t *testing.T, body []byte, ct string) {
		got, err := Parse(body, ct, "", DefaultLimits(), Options{Now: now})
		msg := mustStatus(t, err, http.StatusBadRequest)
		require.Contains(t, msg, "1 of 11 entries refused, the rest was accepted")
		require.Contains(t, msg, `stream '{app="api", cluster="c"}': entry 5: line too long: 307200 bytes, max_line_size is 262144`)
		require.Equal(t, map[string][]string{"c": want}, linesOf(t, got))
	})
	// Streams refused whole. (JSON labels are a map: no duplicate names.)
	t.Run("protobuf streams", func(t *testing.T) {
		got, err := Parse(protoBody(t, streams...), ctProto, "", DefaultLimits(), Options{Now: now})
		msg := mustStatus(t, err, http.StatusBadRequest)
		require.Contains(t, msg, "3 of 13 entries refused (2 streams refused whole), the rest was accepted")
		require.Equal(t, map[string][]string{"c": want}, linesOf(t, got))
	})
	t.Run("nothing accepted", func(t *testing.T) {
		got, err := Parse(protoBody(t, streams[2]), ctProto, "", DefaultLimits(), Options{Now: now})
		msg := mustStatus(t, err, http.StatusBadRequest)
		require.Contains(t, msg, "1 of 1 entries refused (1 streams refused whole), nothing was accepted")
		require.Contains(t, msg, "no cluster label and no default cluster")
		require.Nil(t, got)
	})
	// A body that does not decode is still refused whole.
	t.Run("malformed", func(t *testing.T) {
		body := jsonOf(streams[:1])
		got, err := Parse(body[:len(body)-1], ctJSON, "", DefaultLimits(), Options{Now: now})
		mustStatus(t, err, http.StatusBadRequest)
		require.Nil(t, got)
	})
}

// The split by cluster is the shared linear one, with its bound.
func TestParseClusterBound(t *testing.T) {
	now := time.Now().UnixNano()
	many := func(n int) []push.Stream {
		s := make([]push.Stream, n)
		for i := range s {
			s[i] = stream(fmt.Sprintf(`{app="a", cluster="c%d"}`, (n-1-i)%n), entry(now, fmt.Sprint(i)))
		}
		return s
	}
	t.Run("128k clusters", func(t *testing.T) {
		bothFormats(t, many(128_000), func(t *testing.T, body []byte, ct string) {
			start := time.Now()
			got, err := Parse(body, ct, "", DefaultLimits(), Options{})
			msg := mustStatus(t, err, http.StatusBadRequest)
			require.Contains(t, msg, fmt.Sprintf("more than %d distinct clusters", split.DefaultMaxClusters))
			require.Nil(t, got)
			t.Logf("refused in %s", time.Since(start))
		})
	})
	t.Run("64 clusters in first-seen order", func(t *testing.T) {
		bothFormats(t, many(64), func(t *testing.T, body []byte, ct string) {
			got, err := Parse(body, ct, "", DefaultLimits(), Options{})
			require.NoError(t, err)
			require.Len(t, got, 64)
			for i, b := range got {
				require.Equal(t, fmt.Sprintf("c%d", 63-i), b.Cluster)
			}
		})
	})
	t.Run("bound from options", func(t *testing.T) {
		_, err := Parse(protoBody(t, many(3)...), ctProto, "", DefaultLimits(), Options{MaxClusters: 2})
		require.Contains(t, mustStatus(t, err, http.StatusBadRequest), "more than 2 distinct clusters")
	})
}

// Decoded bytes are reserved before they are allocated: a gzip bomb stops
// at the first refused reservation, and what was reserved covers what was
// decompressed.
func TestParseReservesBeforeDecoding(t *testing.T) {
	bomb := gzipped(make([]byte, 64<<20))
	errBudget := errors.New("budget spent")
	for _, budget := range []int{1 << 20, 16 << 20} {
		t.Run(fmt.Sprint(budget), func(t *testing.T) {
			reserved := 0
			opt := Options{Reserve: func(n int) error {
				if reserved+n > budget {
					return errBudget
				}
				reserved += n
				return nil
			}}
			_, err := Parse(bomb, ctJSON, "gzip", DefaultLimits(), opt)
			require.ErrorIs(t, err, errBudget, "the reservation's error, unchanged")
			require.LessOrEqual(t, reserved, budget)
		})
	}
	t.Run("every decoder reserves", func(t *testing.T) {
		now := time.Now()
		streams := []push.Stream{stream(`{app="a"}`, entry(now.UnixNano(), strings.Repeat("l", 1000)))}
		for _, tc := range []struct {
			name, ct, ce string
			body         []byte
		}{
			{"snappy", ctProto, "", protoBody(t, streams...)},
			{"gzip JSON", ctJSON, "gzip", gzipped(jsonOf(streams))},
			{"JSON", ctJSON, "", jsonOf(streams)},
		} {
			reserved := 0
			_, err := Parse(tc.body, tc.ct, tc.ce, DefaultLimits(), Options{DefaultCluster: "d", Reserve: func(n int) error { reserved += n; return nil }})
			require.NoError(t, err, tc.name)
			require.GreaterOrEqual(t, reserved, 1000, tc.name)
		}
	})
}

// An entry of a few bytes in the request costs more once collected for
// re-encoding: that is reserved too.
func TestParseReservesCollectedEntries(t *testing.T) {
	entries := make([]push.Entry, 100_000)
	for i := range entries {
		entries[i] = entry(1, "") // 6 bytes each in the request
	}
	body := protoBody(t, stream(`{app="a"}`, entries...)) // no cluster label: rewritten
	largest := 0
	_, err := Parse(body, ctProto, "", testLimits(), Options{DefaultCluster: "d", Reserve: func(n int) error { largest = max(largest, n); return nil }})
	require.NoError(t, err)
	require.GreaterOrEqual(t, largest, 24*len(entries), "the collected entries are reserved")
}

// Field numbers above 2^29-1 are not protobuf: refused with the offset of
// the faulty tag, at whatever depth.
func TestParseIllegalFieldNumbers(t *testing.T) {
	tag := func(num uint64) []byte {
		var b []byte
		for v := num<<3 | 2; ; v >>= 7 {
			if v < 0x80 {
				return append(b, byte(v))
			}
			b = append(b, byte(v)|0x80)
		}
	}
	ok, err := (&push.PushRequest{Streams: []push.Stream{stream(`{cluster="c"}`, entry(1, "a"))}}).Marshal()
	require.NoError(t, err)
	for _, num := range []uint64{0, 1 << 29, 1<<32 - 1} {
		t.Run(fmt.Sprintf("top level %d", num), func(t *testing.T) {
			body := append(append(append([]byte{}, ok...), tag(num)...), 0)
			_, err := Parse(snappy.Encode(nil, body), ctProto, "", testLimits(), Options{})
			msg := mustStatus(t, err, http.StatusBadRequest)
			require.Contains(t, msg, fmt.Sprintf("illegal field number %d", num))
			require.Contains(t, msg, fmt.Sprintf("at byte %d", len(ok)))
		})
	}
	t.Run("inside an entry", func(t *testing.T) {
		// stream {labels "{a=\"b\"}", entry {line "x", <field 2^29> ""}}
		entryMsg := append([]byte{0x12, 1, 'x'}, append(tag(1<<29), 0)...)
		st := append([]byte{0x0a, 7}, `{a="b"}`...)
		st = append(append(st, 0x12, byte(len(entryMsg))), entryMsg...)
		body := append([]byte{0x0a, byte(len(st))}, st...)
		_, err := Parse(snappy.Encode(nil, body), ctProto, "", testLimits(), Options{DefaultCluster: "d"})
		msg := mustStatus(t, err, http.StatusBadRequest)
		require.Contains(t, msg, "illegal field number 536870912")
		// 2 (push tag+len) + 9 (labels) + 2 (entry tag+len) + 3 (line)
		require.Contains(t, msg, "at byte 16")
	})
}
