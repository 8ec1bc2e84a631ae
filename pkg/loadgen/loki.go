package loadgen

import (
	"encoding/json"
	"fmt"
	"math/rand"
	"strconv"
	"strings"
	"time"

	"google.golang.org/protobuf/encoding/protowire"
)

// StreamConfig shapes Loki push load.
type StreamConfig struct {
	Streams           int `yaml:"streams"`
	StreamsPerRequest int `yaml:"streams_per_request"`
	EntriesPerRequest int `yaml:"entries_per_request"`
	LineBytes         int `yaml:"line_bytes"`
	Clusters          int `yaml:"clusters"`
}

// Validate checks the shape.
func (c StreamConfig) Validate() error {
	switch {
	case c.Streams <= 0 || c.StreamsPerRequest <= 0:
		return fmt.Errorf("streams and streams-per-request must be positive")
	case c.EntriesPerRequest < c.StreamsPerRequest:
		return fmt.Errorf("entries-per-request (%d) must be at least streams-per-request (%d)", c.EntriesPerRequest, c.StreamsPerRequest)
	case c.LineBytes < 16:
		return fmt.Errorf("line-bytes must be at least 16")
	case c.Clusters <= 0:
		return fmt.Errorf("clusters must be positive")
	}
	return nil
}

// Bodies returns how many requests cover all streams once.
func (c StreamConfig) Bodies() int {
	return (c.Streams + c.StreamsPerRequest - 1) / c.StreamsPerRequest
}

// logStream is one stream of a body with its lines, fixed at build time.
type logStream struct {
	labels []Label
	lines  []string
}

// logBody is the content of one push, fixed at build time.
type logBody struct {
	cluster string
	streams []logStream
}

// logBodies builds the content of every body: body k holds streams
// [k·n, (k+1)·n) of cluster k mod Clusters, and EntriesPerRequest lines of
// exactly LineBytes bytes spread over them.
func logBodies(c StreamConfig) []logBody {
	rnd := rand.New(rand.NewSource(2))
	var out []logBody
	for k := 0; k < c.Bodies(); k++ {
		from, to := k*c.StreamsPerRequest, min((k+1)*c.StreamsPerRequest, c.Streams)
		cluster := clusterName(k % c.Clusters)
		n := to - from
		streams := make([]logStream, 0, n)
		for s := from; s < to; s++ {
			entries := c.EntriesPerRequest / n
			if s-from < c.EntriesPerRequest%n {
				entries++
			}
			ls := logStream{labels: streamLabels(s, cluster)}
			for e := 0; e < entries; e++ {
				ls.lines = append(ls.lines, logLine(rnd, c.LineBytes))
			}
			streams = append(streams, ls)
		}
		out = append(out, logBody{cluster: cluster, streams: streams})
	}
	return out
}

var (
	logPaths = []string{"/api/v1/orders", "/api/v1/items", "/healthz", "/api/v2/search", "/login", "/api/v1/cart/checkout", "/metrics"}
	logMsgs  = []string{"request served", "slow query", "cache miss", "retrying upstream call", "connection reset by peer", "user authenticated", "payment authorised"}
	logWords = []string{"upstream", "timeout", "retry", "session", "tenant", "shard", "replica", "offset", "commit", "batch", "token", "quota", "region", "latency", "payload"}
)

// logLine is a realistic application log line of exactly n bytes: logfmt or
// JSON, with random ids and numbers, padded with words or cut to length.
func logLine(rnd *rand.Rand, n int) string {
	var s string
	if rnd.Intn(2) == 0 {
		s = fmt.Sprintf(`level=%s ts=2024-05-01T12:%02d:%02d.%06dZ caller=handler.go:%d msg=%q method=GET path=%s status=%d duration=%dms bytes=%d trace_id=%016x`,
			[]string{"info", "info", "warn", "error", "debug"}[rnd.Intn(5)], rnd.Intn(60), rnd.Intn(60), rnd.Intn(1e6), rnd.Intn(900),
			logMsgs[rnd.Intn(len(logMsgs))], logPaths[rnd.Intn(len(logPaths))], []int{200, 200, 201, 404, 500}[rnd.Intn(5)],
			rnd.Intn(2000), rnd.Intn(100000), rnd.Uint64())
	} else {
		s = fmt.Sprintf(`{"level":"%s","ts":"2024-05-01T12:%02d:%02d.%06dZ","caller":"db/pool.go:%d","msg":"%s","query_id":"%016x","rows":%d,"elapsed_ms":%d}`,
			[]string{"info", "warn", "error"}[rnd.Intn(3)], rnd.Intn(60), rnd.Intn(60), rnd.Intn(1e6), rnd.Intn(500),
			logMsgs[rnd.Intn(len(logMsgs))], rnd.Uint64(), rnd.Intn(10000), rnd.Intn(5000))
	}
	var b strings.Builder
	b.WriteString(s)
	for b.Len() < n {
		b.WriteByte(' ')
		b.WriteString(logWords[rnd.Intn(len(logWords))])
		b.WriteByte('=')
		b.WriteString(strconv.Itoa(rnd.Intn(100000)))
	}
	return b.String()[:n]
}

// entryTimestampHole is a google.protobuf.Timestamp message of fixed size:
// seconds and nanos as five-byte varints with their tags.
const entryTimestampHole = 1 + 5 + 1 + 5

