package events

import "github.com/prometheus/client_golang/prometheus"

// selfMetrics of the events watcher. Leadership itself is
// tributary_agent_leader (the Elector's); pushes are
// tributary_agent_push_*{component="events"} (lokiclient's).
type selfMetrics struct {
	shipped      prometheus.Counter
	refused      prometheus.Counter
	skipped      *prometheus.CounterVec
	relists      prometheus.Counter
	resumeWrites *prometheus.CounterVec
	pending      prometheus.Gauge
	terms        prometheus.Counter
}

func newSelfMetrics(reg prometheus.Registerer) *selfMetrics {
	m := &selfMetrics{
		shipped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tributary_agent_events_shipped_total",
			Help: "Kubernetes event occurrences acknowledged by the gateway (one log line each).",
		}),
		refused: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tributary_agent_events_refused_total",
			Help: "Kubernetes event occurrences in a push the gateway refused with a 4xx (not retried; the gateway may have kept the valid part).",
		}),
		skipped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tributary_agent_events_skipped_total",
			Help: "Event changes not shipped, by reason: already_shipped (at or before the resume point, seen again by a list), same_occurrence (an update that is not a new occurrence).",
		}, []string{"reason"}),
		relists: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tributary_agent_events_relists_total",
			Help: "Full lists of the cluster's events: the first leader's first list, and each time the watch could not resume (410 Gone).",
		}),
		resumeWrites: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tributary_agent_events_resume_writes_total",
			Help: "Writes of the resume ConfigMap, by outcome (ok, failed).",
		}, []string{"outcome"}),
		pending: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "tributary_agent_events_pending",
			Help: "Event occurrences read from the apiserver and not yet acknowledged by the gateway (bounded by events.max_pending plus one batch).",
		}),
		terms: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tributary_agent_events_leader_terms_total",
			Help: "Times this agent started shipping events after winning the leader election.",
		}),
	}
	m.skipped.WithLabelValues("already_shipped")
	m.skipped.WithLabelValues("same_occurrence")
	m.resumeWrites.WithLabelValues("ok")
	m.resumeWrites.WithLabelValues("failed")
	if reg != nil {
		reg.MustRegister(m.shipped, m.refused, m.skipped, m.relists, m.resumeWrites, m.pending, m.terms)
	}
	return m
}
