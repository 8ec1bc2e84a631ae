package loki

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/golang/snappy"
	"github.com/grafana/loki/pkg/push"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tributary-io/tributary/internal/testenv"
	"github.com/tributary-io/tributary/pkg/ingester"
	"github.com/tributary-io/tributary/pkg/record"
	"github.com/tributary-io/tributary/pkg/sink/snappypush"
	recordpb "github.com/tributary-io/tributary/proto/record/v1"
)

// rec builds the record the gateway writes for req: a snappy-compressed
// PushRequest with a logs envelope.
func rec(t testing.TB, offset int64, tenant string, streams ...push.Stream) ingester.Record {
	t.Helper()
	body, err := (&push.PushRequest{Streams: streams}).Marshal()
	require.NoError(t, err)
	var items uint64
	for _, s := range streams {
		items += uint64(len(s.Entries))
	}
	env := &recordpb.Envelope{
		SchemaVersion:      record.SchemaVersion,
		Signal:             recordpb.Signal_SIGNAL_LOGS,
		Cluster:            "test",
		Tenant:             tenant,
		ReceivedAtUnixNano: time.Now().UnixNano(),
		ContentType:        record.ContentTypePushRequest,
		ContentEncoding:    record.EncodingSnappy,
		Items:              items,
	}
	var hs []*sarama.RecordHeader
	for _, h := range record.Headers(env) {
		hs = append(hs, &h)
	}
	return ingester.Record{
		Topic: "tributary.logs", Offset: offset, Key: []byte("test"),
		Value: snappy.Encode(nil, body), Headers: hs, Envelope: env,
	}
}

func stream(labels string, entries ...push.Entry) push.Stream {
	return push.Stream{Labels: labels, Entries: entries}
}

func entry(ts time.Time, line string, meta ...string) push.Entry {
	e := push.Entry{Timestamp: ts, Line: line}
	for i := 0; i+1 < len(meta); i += 2 {
		e.StructuredMetadata = append(e.StructuredMetadata, push.LabelAdapter{Name: meta[i], Value: meta[i+1]})
	}
	return e
}

// want is what Loki should return for a stream: entry i of the stream as
// sent, in the form testenv.QueryRange returns it.
func want(labels map[string]string, entries ...push.Entry) testenv.LokiStream {
	s := testenv.LokiStream{Labels: labels}
	for _, e := range entries {
		le := testenv.LokiEntry{TS: e.Timestamp.UTC(), Line: e.Line}
		if len(e.StructuredMetadata) > 0 {
			le.Metadata = map[string]string{}
			for _, l := range e.StructuredMetadata {
				le.Metadata[l.Name] = l.Value
			}
		}
		s.Entries = append(s.Entries, le)
	}
	return s
}

func testConfig(url string) Config {
	return Config{snappypush.Config{URL: url, Timeout: 10 * time.Second, MaxDecodedBytes: 64 << 20, MaxRequestDecodedBytes: 3 << 20}}
}

