package elasticsearch

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang/snappy"
	"github.com/grafana/loki/pkg/push"
	"github.com/stretchr/testify/require"

	"github.com/tributary-io/tributary/internal/testenv"
	"github.com/tributary-io/tributary/pkg/ingester"
	recordpb "github.com/tributary-io/tributary/proto/record/v1"
)

// ---- records

func entry(ts time.Time, line string, metadata ...string) push.Entry {
	e := push.Entry{Timestamp: ts, Line: line}
	for i := 0; i+1 < len(metadata); i += 2 {
		e.StructuredMetadata = append(e.StructuredMetadata, push.LabelAdapter{Name: metadata[i], Value: metadata[i+1]})
	}
	return e
}

func stream(labels string, entries ...push.Entry) push.Stream {
	return push.Stream{Labels: labels, Entries: entries}
}

// logRecord is a record as the gateway writes it to tributary.logs.
func logRecord(t testing.TB, partition int32, offset int64, cluster, tenant string, streams ...push.Stream) ingester.Record {
	t.Helper()
	raw, err := (&push.PushRequest{Streams: streams}).Marshal()
	require.NoError(t, err)
	return ingester.Record{
		Topic: "tributary.logs", Partition: partition, Offset: offset, Key: []byte(cluster),
		Value:    snappy.Encode(nil, raw),
		Envelope: &recordpb.Envelope{Cluster: cluster, Tenant: tenant, Signal: recordpb.Signal_SIGNAL_LOGS},
	}
}

// testConfig is the flag defaults with addresses set.
func testConfig(addresses string) Config {
	var c Config
	c.RegisterFlags("elasticsearch.", flag.NewFlagSet("test", flag.PanicOnError))
	c.Addresses = addresses
	c.Timeout = 10 * time.Second
	return c
}

func testLog(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
}

func newSink(t testing.TB, cfg Config) *Sink {
	t.Helper()
	s, err := New(context.Background(), cfg, testLog(t))
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, s.Close(context.Background())) })
	return s
}

// ---- against a real server: ZincSearch

// wantDoc is what a document must look like when searched.
type wantDoc struct {
	index    string
	ts       time.Time
	message  string
	cluster  string
	tenant   string
	labels   map[string]any
	metadata map[string]any // nil: no metadata field
	copies   int            // documents expected with this content; 0 means 1
}

// key identifies a document's content in a test (messages repeat across
// clusters and timestamps).
func (w wantDoc) key() string { return docKey(w.cluster, w.message, w.ts) }

func docKey(cluster, message string, ts time.Time) string {
	// Zinc keeps timestamps as float64 nanoseconds (off by up to ~100 ns
	// here): the test's timestamps of one cluster and message are
	// milliseconds apart, and none is near a millisecond's edge.
	return fmt.Sprintf("%s|%s|%d", cluster, message, ts.Round(time.Millisecond).UnixMilli())
}

func wantDocs(docs ...wantDoc) map[string]wantDoc {
	m := map[string]wantDoc{}
	for _, d := range docs {
		m[d.key()] = d
	}
	return m
}

