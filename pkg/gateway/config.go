// Package gateway receives telemetry over the ecosystem's own protocols,
// validates it, and writes it to Kafka keyed by cluster. It answers 2xx only
// after Kafka has acknowledged every record of a request.
package gateway

import (
	"errors"
	"flag"
	"fmt"
	"net/http"
	"time"

	"github.com/tributary-io/tributary/pkg/auth"
	"github.com/tributary-io/tributary/pkg/kafka"
	"github.com/tributary-io/tributary/pkg/limits"
	"github.com/tributary-io/tributary/pkg/lokipush"
	"github.com/tributary-io/tributary/pkg/otlp"
	"github.com/tributary-io/tributary/pkg/otlplogs"
	"github.com/tributary-io/tributary/pkg/otlpmetrics"
	"github.com/tributary-io/tributary/pkg/remotewrite"
	"github.com/tributary-io/tributary/pkg/shard"
	"github.com/tributary-io/tributary/pkg/split"
)

// Config of the gateway.
type Config struct {
	ListenAddr     string `yaml:"listen_addr"`
	MetricsTopic   string `yaml:"metrics_topic"`
	LogsTopic      string `yaml:"logs_topic"`
	SpansTopic     string `yaml:"spans_topic"`
	DefaultCluster string `yaml:"default_cluster"`
	// ClusterHeader names the request header that sets the cluster of
	// series without a cluster label (it wins over DefaultCluster).
	ClusterHeader string `yaml:"cluster_header"`
	// MaxClustersPerRequest bounds the distinct clusters one request may
	// mix (each becomes at least one record); both decoders enforce it.
	MaxClustersPerRequest int           `yaml:"max_clusters_per_request"`
	MaxBodyBytes          int           `yaml:"max_body_bytes"`
	MaxInflightBytes      int64         `yaml:"max_inflight_bytes"`
	RetryAfter            time.Duration `yaml:"retry_after"`
	// OverloadStatus answers a spent in-flight budget: 503 or 429.
	OverloadStatus int `yaml:"overload_status"`
	// MaxMetricClusters bounds the cluster label of the gateway's own
	// per-cluster metrics; later clusters are counted as "_other".
	MaxMetricClusters int                  `yaml:"metrics_max_clusters"`
	ShutdownTimeout   time.Duration        `yaml:"shutdown_timeout"`
	RemoteWrite       remotewrite.Limits   `yaml:"remote_write"`
	Logs              lokipush.Limits      `yaml:"logs"`
	Spans             otlp.Limits          `yaml:"spans"`
	OTLPGRPC          OTLPGRPCConfig       `yaml:"otlp_grpc"`
	Auth              auth.Config          `yaml:"auth"`
	TLS               auth.TLSConfig       `yaml:"tls"`
	OTLPMetrics       otlpmetrics.Config   `yaml:"otlp_metrics"`
	OTLPLogs          OTLPLogsConfig       `yaml:"otlp_logs"`
	Producer          kafka.ProducerConfig `yaml:"producer"`
	Kafka             kafka.Config         `yaml:"kafka"`

	// LimitsFile holds per-cluster rates and per-request bounds
	// (pkg/limits.File), polled every LimitsPollInterval.
	LimitsFile         string        `yaml:"limits_file"`
	LimitsPollInterval time.Duration `yaml:"limits_poll_interval"`

	// Shards is the partition choice: -shards.file, the hot clusters'
	// shard table (pkg/shard).
	Shards shard.Config `yaml:"shards"`
}

// OTLPGRPCConfig is the OTLP gRPC server.
type OTLPGRPCConfig struct {
	// ListenAddr is where the OTLP gRPC services listen; "" turns the
	// server off.
	ListenAddr string `yaml:"listen_addr"`
	// MaxRecvMsgSize bounds a request as gRPC receives it, compressed or
	// not (gRPC checks the decompressed size too).
	MaxRecvMsgSize int `yaml:"max_recv_msg_size"`
}