// TestWriteLoki writes to a real Loki and reads the data back.
func TestWriteLoki(t *testing.T) {
	loki := testenv.Loki(t)
	sink := New(testConfig(loki.URL+"/loki/api/v1/push"), nil)
	ctx := context.Background()

	// Recent enough for any Loki limit, old enough not to be "in the future".
	base := time.Now().Add(-10 * time.Minute).Truncate(time.Millisecond)
	at := func(ms int) time.Time { return base.Add(time.Duration(ms) * time.Millisecond) }

	// Three clusters, entries of each spread over several records and both
	// batches, some records holding several streams.
	a := func(i int) push.Entry {
		return entry(at(i), fmt.Sprintf("a line %d", i), "trace_id", fmt.Sprintf("t%03d", i), "pod", "api-0")
	}
	b := func(i int) push.Entry { return entry(at(i), fmt.Sprintf(`b line %d with "quotes" and ünïcode`, i)) }
	c := func(i int) push.Entry {
		if i%2 == 0 {
			return entry(at(i), fmt.Sprintf("c line %d", i), "user", fmt.Sprintf("u-%d", i))
		}
		return entry(at(i), fmt.Sprintf("c line %d", i))
	}
	const la, lb, lc = `{cluster="a", app="api"}`, `{cluster="b", app="web"}`, `{cluster="c", app="db"}`
	batch1 := []ingester.Record{
		rec(t, 10, "", stream(la, a(1), a(2)), stream(lb, b(1))),
		rec(t, 11, "", stream(lc, c(1), c(2), c(3))),
		rec(t, 12, "", stream(la, a(3)), stream(lb, b(2), b(3)), stream(lc, c(4))),
	}
	batch2 := []ingester.Record{
		rec(t, 13, "", stream(lb, b(4)), stream(la, a(4), a(5))),
		rec(t, 14, "", stream(lc, c(5), c(6))),
	}

	// Over Loki's default max_line_size (256KB), which the test server keeps.
	long := entry(at(3), strings.Repeat("x", 300<<10))
	const ld, le = `{cluster="d", app="api"}`, `{cluster="e", app="api"}`
	good := rec(t, 20, "", stream(ld, entry(at(1), "d one", "k", "v"), entry(at(2), "d two")))
	bad := rec(t, 21, "", stream(le, entry(at(1), "e before"), long, entry(at(4), "e after")))

	type step struct {
		recs      []ingester.Record
		permanent string // "": the write must succeed; else a substring of the refusal
	}
	tests := []struct {
		name  string
		steps []step
		query map[string][]testenv.LokiStream // LogQL selector -> streams
	}{
		{
			name:  "three streams in two batches, in order, with metadata",
			steps: []step{{recs: batch1}, {recs: batch2}},
			query: map[string][]testenv.LokiStream{
				`{cluster="a"}`: {want(map[string]string{"cluster": "a", "app": "api"}, a(1), a(2), a(3), a(4), a(5))},
				`{cluster="b"}`: {want(map[string]string{"cluster": "b", "app": "web"}, b(1), b(2), b(3), b(4))},
				`{cluster="c"}`: {want(map[string]string{"cluster": "c", "app": "db"}, c(1), c(2), c(3), c(4), c(5), c(6))},
			},
		},
		{
			name: "replayed batches are stored once",
			// Same records again (a redelivery after a crash), then one
			// overlapping the end of the first.
			steps: []step{{recs: batch1}, {recs: batch2}, {recs: batch2[1:]}},
			query: map[string][]testenv.LokiStream{
				`{cluster="a"}`: {want(map[string]string{"cluster": "a", "app": "api"}, a(1), a(2), a(3), a(4), a(5))},
				`{cluster="c"}`: {want(map[string]string{"cluster": "c", "app": "db"}, c(1), c(2), c(3), c(4), c(5), c(6))},
			},
		},
		{
			// Loki refuses the long line with a 400 but stores the rest of
			// the push; the consumer's record-by-record pass then resends
			// the good record (deduplicated) and dead-letters the bad one.
			name: "a line over max_line_size is refused permanently, the rest is stored",
			steps: []step{
				{recs: []ingester.Record{good, bad}, permanent: "max entry size"},
				{recs: []ingester.Record{good}},
				{recs: []ingester.Record{bad}, permanent: "max entry size"},
			},
			query: map[string][]testenv.LokiStream{
				`{cluster="d"}`: {want(map[string]string{"cluster": "d", "app": "api"}, entry(at(1), "d one", "k", "v"), entry(at(2), "d two"))},
				`{cluster="e"}`: {want(map[string]string{"cluster": "e", "app": "api"}, entry(at(1), "e before"), entry(at(4), "e after"))},
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			for i, s := range tc.steps {
				err := sink.Write(ctx, s.recs)
				if s.permanent == "" {
					require.NoError(t, err, "step %d", i)
					continue
				}
				require.Error(t, err, "step %d", i)
				require.True(t, ingester.IsPermanent(err), "step %d: %v", i, err)
				require.ErrorContains(t, err, s.permanent, "step %d", i)
				t.Logf("step %d refused: %v", i, err)
			}
			for q, wantStreams := range tc.query {
				// Pushed data is queryable at once (the test server always
				// queries ingesters); the short poll only absorbs scheduling.
				var got []testenv.LokiStream
				var err error
				for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(100 * time.Millisecond) {
					got, err = loki.QueryRange(t, q, base.Add(-time.Minute), time.Now().Add(time.Minute), 0)
					if err == nil && assert.ObjectsAreEqual(wantStreams, got) || time.Now().After(deadline) {
						break
					}
				}
				require.NoError(t, err, "query %s", q)
				require.Equal(t, wantStreams, got, "query %s", q)
			}
		})
	}
}

