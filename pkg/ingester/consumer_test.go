package ingester

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/tributary-io/tributary/internal/testenv"
	"github.com/tributary-io/tributary/pkg/kafka"
	"github.com/tributary-io/tributary/pkg/record"
	recordpb "github.com/tributary-io/tributary/proto/record/v1"
)

const (
	testTopic = "tributary.metrics"
	testDLQ   = "tributary.dlq"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

func testKafka(addr string) kafka.Config {
	return kafka.Config{Brokers: addr, ClientID: "test", Version: "2.8.0", Timeout: 2 * time.Second}
}

func testConfig(group string) Config {
	return Config{
		Topic: testTopic, Group: group, DLQTopic: testDLQ,
		BatchMaxBytes: 1 << 20, BatchMaxRecords: 10, BatchMaxDelay: 20 * time.Millisecond,
		Backoff:      Backoff{Min: 10 * time.Millisecond, Max: 200 * time.Millisecond},
		FlushTimeout: 3 * time.Second, FetchBytes: 1 << 20, BufferedRecords: 16,
		PoisonMaxAttempts: 3,
	}
}

// produce writes n records with a valid metrics envelope to partition p.
// Each value is "p/i".
func produce(t *testing.T, addr string, p int32, n int) {
	t.Helper()
	sc := sarama.NewConfig()
	sc.Version = sarama.V2_8_0_0
	sc.Producer.Return.Successes = true
	sc.Producer.Partitioner = sarama.NewManualPartitioner
	sp, err := sarama.NewSyncProducer([]string{addr}, sc)
	require.NoError(t, err)
	defer sp.Close()
	var msgs []*sarama.ProducerMessage
	for i := range n {
		env := &recordpb.Envelope{
			SchemaVersion: record.SchemaVersion, Signal: recordpb.Signal_SIGNAL_METRICS, Cluster: "c",
			ReceivedAtUnixNano: time.Now().UnixNano(), ContentType: "application/x-protobuf",
			ContentEncoding: record.EncodingSnappy, Items: 1,
		}
		msgs = append(msgs, &sarama.ProducerMessage{Topic: testTopic, Partition: p,
			Value: sarama.StringEncoder(fmt.Sprintf("%d/%d", p, i)), Headers: record.Headers(env)})
	}
	require.NoError(t, sp.SendMessages(msgs))
}

// recorder is a sink that keeps what it acknowledged, per partition in
// write order, and fails writes as fail says.
type recorder struct {
	mu      sync.Mutex
	written map[int32][]int64
	fail    func(recs []Record) error // nil: accept
	probe   func() error              // nil: no Prober
}

func newRecorder() *recorder { return &recorder{written: map[int32][]int64{}} }

func (r *recorder) Write(_ context.Context, recs []Record) error {
	r.mu.Lock()
	fail := r.fail
	r.mu.Unlock()
	if fail != nil {
		if err := fail(recs); err != nil {
			return err
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, rec := range recs {
		r.written[rec.Partition] = append(r.written[rec.Partition], rec.Offset)
	}
	return nil
}

func (r *recorder) setFail(f func(recs []Record) error) {
	r.mu.Lock()
	r.fail = f
	r.mu.Unlock()
}

func (r *recorder) offsets(p int32) []int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.written[p])
}

type probingRecorder struct{ *recorder }

func (r probingRecorder) Probe(context.Context) error { return r.probe() }

// dlqFunc is a DeadLetters of a function.
type dlqFunc func(ctx context.Context, msgs []*sarama.ProducerMessage) error

func (f dlqFunc) Produce(ctx context.Context, msgs []*sarama.ProducerMessage) error {
	return f(ctx, msgs)
}

func dlqProducer(t *testing.T, addr string) *kafka.Producer {
	t.Helper()
	p, err := kafka.NewProducer(testKafka(addr), kafka.ProducerConfig{AckTimeout: 5 * time.Second, MaxMessageBytes: 1 << 20},
		"test", prometheus.NewRegistry(), quiet)
	require.NoError(t, err)
	t.Cleanup(func() { p.Close() })
	return p
}

type running struct {
	*Consumer
	m      *Metrics
	cancel context.CancelFunc
	done   chan struct{}
}

// stop cancels the consumer and waits until it left the group.
func (r *running) stop() {
	r.cancel()
	<-r.done
}

func start(t *testing.T, addr string, cfg Config, sink Sink, dlq DeadLetters, maxLag time.Duration) *running {
	t.Helper()
	m := NewMetrics(prometheus.NewRegistry())
	c, err := NewConsumer(Params{Config: cfg, Kafka: testKafka(addr), Name: "test", Signal: recordpb.Signal_SIGNAL_METRICS,
		Sink: sink, DLQ: dlq, Metrics: m, Log: quiet, ReadyMaxLag: maxLag})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{Consumer: c, m: m, cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(r.done)
		_ = c.Run(ctx)
	}()
	t.Cleanup(r.stop)
	return r
}

func seq(from, to int64) []int64 {
	var out []int64
	for o := from; o < to; o++ {
		out = append(out, o)
	}
	return out
}

// committed is the group's committed offset of partition p (-1 if none).
func committed(t *testing.T, addr, group string, p int32) int64 {
	t.Helper()
	sc := sarama.NewConfig()
	sc.Version = sarama.V2_8_0_0
	admin, err := sarama.NewClusterAdmin([]string{addr}, sc)
	require.NoError(t, err)
	defer admin.Close()
	resp, err := admin.ListConsumerGroupOffsets(group, map[string][]int32{testTopic: {p}})
	require.NoError(t, err)
	b := resp.GetBlock(testTopic, p)
	if b == nil {
		return -1
	}
	return b.Offset
}

func waitWritten(t *testing.T, sink *recorder, p int32, want []int64) {
	t.Helper()
	testenv.Eventually(t, 30*time.Second, func() error {
		if got := sink.offsets(p); !slices.Equal(got, want) {
			return fmt.Errorf("partition %d written %v, want %v", p, got, want)
		}
		return nil
	})
}

func waitCommitted(t *testing.T, addr, group string, p int32, want int64) {
	t.Helper()
	testenv.Eventually(t, 30*time.Second, func() error {
		if got := committed(t, addr, group, p); got != want {
			return fmt.Errorf("partition %d committed %d, want %d", p, got, want)
		}
		return nil
	})
}

// Commits fail for a while: the consumer goes on writing, and the offset
// is committed once Kafka accepts commits again; nothing is lost or
// skipped.
func TestConsumerCommitFailure(t *testing.T) {
	k := testenv.Kafka(t, 1)
	var mu sync.Mutex
	failing := true
	failed := 0
	k.ControlKey(int16(kmsg.OffsetCommit), func(req kmsg.Request) (kmsg.Response, error, bool) {
		k.KeepControl()
		mu.Lock()
		defer mu.Unlock()
		if !failing {
			return nil, nil, false
		}
		failed++
		r := req.(*kmsg.OffsetCommitRequest)
		resp := r.ResponseKind().(*kmsg.OffsetCommitResponse)
		resp.Version = r.Version
		for _, rt := range r.Topics {
			st := kmsg.NewOffsetCommitResponseTopic()
			st.Topic = rt.Topic
			for _, rp := range rt.Partitions {
				sp := kmsg.NewOffsetCommitResponseTopicPartition()
				sp.Partition = rp.Partition
				sp.ErrorCode = 15 // COORDINATOR_NOT_AVAILABLE
				st.Partitions = append(st.Partitions, sp)
			}
			resp.Topics = append(resp.Topics, st)
		}
		return resp, nil, true
	})
	produce(t, k.Addr, 0, 30)
	sink := newRecorder()
	start(t, k.Addr, testConfig("commit"), sink, dlqProducer(t, k.Addr), 0)
	waitWritten(t, sink, 0, seq(0, 30))
	testenv.Eventually(t, 10*time.Second, func() error {
		mu.Lock()
		defer mu.Unlock()
		if failed < 2 {
			return fmt.Errorf("%d commits refused", failed)
		}
		return nil
	})
	require.Equal(t, int64(-1), committed(t, k.Addr, "commit", 0), "no commit went through yet")
	mu.Lock()
	failing = false
	mu.Unlock()
	waitCommitted(t, k.Addr, "commit", 0, 30)

	// Written later, committed too.
	produce(t, k.Addr, 0, 10)
	waitWritten(t, sink, 0, seq(0, 40))
	waitCommitted(t, k.Addr, "commit", 0, 40)
}

// A second consumer joins while the first is writing a batch: every record
// is written, and a record is written twice only if it was in a batch in
// flight at the rebalance.
func TestConsumerRebalanceMidBatch(t *testing.T) {
	k := testenv.Kafka(t, 2)
	const n = 300 // 30 batches of 0.3 s: the second consumer joins mid-way
	produce(t, k.Addr, 0, n)
	produce(t, k.Addr, 1, n)
	slow := func([]Record) error { time.Sleep(300 * time.Millisecond); return nil }
	sinkA, sinkB := newRecorder(), newRecorder()
	sinkA.setFail(slow)
	sinkB.setFail(slow)
	cfg := testConfig("rebalance")
	dlq := dlqProducer(t, k.Addr)
	a := start(t, k.Addr, cfg, sinkA, dlq, 0)
	testenv.Eventually(t, 30*time.Second, func() error {
		if len(sinkA.offsets(0))+len(sinkA.offsets(1)) < 20 {
			return errors.New("the first consumer has not written 20 records yet")
		}
		return a.Ready()
	})
	b := start(t, k.Addr, cfg, sinkB, dlq, 0)
	union := func(p int32) []int64 { return append(sinkA.offsets(p), sinkB.offsets(p)...) }
	testenv.Eventually(t, 60*time.Second, func() error {
		for p := range int32(2) {
			got := union(p)
			for _, o := range seq(0, n) {
				if !slices.Contains(got, o) {
					return fmt.Errorf("partition %d: offset %d not written", p, o)
				}
			}
		}
		return nil
	})
	require.NotEmpty(t, append(sinkB.offsets(0), sinkB.offsets(1)...), "the second consumer was given a partition")
	for p := range int32(2) {
		// Each consumer writes in offset order; duplicates are at most
		// the batch in flight when the partition moved.
		require.True(t, slices.IsSorted(sinkA.offsets(p)), "%v", sinkA.offsets(p))
		require.True(t, slices.IsSorted(sinkB.offsets(p)), "%v", sinkB.offsets(p))
		got := union(p)
		require.LessOrEqual(t, len(got)-n, cfg.BatchMaxRecords, "partition %d written %v", p, got)
		waitCommitted(t, k.Addr, "rebalance", p, n)
	}
	testenv.Eventually(t, 30*time.Second, func() error {
		if err := a.Ready(); err != nil {
			return err
		}
		return b.Ready()
	})
}

// The dead-letter produce fails for a while: it is retried, the record is
// not marked (and nothing after it is written) before Kafka acknowledged
// the dead letter.
func TestConsumerDeadLetterProduceFails(t *testing.T) {
	k := testenv.Kafka(t, 1)
	produce(t, k.Addr, 0, 5) // 0-4
	sink := newRecorder()
	sink.setFail(func(recs []Record) error {
		for _, r := range recs {
			if r.Offset == 5 {
				return Permanent(errors.New("prometheus write refused: 400 Bad Request: out of bounds"))
			}
		}
		return nil
	})
	produce(t, k.Addr, 0, 5) // 5-9
	var mu sync.Mutex
	down, refused := true, 0
	k.ControlKey(int16(kmsg.Produce), func(req kmsg.Request) (kmsg.Response, error, bool) {
		k.KeepControl()
		mu.Lock()
		defer mu.Unlock()
		if !down {
			return nil, nil, false
		}
		resp := testenv.ProduceErrorResponse(req, testDLQ, 87) // INVALID_RECORD: not retried by sarama
		if resp == nil {
			return nil, nil, false
		}
		refused++
		return resp, nil, true
	})
	dlq := dlqProducer(t, k.Addr)
	cfg := testConfig("dlqfail")
	start(t, k.Addr, cfg, sink, dlq, 0)
	testenv.Eventually(t, 30*time.Second, func() error {
		mu.Lock()
		defer mu.Unlock()
		if refused < 3 {
			return fmt.Errorf("%d dead-letter produces refused", refused)
		}
		return nil
	})
	waitWritten(t, sink, 0, seq(0, 5))
	// The commit interval is 1 s: had offset 5 been marked, it would be
	// committed by now.
	time.Sleep(2 * time.Second)
	require.LessOrEqual(t, committed(t, k.Addr, "dlqfail", 0), int64(5), "offset 5 marked before its dead letter was acknowledged")
	require.Equal(t, seq(0, 5), sink.offsets(0), "records after the dead letter written before it was acknowledged")
	require.Empty(t, testenv.ReadTopic(t, k.Addr, testDLQ))

	mu.Lock()
	down = false
	mu.Unlock()
	waitWritten(t, sink, 0, append(seq(0, 5), seq(6, 10)...))
	waitCommitted(t, k.Addr, "dlqfail", 0, 10)
	dl := testenv.ReadTopic(t, k.Addr, testDLQ)
	require.Len(t, dl, 1)
	require.Equal(t, "5", testenv.Header(dl[0], record.HeaderDLQOffset))
	require.Contains(t, testenv.Header(dl[0], record.HeaderDLQReason), "out of bounds")
}

// A record the sink keeps failing with a retryable error while it is
// healthy (its probe succeeds) goes to the dead-letter topic with the
// sink's answer; the records around it are written in order.
func TestConsumerPoisonRecordWhileSinkHealthy(t *testing.T) {
	k := testenv.Kafka(t, 1)
	produce(t, k.Addr, 0, 25)
	sink := newRecorder()
	sink.probe = func() error { return nil }
	sink.setFail(func(recs []Record) error {
		for _, r := range recs {
			if r.Offset == 13 {
				return errors.New("prometheus write: 500 Internal Server Error: too old sample")
			}
		}
		return nil
	})
	cfg := testConfig("poison")
	start(t, k.Addr, cfg, probingRecorder{sink}, dlqProducer(t, k.Addr), 0)
	waitWritten(t, sink, 0, append(seq(0, 13), seq(14, 25)...))
	waitCommitted(t, k.Addr, "poison", 0, 25)
	dl := testenv.ReadTopic(t, k.Addr, testDLQ)
	require.Len(t, dl, 1)
	require.Equal(t, "13", testenv.Header(dl[0], record.HeaderDLQOffset))
	require.Contains(t, testenv.Header(dl[0], record.HeaderDLQReason), "too old sample")
	require.Equal(t, "0/13", string(dl[0].Value))
}

// The sink is down (every write fails, its probe fails) for a while:
// nothing is dead-lettered, everything is written once it is back, and the
// lag gauges report the outage while it lasts.
func TestConsumerSinkOutage(t *testing.T) {
	k := testenv.Kafka(t, 1)
	produce(t, k.Addr, 0, 20)
	sink := newRecorder()
	var mu sync.Mutex
	up := false
	sink.probe = func() error {
		mu.Lock()
		defer mu.Unlock()
		if !up {
			return errors.New("dial tcp: connection refused")
		}
		return nil
	}
	sink.setFail(func([]Record) error {
		if sink.probe() != nil {
			return errors.New("prometheus write: 503 Service Unavailable")
		}
		return nil
	})
	c := start(t, k.Addr, testConfig("outage"), probingRecorder{sink}, dlqProducer(t, k.Addr), time.Second)
	lagRecords := c.m.lag.WithLabelValues("test", "0")
	lagSeconds := c.m.lagSeconds.WithLabelValues("test", "0")
	testenv.Eventually(t, 30*time.Second, func() error {
		if r, s := testutil.ToFloat64(lagRecords), testutil.ToFloat64(lagSeconds); r != 20 || s < 2 {
			return fmt.Errorf("lag %v records, %v s while the sink is down", r, s)
		}
		return nil
	})
	require.Greater(t, testutil.ToFloat64(c.m.retries.WithLabelValues("test")), 10.0, "the outage met writes")
	err := c.Ready()
	require.ErrorContains(t, err, "partition 0 stuck")

	produce(t, k.Addr, 0, 5)
	mu.Lock()
	up = true
	mu.Unlock()
	waitWritten(t, sink, 0, seq(0, 25))
	waitCommitted(t, k.Addr, "outage", 0, 25)
	require.Empty(t, testenv.ReadTopic(t, k.Addr, testDLQ))
	testenv.Eventually(t, 10*time.Second, func() error {
		if r, s := testutil.ToFloat64(lagRecords), testutil.ToFloat64(lagSeconds); r != 0 || s != 0 {
			return fmt.Errorf("lag %v records, %v s after recovery", r, s)
		}
		return c.Ready()
	})
	c.stop()
	require.Equal(t, 0, testutil.CollectAndCount(c.m.lag), "lag gauges deleted when the partition is given up")
	require.Equal(t, 0, testutil.CollectAndCount(c.m.lagSeconds))
}

// Readiness: false before a partition is held, true after, false while
// Kafka does not answer, true again after.
func TestConsumerReadiness(t *testing.T) {
	k := testenv.Kafka(t, 1)
	produce(t, k.Addr, 0, 3)
	sink := newRecorder()
	// Hold the join: the consumer is connected but not in a session.
	joined := make(chan struct{})
	k.ControlKey(int16(kmsg.JoinGroup), func(kmsg.Request) (kmsg.Response, error, bool) {
		k.SleepControl(func() { <-joined })
		return nil, nil, false
	})
	c := start(t, k.Addr, testConfig("ready"), sink, dlqProducer(t, k.Addr), 0)
	testenv.Eventually(t, 10*time.Second, func() error {
		c.mu.Lock()
		defer c.mu.Unlock()
		if !c.connected {
			return errors.New("not connected yet")
		}
		return nil
	})
	time.Sleep(3 * time.Second) // a metadata check or two
	require.ErrorContains(t, c.Ready(), "not in a consumer group session")
	close(joined)
	waitWritten(t, sink, 0, seq(0, 3))
	testenv.Eventually(t, 10*time.Second, c.Ready)

	// Kafka stops answering: every request closes the connection.
	var mu sync.Mutex
	down := true
	k.Control(func(kmsg.Request) (kmsg.Response, error, bool) {
		k.KeepControl()
		mu.Lock()
		defer mu.Unlock()
		if down {
			return nil, errors.New("unreachable"), true
		}
		return nil, nil, false
	})
	start := time.Now()
	testenv.Eventually(t, 20*time.Second, func() error {
		if c.Ready() == nil {
			return errors.New("ready while kafka does not answer")
		}
		return nil
	})
	t.Logf("not ready %s after kafka went away: %v", time.Since(start), c.Ready())
	mu.Lock()
	down = false
	mu.Unlock()
	testenv.Eventually(t, 60*time.Second, c.Ready)
	produce(t, k.Addr, 0, 2)
	waitWritten(t, sink, 0, seq(0, 5))

	// The broker freezes (SIGSTOP): requests are read and never answered.
	thaw := make(chan struct{})
	var thawOnce sync.Once
	unfreeze := func() { thawOnce.Do(func() { close(thaw) }) }
	t.Cleanup(unfreeze) // before the consumer stops, on failure too
	k.Control(func(kmsg.Request) (kmsg.Response, error, bool) {
		k.KeepControl()
		select {
		case <-thaw:
			k.DropControl()
		default:
			k.SleepControl(func() { <-thaw })
		}
		return nil, nil, false
	})
	start = time.Now()
	testenv.Eventually(t, 20*time.Second, func() error {
		if c.Ready() == nil {
			return errors.New("ready while kafka is frozen")
		}
		return nil
	})
	t.Logf("not ready %s after kafka froze: %v", time.Since(start), c.Ready())
	unfreeze()
	testenv.Eventually(t, 60*time.Second, c.Ready)
	produce(t, k.Addr, 0, 2)
	waitWritten(t, sink, 0, seq(0, 7))
}

// The consumer starts before Kafka: it keeps retrying, is not ready and
// says why, and consumes once Kafka is there.
func TestConsumerStartsBeforeKafka(t *testing.T) {
	port := testenv.FreePort(t)
	addr := testenv.Addr(port)
	sink := newRecorder()
	lazy := NewLazyDeadLetters(func() (DeadLetterProducer, error) {
		p, err := kafka.NewProducer(testKafka(addr), kafka.ProducerConfig{AckTimeout: 5 * time.Second, MaxMessageBytes: 1 << 20},
			"test", prometheus.NewRegistry(), quiet)
		if err != nil {
			return nil, err
		}
		return p, nil
	}, quiet)
	ctx, cancel := context.WithCancel(context.Background())
	lazyDone := make(chan struct{})
	go func() { defer close(lazyDone); _ = lazy.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-lazyDone; lazy.Close() })
	c := start(t, addr, testConfig("early"), sink, lazy, 0)

	time.Sleep(3 * time.Second)
	require.ErrorContains(t, c.Ready(), "not reachable yet")
	require.ErrorContains(t, lazy.Ready(), "not reachable yet")
	require.Error(t, lazy.Produce(context.Background(), nil))

	k, err := kfake.NewCluster(kfake.Ports(port), kfake.SeedTopics(1, testTopic, testDLQ))
	require.NoError(t, err)
	t.Cleanup(k.Close)
	produce(t, addr, 0, 4)
	waitWritten(t, sink, 0, seq(0, 4))
	testenv.Eventually(t, 30*time.Second, func() error {
		if err := lazy.Ready(); err != nil {
			return err
		}
		return c.Ready()
	})
}
