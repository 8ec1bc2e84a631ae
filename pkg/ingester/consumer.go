package ingester

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/IBM/sarama"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/tributary-io/tributary/pkg/kafka"
	"github.com/tributary-io/tributary/pkg/record"
	recordpb "github.com/tributary-io/tributary/proto/record/v1"
)

// DeadLetters produces records to the dead-letter topic and returns once
// Kafka acknowledged them.
type DeadLetters interface {
	Produce(ctx context.Context, msgs []*sarama.ProducerMessage) error
}

// Consumer runs one sink's consumer group.
type Consumer struct {
	cfg     Config
	name    string
	signal  recordpb.Signal
	w       *writer
	dlq     DeadLetters
	sc      *sarama.Config
	brokers []string
	log     *slog.Logger
	warn    *logLimiter
	m       *Metrics
	maxLag  time.Duration
	// kafkaStale is how long without a successful metadata answer (or
	// since a consumer error) Kafka counts as unreachable.
	kafkaStale time.Duration

	mu         sync.Mutex
	connected  bool
	connectErr error // why the last connection attempt failed
	inSession  bool
	kafkaOK    time.Time // last successful metadata answer
	kafkaErrAt time.Time // last consumer or group error
	kafkaErr   error
	parts      map[int32]*partitionState

	// Per-record metrics, resolved once.
	consumed prometheus.Counter
	items    prometheus.Counter
	delay    prometheus.Observer
}

// partitionState is what readiness and the lag gauges read of a held
// partition while its claim writes.
type partitionState struct {
	// next is the offset the next mark will start from: every record
	// before it is settled. -1 until known.
	next atomic.Int64
	// oldest is the time (Unix ns) of the oldest record read and not yet
	// written, 0 when none is pending.
	oldest atomic.Int64
	// failing is set while a write of the partition is being retried.
	failing atomic.Bool
}

// Params are what a Consumer is built from.
type Params struct {
	Config  Config
	Kafka   kafka.Config
	Group   kafka.ConsumerConfig // balance strategy; the zero value is sticky
	Name    string               // sink name: "prometheus", "loki", ...
	Signal  recordpb.Signal      // records of another signal are dead-lettered
	Sink    Sink                 // if it implements Prober, the probe judges its health
	DLQ     DeadLetters
	Metrics *Metrics // from NewMetrics, once per process
	Log     *slog.Logger
	// ReadyMaxLag: a partition whose oldest unwritten record is older than
	// this while its write is failing makes the consumer not ready.
	ReadyMaxLag time.Duration
}

// DefaultReadyMaxLag is the default of -ready.max-lag: long enough that a
// sink restart or a short outage does not flip readiness (and with it a
// Kubernetes rollout), short enough that a stuck partition is seen before
// its backlog is hours deep.
const DefaultReadyMaxLag = 5 * time.Minute

// Intervals of the background work of a consumer.
const (
	lagEvery        = time.Second     // lag gauges while a partition is held
	kafkaCheckEvery = 2 * time.Second // metadata request proving Kafka answers
)

// connectBackoff paces connection attempts while Kafka is not reachable
// at start: quick at first (Kafka starting next to the ingester), capped
// so that a long outage costs a log line and a dial every 10 s.
var connectBackoff = Backoff{Min: 500 * time.Millisecond, Max: 10 * time.Second}