// LokiProtoBodies builds snappy protobuf Loki push bodies (logproto
// PushRequest, as Promtail and Alloy send).
func LokiProtoBodies(c StreamConfig) ([]*Body, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	var out []*Body
	for _, lb := range logBodies(c) {
		var raw []byte
		var holes []span
		st := &entryStamper{}
		lineBytes, entries := 0, 0
		for _, s := range lb.streams {
			var sb []byte
			sb = protowire.AppendTag(sb, 1, protowire.BytesType)
			sb = protowire.AppendString(sb, lokiLabelString(s.labels))
			var entryHoles []int // in sb
			for _, line := range s.lines {
				var eb []byte
				eb = protowire.AppendTag(eb, 1, protowire.BytesType)
				eb = protowire.AppendVarint(eb, entryTimestampHole)
				hole := len(eb)
				eb = append(eb, make([]byte, entryTimestampHole)...)
				eb = protowire.AppendTag(eb, 2, protowire.BytesType)
				eb = protowire.AppendString(eb, line)
				sb = protowire.AppendTag(sb, 2, protowire.BytesType)
				sb = protowire.AppendVarint(sb, uint64(len(eb)))
				entryHoles = append(entryHoles, len(sb)+hole)
				sb = append(sb, eb...)
				lineBytes += len(line)
			}
			raw = protowire.AppendTag(raw, 1, protowire.BytesType)
			raw = protowire.AppendVarint(raw, uint64(len(sb)))
			for _, h := range entryHoles {
				holes = append(holes, span{len(raw) + h, entryTimestampHole})
			}
			raw = append(raw, sb...)
			st.streams = append(st.streams, len(s.lines))
			entries += len(s.lines)
		}
		data, offsets, err := encodeHoles(raw, holes)
		if err != nil {
			return nil, err
		}
		st.offsets = offsets
		st.put = putProtoTimestamp
		st.lastNs = make([]int64, len(st.streams))
		b := &Body{
			Data: data, ContentType: "application/x-protobuf", Cluster: lb.cluster,
			Items: entries, LineBytes: lineBytes, stamper: st,
		}
		b.Stamp(time.Now())
		out = append(out, b)
	}
	return out, nil
}

func putProtoTimestamp(b []byte, ns int64) {
	b[0] = byte(1<<3 | protowire.VarintType)
	putPaddedVarint5(b[1:], uint64(ns/1e9))
	b[6] = byte(2<<3 | protowire.VarintType)
	putPaddedVarint5(b[7:], uint64(ns%1e9))
}

// LokiJSONBodies builds uncompressed JSON Loki push bodies
// ({"streams":[{"stream":{...},"values":[["<ns>","<line>"],...]}]}).
func LokiJSONBodies(c StreamConfig) ([]*Body, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	var out []*Body
	for _, lb := range logBodies(c) {
		var data []byte
		st := &entryStamper{put: func(b []byte, ns int64) { putDecimal19(b, uint64(ns)) }}
		lineBytes, entries := 0, 0
		data = append(data, `{"streams":[`...)
		for i, s := range lb.streams {
			if i > 0 {
				data = append(data, ',')
			}
			data = append(data, `{"stream":{`...)
			for j, l := range s.labels {
				if j > 0 {
					data = append(data, ',')
				}
				data = appendJSONString(data, l.Name)
				data = append(data, ':')
				data = appendJSONString(data, l.Value)
			}
			data = append(data, `},"values":[`...)
			for j, line := range s.lines {
				if j > 0 {
					data = append(data, ',')
				}
				data = append(data, `["`...)
				st.offsets = append(st.offsets, len(data))
				data = append(data, "0000000000000000000"...)
				data = append(data, `",`...)
				data = appendJSONString(data, line)
				data = append(data, ']')
				lineBytes += len(line)
			}
			data = append(data, "]}"...)
			st.streams = append(st.streams, len(s.lines))
			entries += len(s.lines)
		}
		data = append(data, "]}"...)
		st.lastNs = make([]int64, len(st.streams))
		b := &Body{
			Data: data, ContentType: "application/json", Cluster: lb.cluster,
			Items: entries, LineBytes: lineBytes, stamper: st,
		}
		b.Stamp(time.Now())
		out = append(out, b)
	}
	return out, nil
}

func appendJSONString(b []byte, s string) []byte {
	q, _ := json.Marshal(s) // strings always marshal
	return append(b, q...)
}

// entryStamper spreads each stream's entries evenly over the time since its
// previous send, one nanosecond apart at least: strictly increasing per
// stream, like a tailer that ships what was written since the last push.
type entryStamper struct {
	offsets []int // of each entry's timestamp, streams in order
	streams []int // entries per stream
	lastNs  []int64
	put     func(b []byte, ns int64)
}

func (s *entryStamper) stamp(data []byte, now time.Time) {
	nowNs := now.UnixNano()
	k := 0
	for i, n := range s.streams {
		last := s.lastNs[i]
		if last == 0 {
			last = nowNs - int64(time.Second)
		}
		span := max(nowNs-last, int64(n))
		for e := 0; e < n; e++ {
			s.put(data[s.offsets[k]:], last+span*int64(e+1)/int64(n))
			k++
		}
		s.lastNs[i] = last + span
	}
}