func TestZinc(t *testing.T) {
	if testing.Short() {
		t.Skip("starts ZincSearch")
	}
	z := testenv.Zinc(t)
	ctx := context.Background()
	cfg := testConfig(z.ESURL)
	cfg.Username, cfg.Password = z.User, z.Password

	t.Run("template install is refused with the reason", func(t *testing.T) {
		// Zinc has PUT _index_template but neither the date_nanos type nor
		// the _meta option (it names whichever it meets first): the
		// server's answer must reach the operator, not be swallowed.
		_, err := New(ctx, cfg, testLog(t))
		require.ErrorContains(t, err, "install index template tributary-logs: 400")
		require.Error(t, err)
		require.Regexp(t, `doesn't support type \[date_nanos\]|unknown option \[_meta\]`, err.Error())
		require.ErrorContains(t, err, "skip")
	})

	cfg.SkipTemplate = true
	s := newSink(t, cfg)

	t.Run("wrong credentials are misconfigured: retried, and Probe says so", func(t *testing.T) {
		require.NoError(t, s.Probe(ctx))
		c := cfg
		c.Password = "expired"
		bad := newSink(t, c)
		err := bad.Probe(ctx)
		require.True(t, errors.Is(err, ingester.ErrMisconfigured), "%v", err)
		require.ErrorContains(t, err, "-elasticsearch.password")
		t.Logf("probe with a wrong password: %v", err)
		r := logRecord(t, 0, 1, "eu-1", "", stream(`{app="api"}`, entry(time.Now(), "refused login")))
		err = bad.Write(ctx, []ingester.Record{r})
		require.Error(t, err)
		require.False(t, ingester.IsPermanent(err), "refused credentials must not dead-letter: %v", err)
		require.True(t, errors.Is(err, ingester.ErrMisconfigured), "%v", err)
		t.Logf("write with a wrong password: %v", err)
	})

	// Three clusters, one partition each (the gateway keys by cluster).
	// Entries straddle midnight UTC, so they land in two daily indices.
	midnight := time.Date(2024, 5, 2, 0, 0, 0, 0, time.UTC)
	var batches [][]ingester.Record
	want := map[string]wantDoc{}
	for p, cluster := range []string{"eu-1", "us-2", "ap-3"} {
		tenant := "team-" + cluster
		apiLabels := fmt.Sprintf(`{app="api", "app.kubernetes.io/name"="api-server", "app.kubernetes.io/part-of"="shop", cluster=%q, namespace="prod"}`, cluster)
		t0 := midnight.Add(-time.Second - time.Duration(p)*time.Millisecond).Add(123456 * time.Nanosecond)
		var batch []ingester.Record
		for i := range 2 {
			offset := int64(100 + i)
			ts := t0.Add(time.Duration(i) * 1500 * time.Millisecond) // 2nd record after midnight
			r := logRecord(t, int32(p), offset, cluster, tenant,
				stream(apiLabels,
					entry(ts, fmt.Sprintf(`GET /orders/%d 200 "ok" <b>&`, i), "trace.id", fmt.Sprintf("%s-%d", cluster, i), "trace", "sampled"),
					entry(ts.Add(time.Microsecond), fmt.Sprintf("slow query %d ms", 10*i))),
				stream(fmt.Sprintf(`{app="worker", cluster=%q}`, cluster),
					entry(ts.Add(2*time.Microsecond), "job done ünïcode")))
			batch = append(batch, r)
			api := map[string]any{"app": "api", "app.kubernetes.io/name": "api-server", "app.kubernetes.io/part-of": "shop", "cluster": cluster, "namespace": "prod"}
			worker := map[string]any{"app": "worker", "cluster": cluster}
			index := "tributary-logs-2024.05.01"
			if i == 1 {
				index = "tributary-logs-2024.05.02"
			}
			for _, w := range []wantDoc{
				{index, ts, fmt.Sprintf(`GET /orders/%d 200 "ok" <b>&`, i), cluster, tenant, api,
					map[string]any{"trace.id": fmt.Sprintf("%s-%d", cluster, i), "trace": "sampled"}, 0},
				{index, ts.Add(time.Microsecond), fmt.Sprintf("slow query %d ms", 10*i), cluster, tenant, api, nil, 0},
				{index, ts.Add(2 * time.Microsecond), "job done ünïcode", cluster, tenant, worker, nil, 0},
			} {
				want[w.key()] = w
			}
		}
		batches = append(batches, batch)
	}

	t.Run("logs of three clusters are indexed once each", func(t *testing.T) {
		for _, b := range batches {
			require.NoError(t, s.Write(ctx, b))
		}
		testenv.Eventually(t, 20*time.Second, func() error { return checkIndexed(t, z, want) })
	})

	t.Run("replay overwrites instead of duplicating", func(t *testing.T) {
		// After a crash the records come again, possibly batched otherwise.
		for _, b := range batches {
			for _, r := range b {
				require.NoError(t, s.Write(ctx, []ingester.Record{r}))
			}
		}
		// Zinc makes writes searchable about a second later: wait well past
		// that, so duplicates would have shown up.
		time.Sleep(3 * time.Second)
		testenv.Eventually(t, 10*time.Second, func() error { return checkIndexed(t, z, want) })
	})

	t.Run("a client's retry stored at other offsets overwrites", func(t *testing.T) {
		// The gateway answered 503 but Kafka stored the request; the
		// client's retry is stored again as new records, at other offsets
		// (and here another partition). Identical entries within one
		// record stay distinct documents.
		twice := entry(midnight.Add(-time.Hour), "same line twice")
		dup := func(offset int64) ingester.Record {
			return logRecord(t, 0, offset, "eu-1", "team-eu-1", stream(`{app="api", cluster="eu-1"}`, twice, twice))
		}
		require.NoError(t, s.Write(ctx, []ingester.Record{dup(300)}))
		for p, b := range batches {
			var retry []ingester.Record
			for _, r := range b {
				r.Offset += 1000
				r.Partition = int32(p + 1)
				retry = append(retry, r)
			}
			require.NoError(t, s.Write(ctx, retry))
		}
		require.NoError(t, s.Write(ctx, []ingester.Record{dup(301)}))
		w := wantDoc{"tributary-logs-2024.05.01", twice.Timestamp, twice.Line, "eu-1", "team-eu-1",
			map[string]any{"app": "api", "cluster": "eu-1"}, nil, 2}
		want[w.key()] = w
		time.Sleep(3 * time.Second) // past Zinc's refresh, so duplicates would show
		testenv.Eventually(t, 10*time.Second, func() error { return checkIndexed(t, z, want) })
	})

	t.Run("a document Zinc refuses is not acknowledged", func(t *testing.T) {
		// Zinc maps a string that looks like a date as a date, then fails
		// a document whose value does not parse. It reports that with HTTP
		// 200, "errors": false, the failing item as 200 and a top-level
		// "error": only that string tells the document was not stored.
		// Which document is not said in an Elasticsearch shape, so the sink
		// retries rather than dead-letters (TestWriteClassifiesBulkResults
		// covers Elasticsearch's per-item refusals).
		c := cfg
		c.Index = "zinc-conflict-YYYY.MM.DD"
		s := newSink(t, c)
		ts := midnight.Add(time.Hour)
		first := logRecord(t, 0, 6, "eu-1", "", stream(`{app="api"}`, entry(ts, "first", "when", "2024-05-01 10:00:00")))
		require.NoError(t, s.Write(ctx, []ingester.Record{first}))
		r := logRecord(t, 0, 7, "eu-1", "", stream(`{app="api"}`, entry(ts.Add(time.Second), "second", "when", "soon")))
		err := s.Write(ctx, []ingester.Record{r})
		require.Error(t, err)
		require.False(t, ingester.IsPermanent(err), "an unattributed failure must be retried: %v", err)
		require.ErrorContains(t, err, "1 of 1 documents not indexed")
		require.ErrorContains(t, err, "parse err")

		// The sink is not wedged: a good record goes through.
		ok := logRecord(t, 0, 8, "eu-1", "", stream(`{app="api"}`, entry(ts, "third", "when", "2024-05-01 11:00:00")))
		require.NoError(t, s.Write(ctx, []ingester.Record{ok}))
	})

	t.Run("outage is retryable and the retry lands", func(t *testing.T) {
		r := logRecord(t, 0, 200, "eu-1", "team-eu-1", stream(`{app="api", cluster="eu-1"}`, entry(midnight.Add(time.Minute), "during outage")))
		z.Stop()
		wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		err := s.Write(wctx, []ingester.Record{r})
		cancel()
		require.Error(t, err)
		require.False(t, ingester.IsPermanent(err), "an outage must not dead-letter: %v", err)

		z.Restart(t)
		testenv.Eventually(t, 30*time.Second, func() error { return s.Write(ctx, []ingester.Record{r}) })
		w := wantDoc{"tributary-logs-2024.05.02", midnight.Add(time.Minute), "during outage", "eu-1", "team-eu-1",
			map[string]any{"app": "api", "cluster": "eu-1"}, nil, 0}
		want[w.key()] = w
		testenv.Eventually(t, 20*time.Second, func() error { return checkIndexed(t, z, want) })
	})
}

