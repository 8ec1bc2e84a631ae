package ingester

import (
	"context"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/IBM/sarama"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/tributary-io/tributary/pkg/kafka"
	"github.com/tributary-io/tributary/pkg/record"
)

// Headers of the replay markers "ingester dlq replay" writes to the
// dead-letter topic after it put a dead letter back on its original
// topic. The dead-letter topic itself is the record of what was replayed,
// whatever the filters of each run (a consumer group's committed offset
// could only say "everything before offset N", and a replay of one sink's
// records would then skip another sink's for good).
const (
	// HeaderReplayed is "<partition>/<offset>" of the dead letter replayed.
	HeaderReplayed = "tributary-dlq-replayed"
	// HeaderReplayedTo is "<topic>/<partition>/<offset>" where it went.
	HeaderReplayedTo = "tributary-dlq-replayed-to"
)

// DeadLetter is one record of the dead-letter topic.
type DeadLetter struct {
	Partition int32 // in the dead-letter topic
	Offset    int64
	Time      time.Time // when it was dead-lettered
	Sink      string
	Reason    string
	Cluster   string
	// Where the record was read from before the sink refused it.
	Topic         string
	OrigPartition int32
	OrigOffset    int64
	Key           []byte
	Value         []byte
	// Headers are the original record's, without the dead-letter ones.
	Headers  []sarama.RecordHeader
	Replayed bool // a replay marker names it
}

// dlqPos is a dead letter's position in the dead-letter topic.
type dlqPos struct {
	partition int32
	offset    int64
}

// isDeadLetterHeader reports whether a header was added by dead-lettering
// or replay, not by the gateway.
func isDeadLetterHeader(key string) bool {
	return strings.HasPrefix(key, "tributary-dlq-")
}

// parseDeadLetter reads m as a dead letter. ok is false for a replay
// marker (then marked is the position it names). Anything else that lacks
// the dead-letter headers is an error: the topic holds foreign records.
func parseDeadLetter(m *sarama.ConsumerMessage) (d DeadLetter, marked dlqPos, ok bool, err error) {
	d = DeadLetter{Partition: m.Partition, Offset: m.Offset, Time: m.Timestamp, Key: m.Key, Value: m.Value, OrigPartition: -1, OrigOffset: -1}
	var sawTopic bool
	for _, h := range m.Headers {
		if h == nil {
			continue
		}
		k, v := string(h.Key), string(h.Value)
		switch k {
		case HeaderReplayed:
			p, o, found := strings.Cut(v, "/")
			pn, perr := strconv.ParseInt(p, 10, 32)
			on, oerr := strconv.ParseInt(o, 10, 64)
			if !found || perr != nil || oerr != nil {
				return d, marked, false, fmt.Errorf("dead-letter topic %d@%d: bad %s header %q", m.Partition, m.Offset, HeaderReplayed, v)
			}
			return d, dlqPos{int32(pn), on}, false, nil
		case record.HeaderDLQSink:
			d.Sink = v
		case record.HeaderDLQReason:
			d.Reason = v
		case record.HeaderDLQTopic:
			d.Topic, sawTopic = v, true
		case record.HeaderDLQPartition:
			n, perr := strconv.ParseInt(v, 10, 32)
			if perr != nil || n < 0 {
				return d, marked, false, fmt.Errorf("dead-letter topic %d@%d: bad %s header %q", m.Partition, m.Offset, k, v)
			}
			d.OrigPartition = int32(n)
		case record.HeaderDLQOffset:
			n, perr := strconv.ParseInt(v, 10, 64)
			if perr != nil || n < 0 {
				return d, marked, false, fmt.Errorf("dead-letter topic %d@%d: bad %s header %q", m.Partition, m.Offset, k, v)
			}
			d.OrigOffset = n
		case record.HeaderCluster:
			d.Cluster = v
		}
		if !isDeadLetterHeader(k) {
			d.Headers = append(d.Headers, sarama.RecordHeader{Key: h.Key, Value: h.Value})
		}
	}
	if !sawTopic || d.Topic == "" || d.OrigPartition < 0 || d.OrigOffset < 0 {
		return d, marked, false, fmt.Errorf("dead-letter topic %d@%d: not a dead letter (no %s, %s and %s headers)",
			m.Partition, m.Offset, record.HeaderDLQTopic, record.HeaderDLQPartition, record.HeaderDLQOffset)
	}
	return d, marked, true, nil
}

