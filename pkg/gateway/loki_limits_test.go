package gateway

import (
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang/snappy"
	"github.com/grafana/loki/pkg/push"
	"github.com/stretchr/testify/require"

	"github.com/tributary-io/tributary/internal/testenv"
	"github.com/tributary-io/tributary/pkg/lokipush"
)

func lokiProto(t *testing.T, streams ...push.Stream) []byte {
	t.Helper()
	raw, err := (&push.PushRequest{Streams: streams}).Marshal()
	require.NoError(t, err)
	return snappy.Encode(nil, raw)
}

// logRecords reads the logs topic back: the decoded size of each record
// and the lines by cluster, in order.
func logRecords(t *testing.T, f *fixture) (sizes []int, lines map[string][]string) {
	t.Helper()
	lines = map[string][]string{}
	for _, r := range testenv.ReadTopic(t, f.kafka.Addr, "tributary.logs") {
		raw, err := snappy.Decode(nil, r.Value)
		require.NoError(t, err)
		sizes = append(sizes, len(raw))
		var req push.PushRequest
		require.NoError(t, req.Unmarshal(raw))
		for _, s := range req.Streams {
			for _, e := range s.Entries {
				lines[string(r.Key)] = append(lines[string(r.Key)], e.Line)
			}
		}
	}
	return sizes, lines
}

// 100,000 streams in one push (~1.3 MB of snappy, ~12 MB decoded: Loki
// refuses one such gRPC message) are accepted and cut into records under
// -limits.logs.max-record-decoded-bytes.
func TestLokiPush100kStreamsCutUnderDecodedBound(t *testing.T) {
	f := newFixture(t, nil)
	now := time.Now()
	streams := make([]push.Stream, 100_000)
	var want []string
	for i := range streams {
		line := fmt.Sprintf("level=info msg=\"request served\" stream=%d", i)
		streams[i] = push.Stream{
			Labels:  fmt.Sprintf(`{app="svc-%d", cluster="c", pod="pod-%d"}`, i%50, i),
			Entries: []push.Entry{{Timestamp: now, Line: line}},
		}
		want = append(want, line)
	}
	body := lokiProto(t, streams...)
	t.Logf("body %d bytes", len(body))
	code, msg := f.push(t, body, "Content-Type", "application/x-protobuf")
	require.Equal(t, http.StatusNoContent, code, msg)

	sizes, lines := logRecords(t, f)
	require.Greater(t, len(sizes), 1)
	for i, n := range sizes {
		require.LessOrEqual(t, n, lokipush.DefaultLimits().MaxRecordDecodedBytes, "record %d", i)
	}
	require.Equal(t, map[string][]string{"c": want}, lines)
}

// 128,000 streams, each with its own cluster: refused (400) by the bound
// on distinct clusters, with no record written.
func TestLokiPush128kClustersRefused(t *testing.T) {
	f := newFixture(t, nil)
	now := time.Now()
	many := func(n int) []push.Stream {
		s := make([]push.Stream, n)
		for i := range s {
			s[i] = push.Stream{Labels: fmt.Sprintf(`{app="a", cluster="c%d"}`, i), Entries: []push.Entry{{Timestamp: now, Line: "x"}}}
		}
		return s
	}
	start := time.Now()
	code, msg := f.push(t, lokiProto(t, many(128_000)...), "Content-Type", "application/x-protobuf")
	t.Logf("answered in %s", time.Since(start))
	require.Equal(t, http.StatusBadRequest, code, msg)
	require.Contains(t, msg, "more than 64 distinct clusters")

	code, msg = f.push(t, lokiProto(t, many(64)...), "Content-Type", "application/x-protobuf")
	require.Equal(t, http.StatusNoContent, code, msg)
	_, lines := logRecords(t, f)
	require.Len(t, lines, 64)

	// The bound is the gateway's -limits.max-clusters-per-request.
	f = newFixture(t, func(c *Config) { c.MaxClustersPerRequest = 2 })
	code, msg = f.push(t, lokiProto(t, many(3)...), "Content-Type", "application/x-protobuf")
	require.Equal(t, http.StatusBadRequest, code, msg)
	require.Contains(t, msg, "more than 2 distinct clusters")
}

