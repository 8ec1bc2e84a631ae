package spanmetrics

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang/snappy"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/prometheus/prompb"
	"github.com/stretchr/testify/require"
	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	resourcepb "go.opentelemetry.io/proto/otlp/resource/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/proto"

	"github.com/tributary-io/tributary/pkg/ingester"
	"github.com/tributary-io/tributary/pkg/record"
	recordpb "github.com/tributary-io/tributary/proto/record/v1"
)

// span is a span of name, kind and status lasting ms milliseconds.
func span(name string, kind tracepb.Span_SpanKind, status tracepb.Status_StatusCode, ms float64) *tracepb.Span {
	start := uint64(1_700_000_000_000_000_000)
	return &tracepb.Span{
		TraceId: []byte("0123456789abcdef"), SpanId: []byte("01234567"), Name: name, Kind: kind,
		StartTimeUnixNano: start, EndTimeUnixNano: start + uint64(ms*1e6),
		Status: &tracepb.Status{Code: status},
	}
}

func str(k, v string) *commonpb.KeyValue {
	return &commonpb.KeyValue{Key: k, Value: &commonpb.AnyValue{Value: &commonpb.AnyValue_StringValue{StringValue: v}}}
}

// spanRecord is a span record of the contract: a snappy
// ExportTraceServiceRequest of one cluster.
func spanRecord(t testing.TB, partition int32, offset int64, cluster, service string, spans ...*tracepb.Span) ingester.Record {
	t.Helper()
	attrs := []*commonpb.KeyValue{str("k8s.cluster.name", cluster)}
	if service != "" {
		attrs = append(attrs, str("service.name", service))
	}
	req := &coltracepb.ExportTraceServiceRequest{ResourceSpans: []*tracepb.ResourceSpans{{
		Resource:   &resourcepb.Resource{Attributes: attrs},
		ScopeSpans: []*tracepb.ScopeSpans{{Spans: spans}},
	}}}
	raw, err := proto.Marshal(req)
	require.NoError(t, err)
	return ingester.Record{
		Topic: "tributary.spans", Partition: partition, Offset: offset, Value: snappy.Encode(nil, raw),
		Envelope: &recordpb.Envelope{SchemaVersion: record.SchemaVersion, Signal: recordpb.Signal_SIGNAL_SPANS, Cluster: cluster,
			ContentType: record.ContentTypeTraces, ContentEncoding: record.EncodingSnappy, Items: uint64(len(spans))},
	}
}

// sample is one written sample of a series.
type sample struct {
	ts int64
	v  float64
}

// promFake stands for the Prometheus sink: it decodes every request and
// keeps the samples per series, in the order written. fail, if set,
// decides the answer of each call (n counts from 0) after the samples
// were kept: a failed write may have been stored.
type promFake struct {
	fail   func(n int) error
	calls  int
	series map[string][]sample
}

func (f *promFake) Write(_ context.Context, recs []ingester.Record) error {
	if f.series == nil {
		f.series = map[string][]sample{}
	}
	for _, r := range recs {
		raw, err := snappy.Decode(nil, r.Value)
		if err != nil {
			return err
		}
		var req prompb.WriteRequest
		if err := req.Unmarshal(raw); err != nil {
			return err
		}
		for _, ts := range req.Timeseries {
			if !sort.SliceIsSorted(ts.Labels, func(i, j int) bool { return ts.Labels[i].Name < ts.Labels[j].Name }) {
				return fmt.Errorf("labels not sorted: %v", ts.Labels)
			}
			id := seriesID(ts.Labels)
			for _, s := range ts.Samples {
				f.series[id] = append(f.series[id], sample{s.Timestamp, s.Value})
			}
		}
	}
	n := f.calls
	f.calls++
	if f.fail != nil {
		return f.fail(n)
	}
	return nil
}

func seriesID(ls []prompb.Label) string {
	parts := make([]string, 0, len(ls))
	for _, l := range ls {
		parts = append(parts, l.Name+"="+l.Value)
	}
	return strings.Join(parts, ",")
}

