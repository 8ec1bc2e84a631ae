package ingester

import (
	"errors"
	"flag"
	"time"
)

// Config of one sink's consumer.
type Config struct {
	Topic    string `yaml:"topic"`
	Group    string `yaml:"group"`
	DLQTopic string `yaml:"dlq_topic"`
	// A batch is written when it holds BatchMaxBytes of record values or
	// BatchMaxRecords records, or BatchMaxDelay after its first record.
	BatchMaxBytes   int           `yaml:"batch_max_bytes"`
	BatchMaxRecords int           `yaml:"batch_max_records"`
	BatchMaxDelay   time.Duration `yaml:"batch_max_delay"`
	Backoff         Backoff       `yaml:"backoff"`
	// FlushTimeout bounds the final flush when partitions are revoked or the
	// process stops; what is not written by then is re-read by the next owner.
	FlushTimeout time.Duration `yaml:"flush_timeout"`
	// Memory per claimed partition: the consumer fetches up to FetchBytes
	// of a partition at a time and keeps up to BufferedRecords fetched
	// records queued for the sink (sarama's Consumer.Fetch.Default and
	// ChannelBufferSize).
	FetchBytes      int `yaml:"fetch_bytes"`
	BufferedRecords int `yaml:"buffered_records"`
	// PoisonMaxAttempts is how many times a batch may fail with a
	// retryable error while the sink is otherwise healthy before it is
	// split to find and dead-letter the records the sink keeps failing.
	PoisonMaxAttempts int `yaml:"poison_max_attempts"`
}

// DefaultPoisonMaxAttempts: with the default backoff (100 ms doubling to
// 10 s) the tenth failure comes ~33 s after the first. A record that a
// healthy sink keeps refusing stalls its partition for half a minute; a
// sink that fails real writes while its empty-write probe still passes
// (a Prometheus out of disk answers 500 to samples but 204 to an empty
// request) gets half a minute to recover before anything is
// dead-lettered. 5 attempts (~3 s) was too eager for the second case.
const DefaultPoisonMaxAttempts = 10

// DefaultBufferedRecords is the queue of fetched records per partition,
// sarama's default. It sets most of the ingester's memory when a sink is
// slower than Kafka: ~100 KiB records (up to 900 KiB) × 256 per partition,
// each keeping its fetch response alive. Measured with 16 partitions and a
// sink answering after 0.2 s: peak RSS 699 MB with 256, 332 MB with 64.
// Smaller queues cost throughput: with 64 the ingester's discard rate fell
// from ~1.0 to 0.71 of a bare consumer's in make bench, with 16 to 0.66
// (README, "Ingester memory").
const DefaultBufferedRecords = 256

// RegisterFlags registers the flags under prefix (e.g. "prometheus.").
func (c *Config) RegisterFlags(prefix, sink, topic string, fs *flag.FlagSet) {
	fs.StringVar(&c.Topic, prefix+"topic", topic, "Kafka topic to consume.")
	fs.StringVar(&c.Group, prefix+"group", "tributary-"+sink, "Kafka consumer group; one per sink.")
	fs.StringVar(&c.DLQTopic, prefix+"dlq-topic", "tributary.dlq", "Dead-letter topic for records the sink refuses.")
	// Snappy record values of ~100 KiB each: ~1 MiB compressed is a
	// remote-write request of a few MiB, which every backend accepts.
	fs.IntVar(&c.BatchMaxBytes, prefix+"batch.max-bytes", 1<<20, "Flush a batch at this many bytes of (compressed) record values.")
	fs.IntVar(&c.BatchMaxRecords, prefix+"batch.max-records", 500, "Flush a batch at this many records.")
	fs.DurationVar(&c.BatchMaxDelay, prefix+"batch.max-delay", 200*time.Millisecond, "Flush a batch this long after its first record.")
	fs.DurationVar(&c.Backoff.Min, prefix+"backoff.min", 100*time.Millisecond, "First retry delay.")
	fs.DurationVar(&c.Backoff.Max, prefix+"backoff.max", 10*time.Second, "Longest retry delay.")
	fs.DurationVar(&c.FlushTimeout, prefix+"flush-timeout", 20*time.Second, "On rebalance or shutdown, how long to keep writing what is in flight.")
	fs.IntVar(&c.FetchBytes, prefix+"fetch.max-partition-bytes", 1<<20, "Bytes of one partition a fetch asks for (more if one record is larger).")
	fs.IntVar(&c.BufferedRecords, prefix+"fetch.buffered-records", DefaultBufferedRecords, "Fetched records queued per partition ahead of the sink.")
	fs.IntVar(&c.PoisonMaxAttempts, prefix+"poison.max-attempts", DefaultPoisonMaxAttempts,
		"Failed attempts of a batch while the sink is otherwise healthy (its probe or other writes succeed) before the batch is split and the records the sink keeps failing are dead-lettered. While the sink is down nothing is dead-lettered.")
}

// Validate checks the configuration.
func (c *Config) Validate() error {
	switch {
	case c.Topic == "" || c.Group == "" || c.DLQTopic == "":
		return errors.New("topic, group and dlq-topic must be set")
	case c.BatchMaxBytes <= 0 || c.BatchMaxRecords <= 0 || c.BatchMaxDelay <= 0:
		return errors.New("batch limits must be positive")
	case c.Backoff.Min <= 0 || c.Backoff.Max < c.Backoff.Min:
		return errors.New("backoff: need 0 < min <= max")
	case c.FetchBytes <= 0 || c.BufferedRecords <= 0:
		return errors.New("fetch.max-partition-bytes and fetch.buffered-records must be positive")
	case c.PoisonMaxAttempts < 1:
		return errors.New("poison.max-attempts must be at least 1")
	}
	return nil
}
