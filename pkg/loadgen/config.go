// Package loadgen generates realistic telemetry load for Tributary and
// measures what the receiving side does with it: Prometheus remote-write,
// Loki push (protobuf and JSON) and OTLP traces (HTTP and gRPC), the same bodies produced straight
// to Kafka (the producer ceiling), a bare Kafka consumer (the consumer
// ceiling), and a discard mode that measures the tool's own ceiling.
//
// Bodies are encoded before the timed phase and only re-stamped in place
// between sends (see Body), so the tool costs little per request; each
// body's series or streams belong to one worker, so timestamps are strictly
// increasing per series and stream at any concurrency.
package loadgen

import (
	"errors"
	"flag"
	"fmt"
	"time"

	"github.com/tributary-io/tributary/pkg/kafka"
)

// Modes.
const (
	ModeRemoteWrite  = "remote-write"  // POST <target>/api/v1/write
	ModeLokiProto    = "loki-proto"    // POST <target>/loki/api/v1/push, snappy protobuf
	ModeLokiJSON     = "loki-json"     // POST <target>/loki/api/v1/push, JSON
	ModeKafkaProduce = "kafka-produce" // bodies as records to the brokers in <target>
	ModeKafkaConsume = "kafka-consume" // read <topic> to its end and discard
	ModeDiscard      = "discard"       // generate and drop: the tool's ceiling
	ModeOTLPHTTP     = "otlp-http"     // POST <target>/v1/traces, binary protobuf
	ModeOTLPGRPC     = "otlp-grpc"     // TraceService/Export at <target> (host:port)
)

// PayloadOTLP is the -payload of OTLP trace bodies (discard mode).
const PayloadOTLP = "otlp"

// Config of one load run.
type Config struct {
	Mode        string `yaml:"mode"`
	Target      string `yaml:"target"`
	Concurrency int    `yaml:"concurrency"`
	// Duration is the measured window; Warmup runs before it, unmeasured,
	// and (if not zero) until every body was sent once.
	Duration     time.Duration `yaml:"duration"`
	Warmup       time.Duration `yaml:"warmup"`
	Rate         float64       `yaml:"rate"`
	Timeout      time.Duration `yaml:"timeout"`
	ErrorBackoff time.Duration `yaml:"error_backoff"`
	Tenant       string        `yaml:"tenant"`
	// Payload selects the bodies of kafka-produce and discard.
	Payload         string        `yaml:"payload"`
	Topic           string        `yaml:"topic"`
	Group           string        `yaml:"group"`
	MaxMessageBytes int           `yaml:"max_message_bytes"`
	Linger          time.Duration `yaml:"linger"`
	WatchPIDs       string        `yaml:"watch_pids"`
	Progress        time.Duration `yaml:"progress"`
	Metrics         SeriesConfig  `yaml:"metrics"`
	Logs            StreamConfig  `yaml:"logs"`
	Spans           SpanConfig    `yaml:"spans"`
}

// RegisterFlags registers the flags.
func (c *Config) RegisterFlags(fs *flag.FlagSet) {
	fs.StringVar(&c.Mode, "mode", ModeRemoteWrite, "One of remote-write, loki-proto, loki-json, otlp-http, otlp-grpc, kafka-produce, kafka-consume, discard.")
	fs.StringVar(&c.Target, "target", "", "Base URL (http://127.0.0.1:8080) for HTTP modes; host:port for otlp-grpc; comma-separated brokers for kafka-* modes.")
	fs.IntVar(&c.Concurrency, "concurrency", 8, "Concurrent senders, each owning a disjoint share of the series or streams.")
	fs.DurationVar(&c.Duration, "duration", 10*time.Second, "Measured duration; for kafka-consume, the longest wait to reach the topic's end.")
	fs.DurationVar(&c.Warmup, "warmup", 0, "Load sent before the measured window, not counted. A warmup also lasts until every request body was sent once, so that all series and streams exist at the receiver.")
	fs.Float64Var(&c.Rate, "rate", 0, "Target requests per second over all senders; 0: as fast as the receiver answers.")
	fs.DurationVar(&c.Timeout, "timeout", 30*time.Second, "HTTP request timeout.")
	fs.DurationVar(&c.ErrorBackoff, "error-backoff", 100*time.Millisecond, "Pause of a sender after a failed request (the tool does not honour Retry-After: it measures the ceiling).")
	fs.StringVar(&c.Tenant, "tenant", "", "Tenant: X-Scope-OrgID header, or the envelope's tenant for kafka-produce.")
	fs.StringVar(&c.Payload, "payload", ModeRemoteWrite, "Bodies of kafka-produce and discard: remote-write, loki-proto (or loki-json and otlp for discard).")
	fs.StringVar(&c.Topic, "topic", "", "Kafka topic. Default: tributary.metrics, or tributary.logs for a loki payload.")
	fs.StringVar(&c.Group, "group", "", "kafka-consume: consumer group. Default: a new one per run (tributary-loadgen-<time>).")
	fs.IntVar(&c.MaxMessageBytes, "kafka.max-message-bytes", 1000000, "kafka-produce: the producer's largest message.")
	fs.DurationVar(&c.Linger, "kafka.linger", kafka.DefaultLinger, "kafka-produce: the producer's linger; the gateway's default, so that the producer ceiling is measured with the gateway's producer settings.")
	fs.StringVar(&c.WatchPIDs, "watch-pids", "", "Comma-separated PIDs whose CPU time and RSS during the measured window are reported.")
	fs.DurationVar(&c.Progress, "progress", time.Second, "Interval of progress lines on stderr; 0: none.")
	fs.IntVar(&c.Metrics.Series, "series", 100000, "Active series.")
	fs.IntVar(&c.Metrics.SeriesPerRequest, "series-per-request", 2000, "Series per remote-write request, one sample each.")
	fs.IntVar(&c.Metrics.Labels, "labels", 10, "Labels per series, __name__ and cluster included (at least 4).")
	fs.IntVar(&c.Metrics.Clusters, "clusters", 3, "Clusters; each request carries one cluster's series or streams.")
	fs.StringVar(&c.Metrics.ClusterPrefix, "cluster-prefix", "", "remote-write: name the clusters <prefix>0 ... <prefix>N-1 (e.g. cluster-); empty: realistic names (prod-eu-west-1, ...).")
	fs.Float64Var(&c.Metrics.ClusterSkew, "cluster-skew", 0, "remote-write: Zipf-like cluster sizes, the largest holding this share of all series (the skew bench uses 0.25); 0: clusters of equal size. Needs series / series-per-request >= clusters.")
	fs.IntVar(&c.Logs.Streams, "streams", 1000, "Active log streams.")
	fs.IntVar(&c.Logs.StreamsPerRequest, "streams-per-request", 20, "Log streams per push request.")
	fs.IntVar(&c.Logs.EntriesPerRequest, "entries-per-request", 2000, "Log entries per push request, spread over its streams.")
	fs.IntVar(&c.Logs.LineBytes, "line-bytes", 200, "Bytes per log line.")
	// An SDK's batch span processor exports up to 512 spans; services
	// under load export smaller batches more often.
	fs.IntVar(&c.Spans.SpansPerRequest, "spans-per-request", 100, "OTLP: spans per export request.")
	fs.IntVar(&c.Spans.SpansPerTrace, "spans-per-trace", 10, "OTLP: spans per trace (a server root and its client children).")
	fs.IntVar(&c.Spans.Attributes, "span-attributes", 10, "OTLP: attributes per span (HTTP and database semantic conventions).")
	fs.IntVar(&c.Spans.Bodies, "span-bodies", 64, "OTLP: distinct request bodies; every send gives one new trace and span IDs and times.")
}