// TestWriteRequest checks the request Write sends: one push whose streams
// are those of all records in order, byte for byte, with Loki's headers.
func TestWriteRequest(t *testing.T) {
	ts := time.Unix(1700000000, 123456789).UTC()
	s1 := stream(`{cluster="a"}`, entry(ts, "one", "trace_id", "abc", "span_id", "def"), entry(ts.Add(1), "two"))
	s2 := stream(`{cluster="b"}`, entry(ts, "three", "user", "u"))
	s3 := stream(`{cluster="a"}`, entry(ts.Add(2), "four"))

	tests := []struct {
		name       string
		cfg        func(*Config)
		tenant     string
		wantTenant string
		wantAuth   string
	}{
		{name: "record tenant", tenant: "team-a", wantTenant: "team-a"},
		{name: "record tenant over default", cfg: func(c *Config) { c.DefaultTenant = "fake" }, tenant: "team-a", wantTenant: "team-a"},
		{name: "default tenant", cfg: func(c *Config) { c.DefaultTenant = "fake" }, wantTenant: "fake"},
		{name: "no tenant, no header"},
		{name: "bearer token", cfg: func(c *Config) { c.BearerToken = "s3cret" }, wantAuth: "Bearer s3cret"},
		{name: "basic auth", cfg: func(c *Config) { c.BasicAuthUser, c.BasicAuthPass = "u", "p" }, wantAuth: "Basic dTpw"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var got *http.Request
			var body []byte
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				got = r
				body, _ = io.ReadAll(r.Body)
				w.WriteHeader(http.StatusNoContent)
			}))
			defer srv.Close()
			cfg := testConfig(srv.URL + "/loki/api/v1/push")
			if tc.cfg != nil {
				tc.cfg(&cfg)
			}
			recs := []ingester.Record{rec(t, 1, tc.tenant, s1, s2), rec(t, 2, tc.tenant, s3)}
			require.NoError(t, New(cfg, srv.Client()).Write(context.Background(), recs))

			require.Equal(t, http.MethodPost, got.Method)
			require.Equal(t, "/loki/api/v1/push", got.URL.Path)
			require.Equal(t, "application/x-protobuf", got.Header.Get("Content-Type"))
			require.Empty(t, got.Header.Values("Content-Encoding"))
			require.Equal(t, tc.wantTenant, got.Header.Get("X-Scope-OrgID"))
			require.Equal(t, tc.wantAuth, got.Header.Get("Authorization"))

			raw, err := snappy.Decode(nil, body)
			require.NoError(t, err)
			var req push.PushRequest
			require.NoError(t, req.Unmarshal(raw))
			require.Equal(t, []push.Stream{s1, s2, s3}, req.Streams)
		})
	}
}