// checkIndexed searches the indices of want and compares every document
// with want: each content present exactly as often as wanted (once unless
// copies says otherwise), in the right index, with its fields, and every
// _id distinct.
func checkIndexed(t *testing.T, z *testenv.ZincServer, want map[string]wantDoc) error {
	byIndex := map[string]map[string]wantDoc{}
	for k, w := range want {
		if byIndex[w.index] == nil {
			byIndex[w.index] = map[string]wantDoc{}
		}
		byIndex[w.index][k] = w
	}
	query := map[string]any{"query": map[string]any{"match_all": map[string]any{}}, "size": 1000}
	for index, wantHere := range byIndex {
		docs, total, err := z.Search(t, index, query)
		if err != nil {
			return err
		}
		n := 0
		for _, w := range wantHere {
			n += max(w.copies, 1)
		}
		if total != n || len(docs) != n {
			return fmt.Errorf("%s: %d hits (%d returned), want %d", index, total, len(docs), n)
		}
		ids, seen := map[string]bool{}, map[string]int{}
		for _, d := range docs {
			id, _ := d["_id"].(string)
			if ids[id] {
				return fmt.Errorf("%s: _id %s twice", index, id)
			}
			ids[id] = true
			tsText, _ := d["@timestamp"].(string)
			ts, err := time.Parse(time.RFC3339Nano, tsText)
			if err != nil {
				return fmt.Errorf("%s/%s: @timestamp %v: %w", index, id, d["@timestamp"], err)
			}
			cluster, _ := d["cluster"].(string)
			message, _ := d["message"].(string)
			k := docKey(cluster, message, ts)
			w, ok := wantHere[k]
			if !ok {
				return fmt.Errorf("%s: unexpected document %s: %v", index, id, d)
			}
			if seen[k]++; seen[k] > max(w.copies, 1) {
				return fmt.Errorf("%s: %q of %s stored %d times", index, message, cluster, seen[k])
			}
			if err := compareDoc(d, w); err != nil {
				return fmt.Errorf("%s/%s: %w", index, id, err)
			}
		}
	}
	return nil
}

