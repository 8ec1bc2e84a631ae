package ingester

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

// Metrics of the ingester, shared by all sinks of a process.
type Metrics struct {
	consumed      *prometheus.CounterVec
	items         *prometheus.CounterVec
	writeDuration *prometheus.HistogramVec
	retries       *prometheus.CounterVec
	dlq           *prometheus.CounterVec
	lag           *prometheus.GaugeVec
	lagSeconds    *prometheus.GaugeVec
	delay         *prometheus.HistogramVec
}

// NewMetrics registers the ingester metrics with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	f := promauto.With(reg)
	return &Metrics{
		consumed: f.NewCounterVec(prometheus.CounterOpts{
			Name: "tributary_ingester_records_consumed_total",
			Help: "Kafka records read, by sink.",
		}, []string{"sink"}),
		items: f.NewCounterVec(prometheus.CounterOpts{
			Name: "tributary_ingester_items_written_total",
			Help: "Samples, log entries or spans acknowledged by the sink.",
		}, []string{"sink"}),
		writeDuration: f.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "tributary_ingester_sink_write_duration_seconds",
			Help:    "Duration of one sink write attempt, by outcome (success, error, rejected).",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 15),
		}, []string{"sink", "outcome"}),
		retries: f.NewCounterVec(prometheus.CounterOpts{
			Name: "tributary_ingester_sink_retries_total",
			Help: "Sink writes retried after a retryable error.",
		}, []string{"sink"}),
		dlq: f.NewCounterVec(prometheus.CounterOpts{
			Name: "tributary_ingester_dlq_records_total",
			Help: "Records moved to the dead-letter topic, by sink and reason class.",
		}, []string{"sink", "reason"}),
		lag: f.NewGaugeVec(prometheus.GaugeOpts{
			Name: "tributary_ingester_lag_records",
			Help: "Records of a held partition not yet settled (written or dead-lettered): high watermark minus the next offset to commit. Updated every second, also while a write is failing.",
		}, []string{"sink", "partition"}),
		lagSeconds: f.NewGaugeVec(prometheus.GaugeOpts{
			Name: "tributary_ingester_lag_seconds",
			Help: "Age of the oldest record of a held partition read but not yet written (from its envelope's received-at, else its Kafka timestamp); 0 when none is pending. Updated every second.",
		}, []string{"sink", "partition"}),
		delay: f.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "tributary_ingester_end_to_end_delay_seconds",
			Help:    "From the gateway receiving a request to the sink acknowledging its record.",
			Buckets: delayBuckets,
		}, []string{"sink"}),
	}
}

// delayBuckets bound the end-to-end delay histogram. The pipeline's
// latency objective is 2 s (issue 11's target 4) and users set theirs near
// it, so the edges are dense from 0.5 s to 3 s and fall on round values: a
// quantile interpolated inside a bucket is only as good as its edges, and
// the doubling buckets used before put 1.28 s and 2.56 s around the 2 s
// objective (one bench run reported a p99 of 2.19 s from that bucket while
// a rerun of the phase saw no record over 1.28 s).
var delayBuckets = []float64{
	0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.75,
	1, 1.25, 1.5, 1.75, 2, 2.5, 3, 4, 5, 7.5, 10, 20, 40, 80,
}