// TestWriteClassification checks how responses and failures are sorted into
// success, retry and refusal. A fake server: it checks our side, not Loki.
func TestWriteClassification(t *testing.T) {
	valid := rec(t, 1, "", stream(`{cluster="a"}`, entry(time.Now(), "line")))
	undecodable := valid
	undecodable.Value = []byte{0x05, 0xff, 0xff} // 5 bytes, then a corrupt tag
	huge := valid
	huge.Value = snappy.Encode(nil, make([]byte, 2<<20))
	empty := rec(t, 2, "") // a PushRequest without streams

	const noRetryAfter = -1
	tests := []struct {
		name       string
		recs       []ingester.Record
		status     int
		header     map[string]string
		body       string
		wantErr    bool
		permanent  bool
		retryAfter time.Duration
		contains   string
		wantCalls  int
	}{
		{name: "204", recs: []ingester.Record{valid}, status: 204, wantCalls: 1},
		{name: "200", recs: []ingester.Record{valid}, status: 200, wantCalls: 1},
		{
			name: "429 with Retry-After", recs: []ingester.Record{valid}, status: 429, header: map[string]string{"Retry-After": "3"},
			body: "Ingestion rate limit exceeded for user fake", wantErr: true, retryAfter: 3 * time.Second, contains: "Ingestion rate limit exceeded", wantCalls: 1,
		},
		{
			name: "503 without Retry-After", recs: []ingester.Record{valid}, status: 503, body: "no healthy ingesters",
			wantErr: true, retryAfter: noRetryAfter, contains: "503", wantCalls: 1,
		},
		{
			name: "500 with Retry-After date", recs: []ingester.Record{valid}, status: 500,
			header:  map[string]string{"Retry-After": time.Now().Add(time.Hour).UTC().Format(http.TimeFormat)},
			wantErr: true, retryAfter: time.Hour, wantCalls: 1,
		},
		{
			name: "400 too far behind", recs: []ingester.Record{valid}, status: 400,
			body:    "entry with timestamp 2024-01-01 ignored, reason: 'entry too far behind, entry timestamp is: ...',\nuser 'fake', total ignored: 1 out of 1",
			wantErr: true, permanent: true, contains: "entry too far behind", wantCalls: 1,
		},
		{
			name: "413 body too large", recs: []ingester.Record{valid}, status: 413, body: "request body too large",
			wantErr: true, permanent: true, contains: "413", wantCalls: 1,
		},
		// A wrong URL or refused credentials: the sink is misconfigured,
		// not the record bad; retried so that nothing is dead-lettered.
		{name: "401", recs: []ingester.Record{valid}, status: 401, body: "no org id", wantErr: true, retryAfter: noRetryAfter, contains: "no org id", wantCalls: 1},
		{name: "404", recs: []ingester.Record{valid}, status: 404, body: "404 page not found", wantErr: true, retryAfter: noRetryAfter, contains: "check -loki.url", wantCalls: 1},
		{name: "undecodable record, no request", recs: []ingester.Record{valid, undecodable}, wantErr: true, permanent: true, contains: "snappy"},
		{name: "record over max-decoded-bytes, no request", recs: []ingester.Record{huge}, wantErr: true, permanent: true, contains: "over the limit"},
		{name: "only empty pushes, no request", recs: []ingester.Record{empty, empty}},
		{name: "no records, no request"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			calls := 0
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				calls++
				for k, v := range tc.header {
					w.Header().Set(k, v)
				}
				w.WriteHeader(tc.status)
				_, _ = io.WriteString(w, tc.body)
			}))
			defer srv.Close()
			cfg := testConfig(srv.URL)
			cfg.MaxDecodedBytes = 1 << 20
			err := New(cfg, srv.Client()).Write(context.Background(), tc.recs)
			require.Equal(t, tc.wantCalls, calls)
			if !tc.wantErr {
				require.NoError(t, err)
				return
			}
			require.Error(t, err)
			require.Equal(t, tc.permanent, ingester.IsPermanent(err), "%v", err)
			require.ErrorContains(t, err, tc.contains)
			if tc.permanent {
				return
			}
			var ra *ingester.RetryAfterError
			if tc.retryAfter == noRetryAfter {
				require.False(t, errors.As(err, &ra), "%v", err)
				return
			}
			require.True(t, errors.As(err, &ra), "%v", err)
			require.InDelta(t, tc.retryAfter, ra.After, float64(3*time.Second)) // HTTP dates have whole seconds
		})
	}

	t.Run("connection refused is retried", func(t *testing.T) {
		srv := httptest.NewServer(http.NotFoundHandler())
		url := srv.URL
		srv.Close()
		err := New(testConfig(url), nil).Write(context.Background(), []ingester.Record{valid})
		require.Error(t, err)
		require.False(t, ingester.IsPermanent(err), "%v", err)
	})
}

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name    string
		cfg     func(*Config)
		wantErr string
	}{
		{name: "valid"},
		{name: "empty URL: disabled", cfg: func(c *Config) { c.URL, c.Timeout = "", 0 }},
		{name: "not http", cfg: func(c *Config) { c.URL = "loki:3100" }, wantErr: "not an http(s) URL"},
		{name: "two auths", cfg: func(c *Config) { c.BearerToken, c.BasicAuthUser = "t", "u" }, wantErr: "not both"},
		{name: "password only", cfg: func(c *Config) { c.BasicAuthPass = "p" }, wantErr: "without a username"},
		{name: "no timeout", cfg: func(c *Config) { c.Timeout = 0 }, wantErr: "timeout"},
		{name: "no decoded limit", cfg: func(c *Config) { c.MaxDecodedBytes = 0 }, wantErr: "max-decoded-bytes"},
		{name: "no request limit", cfg: func(c *Config) { c.MaxRequestDecodedBytes = 0 }, wantErr: "loki.max-request-decoded-bytes"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := testConfig("http://loki:3100/loki/api/v1/push")
			if tc.cfg != nil {
				tc.cfg(&cfg)
			}
			err := cfg.Validate()
			if tc.wantErr == "" {
				require.NoError(t, err)
				return
			}
			require.ErrorContains(t, err, tc.wantErr)
		})
	}
}