// Validate checks the configuration and fills derived defaults.
func (c *Config) Validate() error {
	c.Logs.Clusters = c.Metrics.Clusters
	c.Spans.Clusters = c.Metrics.Clusters
	switch c.Mode {
	case ModeRemoteWrite, ModeLokiProto, ModeLokiJSON, ModeOTLPHTTP, ModeOTLPGRPC, ModeKafkaProduce, ModeKafkaConsume, ModeDiscard:
	default:
		return fmt.Errorf("mode %q: want remote-write, loki-proto, loki-json, otlp-http, otlp-grpc, kafka-produce, kafka-consume or discard", c.Mode)
	}
	if c.Target == "" && c.Mode != ModeDiscard {
		return errors.New("-target is required")
	}
	switch c.Payload {
	case ModeRemoteWrite, ModeLokiProto:
	case ModeLokiJSON, PayloadOTLP:
		if c.Mode == ModeKafkaProduce {
			return fmt.Errorf("kafka-produce: records hold snappy protobuf, payload %s is not a record", c.Payload)
		}
	default:
		return fmt.Errorf("payload %q: want remote-write, loki-proto, loki-json or otlp", c.Payload)
	}
	if c.Topic == "" {
		c.Topic = "tributary.metrics"
		if c.Payload != ModeRemoteWrite {
			c.Topic = "tributary.logs"
		}
	}
	if c.Group == "" {
		c.Group = fmt.Sprintf("tributary-loadgen-%d", time.Now().UnixNano())
	}
	switch {
	case c.Concurrency <= 0:
		return errors.New("concurrency must be positive")
	case c.Duration <= 0 || c.Warmup < 0:
		return errors.New("duration must be positive and warmup not negative")
	case c.Rate < 0:
		return errors.New("rate must not be negative")
	case c.Timeout <= 0:
		return errors.New("timeout must be positive")
	case c.Linger < 0:
		return errors.New("kafka.linger must not be negative")
	}
	if c.Mode == ModeKafkaConsume {
		return nil
	}
	bodies := 0
	switch c.payload() {
	case ModeRemoteWrite:
		if err := c.Metrics.Validate(); err != nil {
			return err
		}
		bodies = c.Metrics.Bodies()
	case PayloadOTLP:
		if err := c.Spans.Validate(); err != nil {
			return err
		}
		bodies = c.Spans.Bodies
	default:
		if err := c.Logs.Validate(); err != nil {
			return err
		}
		bodies = c.Logs.Bodies()
	}
	if bodies < c.Concurrency {
		// A sender owns whole bodies: fewer bodies than senders would leave
		// senders idle or put one series in flight twice.
		return fmt.Errorf("%d requests cover all series/streams, fewer than concurrency %d: lower -concurrency or the per-request size, or raise -series/-streams", bodies, c.Concurrency)
	}
	return nil
}

// payload is the kind of body the mode sends.
func (c *Config) payload() string {
	switch c.Mode {
	case ModeRemoteWrite, ModeLokiProto, ModeLokiJSON:
		return c.Mode
	case ModeOTLPHTTP, ModeOTLPGRPC:
		return PayloadOTLP
	}
	return c.Payload
}