// NewConsumer connects to nothing yet; Run does.
func NewConsumer(p Params) (*Consumer, error) {
	sc, err := p.Kafka.Sarama()
	if err != nil {
		return nil, fmt.Errorf("consumer group %s: %w", p.Config.Group, err)
	}
	// Partitions are revoked (eagerly, sarama has no cooperative protocol)
	// before any moves, with every strategy: ConsumeClaim's final flush and
	// Cleanup's commit run before the next owner starts.
	if err := p.Group.Apply(sc); err != nil {
		return nil, err
	}
	sc.Consumer.Return.Errors = true
	// A new sink must not skip data: start from the oldest offset.
	sc.Consumer.Offsets.Initial = sarama.OffsetOldest
	sc.Consumer.Offsets.AutoCommit.Enable = true
	sc.Consumer.Offsets.AutoCommit.Interval = time.Second
	sc.Consumer.Group.Rebalance.Timeout = p.Config.FlushTimeout + 10*time.Second
	// A sink write may block a claim for long; that must not stall the
	// fetcher's other partitions.
	sc.Consumer.MaxProcessingTime = time.Second
	sc.Consumer.Fetch.Default = int32(min(p.Config.FetchBytes, math.MaxInt32))
	sc.ChannelBufferSize = p.Config.BufferedRecords
	if err := sc.Validate(); err != nil {
		return nil, fmt.Errorf("consumer group %s: %w", p.Config.Group, err)
	}
	m := p.Metrics
	log := p.Log.With("sink", p.Name, "group", p.Config.Group)
	c := &Consumer{
		cfg: p.Config, name: p.Name, signal: p.Signal, dlq: p.DLQ, sc: sc, brokers: p.Kafka.BrokerList(),
		log: log, warn: newLogLimiter(log, logEvery), m: m,
		maxLag:     p.ReadyMaxLag,
		kafkaStale: p.Kafka.Timeout + 2*kafkaCheckEvery,
		parts:      map[int32]*partitionState{},
		consumed:   m.consumed.WithLabelValues(p.Name),
		items:      m.items.WithLabelValues(p.Name),
		delay:      m.delay.WithLabelValues(p.Name),
	}
	if c.maxLag <= 0 {
		c.maxLag = DefaultReadyMaxLag
	}
	attempts := p.Config.PoisonMaxAttempts
	if attempts <= 0 {
		attempts = DefaultPoisonMaxAttempts
	}
	prober, _ := p.Sink.(Prober)
	c.w = &writer{
		sink: withMetrics(p.Sink, m, p.Name), prober: prober,
		backoff: p.Config.Backoff, maxAttempts: attempts,
		retries: m.retries.WithLabelValues(p.Name), warn: c.warn,
		written: c.written, deadLetter: c.deadLetter,
	}
	return c, nil
}

// Run connects to Kafka, retrying until it answers, and consumes until ctx
// is cancelled, then flushes what it holds (bounded by FlushTimeout),
// commits, and leaves the group.
func (c *Consumer) Run(ctx context.Context) error {
	client := c.connect(ctx)
	if client == nil {
		return nil // stopped before Kafka answered
	}
	defer client.Close()
	group, err := sarama.NewConsumerGroupFromClient(c.cfg.Group, client)
	if err != nil {
		return fmt.Errorf("consumer group %s: %w", c.cfg.Group, err)
	}
	defer group.Close()
	go func() {
		for err := range group.Errors() {
			c.kafkaError(err)
			c.warn.Warn("consumer group error", "err", err)
		}
	}()
	checkCtx, stopCheck := context.WithCancel(ctx)
	defer stopCheck()
	go c.checkKafka(checkCtx, client)

	for ctx.Err() == nil {
		err := group.Consume(ctx, []string{c.cfg.Topic}, c)
		c.setSession(false)
		if errors.Is(err, sarama.ErrClosedConsumerGroup) {
			return nil
		}
		if err != nil && ctx.Err() == nil {
			c.kafkaError(err)
			c.warn.Warn("consume failed; joining again", "err", err)
			select {
			case <-ctx.Done():
			case <-time.After(time.Second):
			}
		}
	}
	return nil
}

// connect returns a client once Kafka answers, or nil when ctx ended
// first. Until then the consumer is not ready and says why.
func (c *Consumer) connect(ctx context.Context) sarama.Client {
	for attempt := 0; ; attempt++ {
		client, err := sarama.NewClient(c.brokers, c.sc)
		if err == nil {
			// Without full metadata sarama connects lazily: a client is
			// returned even when no broker answers.
			if err = client.RefreshMetadata(c.cfg.Topic); err != nil {
				client.Close()
			}
		}
		if err == nil {
			c.mu.Lock()
			c.connected, c.connectErr, c.kafkaOK = true, nil, time.Now()
			c.mu.Unlock()
			if attempt > 0 {
				c.log.Info("connected to kafka", "brokers", c.brokers, "attempts", attempt+1)
			}
			return client
		}
		c.mu.Lock()
		c.connectErr = err
		c.mu.Unlock()
		d := connectBackoff.delay(attempt)
		c.log.Warn("kafka not reachable; the consumer stays not ready and retries", "brokers", c.brokers, "in", d, "err", err)
		t := time.NewTimer(d)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
	}
}