// DLQFilter selects dead letters. Empty fields select everything.
type DLQFilter struct {
	Reason  string // substring of the reason
	Sink    string
	Cluster string
	Since   time.Time // dead-lettered at or after
	Until   time.Time // dead-lettered before
}

func (f DLQFilter) match(d DeadLetter) bool {
	switch {
	case f.Reason != "" && !strings.Contains(d.Reason, f.Reason),
		f.Sink != "" && d.Sink != f.Sink,
		f.Cluster != "" && d.Cluster != f.Cluster,
		!f.Since.IsZero() && d.Time.Before(f.Since),
		!f.Until.IsZero() && !d.Time.Before(f.Until):
		return false
	}
	return true
}

// ReadDeadLetters reads the dead-letter topic as it is now (up to each
// partition's end when called; from the first record at or after since
// when it is set) and returns the dead letters f selects in partition and
// offset order, each marked Replayed if a replay marker names it. A
// record that is neither a dead letter nor a marker is an error.
func ReadDeadLetters(ctx context.Context, kc kafka.Config, topic string, f DLQFilter) ([]DeadLetter, error) {
	sc, err := kc.Sarama()
	if err != nil {
		return nil, err
	}
	client, err := sarama.NewClient(kc.BrokerList(), sc)
	if err != nil {
		return nil, fmt.Errorf("connect to kafka %s: %w", kc.Brokers, kc.Explain(err))
	}
	defer client.Close()
	consumer, err := sarama.NewConsumerFromClient(client)
	if err != nil {
		return nil, fmt.Errorf("consumer: %w", err)
	}
	defer consumer.Close()
	parts, err := client.Partitions(topic)
	if err != nil {
		return nil, fmt.Errorf("partitions of %s: %w", topic, err)
	}
	var (
		all      []DeadLetter
		replayed = map[dlqPos]bool{}
	)
	for _, p := range parts {
		end, err := client.GetOffset(topic, p, sarama.OffsetNewest)
		if err != nil {
			return nil, fmt.Errorf("end of %s/%d: %w", topic, p, err)
		}
		start := sarama.OffsetOldest
		if !f.Since.IsZero() {
			// Markers come after the dead letters they name, so none of a
			// selected record's is before this offset.
			if start, err = client.GetOffset(topic, p, f.Since.UnixMilli()); err != nil {
				return nil, fmt.Errorf("offset of %s/%d at %s: %w", topic, p, f.Since.Format(time.RFC3339), err)
			}
		} else if start, err = client.GetOffset(topic, p, sarama.OffsetOldest); err != nil {
			return nil, fmt.Errorf("start of %s/%d: %w", topic, p, err)
		}
		if start < 0 || start >= end {
			continue
		}
		msgs, err := readPartition(ctx, consumer, topic, p, start, end)
		if err != nil {
			return nil, err
		}
		for _, m := range msgs {
			d, marked, ok, err := parseDeadLetter(m)
			if err != nil {
				return nil, err
			}
			if !ok {
				replayed[marked] = true
				continue
			}
			all = append(all, d)
		}
	}
	var out []DeadLetter
	for _, d := range all {
		if f.match(d) {
			d.Replayed = replayed[dlqPos{d.Partition, d.Offset}]
			out = append(out, d)
		}
	}
	return out, nil
}

