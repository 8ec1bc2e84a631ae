package integration

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sync"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/golang/snappy"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	resourcepb "go.opentelemetry.io/proto/otlp/resource/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/proto"

	"github.com/tributary-io/tributary/internal/testenv"
	"github.com/tributary-io/tributary/pkg/record"
	recordpb "github.com/tributary-io/tributary/proto/record/v1"
)

// labelSet is what a RED series is per cluster.
type labelSet struct {
	service, name string
	kind          tracepb.Span_SpanKind
	status        tracepb.Status_StatusCode
}

var baseSets = []labelSet{
	{"frontend", "GET /", tracepb.Span_SPAN_KIND_SERVER, tracepb.Status_STATUS_CODE_UNSET},
	{"frontend", "GET /", tracepb.Span_SPAN_KIND_SERVER, tracepb.Status_STATUS_CODE_ERROR},
	{"frontend", "cart.Get", tracepb.Span_SPAN_KIND_CLIENT, tracepb.Status_STATUS_CODE_OK},
	{"cart", "cart.Get", tracepb.Span_SPAN_KIND_SERVER, tracepb.Status_STATUS_CODE_OK},
	{"cart", "redis GET", tracepb.Span_SPAN_KIND_CLIENT, tracepb.Status_STATUS_CODE_UNSET},
	{"cart", "publish", tracepb.Span_SPAN_KIND_PRODUCER, tracepb.Status_STATUS_CODE_UNSET},
}

// spanDurations (ms) cover every bucket of the connector's histogram,
// bounds included.
var spanDurations = []float64{0.5, 2, 3, 7, 9.5, 40, 80, 150, 300, 700, 950, 1200, 1400, 1800, 4000, 8000, 12000, 15000, 16000}

var spanBounds = []float64{2, 4, 6, 8, 10, 50, 100, 200, 400, 800, 1000, 1400, 2000, 5000, 10_000, 15_000, math.Inf(1)}

// spanTally is what was produced for one cluster.
type spanTally struct {
	calls   map[labelSet]int
	buckets []int // cumulative, per spanBounds
	sum     float64
	total   int
}

func newSpanTally() *spanTally {
	return &spanTally{calls: map[labelSet]int{}, buckets: make([]int, len(spanBounds))}
}

func (s *spanTally) add(ls labelSet, ms float64) {
	s.calls[ls]++
	for i, b := range spanBounds {
		if ms <= b {
			s.buckets[i]++
		}
	}
	s.sum += ms
	s.total++
}

// spanProducer writes span records of the contract straight to Kafka:
// key = cluster, envelope headers, value = snappy ExportTraceServiceRequest
// of one cluster.
type spanProducer struct {
	t    *testing.T
	prod sarama.SyncProducer
	seq  uint64

	mu     sync.Mutex
	tally  map[string]*spanTally
	spans  map[int32]map[int64]int // spans per partition and offset
	acked  map[int32]int64         // next offset per partition
	record int
}

func newSpanProducer(t *testing.T, kafkaAddr string) *spanProducer {
	cfg := sarama.NewConfig()
	cfg.Version = sarama.V2_8_0_0
	cfg.Producer.Return.Successes = true
	cfg.Producer.RequiredAcks = sarama.WaitForAll
	prod, err := sarama.NewSyncProducer([]string{kafkaAddr}, cfg)
	require.NoError(t, err)
	t.Cleanup(func() { prod.Close() })
	return &spanProducer{t: t, prod: prod, tally: map[string]*spanTally{}, spans: map[int32]map[int64]int{}, acked: map[int32]int64{}}
}

