package kafka

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/IBM/sarama"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"

	"github.com/tributary-io/tributary/pkg/server"
)

// ErrUnavailable means Kafka did not acknowledge in time or refused for a
// reason that may pass (leader election, broker down). The caller keeps the
// data and retries; an HTTP client gets 503.
var ErrUnavailable = errors.New("kafka unavailable")

// ErrTooLarge means a record is larger than the producer's MaxMessageBytes
// or the topic's max.message.bytes. Retrying cannot help: an HTTP client
// gets 413. It never wraps ErrUnavailable.
var ErrTooLarge = errors.New("record too large for kafka")

// isTooLarge reports whether err is sarama's refusal of a record as too
// large, by the broker (MESSAGE_TOO_LARGE) or by the producer's own check
// against MaxMessageBytes (a ConfigurationError, sarama's only sign).
func isTooLarge(err error) bool {
	var ce sarama.ConfigurationError
	return errors.Is(err, sarama.ErrMessageSizeTooLarge) ||
		errors.As(err, &ce) && strings.Contains(string(ce), "MaxMessageBytes")
}

// DefaultLinger is the gateway's linger. With acks=all and idempotence
// sarama keeps one produce request in flight per broker, so records batch
// naturally while it waits; a millisecond more makes the batches larger.
// At make bench's gateway load the broker's CPU fell from 0.29-0.38 to
// 0.24-0.29 cores and the share of the gateway's CPU outside Parse by ~2
// points (9 interleaved pairs). Kafka 4.0's own producer default is 5 ms
// (KIP-1030).
const DefaultLinger = time.Millisecond

// ProducerConfig tunes the producer. Durability settings are not
// configurable: acks=all and idempotence are the contract.
type ProducerConfig struct {
	// AckTimeout bounds how long Produce waits for the acknowledgement of
	// every record before answering ErrUnavailable.
	AckTimeout time.Duration `yaml:"ack_timeout"`
	// MaxMessageBytes must be at least the largest record the gateway cuts.
	MaxMessageBytes int `yaml:"max_message_bytes"`
	// Linger is how long records wait for more to join their produce
	// request (Kafka's linger.ms; 0 sends at once). A request is also sent
	// as soon as it holds MaxMessageBytes. Fewer, larger requests cost the
	// producer and the brokers less CPU; the wait adds at most Linger to an
	// acknowledgement.
	Linger time.Duration `yaml:"linger"`
	// KeepPartition sends each message to its Partition field instead of
	// hashing its key (dead-letter replay: a record goes back where it
	// was).
	KeepPartition bool `yaml:"-"`
}

// Producer writes records with acks=all and idempotence, and tells each
// caller when all of its records are acknowledged.
type Producer struct {
	client  sarama.Client
	ap      sarama.AsyncProducer
	cfg     ProducerConfig
	log     *slog.Logger
	failed  *server.RateLimitedLogger
	wg      sync.WaitGroup
	metrics *producerMetrics
	closed  atomic.Bool
}

type producerMetrics struct {
	records  *prometheus.CounterVec
	bytes    *prometheus.CounterVec
	duration *prometheus.HistogramVec
}

// pending tracks the records of one Produce call.
type pending struct {
	left int32
	done chan struct{}
	mu   sync.Mutex
	err  error // the first error, or the first too-large one: it decides the answer
}

func (p *pending) finish(err error) {
	if err != nil {
		p.mu.Lock()
		if p.err == nil || isTooLarge(err) && !isTooLarge(p.err) {
			p.err = err
		}
		p.mu.Unlock()
	}
	if atomic.AddInt32(&p.left, -1) == 0 {
		close(p.done)
	}
}

// NewProducer connects to Kafka. component names the metric namespace
// ("gateway", "ingester").
func NewProducer(kc Config, cfg ProducerConfig, component string, reg prometheus.Registerer, log *slog.Logger) (*Producer, error) {
	sc, err := kc.Sarama()
	if err != nil {
		return nil, err
	}
	sc.Producer.RequiredAcks = sarama.WaitForAll
	sc.Producer.Idempotent = true
	sc.Net.MaxOpenRequests = 1 // required by the idempotent producer
	sc.Producer.Retry.Max = 10
	sc.Producer.Retry.Backoff = 200 * time.Millisecond
	sc.Producer.Return.Successes = true
	sc.Producer.Return.Errors = true
	// Record values are already snappy-compressed; compressing batches again
	// costs CPU for nothing (DESIGN.md).
	sc.Producer.Compression = sarama.CompressionNone
	sc.Producer.MaxMessageBytes = cfg.MaxMessageBytes
	sc.Producer.Timeout = kc.Timeout
	if cfg.KeepPartition {
		sc.Producer.Partitioner = sarama.NewManualPartitioner
	}
	if cfg.Linger > 0 {
		sc.Producer.Flush.Frequency = cfg.Linger
		sc.Producer.Flush.Bytes = cfg.MaxMessageBytes
	}
	client, err := sarama.NewClient(kc.BrokerList(), sc)
	if err != nil {
		return nil, fmt.Errorf("connect to kafka %s: %w", kc.Brokers, kc.Explain(err))
	}
	ap, err := sarama.NewAsyncProducerFromClient(client)
	if err != nil {
		client.Close()
		return nil, fmt.Errorf("create producer: %w", kc.Explain(err))
	}
	f := promauto.With(reg)
	p := &Producer{
		client: client, ap: ap, cfg: cfg, log: log,
		// An outage fails every record: one line per topic every 10 s.
		failed: server.NewRateLimitedLogger(log, 10*time.Second),
		metrics: &producerMetrics{
			records: f.NewCounterVec(prometheus.CounterOpts{
				Namespace: "tributary", Subsystem: component, Name: "kafka_records_total",
				Help: "Records sent to Kafka, by topic and outcome (acked, failed).",
			}, []string{"topic", "outcome"}),
			bytes: f.NewCounterVec(prometheus.CounterOpts{
				Namespace: "tributary", Subsystem: component, Name: "kafka_record_bytes_total",
				Help: "Bytes of record values acknowledged by Kafka, by topic.",
			}, []string{"topic"}),
			duration: f.NewHistogramVec(prometheus.HistogramOpts{
				Namespace: "tributary", Subsystem: component, Name: "kafka_produce_duration_seconds",
				Help:    "Time from handing records to the producer until all are acknowledged, by outcome.",
				Buckets: prometheus.ExponentialBuckets(0.001, 2, 14),
			}, []string{"outcome"}),
		},
	}
	p.wg.Add(2)
	go p.successes()
	go p.errors()
	return p, nil
}