// last is the last value of the series with exactly the labels ls
// (name=value, sorted), and whether it exists.
func (f *promFake) last(ls ...string) (float64, bool) {
	s := f.series[strings.Join(ls, ",")]
	if len(s) == 0 {
		return 0, false
	}
	return s[len(s)-1].v, true
}

// labels of a regular series of cluster c in partition 0 of ingester i1,
// plus metric name and le.
func labels(name, le, c, svc, spanName, kind, status string) []string {
	ls := []string{"__name__=" + name, "cluster=" + c, "ingester=i1"}
	if le != "" {
		ls = append(ls, "le="+le)
	}
	ls = append(ls, "partition=0", "service_name="+svc)
	if kind != "" {
		ls = append(ls, "span_kind="+kind)
	}
	return append(ls, "span_name="+spanName, "status_code="+status)
}

func overflowLabels(name, le, c string) []string {
	ls := []string{"__name__=" + name, "cluster=" + c, "ingester=i1"}
	if le != "" {
		ls = append(ls, "le="+le)
	}
	return append(ls, "otel_metric_overflow=true", "partition=0")
}

type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

func newTestSink(t testing.TB, out ingester.Sink, limit int) (*Sink, *clock, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewRegistry()
	cfg := Config{IngesterID: "i1", MaxSeriesPerCluster: limit, SeriesIdleTimeout: 5 * time.Minute, MaxDecodedBytes: 1 << 20}
	cfg.Consumer.BatchMaxDelay = 15 * time.Second
	s := New(cfg, out, reg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	c := &clock{t: time.UnixMilli(1_800_000_000_000)}
	s.now = c.now
	return s, c, reg
}

// Known durations land in the connector's buckets, each bucket including
// its upper bound; sum and count are exact.
func TestBuckets(t *testing.T) {
	out := &promFake{}
	s, _, _ := newTestSink(t, out, 0)
	const srv, ok = tracepb.Span_SPAN_KIND_SERVER, tracepb.Status_STATUS_CODE_OK
	durations := []float64{0, 2, 2.5, 4, 10, 10.001, 99, 1000, 1400, 14_999, 15_000, 15_001, 60_000}
	var spans []*tracepb.Span
	for _, d := range durations {
		spans = append(spans, span("GET /", srv, ok, d))
	}
	// An end before the start counts as 0 ms, as in the connector.
	neg := span("GET /", srv, ok, 0)
	neg.EndTimeUnixNano = neg.StartTimeUnixNano - 5e6
	spans = append(spans, neg)
	require.NoError(t, s.Write(context.Background(), []ingester.Record{spanRecord(t, 0, 0, "c1", "web", spans...)}))

	want := map[string]float64{ // cumulative
		"2": 3, "4": 5, "6": 5, "8": 5, "10": 6, "50": 7, "100": 8, "200": 8, "400": 8, "800": 8,
		"1000": 9, "1400": 10, "2000": 10, "5000": 10, "10000": 10, "15000": 12, "+Inf": 14,
	}
	for le, n := range want {
		v, found := out.last(labels(durationName+"_bucket", le, "c1", "web", "GET /", "SPAN_KIND_SERVER", "STATUS_CODE_OK")...)
		require.True(t, found, "bucket le=%s", le)
		require.Equal(t, n, v, "bucket le=%s", le)
	}
	sum := 0.0
	for _, d := range durations {
		sum += d
	}
	v, _ := out.last(labels(durationName+"_sum", "", "c1", "web", "GET /", "SPAN_KIND_SERVER", "STATUS_CODE_OK")...)
	require.InDelta(t, sum, v, 1e-6)
	v, _ = out.last(labels(durationName+"_count", "", "c1", "web", "GET /", "SPAN_KIND_SERVER", "STATUS_CODE_OK")...)
	require.Equal(t, 14.0, v)
	v, _ = out.last(labels(callsName, "", "c1", "web", "GET /", "SPAN_KIND_SERVER", "STATUS_CODE_OK")...)
	require.Equal(t, 14.0, v)
	require.Len(t, out.series, 20, "calls, 17 buckets, sum and count of one label set")
}

// Span kinds and status codes are named as the connector names them; an
// unknown kind leaves the label out. Spans without service.name are
// skipped and counted.
func TestKindAndStatus(t *testing.T) {
	out := &promFake{}
	s, _, _ := newTestSink(t, out, 0)
	spans := []*tracepb.Span{
		span("a", tracepb.Span_SPAN_KIND_SERVER, tracepb.Status_STATUS_CODE_ERROR, 1),
		span("a", tracepb.Span_SPAN_KIND_CLIENT, tracepb.Status_STATUS_CODE_OK, 1),
		span("a", tracepb.Span_SPAN_KIND_CLIENT, tracepb.Status_STATUS_CODE_OK, 1),
		span("a", tracepb.Span_SPAN_KIND_INTERNAL, tracepb.Status_STATUS_CODE_UNSET, 1),
		span("a", tracepb.Span_SPAN_KIND_PRODUCER, tracepb.Status_STATUS_CODE_UNSET, 1),
		span("a", tracepb.Span_SPAN_KIND_CONSUMER, tracepb.Status_STATUS_CODE_UNSET, 1),
		span("a", tracepb.Span_SPAN_KIND_UNSPECIFIED, tracepb.Status_STATUS_CODE_UNSET, 1),
		span("a", tracepb.Span_SpanKind(42), tracepb.Status_STATUS_CODE_UNSET, 1),
	}
	recs := []ingester.Record{
		spanRecord(t, 0, 0, "c1", "svc", spans...),
		spanRecord(t, 0, 1, "c1", "", span("lost", tracepb.Span_SPAN_KIND_SERVER, tracepb.Status_STATUS_CODE_OK, 1)),
	}
	require.NoError(t, s.Write(context.Background(), recs))
	for _, tc := range []struct {
		kind, status string
		want         float64
	}{
		{"SPAN_KIND_SERVER", "STATUS_CODE_ERROR", 1},
		{"SPAN_KIND_CLIENT", "STATUS_CODE_OK", 2},
		{"SPAN_KIND_INTERNAL", "STATUS_CODE_UNSET", 1},
		{"SPAN_KIND_PRODUCER", "STATUS_CODE_UNSET", 1},
		{"SPAN_KIND_CONSUMER", "STATUS_CODE_UNSET", 1},
		{"SPAN_KIND_UNSPECIFIED", "STATUS_CODE_UNSET", 1},
		{"", "STATUS_CODE_UNSET", 1},
	} {
		v, found := out.last(labels(callsName, "", "c1", "svc", "a", tc.kind, tc.status)...)
		require.True(t, found, "%s %s", tc.kind, tc.status)
		require.Equal(t, tc.want, v, "%s %s", tc.kind, tc.status)
	}
	require.Len(t, out.series, 7*20)
	require.Equal(t, 1.0, testutil.ToFloat64(s.m.skipped.WithLabelValues("no_service_name")))
	require.Equal(t, 8.0, testutil.ToFloat64(s.m.spans.WithLabelValues("c1")))
}

// Counters are cumulative over batches; every series starts with a 0
// sample before its first count, and timestamps only go up.
func TestCumulativeFromZero(t *testing.T) {
	out := &promFake{}
	s, clk, _ := newTestSink(t, out, 0)
	ctx := context.Background()
	srv, ok := tracepb.Span_SPAN_KIND_SERVER, tracepb.Status_STATUS_CODE_OK
	require.NoError(t, s.Write(ctx, []ingester.Record{spanRecord(t, 0, 0, "c1", "web", span("a", srv, ok, 3), span("a", srv, ok, 3))}))
	clk.t = clk.t.Add(15 * time.Second)
	require.NoError(t, s.Write(ctx, []ingester.Record{spanRecord(t, 0, 1, "c1", "web", span("a", srv, ok, 3))}))
	clk.t = clk.t.Add(15 * time.Second)
	require.NoError(t, s.Write(ctx, []ingester.Record{spanRecord(t, 0, 2, "c1", "web", span("b", srv, ok, 3))}))

	calls := out.series[strings.Join(labels(callsName, "", "c1", "web", "a", "SPAN_KIND_SERVER", "STATUS_CODE_OK"), ",")]
	require.Equal(t, []float64{0, 2, 3, 3}, values(calls), "0 first, then cumulative, and written on every flush of the partition")
	for i := 1; i < len(calls); i++ {
		require.Greater(t, calls[i].ts, calls[i-1].ts)
	}
	b := out.series[strings.Join(labels(callsName, "", "c1", "web", "b", "SPAN_KIND_SERVER", "STATUS_CODE_OK"), ",")]
	require.Equal(t, []float64{0, 1}, values(b))
	require.Greater(t, b[0].ts, calls[2].ts)
	bucket := out.series[strings.Join(labels(durationName+"_bucket", "4", "c1", "web", "a", "SPAN_KIND_SERVER", "STATUS_CODE_OK"), ",")]
	require.Equal(t, []float64{0, 2, 3, 3}, values(bucket))
}

func values(s []sample) []float64 {
	out := make([]float64, len(s))
	for i, x := range s {
		out[i] = x.v
	}
	return out
}

// Beyond the limit, new label sets of a cluster are counted in its
// overflow series; label sets it already has keep counting; another
// cluster is not affected.
func TestOverflow(t *testing.T) {
	out := &promFake{}
	s, _, _ := newTestSink(t, out, 2)
	ctx := context.Background()
	srv, ok := tracepb.Span_SPAN_KIND_SERVER, tracepb.Status_STATUS_CODE_OK
	require.NoError(t, s.Write(ctx, []ingester.Record{
		spanRecord(t, 0, 0, "c1", "web", span("a", srv, ok, 1), span("b", srv, ok, 1)),
		spanRecord(t, 0, 1, "c2", "web", span("a", srv, ok, 1)),
	}))
	require.NoError(t, s.Write(ctx, []ingester.Record{
		spanRecord(t, 0, 2, "c1", "web", span("c", srv, ok, 1), span("d", srv, ok, 20), span("d", srv, ok, 20), span("a", srv, ok, 1)),
		spanRecord(t, 0, 3, "c2", "web", span("b", srv, ok, 1)),
	}))
	v, _ := out.last(labels(callsName, "", "c1", "web", "a", "SPAN_KIND_SERVER", "STATUS_CODE_OK")...)
	require.Equal(t, 2.0, v)
	v, found := out.last(overflowLabels(callsName, "", "c1")...)
	require.True(t, found)
	require.Equal(t, 3.0, v, "c and d folded into the overflow series")
	v, _ = out.last(overflowLabels(durationName+"_bucket", "10", "c1")...)
	require.Equal(t, 1.0, v)
	v, _ = out.last(overflowLabels(durationName+"_bucket", "50", "c1")...)
	require.Equal(t, 3.0, v)
	_, found = out.last(labels(callsName, "", "c1", "web", "c", "SPAN_KIND_SERVER", "STATUS_CODE_OK")...)
	require.False(t, found)
	v, _ = out.last(labels(callsName, "", "c2", "web", "b", "SPAN_KIND_SERVER", "STATUS_CODE_OK")...)
	require.Equal(t, 1.0, v, "c2 has its own limit")
	_, found = out.last(overflowLabels(callsName, "", "c2")...)
	require.False(t, found)
	require.Equal(t, 3.0, testutil.ToFloat64(s.m.overflow.WithLabelValues("c1")))
	require.Equal(t, 3.0, testutil.ToFloat64(s.m.active.WithLabelValues("c1")), "two label sets and the overflow series")
}

// A label set without spans for the idle timeout is no longer written and
// leaves memory; when it comes back it starts from 0 (a reset).
func TestExpiry(t *testing.T) {
	out := &promFake{}
	s, clk, _ := newTestSink(t, out, 0)
	ctx := context.Background()
	srv, ok := tracepb.Span_SPAN_KIND_SERVER, tracepb.Status_STATUS_CODE_OK
	require.NoError(t, s.Write(ctx, []ingester.Record{spanRecord(t, 0, 0, "c1", "web", span("a", srv, ok, 1), span("a", srv, ok, 1), span("b", srv, ok, 1))}))
	clk.t = clk.t.Add(4 * time.Minute)
	require.NoError(t, s.Write(ctx, []ingester.Record{spanRecord(t, 0, 1, "c1", "web", span("b", srv, ok, 1))}))
	clk.t = clk.t.Add(2 * time.Minute) // a: 6 min idle, b: 2 min
	require.NoError(t, s.Write(ctx, []ingester.Record{spanRecord(t, 0, 2, "c1", "web", span("b", srv, ok, 1))}))
	a := strings.Join(labels(callsName, "", "c1", "web", "a", "SPAN_KIND_SERVER", "STATUS_CODE_OK"), ",")
	require.Equal(t, []float64{0, 2, 2}, values(out.series[a]), "not written after it expired")
	require.Equal(t, 1.0, testutil.ToFloat64(s.m.expired.WithLabelValues("c1")))
	require.Equal(t, 1.0, testutil.ToFloat64(s.m.active.WithLabelValues("c1")))

	clk.t = clk.t.Add(time.Minute)
	require.NoError(t, s.Write(ctx, []ingester.Record{spanRecord(t, 0, 3, "c1", "web", span("a", srv, ok, 1))}))
	require.Equal(t, []float64{0, 2, 2, 0, 1}, values(out.series[a]), "back from 0")

	// A partition this process no longer writes is swept: its series
	// leave memory too.
	require.NoError(t, s.Write(ctx, []ingester.Record{spanRecord(t, 1, 0, "c9", "web", span("a", srv, ok, 1))}))
	clk.t = clk.t.Add(6 * time.Minute)
	require.NoError(t, s.Write(ctx, []ingester.Record{spanRecord(t, 0, 4, "c1", "web", span("a", srv, ok, 1))}))
	require.Equal(t, 0.0, testutil.ToFloat64(s.m.active.WithLabelValues("c9")))
	s.mu.Lock()
	_, held := s.parts[partKey{partition: 1}]
	s.mu.Unlock()
	require.False(t, held, "state of the idle partition removed")
}

// A write that fails is retried with the same records: the counts do not
// include them twice. A write that failed but may have been stored is
// never undercut: when the batch is then written in halves, the first
// half's value does not go below it (no false reset).
func TestFailedWrites(t *testing.T) {
	ctx := context.Background()
	srv, ok := tracepb.Span_SPAN_KIND_SERVER, tracepb.Status_STATUS_CODE_OK
	recs := []ingester.Record{
		spanRecord(t, 0, 0, "c1", "web", span("a", srv, ok, 1), span("a", srv, ok, 1)),
		spanRecord(t, 0, 1, "c1", "web", span("a", srv, ok, 1)),
	}
	a := strings.Join(labels(callsName, "", "c1", "web", "a", "SPAN_KIND_SERVER", "STATUS_CODE_OK"), ",")

	t.Run("retry", func(t *testing.T) {
		out := &promFake{fail: func(n int) error {
			if n == 0 || n == 2 { // the zero write, then the value write, fail once each
				return errors.New("503")
			}
			return nil
		}}
		s, _, _ := newTestSink(t, out, 0)
		for range 4 {
			if s.Write(ctx, recs) == nil {
				break
			}
		}
		require.Equal(t, []float64{0, 0, 3, 3}, values(out.series[a]))
		require.Equal(t, 3.0, testutil.ToFloat64(s.m.spans.WithLabelValues("c1")), "counted once")
	})
	t.Run("split after failure", func(t *testing.T) {
		out := &promFake{fail: func(n int) error {
			if n == 1 {
				return errors.New("timeout")
			}
			return nil
		}}
		s, _, _ := newTestSink(t, out, 0)
		require.Error(t, s.Write(ctx, recs))
		require.NoError(t, s.Write(ctx, recs[:1]))
		require.NoError(t, s.Write(ctx, recs[1:]))
		require.Equal(t, []float64{0, 3, 3, 3}, values(out.series[a]))
	})
}

// A record that does not decode is refused for good (dead-lettered), and
// nothing of its batch is counted.
func TestBadRecord(t *testing.T) {
	out := &promFake{}
	s, _, _ := newTestSink(t, out, 0)
	good := spanRecord(t, 0, 0, "c1", "web", span("a", tracepb.Span_SPAN_KIND_SERVER, tracepb.Status_STATUS_CODE_OK, 1))
	for name, bad := range map[string][]byte{
		"not snappy":     []byte("\xff\xff\xff\xff\xff"),
		"not a protobuf": snappy.Encode(nil, []byte("\x0a\x05nope!")),
	} {
		t.Run(name, func(t *testing.T) {
			r := good
			r.Offset, r.Value = 1, bad
			err := s.Write(context.Background(), []ingester.Record{good, r})
			require.True(t, ingester.IsPermanent(err), "%v", err)
			require.ErrorContains(t, err, "record 1")
			require.Empty(t, out.series)
		})
	}
}

// FuzzWrite feeds arbitrary record values through the whole sink:
// decode, aggregation and the remote-write requests. A value that decodes
// must give sorted labels (promFake checks) and as many calls as spans.
func FuzzWrite(f *testing.F) {
	rec := spanRecord(f, 0, 0, "c1", "web", span("a", tracepb.Span_SPAN_KIND_SERVER, tracepb.Status_STATUS_CODE_ERROR, 12),
		span("ü\u2028", tracepb.Span_SpanKind(9), tracepb.Status_StatusCode(7), 20_000))
	raw, _ := snappy.Decode(nil, rec.Value)
	f.Add(raw)
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, raw []byte) {
		out := &promFake{}
		s, _, _ := newTestSink(t, out, 3)
		r := rec
		r.Value = snappy.Encode(nil, raw)
		if err := s.Write(context.Background(), []ingester.Record{r}); err != nil {
			if !ingester.IsPermanent(err) {
				t.Fatalf("a bad record must be refused for good: %v", err)
			}
			return
		}
		spans := 0.0
		for _, c := range []string{"c1", ""} {
			spans += testutil.ToFloat64(s.m.spans.WithLabelValues(c))
		}
		calls := 0.0
		for id, samples := range out.series {
			if strings.HasPrefix(id, "__name__="+callsName+",") {
				calls += samples[len(samples)-1].v
			}
		}
		if calls != spans {
			t.Fatalf("%v calls written for %v spans", calls, spans)
		}
	})
}