func compareDoc(d map[string]any, w wantDoc) error {
	tsText, _ := d["@timestamp"].(string)
	ts, err := time.Parse(time.RFC3339Nano, tsText)
	if err != nil {
		return fmt.Errorf("@timestamp %v: %w", d["@timestamp"], err)
	}
	// Zinc keeps dates as float64 nanoseconds: sub-microsecond rounding.
	if diff := ts.Sub(w.ts).Abs(); diff > time.Microsecond/2 {
		return fmt.Errorf("@timestamp %s, want %s", ts.Format(time.RFC3339Nano), w.ts.Format(time.RFC3339Nano))
	}
	got := map[string]any{"message": d["message"], "cluster": d["cluster"], "tenant": d["tenant"], "labels": d["labels"], "metadata": d["metadata"]}
	exp := map[string]any{"message": w.message, "cluster": w.cluster, "tenant": w.tenant, "labels": w.labels, "metadata": nil}
	if w.metadata != nil {
		exp["metadata"] = w.metadata
	}
	if fmt.Sprint(got) != fmt.Sprint(exp) {
		return fmt.Errorf("got %v\nwant %v", got, exp)
	}
	return nil
}

// ---- against a fake Elasticsearch 8 that answers like the real one

// bulkOp is one action of a _bulk request as the server received it.
type bulkOp struct {
	Action, Index, ID string
	Doc               map[string]any
}

type fakeES struct {
	t *testing.T

	mu             sync.Mutex
	templates      map[string]json.RawMessage
	templateStatus int // 0: 200
	bulks          [][]bulkOp
	respond        func(ops []bulkOp) (status int, body string)
}

func newFakeES(t *testing.T) (*fakeES, *httptest.Server) {
	f := &fakeES{t: t, templates: map[string]json.RawMessage{}}
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	return f, srv
}

func (f *fakeES) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	// The header go-elasticsearch v8 checks to talk to a server at all.
	w.Header().Set("X-Elastic-Product", "Elasticsearch")
	w.Header().Set("Content-Type", "application/json")
	switch {
	case r.Method == http.MethodGet && r.URL.Path == "/":
		fmt.Fprint(w, `{"name":"es-0","cluster_name":"test","version":{"number":"8.15.0","build_flavor":"default"},"tagline":"You Know, for Search"}`)
	case r.Method == http.MethodPut && strings.HasPrefix(r.URL.Path, "/_index_template/"):
		if f.templateStatus != 0 && f.templateStatus != http.StatusOK {
			w.WriteHeader(f.templateStatus)
			fmt.Fprintf(w, `{"error":{"root_cause":[{"type":"illegal_argument_exception","reason":"test says %d"}],"type":"illegal_argument_exception","reason":"test says %d"},"status":%d}`, f.templateStatus, f.templateStatus, f.templateStatus)
			return
		}
		var body json.RawMessage
		require.NoError(f.t, json.NewDecoder(r.Body).Decode(&body))
		f.templates[strings.TrimPrefix(r.URL.Path, "/_index_template/")] = body
		fmt.Fprint(w, `{"acknowledged":true}`)
	case r.Method == http.MethodPost && r.URL.Path == "/_bulk":
		ops := readBulk(f.t, r)
		f.bulks = append(f.bulks, ops)
		status, body := http.StatusOK, bulkResponse(ops, func(bulkOp) string { return "" })
		if f.respond != nil {
			status, body = f.respond(ops)
		}
		w.WriteHeader(status)
		fmt.Fprint(w, body)
	default:
		w.WriteHeader(http.StatusNotFound)
		fmt.Fprintf(w, `{"error":"no handler for %s %s"}`, r.Method, r.URL.Path)
	}
}

func (f *fakeES) sent() [][]bulkOp {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.bulks)
}

func readBulk(t *testing.T, r *http.Request) []bulkOp {
	var ops []bulkOp
	sc := bufio.NewScanner(r.Body)
	sc.Buffer(nil, 16<<20)
	for sc.Scan() {
		if len(sc.Bytes()) == 0 {
			t.Errorf("empty line in _bulk body")
			continue
		}
		var meta map[string]struct {
			Index string `json:"_index"`
			ID    string `json:"_id"`
		}
		require.NoError(t, json.Unmarshal(sc.Bytes(), &meta))
		require.Len(t, meta, 1)
		for action, m := range meta {
			require.True(t, sc.Scan(), "action without a source line")
			var doc map[string]any
			require.NoError(t, json.Unmarshal(sc.Bytes(), &doc))
			ops = append(ops, bulkOp{Action: action, Index: m.Index, ID: m.ID, Doc: doc})
		}
	}
	require.NoError(t, sc.Err())
	return ops
}

