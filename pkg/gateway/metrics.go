package gateway

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

type metrics struct {
	requests  *prometheus.CounterVec
	duration  *prometheus.HistogramVec
	items     *prometheus.CounterVec
	bytes     *prometheus.CounterVec
	records   *prometheus.CounterVec
	lineBytes *prometheus.CounterVec
	inflight  prometheus.Gauge
}

func newMetrics(reg prometheus.Registerer) *metrics {
	f := promauto.With(reg)
	return &metrics{
		requests: f.NewCounterVec(prometheus.CounterOpts{
			Name: "tributary_gateway_requests_total",
			Help: "Write requests by signal and HTTP status code.",
		}, []string{"signal", "code"}),
		duration: f.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "tributary_gateway_request_duration_seconds",
			Help:    "Write request latency, including the wait for Kafka's acknowledgement.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 15),
		}, []string{"signal"}),
		items: f.NewCounterVec(prometheus.CounterOpts{
			Name: "tributary_gateway_items_received_total",
			Help: "Samples, log entries or spans acknowledged by Kafka, by signal and cluster.",
		}, []string{"signal", "cluster"}),
		bytes: f.NewCounterVec(prometheus.CounterOpts{
			Name: "tributary_gateway_received_bytes_total",
			Help: "Compressed request body bytes received, by signal.",
		}, []string{"signal"}),
		records: f.NewCounterVec(prometheus.CounterOpts{
			Name: "tributary_gateway_records_total",
			Help: "Kafka records written, by signal and whether the request body was forwarded as is or re-encoded.",
		}, []string{"signal", "path"}),
		lineBytes: f.NewCounterVec(prometheus.CounterOpts{
			Name: "tributary_gateway_log_line_bytes_total",
			Help: "Bytes of log lines acknowledged by Kafka, by cluster.",
		}, []string{"cluster"}),
		inflight: f.NewGauge(prometheus.GaugeOpts{
			Name: "tributary_gateway_inflight_bytes",
			Help: "Request bytes (compressed and decoded) currently held.",
		}),
	}
}
