package spanmetrics

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

// metrics of the spanmetrics consumer.
type metrics struct {
	spans          *prometheus.CounterVec
	skipped        *prometheus.CounterVec
	active         *prometheus.GaugeVec
	expired        *prometheus.CounterVec
	overflow       *prometheus.CounterVec
	flushDuration  *prometheus.HistogramVec
	samplesWritten prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) *metrics {
	f := promauto.With(reg)
	return &metrics{
		spans: f.NewCounterVec(prometheus.CounterOpts{
			Name: "tributary_spanmetrics_spans_aggregated_total",
			Help: "Spans counted into RED metrics whose counters were written, by cluster (overflow included).",
		}, []string{"cluster"}),
		skipped: f.NewCounterVec(prometheus.CounterOpts{
			Name: "tributary_spanmetrics_spans_skipped_total",
			Help: "Spans not counted, by reason (no_service_name: the resource has no service.name, which the spanmetrics connector skips too).",
		}, []string{"reason"}),
		active: f.NewGaugeVec(prometheus.GaugeOpts{
			Name: "tributary_spanmetrics_series_active",
			Help: "Label sets (service_name, span_name, span_kind, status_code; and overflow series) held in memory, by cluster. Each is written as 20 Prometheus series.",
		}, []string{"cluster"}),
		expired: f.NewCounterVec(prometheus.CounterOpts{
			Name: "tributary_spanmetrics_series_expired_total",
			Help: "Label sets dropped after -spanmetrics.series-idle-timeout without spans, by cluster.",
		}, []string{"cluster"}),
		overflow: f.NewCounterVec(prometheus.CounterOpts{
			Name: "tributary_spanmetrics_overflow_spans_total",
			Help: "Spans counted in a cluster's otel_metric_overflow=\"true\" series because the cluster had -spanmetrics.max-series-per-cluster label sets, by cluster.",
		}, []string{"cluster"}),
		flushDuration: f.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "tributary_spanmetrics_flush_duration_seconds",
			Help:    "Duration of one write of a partition's counters to Prometheus, by outcome (success, error, rejected).",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 15),
		}, []string{"outcome"}),
		samplesWritten: f.NewCounter(prometheus.CounterOpts{
			Name: "tributary_spanmetrics_samples_written_total",
			Help: "Samples of traces_span_metrics_* acknowledged by Prometheus.",
		}),
	}
}