// RegisterFlags registers the gateway's flags.
func (c *Config) RegisterFlags(fs *flag.FlagSet) {
	c.RemoteWrite = remotewrite.DefaultLimits()
	c.Logs = lokipush.DefaultLimits()
	c.Spans = otlp.DefaultLimits()
	fs.StringVar(&c.ListenAddr, "http.listen-addr", ":8080", "Address to serve the write endpoints, /metrics and health checks on.")
	fs.StringVar(&c.MetricsTopic, "topic.metrics", "tributary.metrics", "Kafka topic for metrics.")
	fs.StringVar(&c.LogsTopic, "topic.logs", "tributary.logs", "Kafka topic for logs.")
	fs.StringVar(&c.SpansTopic, "topic.spans", "tributary.spans", "Kafka topic for spans.")
	fs.StringVar(&c.OTLPGRPC.ListenAddr, "otlp.grpc.listen-addr", ":4317", "Address of the OTLP gRPC server (TraceService); empty turns it off. OTLP/HTTP is served on -http.listen-addr.")
	// 16 MiB: four times gRPC's and the OpenTelemetry Collector's default
	// (4 MiB), so a Collector that raised its batch size still fits, while
	// the memory grpc-go allocates per request before the in-flight budget
	// sees it stays small.
	fs.IntVar(&c.OTLPGRPC.MaxRecvMsgSize, "otlp.grpc.max-recv-msg-size", 16<<20, "Largest OTLP gRPC request, after decompression (RESOURCE_EXHAUSTED above). At most -limits.spans.max-decoded-bytes. An export is admitted only while -limits.max-inflight-bytes could take a message of this size (the whole budget, if it is smaller).")
	fs.IntVar(&c.Spans.MaxDecodedBytes, "limits.spans.max-decoded-bytes", c.Spans.MaxDecodedBytes, "Largest uncompressed OTLP trace request (413 / RESOURCE_EXHAUSTED above), checked before allocating.")
	fs.IntVar(&c.Spans.MaxRecordBytes, "limits.spans.max-record-bytes", c.Spans.MaxRecordBytes, "Largest Kafka record value of spans; larger requests are split between spans. Keep below the topic's max.message.bytes.")
	fs.IntVar(&c.Spans.MaxAttributes, "limits.spans.max-attributes", c.Spans.MaxAttributes, "Most attributes a span, event, link, resource or scope may have (the OpenTelemetry SDKs' default limit); a span over it is refused (partial success).")
	fs.IntVar(&c.Spans.MaxAttributeKeyLen, "limits.spans.max-attribute-key-length", c.Spans.MaxAttributeKeyLen, "Longest attribute key, in bytes; a span over it is refused.")
	fs.IntVar(&c.Spans.MaxAttributeValueLen, "limits.spans.max-attribute-value-length", c.Spans.MaxAttributeValueLen, "Longest string or bytes attribute value, encoded array or map value, and span or event name, in bytes; a span over it is refused.")
	fs.IntVar(&c.Spans.MaxEvents, "limits.spans.max-events", c.Spans.MaxEvents, "Most events a span may have; a span over it is refused.")
	fs.IntVar(&c.Spans.MaxLinks, "limits.spans.max-links", c.Spans.MaxLinks, "Most links a span may have; a span over it is refused.")
	fs.IntVar(&c.Logs.MaxLineBytes, "limits.logs.max-line-bytes", c.Logs.MaxLineBytes, "Longest log line (Loki's max_line_size).")
	fs.IntVar(&c.Logs.MaxLabelNamesPerStream, "limits.logs.max-label-names-per-stream", c.Logs.MaxLabelNamesPerStream, "Most labels a log stream may have, cluster included.")
	fs.IntVar(&c.Logs.MaxRecordDecodedBytes, "limits.logs.max-record-decoded-bytes", c.Logs.MaxRecordDecodedBytes, "Largest uncompressed Loki PushRequest in one Kafka record; larger pushes are split. Keep well below the sink Loki's grpc_server_max_recv_msg_size (4 MiB by default). 0: no bound.")
	fs.DurationVar(&c.Logs.RejectOldSamplesMaxAge, "limits.logs.reject-old-samples-max-age", c.Logs.RejectOldSamplesMaxAge, "Refuse (400) log entries older than this, as Loki's reject_old_samples_max_age; match the sink Loki. 0: no bound (Loki's reject_old_samples: false).")
	fs.DurationVar(&c.Logs.CreationGracePeriod, "limits.logs.creation-grace-period", c.Logs.CreationGracePeriod, "Refuse (400) log entries further in the future than this, as Loki's creation_grace_period; match the sink Loki. 0: no bound.")
	fs.DurationVar(&c.Logs.MaxEntryBehind, "limits.logs.max-entry-behind", c.Logs.MaxEntryBehind, "Refuse (400) a log entry older than the newest entry of its stream earlier in the same request by more than this: half of the sink Loki's max_chunk_age. Entries behind what earlier requests wrote are not seen. 0: no check.")
	fs.StringVar(&c.DefaultCluster, "default-cluster", "", "Cluster for data without a cluster label and without the cluster header. Empty: such data is refused with 400.")
	fs.StringVar(&c.ClusterHeader, "cluster-header", "X-Tributary-Cluster", "Request header naming the cluster of data without a cluster label.")
	fs.IntVar(&c.MaxClustersPerRequest, "limits.max-clusters-per-request", split.DefaultMaxClusters, "Most distinct clusters one request may mix (400 above); each becomes at least one Kafka record.")
	fs.IntVar(&c.MaxBodyBytes, "limits.max-body-bytes", 16<<20, "Largest compressed request body accepted (413 above).")
	fs.IntVar(&c.RemoteWrite.MaxDecodedBytes, "limits.max-decoded-bytes", c.RemoteWrite.MaxDecodedBytes, "Largest decompressed request accepted (413 above), checked before allocating.")
	fs.IntVar(&c.RemoteWrite.MaxRecordBytes, "limits.max-record-bytes", c.RemoteWrite.MaxRecordBytes, "Largest Kafka record value; larger requests are split. Keep below the topic's max.message.bytes.")
	fs.IntVar(&c.RemoteWrite.MaxLabelsPerSeries, "limits.max-labels-per-series", c.RemoteWrite.MaxLabelsPerSeries, "Most labels a series may have.")
	fs.IntVar(&c.RemoteWrite.MaxLabelNameLen, "limits.max-label-name-length", c.RemoteWrite.MaxLabelNameLen, "Longest label name.")
	fs.IntVar(&c.RemoteWrite.MaxLabelValueLen, "limits.max-label-value-length", c.RemoteWrite.MaxLabelValueLen, "Longest label value.")
	// Defaults and their reasoning: remotewrite.DefaultMaxSampleAge and
	// DefaultMaxFuture (a Prometheus sink with out_of_order_time_window: 1d;
	// Prometheus refuses samples more than 10m ahead).
	fs.DurationVar(&c.RemoteWrite.MaxSampleAge, "limits.metrics.max-sample-age", c.RemoteWrite.MaxSampleAge, "Oldest sample, histogram or exemplar timestamp accepted, against the gateway's clock; older ones are refused (400, the rest of the request is written). Keep it below the sink's out-of-order window (Prometheus: storage.tsdb.out_of_order_time_window, 1d in the README's setup) minus the ingester lag you tolerate. 0: no bound.")
	fs.DurationVar(&c.RemoteWrite.MaxFuture, "limits.metrics.max-future", c.RemoteWrite.MaxFuture, "How far ahead of the gateway's clock a timestamp may be (Prometheus refuses more than 10m); later ones are refused (400, the rest of the request is written). 0: no bound.")
	fs.BoolVar(&c.RemoteWrite.UTF8Names, "limits.metrics.utf8-names", false, "Accept any UTF-8 metric and label name, as Prometheus 3 does. Off: names must match [a-zA-Z_:][a-zA-Z0-9_:]*. Only turn it on if every sink accepts them: a Prometheus 2.x sink refuses such series, and the ingester dead-letters them.")
	// Bodies and their decoded copies of all requests being served; beyond
	// this the gateway answers 503 (or -limits.overload-status) instead of
	// growing without bound.
	fs.Int64Var(&c.MaxInflightBytes, "limits.max-inflight-bytes", 512<<20, "Memory for request bodies in flight (compressed + decoded); above it requests get -limits.overload-status with Retry-After.")
	// 503: every stock client retries it; Prometheus drops data on 429
	// unless its remote_write sets retry_on_http_429.
	fs.IntVar(&c.OverloadStatus, "limits.overload-status", http.StatusServiceUnavailable, "Status answered when -limits.max-inflight-bytes is spent: 503 or 429 (only for clients that retry 429).")
	// 1000 clusters x (2 signals + log bytes) is a few thousand series: far
	// more than a real fleet per gateway, far fewer than a hostile request.
	fs.IntVar(&c.MaxMetricClusters, "metrics.max-clusters", 1000, "Distinct cluster label values in the gateway's own per-cluster metrics; later clusters are counted under cluster=\"_other\".")
	fs.StringVar(&c.LimitsFile, "limits.file", "", "YAML file of per-cluster limits (defaults: and clusters: <name>: rates samples_per_second, log_bytes_per_second, spans_per_second with *_burst, and per-request bounds), reloaded on change; the last good file stays in force when a change does not parse. Empty: no per-cluster limits but those of tokens.yaml.")
	// 10 s: a changed ConfigMap takes about a minute to reach the pod's
	// volume anyway; reading a small file every 10 s costs nothing.
	fs.DurationVar(&c.LimitsPollInterval, "limits.file.poll-interval", 10*time.Second, "How often -limits.file is read for changes; a change applies when two reads in a row agree (a file written in place is not applied half-written).")
	fs.DurationVar(&c.RetryAfter, "retry-after", 5*time.Second, "Retry-After sent with 429 and 503.")
	fs.DurationVar(&c.ShutdownTimeout, "shutdown-timeout", 30*time.Second, "On SIGTERM, how long to finish in-flight requests and flush the producer.")
	fs.DurationVar(&c.Producer.AckTimeout, "kafka.ack-timeout", 10*time.Second, "Longest wait for Kafka to acknowledge a request's records before answering 503.")
	fs.IntVar(&c.Producer.MaxMessageBytes, "kafka.max-message-bytes", 1000000, "Producer's largest message (value + key + headers).")
	fs.DurationVar(&c.Producer.Linger, "kafka.linger", kafka.DefaultLinger, "How long records wait for others to share their produce request (Kafka's linger.ms); 0 sends each at once.")
	c.OTLPMetrics.RegisterFlags("otlp.metrics.", fs)
	fs.StringVar(&c.OTLPLogs.ConfigFile, "otlp.logs.config-file", "", "YAML file mapping OTLP log attributes to Loki stream labels and structured metadata, in the shape of Loki's limits_config.otlp_config (resource_attributes, scope_attributes, log_attributes) plus default_resource_attributes_as_index_labels. Empty: Loki's default mapping.")
	c.Kafka.RegisterFlags("kafka.", fs)
	c.Shards.RegisterFlags(fs)
	c.Auth.RegisterFlags(fs)
	c.TLS.RegisterFlags(fs)
}