// Entries Loki refuses for their timestamps get a 400 naming them, and the
// valid rest is written, as Loki does; one 300 KiB line among 10 valid ones
// likewise.
func TestLokiPushPartialAcceptance(t *testing.T) {
	f := newFixture(t, nil)
	now := time.Now()
	js := fmt.Sprintf(`{"streams":[{"stream":{"app":"api","cluster":"c"},"values":[
		["%d","ok 1"],["%d","eight days old"],["%d","ok 2"],["%d","an hour ahead"]]}]}`,
		now.UnixNano(), now.Add(-8*24*time.Hour).UnixNano(), now.Add(time.Second).UnixNano(), now.Add(time.Hour).UnixNano())
	code, msg := f.push(t, []byte(js), "Content-Type", "application/json")
	require.Equal(t, http.StatusBadRequest, code, msg)
	require.Contains(t, msg, "2 of 4 entries refused, the rest was accepted")
	require.Contains(t, msg, `stream '{app="api", cluster="c"}': entry 1: timestamp too old`)

	var entries []push.Entry
	var want []string
	for i := 0; i < 10; i++ {
		entries = append(entries, push.Entry{Timestamp: now.Add(time.Duration(i)), Line: fmt.Sprintf("line %d", i)})
		want = append(want, fmt.Sprintf("line %d", i))
	}
	entries = append(entries, push.Entry{Timestamp: now, Line: strings.Repeat("x", 300<<10)})
	code, msg = f.push(t, lokiProto(t, push.Stream{Labels: `{app="web", cluster="d"}`, Entries: entries}), "Content-Type", "application/x-protobuf")
	require.Equal(t, http.StatusBadRequest, code, msg)
	require.Contains(t, msg, "1 of 11 entries refused")
	require.Contains(t, msg, "line too long: 307200 bytes")

	_, lines := logRecords(t, f)
	require.Equal(t, map[string][]string{"c": {"ok 1", "ok 2"}, "d": want}, lines)
}

// gzipBomb is a JSON push whose line is a run of spaces: ~1 MB of gzip
// that decompresses to ~1 GiB.
func gzipBomb(t *testing.T) []byte {
	var buf bytes.Buffer
	zw, err := gzip.NewWriterLevel(&buf, gzip.BestCompression)
	require.NoError(t, err)
	_, _ = io.WriteString(zw, `{"streams":[{"stream":{"cluster":"c"},"values":[["1","`)
	spaces := bytes.Repeat([]byte{' '}, 1<<20)
	for i := 0; i < 1024; i++ {
		_, _ = zw.Write(spaces)
	}
	_, _ = io.WriteString(zw, `"]]}]}`)
	require.NoError(t, zw.Close())
	return buf.Bytes()
}

// 32 concurrent gzip bombs: every decompressed byte is reserved from the
// in-flight budget before it is allocated, so each bomb gets 413 (over the
// decoded limit) or 503 (budget spent), and the heap stays within the
// budget plus 128 MiB.
func TestLokiPushGzipBombsBoundedMemory(t *testing.T) {
	const inflight = 64 << 20
	f := newFixture(t, func(c *Config) {
		c.MaxInflightBytes = inflight
		c.Logs.MaxDecodedBytes = 16 << 20
	})
	bomb := gzipBomb(t)
	t.Logf("bomb: %d bytes", len(bomb))

	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	base := ms.HeapInuse
	var peak atomic.Uint64
	stop := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		tick := time.NewTicker(2 * time.Millisecond)
		defer tick.Stop()
		for {
			var ms runtime.MemStats
			runtime.ReadMemStats(&ms)
			if ms.HeapInuse > peak.Load() {
				peak.Store(ms.HeapInuse)
			}
			select {
			case <-stop:
				return
			case <-tick.C:
			}
		}
	}()

	var wg sync.WaitGroup
	codes := make([]int, 32)
	msgs := make([]string, 32)
	for i := range codes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			codes[i], msgs[i] = f.push(t, bomb, "Content-Type", "application/json", "Content-Encoding", "gzip")
		}()
	}
	wg.Wait()
	close(stop)
	<-sampled

	counts := map[int]int{}
	for i, c := range codes {
		counts[c]++
		require.Contains(t, []int{http.StatusRequestEntityTooLarge, http.StatusServiceUnavailable}, c, msgs[i])
	}
	t.Logf("answers %v; heap in use grew by at most %d MiB", counts, (peak.Load()-base)>>20)
	require.LessOrEqual(t, peak.Load()-base, uint64(inflight+128<<20), "heap beyond the in-flight budget + 128 MiB")
	require.Zero(t, f.gw.inflight.Load(), "every reservation released")
}
