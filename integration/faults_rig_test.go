package integration

// The fault suite's shared parts: a tap that counts what each real sink
// acknowledged (to report duplicates), senders that retry an item until the
// gateway acknowledges it (and count the 503s on the way), a span load, and
// one rig that wires gateway, ingester and every sink together.

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang/snappy"
	"github.com/grafana/loki/pkg/push"
	"github.com/prometheus/prometheus/prompb"
	"github.com/stretchr/testify/require"
	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	resourcepb "go.opentelemetry.io/proto/otlp/resource/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/proto"

	"github.com/tributary-io/tributary/internal/testenv"
)

// sinkTap is a transparent proxy in front of a real sink. It forwards every
// request unchanged and, when the sink answers 2xx, counts each item of the
// request by its identity (series and timestamp; stream, timestamp and
// line; index and _id), so a test can say how many items the sink was
// given more than once. While the sink is down the tap drops the
// connection, as the stopped sink would.
type sinkTap struct {
	URL      string
	kind     string // "prometheus", "loki" or "elasticsearch"
	upstream string
	index    string // elasticsearch: count only indices with this prefix

	// delay holds every request this long before forwarding it: a slow
	// sink, so that a crash finds writes in flight.
	delay atomic.Int64

	mu     sync.Mutex
	seen   map[string]int
	writes int
}

func newSinkTap(t *testing.T, kind, upstream, index string) *sinkTap {
	t.Helper()
	s := &sinkTap{kind: kind, upstream: strings.TrimSuffix(upstream, "/"), index: index, seen: map[string]int{}}
	srv := httptest.NewServer(s)
	t.Cleanup(srv.Close)
	s.URL = srv.URL
	return s
}

func (s *sinkTap) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	time.Sleep(time.Duration(s.delay.Load()))
	// Not cancelled with the client: a write the sink completes after its
	// writer died is still counted.
	req, err := http.NewRequestWithContext(context.WithoutCancel(r.Context()), r.Method, s.upstream+r.URL.RequestURI(), bytes.NewReader(body))
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	req.Header = r.Header.Clone()
	resp, err := http.DefaultTransport.RoundTrip(req)
	if err != nil {
		// The sink is down: the client must see a dropped connection, not
		// an answer.
		if conn, _, herr := http.NewResponseController(w).Hijack(); herr == nil {
			conn.Close()
		}
		return
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	for k, vs := range resp.Header {
		w.Header()[k] = vs
	}
	w.WriteHeader(resp.StatusCode)
	_, _ = w.Write(out)
	if resp.StatusCode/100 == 2 && r.Method == http.MethodPost {
		s.count(r, body)
	}
}

