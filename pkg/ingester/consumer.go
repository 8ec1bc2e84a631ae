package ingester

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"strconv"
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
	cfg    Config
	name   string
	signal recordpb.Signal
	sink   Sink // with retries and metrics
	dlq    DeadLetters
	group  sarama.ConsumerGroup
	log    *slog.Logger
	m      *Metrics

	joined atomic.Bool

	// Per-record metrics, resolved once.
	consumed prometheus.Counter
	items    prometheus.Counter
	delay    prometheus.Observer
}

// Params are what a Consumer is built from.
type Params struct {
	Config  Config
	Kafka   kafka.Config
	Name    string          // sink name: "prometheus", "loki", ...
	Signal  recordpb.Signal // records of another signal are dead-lettered
	Sink    Sink
	DLQ     DeadLetters
	Metrics *Metrics // from NewMetrics, once per process
	Log     *slog.Logger
}

// NewConsumer joins nothing yet; Run does.
func NewConsumer(p Params) (*Consumer, error) {
	sc := p.Kafka.Sarama()
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
	group, err := sarama.NewConsumerGroup(p.Kafka.BrokerList(), p.Config.Group, sc)
	if err != nil {
		return nil, fmt.Errorf("consumer group %s: %w", p.Config.Group, err)
	}
	m := p.Metrics
	log := p.Log.With("sink", p.Name, "group", p.Config.Group)
	base := withMetrics(p.Sink, m, p.Name)
	return &Consumer{
		cfg: p.Config, name: p.Name, signal: p.Signal, dlq: p.DLQ, group: group, log: log, m: m,
		sink:     withRetry(base, p.Config.Backoff, m.retries.WithLabelValues(p.Name), log),
		consumed: m.consumed.WithLabelValues(p.Name),
		items:    m.items.WithLabelValues(p.Name),
		delay:    m.delay.WithLabelValues(p.Name),
	}, nil
}

// Run consumes until ctx is cancelled, then flushes what it holds (bounded
// by FlushTimeout), commits, and leaves the group.
func (c *Consumer) Run(ctx context.Context) error {
	go func() {
		for err := range c.group.Errors() {
			c.log.Warn("consumer group error", "err", err)
		}
	}()
	defer c.group.Close()
	for ctx.Err() == nil {
		c.joined.Store(true)
		err := c.group.Consume(ctx, []string{c.cfg.Topic}, c)
		c.joined.Store(false)
		if errors.Is(err, sarama.ErrClosedConsumerGroup) {
			return nil
		}
		if err != nil && ctx.Err() == nil {
			c.log.Warn("consume", "err", err)
			select {
			case <-ctx.Done():
			case <-time.After(time.Second):
			}
		}
	}
	return nil
}

// Ready reports whether the consumer is in a group session.
func (c *Consumer) Ready() error {
	if !c.joined.Load() {
		return fmt.Errorf("sink %s: not in a consumer group session", c.name)
	}
	return nil
}

// Setup implements sarama.ConsumerGroupHandler.
func (c *Consumer) Setup(s sarama.ConsumerGroupSession) error {
	c.log.Info("partitions assigned", "claims", s.Claims(), "generation", s.GenerationID())
	return nil
}

// Cleanup implements sarama.ConsumerGroupHandler: the last marks are
// committed before the partitions are given up.
func (c *Consumer) Cleanup(s sarama.ConsumerGroupSession) error {
	s.Commit()
	return nil
}

// ConsumeClaim implements sarama.ConsumerGroupHandler for one partition:
// records are batched and written in offset order, and an offset is marked
// only when the sink acknowledged everything before it.
func (c *Consumer) ConsumeClaim(sess sarama.ConsumerGroupSession, claim sarama.ConsumerGroupClaim) error {
	part := strconv.Itoa(int(claim.Partition()))
	log := c.log.With("partition", claim.Partition())
	lag := c.m.lag.WithLabelValues(c.name, part)
	defer c.m.lag.DeleteLabelValues(c.name, part)

	// Writes go on for FlushTimeout after the session ends (rebalance or
	// shutdown), so a batch in flight is finished rather than redone.
	wctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		select {
		case <-sess.Context().Done():
		case <-stop:
			return
		}
		select {
		case <-time.After(c.cfg.FlushTimeout):
			cancel()
		case <-stop:
		}
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
		if err := c.write(wctx, b.recs); err != nil {
			return err
		}
		sess.MarkOffset(last.Topic, last.Partition, last.Offset+1, "")
		lag.Set(float64(claim.HighWaterMarkOffset() - last.Offset - 1))
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
				continue
			}
			if len(b.recs) > 0 && b.recs[0].Envelope.GetTenant() != rec.Envelope.GetTenant() {
				if err := flush(); err != nil {
					return nil
				}
			}
			if len(b.recs) == 0 {
				timer.Reset(c.cfg.BatchMaxDelay)
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

// write delivers recs to the sink. On a permanent refusal of a batch, each
// record is retried alone so that only the refused ones are dead-lettered.
// It returns an error only when ctx ended before everything was settled.
func (c *Consumer) write(ctx context.Context, recs []Record) error {
	err := c.sink.Write(ctx, recs)
	if err == nil {
		c.written(recs)
		return nil
	}
	if !IsPermanent(err) {
		return err
	}
	if len(recs) == 1 {
		return c.deadLetter(ctx, recs[0], err, "rejected")
	}
	c.log.Info("sink refused a batch; writing its records one by one", "records", len(recs), "err", err)
	for _, r := range recs {
		one := []Record{r}
		err := c.sink.Write(ctx, one)
		switch {
		case err == nil:
			c.written(one)
		case IsPermanent(err):
			if err := c.deadLetter(ctx, r, err, "rejected"); err != nil {
				return err
			}
		default:
			return err
		}
	}
	return nil
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
		c.log.Warn("dead-letter produce failed, retrying", "in", d, "err", err)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(d):
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
