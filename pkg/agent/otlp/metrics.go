package otlp

import (
	"github.com/prometheus/client_golang/prometheus"
)

// Values of the reason label of the refused and dropped items metrics.
const (
	// refused: the sender got an error for these items and still has them
	// (retryable) or knows they are bad (partial success, 400).
	reasonQueueFull = "queue_full" // max_queue_bytes spent: retry later
	reasonNotReady  = "not_ready"  // the pod informer has not synced yet
	reasonInvalid   = "invalid"    // IDs or times the gateway refuses
	// dropped: the agent had accepted these items and lost them.
	reasonGatewayRefused = "gateway_refused" // a 4xx other than 408/429
	reasonGatewayPartial = "gateway_partial" // partial_success from the gateway
	reasonShutdown       = "shutdown"        // not sent within the shutdown deadline
)

// selfMetrics are the receiver's and relay's counters, one set for all
// signals (label signal).
type selfMetrics struct {
	requests   *prometheus.CounterVec
	received   *prometheus.CounterVec
	refused    *prometheus.CounterVec
	relayed    *prometheus.CounterVec
	dropped    *prometheus.CounterVec
	sends      *prometheus.CounterVec
	retries    *prometheus.CounterVec
	enrichment *prometheus.CounterVec
	clusterSet *prometheus.CounterVec
	queueBytes prometheus.Gauge
	queueMax   prometheus.Gauge
}

func newSelfMetrics(reg prometheus.Registerer) *selfMetrics {
	m := &selfMetrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tributary_agent_otlp_requests_total",
			Help: "OTLP export requests received, by signal, protocol (grpc, http) and answer (gRPC code name or HTTP status).",
		}, []string{"signal", "protocol", "code"}),
		received: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tributary_agent_otlp_received_items_total",
			Help: "Items (spans, metric data points or log records, by signal) accepted from senders into the relay queue.",
		}, []string{"signal"}),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tributary_agent_otlp_refused_items_total",
			Help: "Items the receiver did not take, by reason: queue_full and not_ready (the sender was told to retry), invalid (the sender got a partial success).",
		}, []string{"signal", "reason"}),
		relayed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tributary_agent_otlp_relayed_items_total",
			Help: "Items the gateway acknowledged (they are in Kafka).",
		}, []string{"signal"}),
		dropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tributary_agent_otlp_dropped_items_total",
			Help: "Accepted items that never reached Kafka, by reason: gateway_refused (a 4xx), gateway_partial (the gateway's partial success), shutdown (not sent within the shutdown deadline).",
		}, []string{"signal", "reason"}),
		sends: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tributary_agent_otlp_send_requests_total",
			Help: "Requests to the gateway, by signal and HTTP status (error: no answer).",
		}, []string{"signal", "code"}),
		retries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tributary_agent_otlp_send_retries_total",
			Help: "Requests to the gateway retried after a network error, 408, 429 or 5xx.",
		}, []string{"signal"}),
		enrichment: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tributary_agent_otlp_k8s_enrichment_total",
			Help: "Resources by outcome of the pod lookup: hit (pod attributes added), miss (no pod of this node matched), off (no pod informer).",
		}, []string{"signal", "outcome"}),
		clusterSet: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tributary_agent_otlp_cluster_replaced_total",
			Help: "Resources whose sender set k8s.cluster.name to another cluster than the agent's; the agent's replaced it.",
		}, []string{"signal"}),
		queueBytes: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "tributary_agent_otlp_queue_bytes",
			Help: "Encoded bytes accepted and not yet acknowledged by the gateway (all signals).",
		}),
		queueMax: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "tributary_agent_otlp_queue_max_bytes",
			Help: "otlp.max_queue_bytes: above it senders are told to retry.",
		}),
	}
	reg.MustRegister(m.requests, m.received, m.refused, m.relayed, m.dropped, m.sends, m.retries,
		m.enrichment, m.clusterSet, m.queueBytes, m.queueMax)
	return m
}