func (c *Config) validateSpans() error {
	s := c.Spans
	if s.MaxDecodedBytes <= 0 || s.MaxAttributes <= 0 || s.MaxAttributeKeyLen <= 0 || s.MaxAttributeValueLen <= 0 || s.MaxEvents < 0 || s.MaxLinks < 0 {
		return errors.New("limits.spans.* must be positive")
	}
	if s.MaxRecordBytes < 4096 || s.MaxRecordBytes+4096 > c.Producer.MaxMessageBytes {
		return errors.New("limits.spans.max-record-bytes must be at least 4 KiB, and 4 KiB below kafka.max-message-bytes (room for key and headers)")
	}
	if c.OTLPGRPC.MaxRecvMsgSize <= 0 || c.OTLPGRPC.MaxRecvMsgSize > s.MaxDecodedBytes {
		return fmt.Errorf("otlp.grpc.max-recv-msg-size is %d: want 1 to limits.spans.max-decoded-bytes (%d)", c.OTLPGRPC.MaxRecvMsgSize, s.MaxDecodedBytes)
	}
	return nil
}

// Validate checks the configuration.
func (c *Config) Validate() error {
	if c.MetricsTopic == "" || c.LogsTopic == "" || c.SpansTopic == "" {
		return errors.New("topic.metrics, topic.logs and topic.spans must not be empty")
	}
	if err := c.validateSpans(); err != nil {
		return err
	}
	if c.MaxClustersPerRequest <= 0 {
		return errors.New("limits.max-clusters-per-request must be positive")
	}
	if c.OverloadStatus != http.StatusServiceUnavailable && c.OverloadStatus != http.StatusTooManyRequests {
		return fmt.Errorf("limits.overload-status is %d: want 503 or 429", c.OverloadStatus)
	}
	if c.MaxMetricClusters <= 0 {
		return errors.New("metrics.max-clusters must be positive")
	}
	if c.MaxBodyBytes <= 0 || c.RemoteWrite.MaxDecodedBytes <= 0 {
		return errors.New("body size limits must be positive")
	}
	if c.RemoteWrite.MaxRecordBytes+4096 > c.Producer.MaxMessageBytes {
		return errors.New("limits.max-record-bytes must be at least 4 KiB below kafka.max-message-bytes (room for key and headers)")
	}
	if c.MaxInflightBytes < int64(c.MaxBodyBytes) {
		return errors.New("limits.max-inflight-bytes must be at least limits.max-body-bytes")
	}
	if c.LimitsFile != "" {
		if c.LimitsPollInterval <= 0 {
			return errors.New("limits.file.poll-interval must be positive")
		}
		if _, err := limits.LoadFile(c.LimitsFile); err != nil {
			return fmt.Errorf("limits.file: %w", err)
		}
	}
	if err := c.Shards.Validate(); err != nil {
		return err
	}
	// The gateway chooses every record's partition (pkg/shard).
	c.Producer.KeepPartition = true
	if c.Producer.AckTimeout <= 0 {
		return errors.New("kafka.ack-timeout must be positive")
	}
	if c.Producer.Linger < 0 || c.Producer.Linger >= c.Producer.AckTimeout {
		return errors.New("kafka.linger must be at least 0 and below kafka.ack-timeout")
	}
	if err := c.OTLPMetrics.Validate(c.RemoteWrite.UTF8Names); err != nil {
		return err
	}
	mapping, err := otlplogs.LoadConfig(c.OTLPLogs.ConfigFile)
	if err != nil {
		return fmt.Errorf("otlp.logs.config-file: %w", err)
	}
	c.OTLPLogs.mapping = mapping
	if err := c.Auth.Validate(c.TLS); err != nil {
		return err
	}
	return c.Kafka.Validate()
}
