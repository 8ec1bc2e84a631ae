package gateway

import (
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

type metrics struct {
	requests  *prometheus.CounterVec
	duration  *prometheus.HistogramVec
	items     *clusterCounterVec
	bytes     *prometheus.CounterVec
	records   *prometheus.CounterVec
	lineBytes *clusterCounterVec
	inflight  prometheus.Gauge

	refusedSamples  *prometheus.CounterVec // remote-write, by reason
	refusedSpans    *prometheus.CounterVec // OTLP traces, by reason
	metadataDropped prometheus.Counter
}

func newMetrics(reg prometheus.Registerer, maxClusters int) *metrics {
	f := promauto.With(reg)
	clusters := &clusterSet{max: maxClusters, seen: map[string]struct{}{}, overflowed: f.NewCounter(prometheus.CounterOpts{
		Name: "tributary_gateway_metrics_cluster_overflow_total",
		Help: "Increments of per-cluster self-metrics counted under cluster=\"_other\" because -metrics.max-clusters distinct clusters were already seen.",
	})}
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
		items: &clusterCounterVec{clusters: clusters, vec: f.NewCounterVec(prometheus.CounterOpts{
			Name: "tributary_gateway_items_received_total",
			Help: "Samples, log entries or spans acknowledged by Kafka, by signal and cluster (the first -metrics.max-clusters clusters, then \"_other\").",
		}, []string{"signal", "cluster"})},
		bytes: f.NewCounterVec(prometheus.CounterOpts{
			Name: "tributary_gateway_received_bytes_total",
			Help: "Compressed request body bytes received, by signal.",
		}, []string{"signal"}),
		records: f.NewCounterVec(prometheus.CounterOpts{
			Name: "tributary_gateway_records_total",
			Help: "Kafka records written, by signal and whether the request body was forwarded as is or re-encoded.",
		}, []string{"signal", "path"}),
		lineBytes: &clusterCounterVec{clusters: clusters, vec: f.NewCounterVec(prometheus.CounterOpts{
			Name: "tributary_gateway_log_line_bytes_total",
			Help: "Bytes of log lines acknowledged by Kafka, by cluster (the first -metrics.max-clusters clusters, then \"_other\").",
		}, []string{"cluster"})},
		inflight: f.NewGauge(prometheus.GaugeOpts{
			Name: "tributary_gateway_inflight_bytes",
			Help: "Request bytes (compressed and decoded) currently held.",
		}),
		refusedSamples: f.NewCounterVec(prometheus.CounterOpts{
			Name: "tributary_gateway_refused_samples_total",
			Help: "Remote-write samples, histogram samples and exemplars left out of accepted requests (answered 400 with the rest written), by reason: too_old, too_new, invalid_labels, label_limit, no_cluster, invalid_series, invalid_histogram.",
		}, []string{"reason"}),
		refusedSpans: f.NewCounterVec(prometheus.CounterOpts{
			Name: "tributary_gateway_refused_spans_total",
			Help: "OTLP spans left out of accepted requests (answered with partial_success, the rest written) or of requests refused whole because none was valid, by reason: invalid_id, invalid_time, invalid_utf8, limit, no_cluster, invalid_cluster, too_large.",
		}, []string{"reason"}),
		metadataDropped: f.NewCounter(prometheus.CounterOpts{
			Name: "tributary_gateway_metadata_dropped_total",
			Help: "Remote-write metadata entries acknowledged and dropped: metadata-only requests without a cluster label, cluster header or -default-cluster.",
		}),
	}
}

// otherCluster is the cluster label of clusters beyond the bound.
const otherCluster = "_other"

// clusterSet admits the first max distinct cluster values as label values.
// Clusters are chosen by clients, and a series once created is exported
// until the process ends: without a bound one request naming 100k
// clusters would leave 100k series on /metrics.
type clusterSet struct {
	mu         sync.RWMutex
	seen       map[string]struct{}
	max        int
	overflowed prometheus.Counter
}

// label is cluster if it is (or can become) one of the admitted values,
// otherwise otherCluster.
func (s *clusterSet) label(cluster string) string {
	s.mu.RLock()
	_, ok := s.seen[cluster]
	s.mu.RUnlock()
	if ok {
		return cluster
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.seen[cluster]; ok {
		return cluster
	}
	if len(s.seen) < s.max {
		s.seen[cluster] = struct{}{}
		return cluster
	}
	s.overflowed.Inc()
	return otherCluster
}

// clusterCounterVec is a CounterVec whose last label is a cluster, bounded
// by a clusterSet.
type clusterCounterVec struct {
	clusters *clusterSet
	vec      *prometheus.CounterVec
}

// WithLabelValues is CounterVec's, the last value being the cluster.
func (v *clusterCounterVec) WithLabelValues(lvs ...string) prometheus.Counter {
	if n := len(lvs); n > 0 {
		lvs[n-1] = v.clusters.label(lvs[n-1])
	}
	return v.vec.WithLabelValues(lvs...)
}