// send produces one record of cluster with one span per label set, with
// durations taken in turn from spanDurations.
func (p *spanProducer) send(cluster string, sets []labelSet) {
	p.t.Helper()
	now := uint64(time.Now().UnixNano())
	byService := map[string]*tracepb.ResourceSpans{}
	req := &coltracepb.ExportTraceServiceRequest{}
	p.mu.Lock()
	n := p.record
	p.record++
	p.mu.Unlock()
	durations := make([]float64, len(sets))
	for i, ls := range sets {
		rs := byService[ls.service]
		if rs == nil {
			rs = &tracepb.ResourceSpans{
				Resource: &resourcepb.Resource{Attributes: []*commonpb.KeyValue{
					{Key: "service.name", Value: &commonpb.AnyValue{Value: &commonpb.AnyValue_StringValue{StringValue: ls.service}}},
					{Key: "k8s.cluster.name", Value: &commonpb.AnyValue{Value: &commonpb.AnyValue_StringValue{StringValue: cluster}}},
				}},
				ScopeSpans: []*tracepb.ScopeSpans{{}},
			}
			byService[ls.service] = rs
			req.ResourceSpans = append(req.ResourceSpans, rs)
		}
		ms := spanDurations[(n*len(sets)+i)%len(spanDurations)]
		durations[i] = ms
		p.seq++
		id := make([]byte, 16)
		copy(id, fmt.Sprintf("%016x", p.seq))
		rs.ScopeSpans[0].Spans = append(rs.ScopeSpans[0].Spans, &tracepb.Span{
			TraceId: id, SpanId: id[8:], Name: ls.name, Kind: ls.kind,
			StartTimeUnixNano: now, EndTimeUnixNano: now + uint64(ms*1e6),
			Status: &tracepb.Status{Code: ls.status},
		})
	}
	raw, err := proto.Marshal(req)
	require.NoError(p.t, err)
	env := &recordpb.Envelope{SchemaVersion: record.SchemaVersion, Signal: recordpb.Signal_SIGNAL_SPANS, Cluster: cluster,
		ReceivedAtUnixNano: time.Now().UnixNano(), ContentType: record.ContentTypeTraces, ContentEncoding: record.EncodingSnappy,
		Items: uint64(len(sets))}
	part, off, err := p.prod.SendMessage(&sarama.ProducerMessage{Topic: "tributary.spans", Key: sarama.StringEncoder(cluster),
		Value: sarama.ByteEncoder(snappy.Encode(nil, raw)), Headers: record.Headers(env)})
	require.NoError(p.t, err)
	p.mu.Lock()
	defer p.mu.Unlock()
	tl := p.tally[cluster]
	if tl == nil {
		tl = newSpanTally()
		p.tally[cluster] = tl
	}
	for i, ls := range sets {
		tl.add(ls, durations[i])
	}
	if p.spans[part] == nil {
		p.spans[part] = map[int64]int{}
	}
	p.spans[part][off] = len(sets)
	p.acked[part] = max(p.acked[part], off+1)
}

// spansIn counts the spans of the records of partition with offsets in
// [from, to).
func (p *spanProducer) spansIn(partition int32, from, to int64) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for off, c := range p.spans[partition] {
		if off >= from && off < to {
			n += c
		}
	}
	return n
}

func (p *spanProducer) total() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for _, tl := range p.tally {
		n += tl.total
	}
	return n
}

// promValue runs an instant query whose answer is one number (no answer:
// 0).
func promValue(t *testing.T, prom *testenv.PrometheusServer, q string, at time.Time) float64 {
	t.Helper()
	res, err := prom.Query(q, at)
	require.NoError(t, err)
	require.LessOrEqual(t, len(res), 1, "%s: %v", q, res)
	if len(res) == 0 {
		return 0
	}
	return res[0].Value
}

func setSelector(cluster string, ls labelSet) string {
	return fmt.Sprintf(`{cluster=%q,service_name=%q,span_name=%q,span_kind=%q,status_code=%q}`,
		cluster, ls.service, ls.name, ls.kind.String(), ls.status.String())
}

