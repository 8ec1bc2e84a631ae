package gateway

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kmsg"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/plog"
	"go.opentelemetry.io/collector/pdata/plog/plogotlp"
	"go.opentelemetry.io/collector/pdata/pmetric"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/grpc"
	grpccodes "google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	grpcstatus "google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/tributary-io/tributary/internal/testenv"
)

// kept is a copy of what the list holds, oldest first.
func (f *freeList[T]) kept() []T {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]T(nil), f.items...)
}

// holdProduce makes the broker hold the first produce request carrying
// topic until release is called, then write it. held is closed when the
// request arrives. The producer keeps one request in flight, so the
// records of later calls wait behind it.
func holdProduce(t *testing.T, k *testenv.KafkaCluster, topic string) (held <-chan struct{}, release func()) {
	arrived, released := make(chan struct{}), make(chan struct{})
	var once sync.Once
	release = func() { once.Do(func() { close(released) }) }
	t.Cleanup(release)
	var seen atomic.Bool
	k.ControlKey(int16(kmsg.Produce), func(req kmsg.Request) (kmsg.Response, error, bool) {
		if !carries(req, topic) || seen.Swap(true) {
			return nil, nil, false
		}
		close(arrived)
		k.SleepControl(func() { <-released }) // other connections are served meanwhile
		return nil, nil, false                // then the broker writes it
	})
	return arrived, release
}

// countProduce counts the produce requests carrying topic, and lets the
// broker answer them.
func countProduce(k *testenv.KafkaCluster, topic string) *atomic.Int32 {
	var n atomic.Int32
	k.ControlKey(int16(kmsg.Produce), func(req kmsg.Request) (kmsg.Response, error, bool) {
		if carries(req, topic) {
			n.Add(1)
		}
		return nil, nil, false
	})
	return &n
}

func carries(req kmsg.Request, topic string) bool {
	for _, t := range req.(*kmsg.ProduceRequest).Topics {
		if t.Topic == topic {
			return true
		}
	}
	return false
}

// rawExport calls an OTLP Export method with body as the request bytes.
func rawExport(ctx context.Context, conn *grpc.ClientConn, method string, body []byte) error {
	var out []byte
	return conn.Invoke(ctx, method, &body, &out, grpc.ForceCodec(rawCodec{}))
}

// reuseLinger is how long the producer keeps records before it encodes
// them into a produce request (-kafka.linger) in
// exportAcrossBufferReuse: the time for request a's handler to return and
// request b to be decoded, with room for a loaded machine.
const reuseLinger = 1500 * time.Millisecond