// bulkResponse is an Elasticsearch 8 _bulk response (shape of the bulk API
// reference): each op gets the item itemErr returns, or "created" for "".
func bulkResponse(ops []bulkOp, itemErr func(bulkOp) string) string {
	items := make([]string, len(ops))
	errors := false
	for i, op := range ops {
		if e := itemErr(op); e != "" {
			items[i] = fmt.Sprintf(`{"index":{"_index":%q,"_id":%q,%s}}`, op.Index, op.ID, e)
			errors = true
			continue
		}
		items[i] = fmt.Sprintf(`{"index":{"_index":%q,"_id":%q,"_version":1,"result":"created","_shards":{"total":2,"successful":1,"failed":0},"_seq_no":%d,"_primary_term":1,"status":201}}`, op.Index, op.ID, i)
	}
	return fmt.Sprintf(`{"errors":%t,"took":12,"items":[%s]}`, errors, strings.Join(items, ","))
}

// Per-item errors as Elasticsearch 8 writes them.
const (
	// 8.8+: a date_nanos field given a date before 1970.
	errDocumentParsing = `"status":400,"error":{"type":"document_parsing_exception","reason":"[1:15] failed to parse field [@timestamp] of type [date_nanos] in document with id 'tributary.logs-0-11-0'. Preview of field's value: '1969-12-31T23:59:59.000000000Z'","caused_by":{"type":"illegal_argument_exception","reason":"date[1969-12-31T23:59:59Z] is before the epoch in 1970 and cannot be stored in nanosecond resolution"}}`
	// 8.0-8.7: an object field given a concrete value.
	errMapperParsing = `"status":400,"error":{"type":"mapper_parsing_exception","reason":"object mapping for [labels] tried to parse field [labels] as object, but found a concrete value"}`
	errRejected      = `"status":429,"error":{"type":"es_rejected_execution_exception","reason":"rejected execution of coordinating operation [coordinating_and_primary_bytes=0, replica_bytes=0, all_bytes=0, coordinating_operation_bytes=52428800, max_coordinating_and_primary_bytes=53687091]"}`
	errForbidden     = `"status":403,"error":{"type":"security_exception","reason":"action [indices:data/write/bulk[s]] is unauthorized for user [tributary] with effective roles [viewer] on indices [tributary-logs-2024.05.01], this action is granted by the index privileges [create_doc,create,delete,index,write,all]"}`
	errUnavailable   = `"status":503,"error":{"type":"unavailable_shards_exception","reason":"[tributary-logs-2024.05.01][0] primary shard is not active Timeout: [1m], request: [BulkShardRequest [[tributary-logs-2024.05.01][0]] containing [3] requests]"}`
)

// beforeEpoch is what Elasticsearch does with our mapping: date_nanos
// refuses dates before 1970.
func beforeEpoch(itemErr string) func(bulkOp) string {
	return func(op bulkOp) string {
		if ts, _ := op.Doc["@timestamp"].(string); strings.HasPrefix(ts, "1969") {
			return itemErr
		}
		return ""
	}
}

// twoRecords: offset 10 has two good entries, offset 11 one entry from
// before 1970 that Elasticsearch refuses.
func twoRecords(t *testing.T) []ingester.Record {
	ts := time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)
	return []ingester.Record{
		logRecord(t, 0, 10, "eu-1", "team-a", stream(`{app="api", "app.kubernetes.io/name"="api"}`, entry(ts, "a"), entry(ts.Add(time.Second), "b", "trace.id", "t1"))),
		logRecord(t, 0, 11, "eu-1", "team-a", stream(`{app="api"}`, entry(time.Unix(-1, 0), "before 1970"))),
	}
}