// checkKafka asks the cluster for the topic's metadata every
// kafkaCheckEvery: readiness requires a recent answer, so a broker that is
// down or frozen makes the consumer not ready even when no partition is
// held (the fetch and heartbeat errors that would say so arrive late or
// not at all without a session).
func (c *Consumer) checkKafka(ctx context.Context, client sarama.Client) {
	t := time.NewTicker(kafkaCheckEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if err := client.RefreshMetadata(c.cfg.Topic); err != nil {
			c.kafkaError(err)
			c.warn.Warn("kafka metadata request failed", "err", err)
			continue
		}
		c.mu.Lock()
		c.kafkaOK = time.Now()
		c.mu.Unlock()
	}
}

func (c *Consumer) kafkaError(err error) {
	c.mu.Lock()
	c.kafkaErrAt, c.kafkaErr = time.Now(), err
	c.mu.Unlock()
}

func (c *Consumer) setSession(in bool) {
	c.mu.Lock()
	c.inSession = in
	c.mu.Unlock()
}

// Ready reports why the consumer cannot consume and write now, or nil.
// It reads state kept by the consumer's goroutines and never waits on
// Kafka or the sink. The consumer is ready when all of these hold:
//
//   - Kafka answers: the client connected, a metadata request succeeded
//     within the last kafka.timeout + 4 s (one runs every 2 s; a frozen
//     broker never answers), and no consumer-group error (fetch,
//     heartbeat, commit, join) or failed metadata request came after the
//     last successful one.
//   - It is in a consumer-group session: it joined and was assigned its
//     partitions (sarama's Setup ran; during a rebalance it is not). A
//     session with no partition counts as ready: sarama's assignors give
//     each member at least one partition of the topic when there are
//     enough, so an empty assignment means the group has more consumers
//     than partitions and this one is a standby.
//   - No held partition is stuck: none has a write failing for a record
//     older than ReadyMaxLag (-ready.max-lag).
func (c *Consumer) Ready() error {
	now := time.Now()
	c.mu.Lock()
	defer c.mu.Unlock()
	switch {
	case !c.connected:
		return fmt.Errorf("sink %s: kafka %s not reachable yet: %v", c.name, strings.Join(c.brokers, ","), c.connectErr)
	case now.Sub(c.kafkaOK) > c.kafkaStale:
		return fmt.Errorf("sink %s: kafka has not answered for %s: %v", c.name, now.Sub(c.kafkaOK).Round(time.Second), c.kafkaErr)
	case c.kafkaErrAt.After(c.kafkaOK):
		return fmt.Errorf("sink %s: kafka consumer error %s ago: %v", c.name, now.Sub(c.kafkaErrAt).Round(time.Second), c.kafkaErr)
	case !c.inSession:
		return fmt.Errorf("sink %s: not in a consumer group session (joining or rebalancing)", c.name)
	}
	for p, ps := range c.parts {
		if !ps.failing.Load() {
			continue
		}
		if t := ps.oldest.Load(); t > 0 && now.Sub(time.Unix(0, t)) > c.maxLag {
			return fmt.Errorf("sink %s: partition %d stuck: writes failing, oldest unwritten record %s old (more than -ready.max-lag %s)",
				c.name, p, now.Sub(time.Unix(0, t)).Round(time.Second), c.maxLag)
		}
	}
	return nil
}

// Setup implements sarama.ConsumerGroupHandler.
func (c *Consumer) Setup(s sarama.ConsumerGroupSession) error {
	c.log.Info("partitions assigned", "claims", s.Claims(), "generation", s.GenerationID())
	c.setSession(true)
	return nil
}

// Cleanup implements sarama.ConsumerGroupHandler: the last marks are
// committed before the partitions are given up.
func (c *Consumer) Cleanup(s sarama.ConsumerGroupSession) error {
	c.setSession(false)
	s.Commit()
	return nil
}

