package spanmetrics

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"strconv"
	"time"

	"github.com/tributary-io/tributary/pkg/ingester"
)

// Config of the spanmetrics consumer.
type Config struct {
	Enabled bool `yaml:"enabled"`
	// IngesterID is the value of the ingester label of every series this
	// process writes. Two running ingesters must not share it: it is what
	// keeps two writers off one series. Stable across restarts (the host
	// name of a StatefulSet pod) keeps a restarted ingester on its series.
	IngesterID string `yaml:"ingester_id"`
	// MaxSeriesPerCluster bounds the label sets (service_name, span_name,
	// span_kind, status_code) kept per cluster and partition; 0 is no
	// limit. Spans of a new label set beyond it are counted in the
	// cluster's overflow series.
	MaxSeriesPerCluster int `yaml:"max_series_per_cluster"`
	// SeriesIdleTimeout: a label set without spans for this long is
	// dropped from memory and no longer written; if it comes back it
	// starts from 0, which rate() reads as a counter reset.
	SeriesIdleTimeout time.Duration `yaml:"series_idle_timeout"`
	// MaxDecodedBytes refuses (dead-letters) a record that decodes to more.
	MaxDecodedBytes int `yaml:"max_decoded_bytes"`
	// Consumer is the consumer group on the spans topic. Its batch delay
	// is the flush interval (-spanmetrics.flush-interval): a batch is
	// aggregated and its counters written in one step, and the batch's
	// offsets are marked only after that write.
	Consumer ingester.Config `yaml:"consumer"`
}

// Defaults that carry reasoning.
const (
	// DefaultFlushInterval is the spanmetrics connector's
	// metrics_flush_interval, so dashboards built for it see the same
	// sample spacing.
	DefaultFlushInterval = 15 * time.Second
	// DefaultMaxSeriesPerCluster: 50 services × 20 operations × 2
	// statuses, a large cluster. Each label set is 20 Prometheus series
	// (calls, 17 buckets, sum, count) and ~1 KiB of memory here, so the
	// limit costs at most ~2 MiB and 40k series per cluster. It is per
	// cluster so that one cluster's runaway span names overflow that
	// cluster alone, not its partition neighbours.
	DefaultMaxSeriesPerCluster = 2000
	// DefaultSeriesIdleTimeout is the staleness lookback of Prometheus
	// (5m): a series not written for longer drops out of instant queries
	// anyway.
	DefaultSeriesIdleTimeout = 5 * time.Minute
	// defaultBatchMaxBytes: a batch is written in one step with every
	// series of its partition, so batches are larger than for the
	// pass-through sinks: 8 MiB of snappy spans (~40k spans) per write
	// keeps a busy partition at a few writes per flush interval, for 8 MiB
	// of memory per partition.
	defaultBatchMaxBytes   = 8 << 20
	defaultBatchMaxRecords = 5000
)

// RegisterFlags registers the flags under prefix ("spanmetrics.").
func (c *Config) RegisterFlags(prefix string, fs *flag.FlagSet) {
	fs.BoolVar(&c.Enabled, prefix+"enabled", false,
		"Aggregate RED metrics (traces_span_metrics_*) from the spans topic and write them to -prometheus.url.")
	host, _ := os.Hostname()
	fs.StringVar(&c.IngesterID, prefix+"ingester-id", host,
		"Value of the ingester label of the series this process writes; unique among running ingesters, stable across restarts. Default: the host name.")
	fs.IntVar(&c.MaxSeriesPerCluster, prefix+"max-series-per-cluster", DefaultMaxSeriesPerCluster,
		"Label sets (service_name, span_name, span_kind, status_code) kept per cluster and partition; spans of further label sets go to the cluster's otel_metric_overflow=\"true\" series. 0: no limit.")
	fs.DurationVar(&c.SeriesIdleTimeout, prefix+"series-idle-timeout", DefaultSeriesIdleTimeout,
		"Drop a label set after this long without spans; it restarts from 0 (a counter reset) if it comes back.")
	fs.IntVar(&c.MaxDecodedBytes, prefix+"max-decoded-bytes", 64<<20, "Refuse (dead-letter) a span record that decodes to more than this.")

	// The consumer's flags, with the batch delay renamed to what it is
	// here: the flush interval.
	consumer := flag.NewFlagSet("", flag.ContinueOnError)
	c.Consumer.RegisterFlags(prefix, "spanmetrics", "tributary.spans", consumer)
	_ = consumer.Set(prefix+"batch.max-bytes", strconv.Itoa(defaultBatchMaxBytes))
	_ = consumer.Set(prefix+"batch.max-records", strconv.Itoa(defaultBatchMaxRecords))
	consumer.VisitAll(func(f *flag.Flag) {
		if f.Name != prefix+"batch.max-delay" {
			fs.Var(f.Value, f.Name, f.Usage)
		}
	})
	fs.DurationVar(&c.Consumer.BatchMaxDelay, prefix+"flush-interval", DefaultFlushInterval,
		"Write the counters at least this often while spans arrive (and whenever a batch fills); a batch's offsets are committed only after its counters are written.")
}

// Validate checks the configuration of an enabled consumer.
func (c *Config) Validate() error {
	switch {
	case c.IngesterID == "":
		return errors.New("spanmetrics.ingester-id must be set (the host name is unknown)")
	case c.MaxSeriesPerCluster < 0:
		return errors.New("spanmetrics.max-series-per-cluster must be 0 (no limit) or positive")
	case c.MaxDecodedBytes <= 0:
		return errors.New("spanmetrics.max-decoded-bytes must be positive")
	case c.Consumer.BatchMaxDelay <= 0:
		return errors.New("spanmetrics.flush-interval must be positive")
	case c.SeriesIdleTimeout <= c.Consumer.BatchMaxDelay:
		// Shorter, a label set with a span every flush would expire and
		// reset between two writes.
		return fmt.Errorf("spanmetrics.series-idle-timeout %s must be longer than spanmetrics.flush-interval %s",
			c.SeriesIdleTimeout, c.Consumer.BatchMaxDelay)
	}
	if err := c.Consumer.Validate(); err != nil {
		return fmt.Errorf("spanmetrics consumer: %w", err)
	}
	return nil
}