// Known spans in, exact counts out of the real Prometheus: calls per label
// set, bucket totals, sum and count, under the connector's names; the
// per-cluster limit folds the label sets beyond it into the overflow
// series; every series names its partition and ingester.
func TestSpanMetricsExact(t *testing.T) {
	t.Parallel()
	k := testenv.Kafka(t, 2)
	prom := testenv.Prometheus(t, testenv.SinkConfig)
	p := newSpanProducer(t, k.Addr)
	extras := []labelSet{}
	for i := 1; i <= 5; i++ {
		extras = append(extras, labelSet{"zz-batch", fmt.Sprintf("job-%d", i), tracepb.Span_SPAN_KIND_INTERNAL, tracepb.Status_STATUS_CODE_UNSET})
	}
	for i := range 20 {
		p.send("red-a", baseSets)
		if i < 10 {
			p.send("red-b", baseSets)
		} else {
			// Beyond the limit of 8: job-1 and job-2 get series (the
			// first free places, in label order), job-3..5 overflow.
			p.send("red-b", append(append([]labelSet{}, baseSets...), extras...))
		}
	}
	ing := startIngester(t, k.Addr, prom.URL, "-spanmetrics.enabled", "-spanmetrics.flush-interval=500ms",
		"-spanmetrics.max-series-per-cluster=8", "-spanmetrics.ingester-id=ing-1")
	waitGroupAtEnd(t, k.Addr, "tributary-spanmetrics", "tributary.spans", 60*time.Second)
	requireNoDeadLetters(t, k.Addr)

	now := time.Now()
	for _, c := range []string{"red-a", "red-b"} {
		requireRED(t, prom, c, p.tally[c], now, func(ls labelSet) bool { return ls.service == "zz-batch" && ls.name > "job-2" })
		require.Equal(t, float64(p.tally[c].total), metricValue(t, ing.URL, "tributary_spanmetrics_spans_aggregated_total", map[string]string{"cluster": c}))
	}
	// red-b: 8 label sets and the overflow series with job-3..5.
	require.Equal(t, 8.0, promValue(t, prom, `count(traces_span_metrics_calls_total{cluster="red-b",otel_metric_overflow=""})`, now))
	require.Equal(t, 30.0, promValue(t, prom, `sum(traces_span_metrics_calls_total{cluster="red-b",otel_metric_overflow="true"})`, now))
	require.Equal(t, 30.0, metricValue(t, ing.URL, "tributary_spanmetrics_overflow_spans_total", map[string]string{"cluster": "red-b"}))
	require.Zero(t, promValue(t, prom, `count(traces_span_metrics_calls_total{cluster="red-a",otel_metric_overflow="true"})`, now))
	require.Equal(t, 6.0, promValue(t, prom, `count(traces_span_metrics_calls_total{cluster="red-a"})`, now))
	// Every series names its writer and partition.
	require.Zero(t, promValue(t, prom, `count(traces_span_metrics_calls_total{partition=""} or traces_span_metrics_calls_total{ingester!="ing-1"})`, now))
}

// requireRED checks the RED series of cluster in Prometheus at now against
// what was sent: calls of every label set (but those skip says are in the
// overflow series), and the cluster's bucket totals, sum and count.
func requireRED(t *testing.T, prom *testenv.PrometheusServer, cluster string, tl *spanTally, now time.Time, skip func(labelSet) bool) {
	t.Helper()
	for ls, n := range tl.calls {
		if skip == nil || !skip(ls) {
			require.Equal(t, float64(n), promValue(t, prom, "sum(traces_span_metrics_calls_total"+setSelector(cluster, ls)+")", now), "%s %+v", cluster, ls)
		}
	}
	for i, le := range []string{"2", "4", "6", "8", "10", "50", "100", "200", "400", "800", "1000", "1400", "2000", "5000", "10000", "15000", "+Inf"} {
		q := fmt.Sprintf(`sum(traces_span_metrics_duration_milliseconds_bucket{cluster=%q,le=%q})`, cluster, le)
		require.Equal(t, float64(tl.buckets[i]), promValue(t, prom, q, now), "%s le=%s", cluster, le)
	}
	require.InDelta(t, tl.sum, promValue(t, prom, fmt.Sprintf(`sum(traces_span_metrics_duration_milliseconds_sum{cluster=%q})`, cluster), now), 1e-6*tl.sum)
	require.Equal(t, float64(tl.total), promValue(t, prom, fmt.Sprintf(`sum(traces_span_metrics_duration_milliseconds_count{cluster=%q})`, cluster), now))
	require.Equal(t, float64(tl.total), promValue(t, prom, fmt.Sprintf(`sum(traces_span_metrics_calls_total{cluster=%q})`, cluster), now))
}