// BenchmarkWriteBuild measures Write from records to request body: check
// and splice the records' snappy blocks, post to a server that discards
// the body.
func BenchmarkWriteBuild(b *testing.B) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.WriteHeader(http.StatusNoContent)
	}))
	defer srv.Close()
	sink := New(testConfig(srv.URL), srv.Client())

	// 100 records of 3 streams x 20 entries: 6000 entries, ~1 MiB decoded,
	// about what one batch of the consumer holds.
	base := time.Now()
	var recs []ingester.Record
	var decoded int
	for r := range 100 {
		var streams []push.Stream
		for s := range 3 {
			st := stream(fmt.Sprintf(`{cluster="c%d", namespace="default", pod="api-%d", container="api"}`, s, r%7))
			for e := range 20 {
				st.Entries = append(st.Entries, entry(base.Add(time.Duration(r*20+e)*time.Millisecond),
					fmt.Sprintf(`level=info ts=%d caller=handler.go:142 msg="request served" method=GET path=/api/v1/items/%d status=200 duration=%dms`, r*20+e, e, e%17),
					"trace_id", fmt.Sprintf("%032x", r*20+e)))
			}
			streams = append(streams, st)
		}
		rc := rec(b, int64(r), "", streams...)
		n, _ := snappy.DecodedLen(rc.Value)
		decoded += n
		recs = append(recs, rc)
	}
	ctx := context.Background()
	b.SetBytes(int64(decoded))
	b.ReportAllocs()
	writes := 0
	for b.Loop() {
		if err := sink.Write(ctx, recs); err != nil {
			b.Fatal(err)
		}
		writes++
	}
	b.ReportMetric(float64(6000*writes)/b.Elapsed().Seconds(), "entries/s")
}