// syncFake is a promFake safe for concurrent writes.
type syncFake struct {
	mu sync.Mutex
	promFake
}

func (f *syncFake) Write(ctx context.Context, recs []ingester.Record) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.promFake.Write(ctx, recs)
}

// Partitions written concurrently while idle series are expired and swept
// all the time (run with -race): every series still has strictly
// increasing timestamps, starts at 0, and only ever drops to 0 (a reset
// after expiry), never to another value.
func TestConcurrentPartitions(t *testing.T) {
	out := &syncFake{}
	reg := prometheus.NewRegistry()
	cfg := Config{IngesterID: "i1", SeriesIdleTimeout: time.Millisecond, MaxDecodedBytes: 1 << 20}
	cfg.Consumer.BatchMaxDelay = time.Millisecond
	s := New(cfg, out, reg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	var wg sync.WaitGroup
	for part := range int32(4) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 50 {
				rec := spanRecord(t, part, int64(i), fmt.Sprintf("c%d", part%2), "web",
					span(fmt.Sprintf("op-%d", i%3), tracepb.Span_SPAN_KIND_SERVER, tracepb.Status_STATUS_CODE_OK, 1))
				if err := s.Write(context.Background(), []ingester.Record{rec}); err != nil {
					t.Error(err)
					return
				}
				if i%10 == 0 {
					time.Sleep(2 * time.Millisecond)
				}
			}
		}()
	}
	wg.Wait()
	require.NotEmpty(t, out.series)
	for id, samples := range out.series {
		require.Zero(t, samples[0].v, "%s starts at 0", id)
		for i := 1; i < len(samples); i++ {
			require.Greater(t, samples[i].ts, samples[i-1].ts, id)
			if samples[i].v < samples[i-1].v {
				require.Zero(t, samples[i].v, "%s: only a reset to 0 may go down", id)
			}
		}
	}
}