// The OpenTelemetry Go SDK sends spans of two clusters to the real
// gateway's POST /v1/traces; the RED metrics the ingester derives from
// the gateway's records are exact in Prometheus.
func TestSpanMetricsFromSDK(t *testing.T) {
	t.Parallel()
	k := testenv.Kafka(t, 1) // waitGroupAtEnd needs a record in every partition
	prom := testenv.Prometheus(t, testenv.SinkConfig)
	gw := startGateway(t, k.Addr)
	startIngester(t, k.Addr, prom.URL, "-spanmetrics.enabled", "-spanmetrics.flush-interval=500ms")

	ctx := context.Background()
	kinds := map[tracepb.Span_SpanKind]trace.SpanKind{
		tracepb.Span_SPAN_KIND_SERVER: trace.SpanKindServer, tracepb.Span_SPAN_KIND_CLIENT: trace.SpanKindClient,
		tracepb.Span_SPAN_KIND_PRODUCER: trace.SpanKindProducer, tracepb.Span_SPAN_KIND_INTERNAL: trace.SpanKindInternal,
	}
	tallies := map[string]*spanTally{}
	t0 := time.Now().Add(-time.Minute)
	for _, c := range []string{"sdk-east", "sdk-west"} {
		tl := newSpanTally()
		tallies[c] = tl
		// A provider per service: the SDK puts service.name on the
		// resource.
		for _, svc := range []string{"frontend", "cart"} {
			exp, err := otlptracehttp.New(ctx, otlptracehttp.WithEndpointURL(gw.URL+"/v1/traces"))
			require.NoError(t, err)
			tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp), sdktrace.WithResource(resource.NewSchemaless(
				attribute.String("k8s.cluster.name", c), attribute.String("service.name", svc))))
			tr := tp.Tracer("spanmetrics-test")
			for i := range 60 {
				ls := baseSets[i%len(baseSets)]
				if ls.service != svc {
					continue
				}
				ms := spanDurations[i%len(spanDurations)]
				start := t0.Add(time.Duration(i) * time.Millisecond)
				_, sp := tr.Start(ctx, ls.name, trace.WithSpanKind(kinds[ls.kind]), trace.WithTimestamp(start))
				switch ls.status {
				case tracepb.Status_STATUS_CODE_ERROR:
					sp.SetStatus(codes.Error, "failed")
				case tracepb.Status_STATUS_CODE_OK:
					sp.SetStatus(codes.Ok, "")
				}
				sp.End(trace.WithTimestamp(start.Add(time.Duration(ms * float64(time.Millisecond)))))
				tl.add(ls, ms)
			}
			require.NoError(t, tp.ForceFlush(ctx))
			require.NoError(t, tp.Shutdown(ctx))
		}
	}
	waitGroupAtEnd(t, k.Addr, "tributary-spanmetrics", "tributary.spans", 60*time.Second)
	requireNoDeadLetters(t, k.Addr)
	now := time.Now()
	for c, tl := range tallies {
		require.Equal(t, 60, tl.total)
		requireRED(t, prom, c, tl, now, nil)
	}
}

// The ingester is killed (SIGKILL) mid-stream and restarted:
// sum(increase(traces_span_metrics_calls_total[...])) over the whole test
// is never less than the spans produced, and exceeds it by at most the
// spans of the records between the group's committed offset at the crash
// and the end of what Kafka held then: the batches the dead ingester had
// written but not yet committed, which the next one counts again.
func TestSpanMetricsCrashReplay(t *testing.T) {
	t.Parallel()
	start := time.Now()
	k := testenv.Kafka(t, 2, testenv.FastGroups()...)
	prom := testenv.Prometheus(t, testenv.SinkConfig)
	p := newSpanProducer(t, k.Addr)
	args := []string{"-spanmetrics.enabled", "-spanmetrics.flush-interval=300ms"}
	first := startIngester(t, k.Addr, prom.URL, args...)

	stop := make(chan struct{})
	done := p.sendUntil(stop, "crash-a", "crash-b")
	// Mid-stream: the first ingester has written counters and committed
	// offsets, and more spans keep coming.
	testenv.Eventually(t, 60*time.Second, func() error {
		if v := promValue(t, prom, `sum(traces_span_metrics_calls_total{cluster=~"crash-.*"})`, time.Now()); v < 100 {
			return fmt.Errorf("%v calls written so far", v)
		}
		committed, _, err := groupOffsets(t, k.Addr, "tributary-spanmetrics", "tributary.spans")
		if err != nil {
			return err
		}
		for _, off := range committed {
			if off > 0 {
				return nil
			}
		}
		return errors.New("no offset committed yet")
	})
	first.Kill()
	// What the dead ingester may have counted: records Kafka held when it
	// died (all acknowledged to the producer 200 ms later) from the
	// committed offset on.
	time.Sleep(200 * time.Millisecond)
	bound := 0
	p.mu.Lock()
	acked := map[int32]int64{}
	for part, next := range p.acked {
		acked[part] = next
	}
	p.mu.Unlock()
	committed, _, err := groupOffsets(t, k.Addr, "tributary-spanmetrics", "tributary.spans")
	require.NoError(t, err)
	t.Logf("committed offsets at the crash: %v; produced up to: %v", committed, acked)
	for part, next := range acked {
		bound += p.spansIn(part, max(committed[part], 0), next)
	}
	startIngester(t, k.Addr, prom.URL, args...)
	time.Sleep(3 * time.Second)
	close(stop)
	<-done
	waitGroupAtEnd(t, k.Addr, "tributary-spanmetrics", "tributary.spans", 90*time.Second)
	requireNoDeadLetters(t, k.Addr)

	got := countedCalls(t, prom, `cluster=~"crash-.*"`, time.Since(start))
	want := p.total()
	t.Logf("spans produced %d, sum(increase()) %.3f, replay bound %d", want, got, bound)
	require.GreaterOrEqual(t, got, float64(want), "a span was lost")
	require.LessOrEqual(t, got, float64(want+bound), "more counted twice than the records between the commit and the crash")
	// The restart met the counters: the same series went back to 0.
	require.Positive(t, promValue(t, prom, fmt.Sprintf(`sum(resets(traces_span_metrics_calls_total{cluster=~"crash-.*"}[%ds]))`, int(time.Since(start).Seconds())+60), time.Now()))
}