// readPartition returns the records of topic/p in [start, end).
func readPartition(ctx context.Context, consumer sarama.Consumer, topic string, p int32, start, end int64) ([]*sarama.ConsumerMessage, error) {
	pc, err := consumer.ConsumePartition(topic, p, start)
	if err != nil {
		return nil, fmt.Errorf("consume %s/%d: %w", topic, p, err)
	}
	defer pc.Close()
	var out []*sarama.ConsumerMessage
	for {
		select {
		case m := <-pc.Messages():
			out = append(out, m)
			if m.Offset >= end-1 {
				return out, nil
			}
		case err := <-pc.Errors():
			return nil, fmt.Errorf("read %s/%d: %w", topic, p, err)
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// Replayer puts dead letters back on their original topics.
type Replayer struct {
	Kafka    kafka.Config
	Producer kafka.ProducerConfig
	Topic    string // the dead-letter topic
	// BatchRecords is how many dead letters are produced (and then
	// marked) at a time.
	BatchRecords int
	Log          *slog.Logger

	mu sync.Mutex
}

// ReplayResult is what one dead letter's replay did.
type ReplayResult struct {
	DeadLetter
	// Where it was written.
	ToTopic     string
	ToPartition int32
	ToOffset    int64
}

// Replay produces each dead letter of ds that is not Replayed to its
// original topic and partition with its original key and headers, and
// after Kafka acknowledged a batch, a marker per record to the
// dead-letter topic; done is called for each record once its marker is
// acknowledged. A crash between the two produces leaves records replayed
// but not marked: the next run replays them again, and the sinks take the
// duplicate as they take any at-least-once redelivery.
func (r *Replayer) Replay(ctx context.Context, ds []DeadLetter, done func(ReplayResult)) error {
	r.mu.Lock() // one replay at a time per Replayer
	defer r.mu.Unlock()
	cfg := r.Producer
	cfg.KeepPartition = true
	p, err := kafka.NewProducer(r.Kafka, cfg, "dlq_replay", prometheus.NewRegistry(), r.Log)
	if err != nil {
		return err
	}
	defer p.Close()
	batch := max(r.BatchRecords, 1)
	var todo []DeadLetter
	for _, d := range ds {
		if !d.Replayed {
			todo = append(todo, d)
		}
	}
	for len(todo) > 0 {
		n := min(batch, len(todo))
		chunk := todo[:n]
		todo = todo[n:]
		msgs := make([]*sarama.ProducerMessage, len(chunk))
		for i, d := range chunk {
			msgs[i] = &sarama.ProducerMessage{Topic: d.Topic, Partition: d.OrigPartition,
				Key: keyEncoder(d.Key), Value: sarama.ByteEncoder(d.Value), Headers: d.Headers}
		}
		if err := p.Produce(ctx, msgs); err != nil {
			return fmt.Errorf("replay to the original topics: %w", err)
		}
		markers := make([]*sarama.ProducerMessage, len(chunk))
		for i, d := range chunk {
			markers[i] = &sarama.ProducerMessage{Topic: r.Topic, Partition: d.Partition, Key: keyEncoder(d.Key),
				Headers: []sarama.RecordHeader{
					{Key: []byte(HeaderReplayed), Value: fmt.Appendf(nil, "%d/%d", d.Partition, d.Offset)},
					{Key: []byte(HeaderReplayedTo), Value: fmt.Appendf(nil, "%s/%d/%d", msgs[i].Topic, msgs[i].Partition, msgs[i].Offset)},
				}}
		}
		if err := p.Produce(ctx, markers); err != nil {
			return fmt.Errorf("replayed %d records but could not mark them in %s (a new replay repeats them): %w", len(chunk), r.Topic, err)
		}
		for i, d := range chunk {
			done(ReplayResult{DeadLetter: d, ToTopic: msgs[i].Topic, ToPartition: msgs[i].Partition, ToOffset: msgs[i].Offset})
		}
	}
	return nil
}

// keyEncoder keeps a nil key nil (sarama sends a null key, as the gateway
// never does, but a foreign record might have).
func keyEncoder(k []byte) sarama.Encoder {
	if k == nil {
		return nil
	}
	return sarama.ByteEncoder(k)
}