// ConsumeClaim implements sarama.ConsumerGroupHandler for one partition:
// records are batched and written in offset order, and an offset is marked
// only when everything before it is settled (written or dead-lettered).
func (c *Consumer) ConsumeClaim(sess sarama.ConsumerGroupSession, claim sarama.ConsumerGroupClaim) error {
	part := strconv.Itoa(int(claim.Partition()))
	log := c.log.With("partition", claim.Partition())
	lagRecords := c.m.lag.WithLabelValues(c.name, part)
	lagSeconds := c.m.lagSeconds.WithLabelValues(c.name, part)
	ps := &partitionState{}
	ps.next.Store(-1)
	if o := claim.InitialOffset(); o >= 0 {
		ps.next.Store(o)
	}
	c.mu.Lock()
	c.parts[claim.Partition()] = ps
	c.mu.Unlock()

	// Writes go on for FlushTimeout after the session ends (rebalance or
	// shutdown), so a batch in flight is finished rather than redone. The
	// same goroutine keeps the lag gauges current, also while a write
	// blocks this one.
	wctx, cancel := context.WithCancel(context.Background())
	stop, exited := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(exited)
		tick := time.NewTicker(lagEvery)
		defer tick.Stop()
		sessDone := sess.Context().Done()
		var deadline <-chan time.Time
		for {
			select {
			case <-stop:
				return
			case <-sessDone:
				sessDone, deadline = nil, time.After(c.cfg.FlushTimeout)
			case <-deadline:
				cancel()
			case <-tick.C:
				setLag(claim, ps, lagRecords, lagSeconds)
			}
		}
	}()
	defer func() {
		close(stop)
		<-exited
		cancel()
		c.mu.Lock()
		if c.parts[claim.Partition()] == ps {
			delete(c.parts, claim.Partition())
		}
		c.mu.Unlock()
		// Given up: its lag is the next owner's to report.
		c.m.lag.DeleteLabelValues(c.name, part)
		c.m.lagSeconds.DeleteLabelValues(c.name, part)
	}()

	b := &batch{}
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	flush := func() error {
		timer.Stop()
		if len(b.recs) == 0 {
			return nil
		}
		last := b.recs[len(b.recs)-1]
		if err := c.w.write(wctx, b.recs, &ps.failing); err != nil {
			return err
		}
		sess.MarkOffset(last.Topic, last.Partition, last.Offset+1, "")
		ps.next.Store(last.Offset + 1)
		ps.oldest.Store(0)
		setLag(claim, ps, lagRecords, lagSeconds)
		b.reset()
		return nil
	}
	for {
		select {
		case msg, ok := <-claim.Messages():
			if !ok {
				if err := flush(); err != nil {
					log.Warn("final flush incomplete; the next owner re-reads from the last commit", "err", err)
				}
				return nil
			}
			c.consumed.Inc()
			if ps.next.Load() < 0 {
				ps.next.Store(msg.Offset)
			}
			rec, err := c.toRecord(msg)
			if err != nil {
				// Undecodable envelope: the records before it are written
				// first so the mark below does not skip them.
				if err := flush(); err != nil {
					return nil
				}
				if err := c.deadLetter(wctx, recordOf(msg), err, "bad_envelope"); err != nil {
					return nil
				}
				sess.MarkMessage(msg, "")
				ps.next.Store(msg.Offset + 1)
				continue
			}
			if len(b.recs) > 0 && b.recs[0].Envelope.GetTenant() != rec.Envelope.GetTenant() {
				if err := flush(); err != nil {
					return nil
				}
			}
			if len(b.recs) == 0 {
				timer.Reset(c.cfg.BatchMaxDelay)
				ps.oldest.Store(recordTime(msg, rec.Envelope))
			}
			b.add(rec)
			if b.bytes >= c.cfg.BatchMaxBytes || len(b.recs) >= c.cfg.BatchMaxRecords {
				if err := flush(); err != nil {
					return nil
				}
			}
		case <-timer.C:
			if err := flush(); err != nil {
				return nil
			}
		}
	}
}