// sendUntil sends a record every 20 ms, for each cluster in turn, until
// stop is closed; the returned channel is closed when it has stopped.
func (p *spanProducer) sendUntil(stop <-chan struct{}, clusters ...string) <-chan struct{} {
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
			p.send(clusters[i%len(clusters)], baseSets)
		}
	}()
	return done
}

// countedCalls is sum(increase(traces_span_metrics_calls_total{sel}))
// over the last since (plus a minute), taken per writer (partition and
// ingester) at the time of the writer's last sample: every series of a
// writer has a sample then, so increase() does not extrapolate past the
// end, nor before the start (each series begins with 0).
func countedCalls(t *testing.T, prom *testenv.PrometheusServer, sel string, since time.Duration) float64 {
	t.Helper()
	window := fmt.Sprintf("%ds", int(since.Seconds())+60)
	res, err := prom.Query(`max by (partition, ingester) (timestamp(traces_span_metrics_calls_total{`+sel+`}))`, time.Now())
	require.NoError(t, err)
	require.NotEmpty(t, res)
	got := 0.0
	for _, r := range res {
		at := time.UnixMilli(int64(math.Round(r.Value * 1000)))
		got += promValue(t, prom, fmt.Sprintf(`sum(increase(traces_span_metrics_calls_total{%s,partition=%q,ingester=%q}[%s]))`,
			sel, r.Metric["partition"], r.Metric["ingester"], window), at)
	}
	return got
}

// Two ingesters share the partitions; one is stopped (SIGTERM) mid-stream
// and the other takes its partition over: the handover writes and commits
// before it gives the partition up, so sum(increase()) over the test is
// exactly the spans produced.
func TestSpanMetricsRebalance(t *testing.T) {
	t.Parallel()
	start := time.Now()
	k := testenv.Kafka(t, 2, testenv.FastGroups()...)
	prom := testenv.Prometheus(t, testenv.SinkConfig)
	p := newSpanProducer(t, k.Addr)
	args := []string{"-spanmetrics.enabled", "-spanmetrics.flush-interval=300ms"}
	a := startIngester(t, k.Addr, prom.URL, append(args, "-spanmetrics.ingester-id=a")...)
	startIngester(t, k.Addr, prom.URL, append(args, "-spanmetrics.ingester-id=b")...)
	stop := make(chan struct{})
	clusters := []string{"rb-1", "rb-2", "rb-3", "rb-4", "rb-5", "rb-6", "rb-7", "rb-8"}
	done := p.sendUntil(stop, clusters...)
	// Both write: each holds a partition.
	testenv.Eventually(t, 60*time.Second, func() error {
		res, err := prom.Query(`count by (ingester) (traces_span_metrics_calls_total{cluster=~"rb-.*"})`, time.Now())
		if err != nil || len(res) < 2 {
			return fmt.Errorf("writers so far: %v %v", res, err)
		}
		return nil
	})
	require.NoError(t, a.Stop(30*time.Second), "graceful stop must exit 0")
	time.Sleep(2 * time.Second)
	close(stop)
	<-done
	waitGroupAtEnd(t, k.Addr, "tributary-spanmetrics", "tributary.spans", 90*time.Second)
	requireNoDeadLetters(t, k.Addr)
	// A partition moved: it has series of both writers.
	moved, err := prom.Query(`count by (partition) (count by (partition, ingester) (traces_span_metrics_calls_total{cluster=~"rb-.*"})) == 2`, time.Now())
	require.NoError(t, err)
	require.NotEmpty(t, moved, "no partition changed hands")
	got := countedCalls(t, prom, `cluster=~"rb-.*"`, time.Since(start))
	require.Equal(t, float64(p.total()), got)
}