// exportAcrossBufferReuse sends request a over gRPC into a body buffer
// the test planted, and hangs up once the handler has handed a's records
// to the producer: the handler returns the buffer while the producer
// still holds the records, unencoded for reuseLinger. Request b, larger
// and different, is then decoded into that same buffer (asserted), and
// a's and b's records go out in one produce request (asserted): a's were
// encoded after b overwrote the buffer. The buffer's capacity is len(b),
// so whatever part of it a record of a might point into, b overwrote. It
// returns once both records are in topic.
func (f *fixture) exportAcrossBufferReuse(t *testing.T, signal, method, topic string, a, b []byte) {
	t.Helper()
	require.Greater(t, len(b), 3*len(a), "b must cover a and any copy of it in the buffer's spare room")
	require.Equal(t, reuseLinger, f.gw.cfg.Producer.Linger)
	conn, err := grpc.NewClient(f.serveOTLPGRPC(t), grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	t.Cleanup(func() { conn.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	produced := countProduce(f.kafka, topic)
	decoded := func() float64 { return testutil.ToFloat64(f.gw.metrics.bytes.WithLabelValues(signal)) }

	require.Empty(t, f.gw.bodies.kept())
	planted := make([]byte, 0, len(b))
	f.gw.bodies.put(planted)

	ctxA, hangUp := context.WithCancel(ctx)
	answeredA := make(chan error, 1)
	go func() { answeredA <- rawExport(ctxA, conn, method, a) }()
	testenv.Eventually(t, 10*time.Second, func() error {
		if decoded() == 0 {
			return errors.New("a not decoded yet")
		}
		return nil
	})
	// Parsing a few KiB and handing the records to the producer takes
	// well under a millisecond; hanging up before would leave a's records
	// unwritten, which the checks of the topic would catch.
	time.Sleep(100 * time.Millisecond)
	hangUp()
	require.Equal(t, grpccodes.Canceled, grpcstatus.Code(<-answeredA))
	// The handler stopped waiting for the acknowledgement and gave the
	// buffer back; the producer's records of a must not need it.
	testenv.Eventually(t, 10*time.Second, func() error {
		if n := len(f.gw.bodies.kept()); n != 1 {
			return fmt.Errorf("%d bodies kept, want a's buffer back", n)
		}
		return nil
	})
	require.NoError(t, rawExport(ctx, conn, method, b))
	require.Equal(t, float64(len(a)+len(b)), decoded())
	testenv.Eventually(t, 10*time.Second, func() error {
		if n := len(testenv.ReadTopic(t, f.kafka.Addr, topic)); n < 2 {
			return fmt.Errorf("%d records in %s, want a's and b's", n, topic)
		}
		return nil
	})
	require.Equal(t, int32(1), produced.Load(), "a's records were encoded with b's, after b was decoded")
	buf, ok := f.gw.bodies.get()
	require.True(t, ok)
	require.Same(t, &planted[:1][0], &buf[:1][0], "b was decoded into a's buffer")
	require.Equal(t, b, buf[:len(b)], "b overwrote a's buffer")
}

// A record produced from a gRPC request never points into the request's
// body buffer, which goes back to the free list when the handler returns:
// even when the handler returned before Kafka acknowledged (the client hung
// up) and the next request was decoded into the same buffer, the records
// of the first decode to the first request's spans, points and logs,
// exactly.
func TestOTLPGRPCRecordsOutliveBodyBuffer(t *testing.T) {
	t.Parallel()
	t.Run("spans", func(t *testing.T) {
		t.Parallel()
		f := newFixture(t, func(c *Config) { c.Producer.Linger = reuseLinger })
		spans := func(first, n int, name string) []*tracepb.Span {
			var out []*tracepb.Span
			for i := first; i < first+n; i++ {
				s := validSpan(byte(i))
				s.Name = fmt.Sprintf("%s %d", name, i)
				s.Attributes = []*commonpb.KeyValue{otlpString("request", strings.Repeat(name, 20))}
				out = append(out, s)
			}
			return out
		}
		sentA, sentB := spans(1, 4, "a"), spans(100, 16, "b")
		f.exportAcrossBufferReuse(t, "spans", "/"+traceService+"/Export", "tributary.spans", otlpRequestBody(t, "a", sentA...), otlpRequestBody(t, "b", sentB...))

		got, records := readSpans(t, f.kafka.Addr)
		require.Equal(t, 2, records)
		require.Len(t, got, len(sentA)+len(sentB))
		for cluster, sent := range map[string][]*tracepb.Span{"a": sentA, "b": sentB} {
			for _, want := range sent {
				r, ok := got[fmt.Sprintf("%x", want.SpanId)]
				require.True(t, ok, "span %q of %s missing", want.Name, cluster)
				require.Equal(t, cluster, r.cluster)
				require.True(t, proto.Equal(want, r.span), "span %q of %s: got %v", want.Name, cluster, r.span)
			}
		}
	})

	t.Run("metrics", func(t *testing.T) {
		t.Parallel()
		f := newFixture(t, func(c *Config) { c.Producer.Linger = reuseLinger })
		body := func(cluster string, n int) ([]byte, map[string][]float64) {
			md := pmetric.NewMetrics()
			sm := resourceMetrics(md, "k8s.cluster.name", cluster)
			want := map[string][]float64{}
			for i := 0; i < n; i++ {
				name := fmt.Sprintf("%s_requests_%d", cluster, i)
				sumMetric(sm, name, pmetric.AggregationTemporalityCumulative, map[string]string{"path": strings.Repeat(cluster, 40)}, float64(i), float64(i+1))
				want[fmt.Sprintf(`%s_total{cluster=%q,path=%q}`, name, cluster, strings.Repeat(cluster, 40))] = []float64{float64(i), float64(i + 1)}
			}
			return metricsBody(t, md), want
		}
		a, wantA := body("a", 4)
		b, wantB := body("b", 16)
		f.exportAcrossBufferReuse(t, "metrics", "/"+metricsService+"/Export", "tributary.metrics", a, b)

		require.Len(t, readMetrics(t, f), 2)
		values, keys := metricSeries(t, f)
		want := map[string][]float64{}
		for s, v := range wantA {
			want[s] = v
			require.Equal(t, "a", keys[s], s)
		}
		for s, v := range wantB {
			want[s] = v
			require.Equal(t, "b", keys[s], s)
		}
		require.Equal(t, want, values)
	})

	t.Run("logs", func(t *testing.T) {
		t.Parallel()
		f := newFixture(t, func(c *Config) { c.Producer.Linger = reuseLinger })
		now := time.Now().Truncate(time.Millisecond)
		body := func(cluster string, n int) ([]byte, []string) {
			ld := plog.NewLogs()
			rl := ld.ResourceLogs().AppendEmpty()
			rl.Resource().Attributes().PutStr("k8s.cluster.name", cluster)
			rl.Resource().Attributes().PutStr("service.name", cluster+"-svc")
			records := rl.ScopeLogs().AppendEmpty().LogRecords()
			var want []string
			for i := 0; i < n; i++ {
				lr := records.AppendEmpty()
				lr.SetTimestamp(pcommon.NewTimestampFromTime(now.Add(time.Duration(i) * time.Millisecond)))
				line := fmt.Sprintf("%s line %d %s", cluster, i, strings.Repeat(cluster, 40))
				lr.Body().SetStr(line)
				want = append(want, fmt.Sprintf("%s %d %s", cluster, now.Add(time.Duration(i)*time.Millisecond).UnixNano(), line))
			}
			raw, err := plogotlp.NewExportRequestFromLogs(ld).MarshalProto()
			require.NoError(t, err)
			return raw, want
		}
		a, wantA := body("a", 4)
		b, wantB := body("b", 16)
		f.exportAcrossBufferReuse(t, "logs", "/"+logsService+"/Export", "tributary.logs", a, b)

		var got []string
		for _, e := range readLogEntries(t, f) {
			require.Contains(t, e.labels, `service_name="`+e.key+`-svc"`)
			got = append(got, fmt.Sprintf("%s %d %s", e.key, e.ts.UnixNano(), e.line))
		}
		want := append(wantA, wantB...)
		sort.Strings(got)
		sort.Strings(want)
		require.Equal(t, want, got)
	})
}

// A gRPC body larger than any kept buffer is served (and not kept), and
// however many requests hold a buffer at once, the gateway keeps at most
// keptBodies of them afterwards.
func TestOTLPGRPCBodyBuffersBounded(t *testing.T) {
	t.Parallel()
	f := newFixture(t, nil)
	conn, err := grpc.NewClient(f.serveOTLPGRPC(t), grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	t.Cleanup(func() { conn.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	method := "/" + traceService + "/Export"

	// 1.3 MiB of spans: above maxKeptBody, and cut into several records.
	var sent []*tracepb.Span
	for i := 0; i < 650; i++ {
		s := validSpan(1)
		s.SpanId = []byte{1, 1, 1, 1, 1, 1, byte(i >> 8), byte(i)}
		s.Attributes = []*commonpb.KeyValue{otlpString("payload", strings.Repeat(fmt.Sprint(i%10), 2<<10))}
		sent = append(sent, s)
	}
	big := otlpRequestBody(t, "a", sent...)
	require.Greater(t, len(big), maxKeptBody)
	f.gw.bodies.put(make([]byte, 0, 64<<10)) // too small for it
	require.NoError(t, rawExport(ctx, conn, method, big))
	got, records := readSpans(t, f.kafka.Addr)
	require.Greater(t, records, 1)
	require.Len(t, got, len(sent))
	for _, want := range sent {
		require.True(t, proto.Equal(want, got[fmt.Sprintf("%x", want.SpanId)].span), "span %x", want.SpanId)
	}
	for _, b := range f.gw.bodies.kept() {
		require.LessOrEqual(t, cap(b), maxKeptBody, "a body buffer above maxKeptBody was kept")
	}

	// More requests than kept buffers, each holding its own buffer until
	// Kafka acknowledges: the broker holds the first produce, and the rest
	// queue behind it in the producer.
	held, release := holdProduce(t, f.kafka, "tributary.spans")
	const n = keptBodies + 8
	small := otlpRequestBody(t, "b", validSpan(2))
	before := testutil.ToFloat64(f.gw.metrics.bytes.WithLabelValues("spans"))
	answered := make(chan error, n)
	for i := 0; i < n; i++ {
		go func() { answered <- rawExport(ctx, conn, method, small) }()
	}
	select {
	case <-held:
	case <-ctx.Done():
		t.Fatal("no produce request reached the broker")
	}
	// Each handler counts its bytes once its body is decoded.
	testenv.Eventually(t, 10*time.Second, func() error {
		if got := testutil.ToFloat64(f.gw.metrics.bytes.WithLabelValues("spans")) - before; got != float64(n*len(small)) {
			return fmt.Errorf("%v of %d bytes decoded", got, n*len(small))
		}
		return nil
	})
	require.Empty(t, f.gw.bodies.kept(), "every buffer is in use")
	release()
	for i := 0; i < n; i++ {
		require.NoError(t, <-answered)
	}
	require.Equal(t, keptBodies, len(f.gw.bodies.kept()), "%d buffers given back", n)
}