func TestWriteClassifiesBulkResults(t *testing.T) {
	const (
		ok = iota
		permanent
		retry
		misconfigured
	)
	for _, tc := range []struct {
		name    string
		respond func(ops []bulkOp) (int, string)
		want    int
		msg     []string
	}{
		{
			name: "all created",
			want: ok,
		},
		{
			name: "document_parsing_exception refuses one record",
			respond: func(ops []bulkOp) (int, string) {
				return 200, bulkResponse(ops, beforeEpoch(errDocumentParsing))
			},
			want: permanent,
			msg: []string{"refused 1 of 3 documents", "record tributary.logs/0/11 entry 0", "_id ", "400 document_parsing_exception",
				"before the epoch"},
		},
		{
			name: "mapper_parsing_exception (8.0-8.7) refuses one record",
			respond: func(ops []bulkOp) (int, string) {
				return 200, bulkResponse(ops, beforeEpoch(errMapperParsing))
			},
			want: permanent,
			msg:  []string{"record tributary.logs/0/11 entry 0", "mapper_parsing_exception", "found a concrete value"},
		},
		{
			name: "429 on one item is retried",
			respond: func(ops []bulkOp) (int, string) {
				return 200, bulkResponse(ops, func(op bulkOp) string {
					if op.Doc["message"] == "b" {
						return errRejected
					}
					return ""
				})
			},
			want: retry,
			msg:  []string{"1 of 3 documents not indexed", "429 es_rejected_execution_exception"},
		},
		{
			name: "a refusal next to a 503 is retried first",
			respond: func(ops []bulkOp) (int, string) {
				return 200, bulkResponse(ops, func(op bulkOp) string {
					switch op.Doc["message"] {
					case "a":
						return errUnavailable
					case "before 1970":
						return errDocumentParsing
					}
					return ""
				})
			},
			want: retry,
			msg:  []string{"503 unavailable_shards_exception"},
		},
		{
			// Index-level security: the user may not write these indices.
			// Every document would be refused alike: retry, do not
			// dead-letter.
			name: "403 on items is a misconfigured sink, retried",
			respond: func(ops []bulkOp) (int, string) {
				return 200, bulkResponse(ops, func(bulkOp) string { return errForbidden })
			},
			want: misconfigured,
			msg:  []string{"3 of 3 documents not indexed", "403 security_exception", "-elasticsearch.password"},
		},
		{
			name: "request-level 401",
			respond: func([]bulkOp) (int, string) {
				return 401, `{"error":{"type":"security_exception","reason":"unable to authenticate user [tributary]"},"status":401}`
			},
			want: misconfigured,
			msg:  []string{"3 of 3 documents not indexed", "401", "unable to authenticate"},
		},
		{
			name: "request-level 429 (circuit breaker)",
			respond: func([]bulkOp) (int, string) {
				return 429, `{"error":{"root_cause":[{"type":"circuit_breaking_exception","reason":"[parent] Data too large","bytes_wanted":1,"bytes_limit":1,"durability":"TRANSIENT"}],"type":"circuit_breaking_exception","reason":"[parent] Data too large","bytes_wanted":1,"bytes_limit":1,"durability":"TRANSIENT"},"status":429}`
			},
			want: retry,
			msg:  []string{"3 of 3 documents not indexed", "circuit_breaking_exception"},
		},
		{
			name: "request-level 500",
			respond: func([]bulkOp) (int, string) {
				return 500, `{"error":{"type":"exception","reason":"boom"},"status":500}`
			},
			want: retry,
			msg:  []string{"3 of 3 documents not indexed", "500"},
		},
		{
			name: "fewer results than documents",
			respond: func(ops []bulkOp) (int, string) {
				// The last document added is the last of its request:
				// dropping its result keeps the others in place.
				if ops[len(ops)-1].Doc["message"] == "before 1970" {
					ops = ops[:len(ops)-1]
				}
				return 200, bulkResponse(ops, func(bulkOp) string { return "" })
			},
			want: retry,
			msg:  []string{"1 of 3 documents not indexed (1 without a result in the bulk response)"},
		},
		{
			name: "200 with a top-level error (ZincSearch's shape)",
			respond: func(ops []bulkOp) (int, string) {
				return 200, `{"took":0,"errors":false,"error":"field [x] parse err","items":[{"index":{"_index":"i","_id":"tributary.logs-0-10-0","status":200,"result":"created"}}]}`
			},
			want: retry,
			msg:  []string{"3 of 3 documents not indexed", "reports an error without per-item results", "field [x] parse err"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, srv := newFakeES(t)
			f.respond = tc.respond
			s := newSink(t, testConfig(srv.URL))
			err := s.Write(context.Background(), twoRecords(t))
			switch tc.want {
			case ok:
				require.NoError(t, err)
			case permanent:
				require.Error(t, err)
				require.True(t, ingester.IsPermanent(err), "want permanent: %v", err)
			case retry, misconfigured:
				require.Error(t, err)
				require.False(t, ingester.IsPermanent(err), "want retryable: %v", err)
				require.Equal(t, tc.want == misconfigured, errors.Is(err, ingester.ErrMisconfigured), "%v", err)
			}
			for _, m := range tc.msg {
				require.ErrorContains(t, err, m)
			}
		})
	}
}