func (p *Producer) successes() {
	defer p.wg.Done()
	for m := range p.ap.Successes() {
		p.metrics.records.WithLabelValues(m.Topic, "acked").Inc()
		if m.Value != nil {
			p.metrics.bytes.WithLabelValues(m.Topic).Add(float64(m.Value.Length()))
		}
		m.Metadata.(*pending).finish(nil)
	}
}

func (p *Producer) errors() {
	defer p.wg.Done()
	for e := range p.ap.Errors() {
		p.metrics.records.WithLabelValues(e.Msg.Topic, "failed").Inc()
		p.failed.Log(context.Background(), slog.LevelWarn, e.Msg.Topic, "kafka produce failed", "topic", e.Msg.Topic, "err", e.Err)
		e.Msg.Metadata.(*pending).finish(fmt.Errorf("produce to %s: %w", e.Msg.Topic, e.Err))
	}
}

// Produce sends msgs and returns once Kafka has acknowledged every one of
// them (acks=all), or an error wrapping ErrUnavailable if any failed or the
// acknowledgements did not come within the ack timeout. After an error some
// records may still have been written: the caller retries the whole set and
// the sinks tolerate duplicates (at-least-once). The caller must not modify
// msgs' keys and values until Produce returns nil; after an error it must
// never reuse them (the producer may still hold them).
func (p *Producer) Produce(ctx context.Context, msgs []*sarama.ProducerMessage) error {
	if len(msgs) == 0 {
		return nil
	}
	if p.closed.Load() {
		return fmt.Errorf("%w: producer closed", ErrUnavailable)
	}
	start := time.Now()
	ctx, cancel := context.WithTimeout(ctx, p.cfg.AckTimeout)
	defer cancel()
	pd := &pending{left: int32(len(msgs)), done: make(chan struct{})}
	for i, m := range msgs {
		m.Metadata = pd
		select {
		case p.ap.Input() <- m:
		case <-ctx.Done():
			// The rest is never sent; count it as failed so that pd
			// completes for whatever was enqueued.
			for range msgs[i:] {
				pd.finish(ctx.Err())
			}
			p.metrics.duration.WithLabelValues("timeout").Observe(time.Since(start).Seconds())
			return fmt.Errorf("%w: producer queue full: %v", ErrUnavailable, ctx.Err())
		}
	}
	select {
	case <-pd.done:
	case <-ctx.Done():
		p.metrics.duration.WithLabelValues("timeout").Observe(time.Since(start).Seconds())
		return fmt.Errorf("%w: no acknowledgement within %s", ErrUnavailable, p.cfg.AckTimeout)
	}
	pd.mu.Lock()
	err := pd.err
	pd.mu.Unlock()
	if err != nil {
		p.metrics.duration.WithLabelValues("failed").Observe(time.Since(start).Seconds())
		if isTooLarge(err) {
			return fmt.Errorf("%w: the limit is kafka.max-message-bytes=%d and the topic's max.message.bytes: %v", ErrTooLarge, p.cfg.MaxMessageBytes, err)
		}
		return fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	p.metrics.duration.WithLabelValues("acked").Observe(time.Since(start).Seconds())
	return nil
}

// Partitions is topic's partition count, from the client's cached
// metadata (refreshed in the background, fetched once for a topic not yet
// seen).
func (p *Producer) Partitions(topic string) (int32, error) {
	if p.closed.Load() {
		return 0, errors.New("producer closed")
	}
	parts, err := p.client.Partitions(topic)
	if err != nil {
		return 0, fmt.Errorf("kafka partitions of %s: %w", topic, err)
	}
	return int32(len(parts)), nil
}

// Ready reports whether Kafka answers: the metadata for topic can be
// fetched and its partitions have leaders.
func (p *Producer) Ready(topic string) error {
	if p.closed.Load() {
		return errors.New("producer closed")
	}
	if err := p.client.RefreshMetadata(topic); err != nil {
		return fmt.Errorf("kafka metadata: %w", err)
	}
	parts, err := p.client.Partitions(topic)
	if err != nil {
		return fmt.Errorf("kafka partitions of %s: %w", topic, err)
	}
	for _, part := range parts {
		if _, err := p.client.Leader(topic, part); err != nil {
			return fmt.Errorf("kafka leader of %s/%d: %w", topic, part, err)
		}
	}
	return nil
}

// Close flushes what is buffered (waiting for acknowledgements) and
// disconnects.
func (p *Producer) Close() error {
	if p.closed.Swap(true) {
		return nil
	}
	err := p.ap.Close()
	p.wg.Wait()
	if cerr := p.client.Close(); err == nil && !errors.Is(cerr, sarama.ErrClosedClient) {
		err = cerr
	}
	return err
}