// recordTime is when the gateway received the record, else when Kafka
// stored it, in Unix nanoseconds.
func recordTime(msg *sarama.ConsumerMessage, env *recordpb.Envelope) int64 {
	if t := env.GetReceivedAtUnixNano(); t > 0 {
		return t
	}
	if !msg.Timestamp.IsZero() {
		return msg.Timestamp.UnixNano()
	}
	return time.Now().UnixNano()
}

// setLag sets a partition's lag gauges from its state.
func setLag(claim sarama.ConsumerGroupClaim, ps *partitionState, records, seconds prometheus.Gauge) {
	if next := ps.next.Load(); next >= 0 {
		records.Set(float64(max(claim.HighWaterMarkOffset()-next, 0)))
	}
	age := 0.0
	if t := ps.oldest.Load(); t > 0 {
		age = max(time.Since(time.Unix(0, t)).Seconds(), 0)
	}
	seconds.Set(age)
}

type batch struct {
	recs  []Record
	bytes int
}

func (b *batch) add(r Record) {
	b.recs = append(b.recs, r)
	b.bytes += len(r.Value)
}

func (b *batch) reset() {
	clear(b.recs) // drop references to the values
	b.recs, b.bytes = b.recs[:0], 0
}

func (c *Consumer) written(recs []Record) {
	var items uint64
	now := time.Now()
	for _, r := range recs {
		items += r.Envelope.GetItems()
		if t := r.Envelope.GetReceivedAtUnixNano(); t > 0 {
			c.delay.Observe(now.Sub(time.Unix(0, t)).Seconds())
		}
	}
	c.items.Add(float64(items))
}

// deadLetter writes r to the dead-letter topic, retrying until Kafka
// acknowledges or ctx ends: a record is never skipped without a trace.
func (c *Consumer) deadLetter(ctx context.Context, r Record, cause error, class string) error {
	msg := &sarama.ProducerMessage{
		Topic: c.cfg.DLQTopic,
		Key:   sarama.ByteEncoder(r.Key),
		Value: sarama.ByteEncoder(r.Value),
		Headers: record.DeadLetterHeaders(r.Headers, &recordpb.DeadLetter{
			Reason: oneLine(cause.Error()), Sink: c.name, Topic: r.Topic, Partition: r.Partition, Offset: r.Offset,
		}),
	}
	for attempt := 0; ; attempt++ {
		err := c.dlq.Produce(ctx, []*sarama.ProducerMessage{msg})
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			return err
		}
		d := c.cfg.Backoff.delay(attempt)
		c.warn.Warn("dead-letter produce failed, retrying", "in", d, "err", err)
		t := time.NewTimer(d)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
		msg = &sarama.ProducerMessage{Topic: msg.Topic, Key: msg.Key, Value: msg.Value, Headers: msg.Headers}
	}
	c.m.dlq.WithLabelValues(c.name, class).Inc()
	c.log.Warn("record dead-lettered", "topic", r.Topic, "partition", r.Partition, "offset", r.Offset, "reason", cause)
	return nil
}

func (c *Consumer) toRecord(m *sarama.ConsumerMessage) (Record, error) {
	r := recordOf(m)
	env, err := record.Parse(m.Headers)
	if err != nil {
		return r, err
	}
	if env.GetSignal() != c.signal {
		return r, fmt.Errorf("%w: signal %s on a %s topic", record.ErrBadEnvelope, record.SignalName(env.GetSignal()), record.SignalName(c.signal))
	}
	if env.GetContentEncoding() != record.EncodingSnappy {
		return r, fmt.Errorf("%w: content-encoding %q", record.ErrBadEnvelope, env.GetContentEncoding())
	}
	r.Envelope = env
	return r, nil
}

func recordOf(m *sarama.ConsumerMessage) Record {
	return Record{Topic: m.Topic, Partition: m.Partition, Offset: m.Offset, Key: m.Key, Value: m.Value, Headers: m.Headers}
}

func oneLine(s string) string {
	const max = 1024
	out := make([]rune, 0, len(s))
	for _, r := range s {
		if r == '\n' || r == '\r' {
			r = ' '
		}
		out = append(out, r)
		if len(out) >= max {
			break
		}
	}
	return string(out)
}