// The consumer answers a Permanent batch by writing its records one by one
// and dead-letters those refused alone: only the bad record must fail.
func TestRefusalIsolatesTheRecord(t *testing.T) {
	f, srv := newFakeES(t)
	f.respond = func(ops []bulkOp) (int, string) { return 200, bulkResponse(ops, beforeEpoch(errDocumentParsing)) }
	s := newSink(t, testConfig(srv.URL))
	recs := twoRecords(t)
	ctx := context.Background()

	err := s.Write(ctx, recs)
	require.True(t, ingester.IsPermanent(err), "batch: %v", err)
	require.NoError(t, s.Write(ctx, recs[:1]))
	err = s.Write(ctx, recs[1:])
	require.True(t, ingester.IsPermanent(err), "bad record alone: %v", err)
	require.ErrorContains(t, err, "tributary.logs/0/11")
}

func TestWriteRequest(t *testing.T) {
	f, srv := newFakeES(t)
	s := newSink(t, testConfig(srv.URL))
	ts := time.Date(2024, 5, 1, 23, 59, 59, 999999999, time.UTC)
	r := logRecord(t, 3, 42, "eu-1", "team-a",
		stream(`{app="api", "app.kubernetes.io/name"="api-server", cluster="eu-1"}`,
			entry(ts, "last of the day", "trace.id", "abc", "trace", "yes"),
			entry(ts.Add(time.Nanosecond), "first of the next")),
		stream(`{app="db", cluster="eu-1"}`, entry(ts, `quote " and <tag>`)))
	require.NoError(t, s.Write(context.Background(), []ingester.Record{r}))

	var ops []bulkOp
	for _, b := range f.sent() {
		ops = append(ops, b...)
	}
	// Ids are content hashes (TestDocumentIDs): distinct, then left out.
	ids := map[string]bool{}
	for i := range ops {
		require.Regexp(t, `^[A-Za-z0-9_-]{22}$`, ops[i].ID)
		ids[ops[i].ID] = true
		ops[i].ID = ""
	}
	require.Len(t, ids, 3)
	slices.SortFunc(ops, func(a, b bulkOp) int { return strings.Compare(a.Doc["message"].(string), b.Doc["message"].(string)) })
	apiLabels := map[string]any{"app": "api", "app.kubernetes.io/name": "api-server", "cluster": "eu-1"}
	require.Equal(t, []bulkOp{
		{Action: "index", Index: "tributary-logs-2024.05.02", Doc: map[string]any{
			"@timestamp": "2024-05-02T00:00:00.000000000Z", "message": "first of the next", "cluster": "eu-1", "tenant": "team-a",
			"labels": apiLabels}},
		{Action: "index", Index: "tributary-logs-2024.05.01", Doc: map[string]any{
			"@timestamp": "2024-05-01T23:59:59.999999999Z", "message": "last of the day", "cluster": "eu-1", "tenant": "team-a",
			"labels": apiLabels, "metadata": map[string]any{"trace.id": "abc", "trace": "yes"}}},
		{Action: "index", Index: "tributary-logs-2024.05.01", Doc: map[string]any{
			"@timestamp": "2024-05-01T23:59:59.999999999Z", "message": `quote " and <tag>`, "cluster": "eu-1", "tenant": "team-a",
			"labels": map[string]any{"app": "db", "cluster": "eu-1"}}},
	}, ops)
}