// count records the items of an acknowledged request.
func (s *sinkTap) count(r *http.Request, body []byte) {
	var keys []string
	switch s.kind {
	case "prometheus":
		raw, err := snappy.Decode(nil, body)
		var wr prompb.WriteRequest
		if err != nil || wr.Unmarshal(raw) != nil {
			return
		}
		for _, ts := range wr.Timeseries {
			ls := fmt.Sprint(ts.Labels)
			for _, smp := range ts.Samples {
				keys = append(keys, fmt.Sprintf("%s@%d", ls, smp.Timestamp))
			}
		}
	case "loki":
		raw, err := snappy.Decode(nil, body)
		var pr push.PushRequest
		if err != nil || pr.Unmarshal(raw) != nil {
			return
		}
		for _, st := range pr.Streams {
			for _, e := range st.Entries {
				keys = append(keys, fmt.Sprintf("%s@%d %s", st.Labels, e.Timestamp.UnixNano(), e.Line))
			}
		}
	case "elasticsearch":
		if !strings.HasSuffix(r.URL.Path, "/_bulk") {
			return
		}
		if r.Header.Get("Content-Encoding") == "gzip" {
			zr, err := gzip.NewReader(bytes.NewReader(body))
			if err != nil {
				return
			}
			if body, err = io.ReadAll(zr); err != nil {
				return
			}
		}
		sc := bufio.NewScanner(bytes.NewReader(body))
		sc.Buffer(make([]byte, 1<<20), 64<<20)
		for sc.Scan() {
			var action map[string]struct {
				Index string `json:"_index"`
				ID    string `json:"_id"`
			}
			if json.Unmarshal(sc.Bytes(), &action) != nil {
				continue
			}
			for op, a := range action {
				if (op == "index" || op == "create") && strings.HasPrefix(a.Index, s.index) {
					keys = append(keys, a.Index+"/"+a.ID)
				}
			}
			sc.Scan() // the document
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, k := range keys {
		s.seen[k]++
	}
	s.writes += len(keys)
}

// tally is how many distinct items the sink acknowledged and how many
// writes were repeats of an item it already had.
func (s *sinkTap) tally() (distinct, duplicated int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.seen), s.writes - len(s.seen)
}

// sender sends items 0, 1, 2, ... in order, each again until the gateway
// acknowledges it (2xx), the way a remote-write or OTLP client keeps its
// data on 503 and retries.
type sender struct {
	name      string
	perItem   int          // samples, lines or spans per item
	attempts  atomic.Int64 // requests sent
	acked     atomic.Int64 // items acknowledged: exactly items 0 .. acked-1
	refused   atomic.Int64 // 503 and 429 answers (Kafka or the gateway unavailable)
	transport atomic.Int64 // requests that got no answer (gateway down)
}

// run sends until n items are acknowledged or stop is closed; an item
// under way when stop closes is still sent until acknowledged, so that
// every item the test counts was answered 2xx. An answer other than 2xx,
// 429 and 503 fails the test.
func (s *sender) run(t *testing.T, n int, pace time.Duration, stop <-chan struct{}, send func(i int) (int, string, error)) {
	for i := 0; i < n; {
		select {
		case <-stop:
			return
		default:
		}
		s.attempts.Add(1)
		code, msg, err := send(i)
		switch {
		case err != nil:
			s.transport.Add(1)
		case code/100 == 2:
			i++
			s.acked.Store(int64(i))
			time.Sleep(pace)
			continue
		case code == http.StatusServiceUnavailable || code == http.StatusTooManyRequests:
			s.refused.Add(1)
		default:
			t.Errorf("%s item %d: unexpected answer %d %s", s.name, i, code, msg)
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// start runs s in a goroutine counted by wg.
func (s *sender) start(t *testing.T, wg *sync.WaitGroup, n int, pace time.Duration, stop <-chan struct{}, send func(i int) (int, string, error)) {
	wg.Add(1)
	go func() {
		defer wg.Done()
		s.run(t, n, pace, stop, send)
	}()
}

// report logs the numbers of one signal: sent, acknowledged (2xx), found
// in the sink, and written to it more than once.
func (s *sender) report(t *testing.T, sink string, found int, tap *sinkTap) {
	t.Helper()
	_, dups := tap.tally()
	t.Logf("%s → %s: sent %d requests (%d answered 503/429, %d unanswered), acknowledged %d items = %d, found %d, duplicated %d",
		s.name, sink, s.attempts.Load(), s.refused.Load(), s.transport.Load(), s.acked.Load(), s.acked.Load()*int64(s.perItem), found, dups)
}

// spanLoad is a deterministic set of spans: cluster c, span i has a trace
// and span ID derived from (c, i) and starts at t0+i ms.
type spanLoad struct {
	t0 time.Time
}

func spanIDs(c string, i int) (traceID, spanID []byte) {
	h := fnv.New64a()
	_, _ = h.Write([]byte(c))
	traceID = binary.BigEndian.AppendUint64(h.Sum(nil), uint64(i)+1)
	spanID = binary.BigEndian.AppendUint64(nil, h.Sum64()<<32|uint64(i)+1)
	return traceID, spanID
}

// body is the OTLP/HTTP protobuf export of span i of cluster c.
func (l spanLoad) body(c string, i int) []byte {
	traceID, spanID := spanIDs(c, i)
	str := func(k, v string) *commonpb.KeyValue {
		return &commonpb.KeyValue{Key: k, Value: &commonpb.AnyValue{Value: &commonpb.AnyValue_StringValue{StringValue: v}}}
	}
	start := l.t0.Add(time.Duration(i) * time.Millisecond)
	req := &coltracepb.ExportTraceServiceRequest{ResourceSpans: []*tracepb.ResourceSpans{{
		Resource: &resourcepb.Resource{Attributes: []*commonpb.KeyValue{str("service.name", "fault-"+c), str("k8s.cluster.name", c)}},
		ScopeSpans: []*tracepb.ScopeSpans{{Spans: []*tracepb.Span{{
			TraceId: traceID, SpanId: spanID, Name: fmt.Sprintf("op-%d", i%5), Kind: tracepb.Span_SPAN_KIND_SERVER,
			StartTimeUnixNano: uint64(start.UnixNano()), EndTimeUnixNano: uint64(start.Add(time.Millisecond).UnixNano()),
		}}}},
	}}}
	out, err := proto.Marshal(req)
	if err != nil {
		panic(err)
	}
	return out
}

func postSpans(gwURL string, body []byte) (int, string, error) {
	resp, err := http.Post(gwURL+"/v1/traces", "application/x-protobuf", bytes.NewReader(body))
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(msg), nil
}

// verifySpans waits until the Jaeger span indices hold spans 0 .. n-1 of
// every cluster, and returns how many span documents of those clusters
// they hold.
func verifySpans(t *testing.T, z *testenv.ZincServer, n map[string]int) int {
	t.Helper()
	want := map[string]bool{}
	for c, k := range n {
		for i := 0; i < k; i++ {
			_, id := spanIDs(c, i)
			want[hex.EncodeToString(id)] = true
		}
	}
	found := 0
	testenv.Eventually(t, 90*time.Second, func() error {
		docs, _, err := z.Search(t, "jaeger-span-*", map[string]any{
			"query": map[string]any{"match_all": map[string]any{}}, "size": len(want) + 1000,
		})
		if err != nil {
			return err
		}
		got := map[string]bool{}
		for _, d := range docs {
			if id, _ := d["spanID"].(string); want[id] {
				got[id] = true
			}
		}
		found = len(got)
		if found != len(want) {
			return fmt.Errorf("%d of %d acknowledged spans in the span indices", found, len(want))
		}
		return nil
	})
	return found
}

// promFound is how many samples of metric Prometheus holds for cluster c
// in l's time range.
func promFound(t *testing.T, prom *testenv.PrometheusServer, l load, c string) int {
	t.Helper()
	res, err := prom.Query(fmt.Sprintf(`sum(count_over_time(%s{cluster=%q}[%ds]))`, l.metric, c, l.samples+60),
		l.t0.Add(time.Duration(l.samples)*time.Second))
	require.NoError(t, err)
	if len(res) != 1 {
		return 0
	}
	return int(res[0].Value)
}

// lokiFound is how many lines of cluster c Loki holds in l's time range.
func lokiFound(t *testing.T, loki *testenv.LokiServer, l logLoad, c string) int {
	t.Helper()
	streams, err := loki.QueryRange(t, fmt.Sprintf(`{cluster=%q}`, c), l.t0.Add(-time.Minute), l.t0.Add(time.Hour), 5000)
	require.NoError(t, err)
	n := 0
	for _, st := range streams {
		n += len(st.Entries)
	}
	return n
}

// esFound is how many log documents the Elasticsearch-compatible server
// holds.
func esFound(t *testing.T, z *testenv.ZincServer) int {
	t.Helper()
	_, total, err := z.Search(t, "tributary-logs-*", map[string]any{"query": map[string]any{"match_all": map[string]any{}}, "size": 0})
	require.NoError(t, err)
	return total
}

// faultRig is Kafka, the gateway, one Prometheus, one Loki and one
// ZincSearch (for the log documents and the Jaeger span documents), each
// sink behind a tap.
type faultRig struct {
	kafka                 string
	prom                  *testenv.PrometheusServer
	loki                  *testenv.LokiServer
	zinc                  *testenv.ZincServer
	promTap, lokiTap      *sinkTap
	esTap, jaegerTap      *sinkTap
	withSpans, withESLogs bool
}

// newFaultRig starts the sinks (Zinc only if spans or ES logs are asked
// for) and their taps; Kafka and the processes are the test's.
func newFaultRig(t *testing.T, kafkaAddr string, esLogs, spans bool) *faultRig {
	t.Helper()
	r := &faultRig{kafka: kafkaAddr, withSpans: spans, withESLogs: esLogs}
	r.prom = testenv.Prometheus(t, testenv.SinkConfig)
	r.loki = testenv.Loki(t)
	r.promTap = newSinkTap(t, "prometheus", r.prom.URL, "")
	r.lokiTap = newSinkTap(t, "loki", r.loki.URL, "")
	if esLogs || spans {
		r.zinc = testenv.Zinc(t)
		r.esTap = newSinkTap(t, "elasticsearch", r.zinc.URL, "tributary-logs-")
		r.jaegerTap = newSinkTap(t, "elasticsearch", r.zinc.URL, "jaeger-span-")
	}
	return r
}

// ingester starts an ingester writing to every sink of the rig through its
// tap, with short batch delays and backoffs.
func (r *faultRig) ingester(t *testing.T, extra ...string) *ingesterProc {
	t.Helper()
	port := testenv.FreePort(t)
	args := []string{
		"-http.listen-addr=" + testenv.Addr(port), "-kafka.brokers=" + r.kafka,
		"-prometheus.url=" + r.promTap.URL + "/api/v1/write", "-prometheus.batch.max-delay=200ms", "-prometheus.backoff.max=1s", "-prometheus.flush-timeout=5s",
		"-loki.url=" + r.lokiTap.URL + "/loki/api/v1/push", "-loki.batch.max-delay=200ms", "-loki.backoff.max=1s", "-loki.flush-timeout=5s",
	}
	if r.withESLogs {
		args = append(args, "-elasticsearch.addresses="+r.esTap.URL+"/es", "-elasticsearch.username="+r.zinc.User, "-elasticsearch.password="+r.zinc.Password,
			"-elasticsearch.template.skip", "-elasticsearch.batch.max-delay=200ms", "-elasticsearch.backoff.max=1s", "-elasticsearch.flush-timeout=5s")
	}
	if r.withSpans {
		args = append(args, "-jaeger.addresses="+r.jaegerTap.URL+"/es", "-jaeger.username="+r.zinc.User, "-jaeger.password="+r.zinc.Password,
			"-jaeger.batch.max-delay=200ms", "-jaeger.backoff.max=1s", "-jaeger.flush-timeout=5s")
	}
	p := testenv.StartProcess(t, "ingester", testenv.Binary(t, "ingester"), append(args, extra...))
	url := "http://" + testenv.Addr(port)
	testenv.WaitHTTP(t, p, url+"/-/healthy", 30*time.Second)
	return &ingesterProc{Process: p, URL: url}
}