func TestTemplate(t *testing.T) {
	ctx := context.Background()

	t.Run("installed at start-up", func(t *testing.T) {
		f, srv := newFakeES(t)
		newSink(t, testConfig(srv.URL))
		var got map[string]any
		require.NoError(t, json.Unmarshal(f.templates["tributary-logs"], &got))
		props := got["template"].(map[string]any)["mappings"].(map[string]any)["properties"]
		require.Equal(t, []any{"tributary-logs-*.*.*"}, got["index_patterns"])
		require.Equal(t, map[string]any{
			"@timestamp": map[string]any{"type": "date_nanos"},
			"message":    map[string]any{"type": "text"},
			"cluster":    map[string]any{"type": "keyword"},
			"tenant":     map[string]any{"type": "keyword"},
			"labels":     map[string]any{"type": "flattened", "ignore_above": 8191.0},
			"metadata":   map[string]any{"type": "flattened", "ignore_above": 8191.0},
		}, props)
	})

	t.Run("refused is an error", func(t *testing.T) {
		f, srv := newFakeES(t)
		f.templateStatus = http.StatusBadRequest
		_, err := New(ctx, testConfig(srv.URL), testLog(t))
		require.ErrorContains(t, err, "install index template tributary-logs: 400")
		require.ErrorContains(t, err, "test says 400")
	})

	t.Run("skipped on request", func(t *testing.T) {
		f, srv := newFakeES(t)
		f.templateStatus = http.StatusBadRequest
		cfg := testConfig(srv.URL)
		cfg.SkipTemplate = true
		s := newSink(t, cfg)
		require.NoError(t, s.Write(ctx, twoRecords(t)[:1]))
		require.Empty(t, f.templates)
	})

	t.Run("unavailable at start-up: writes wait for it", func(t *testing.T) {
		f, srv := newFakeES(t)
		f.templateStatus = http.StatusServiceUnavailable
		s := newSink(t, testConfig(srv.URL))
		err := s.Write(ctx, twoRecords(t)[:1])
		require.Error(t, err)
		require.False(t, ingester.IsPermanent(err))
		require.Empty(t, f.sent(), "no document may create an index before the template exists")

		f.mu.Lock()
		f.templateStatus = 0
		f.mu.Unlock()
		require.NoError(t, s.Write(ctx, twoRecords(t)[:1]))
		require.Contains(t, f.templates, "tributary-logs")
		n := 0
		for _, b := range f.sent() {
			n += len(b)
		}
		require.Equal(t, 2, n, "the record's two documents, once")
	})
}

func TestUndecodableRecordIsPermanent(t *testing.T) {
	good := func(t *testing.T) ingester.Record {
		return logRecord(t, 0, 5, "eu-1", "", stream(`{app="x"}`, entry(time.Unix(1, 0), "x")))
	}
	for _, tc := range []struct {
		name string
		edit func(t *testing.T, r *ingester.Record)
		msg  string
	}{
		{"not snappy", func(_ *testing.T, r *ingester.Record) { r.Value = []byte("\xff\xff\xff\xff\xff plain") }, "snappy"},
		{"not a push request", func(_ *testing.T, r *ingester.Record) { r.Value = snappy.Encode(nil, []byte("\x0a\xff\xff")) }, "push request"},
		{"bad stream labels", func(t *testing.T, r *ingester.Record) {
			*r = logRecord(t, 0, 5, "eu-1", "", stream(`{app=x}`, entry(time.Unix(1, 0), "x")))
		}, "labels"},
		{"too large", func(_ *testing.T, r *ingester.Record) {
			r.Value = snappy.Encode(nil, make([]byte, 2<<20))
		}, "over the limit"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, srv := newFakeES(t)
			cfg := testConfig(srv.URL)
			cfg.MaxDecodedBytes = 1 << 20
			s := newSink(t, cfg)
			bad := good(t)
			tc.edit(t, &bad)
			bad.Offset = 6
			err := s.Write(context.Background(), []ingester.Record{good(t), bad})
			require.True(t, ingester.IsPermanent(err), "want permanent: %v", err)
			require.ErrorContains(t, err, "record tributary.logs/0/6")
			require.ErrorContains(t, err, tc.msg)
			require.Empty(t, f.sent(), "nothing is sent for a batch that cannot be decoded")
		})
	}
}

// Partitions write concurrently through one bulk indexer: each Write must
// get the outcome of its own documents only.
func TestConcurrentWritesGetTheirOwnOutcome(t *testing.T) {
	f, srv := newFakeES(t)
	f.respond = func(ops []bulkOp) (int, string) { return 200, bulkResponse(ops, beforeEpoch(errDocumentParsing)) }
	cfg := testConfig(srv.URL)
	cfg.FlushBytes = 512 // several requests per write, mixing partitions
	s := newSink(t, cfg)

	const partitions = 8
	errs := make([]error, partitions)
	var wg sync.WaitGroup
	for p := range partitions {
		wg.Go(func() {
			ts := time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)
			if p == 3 {
				ts = time.Unix(-1, 0) // refused
			}
			var recs []ingester.Record
			for o := range 20 {
				recs = append(recs, logRecord(t, int32(p), int64(o), "eu-1", "", stream(`{app="x"}`, entry(ts, "line"), entry(ts, "line"))))
			}
			for range 5 {
				if errs[p] = s.Write(context.Background(), recs); errs[p] != nil {
					return
				}
			}
		})
	}
	wg.Wait()
	for p, err := range errs {
		if p == 3 {
			require.True(t, ingester.IsPermanent(err), "partition 3: %v", err)
			require.ErrorContains(t, err, "refused 40 of 40 documents")
			require.ErrorContains(t, err, "tributary.logs/3/")
			continue
		}
		require.NoError(t, err, "partition %d", p)
	}
	n := 0
	for _, b := range f.sent() {
		n += len(b)
	}
	require.Equal(t, 7*5*40+40, n)
}
