package auth

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

// Results of authenticating a request.
const (
	ResultOK       = "ok"
	ResultMissing  = "missing"
	ResultInvalid  = "invalid"
	ResultMismatch = "mismatch"
)

type metrics struct {
	requests    *prometheus.CounterVec
	tokens      prometheus.Gauge
	certReloads *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) *metrics {
	f := promauto.With(reg)
	m := &metrics{
		requests: f.NewCounterVec(prometheus.CounterOpts{
			Name: "tributary_gateway_auth_requests_total",
			Help: "Write requests by authentication result: ok (a valid identity), missing (none presented; refused with -auth.required, else written anonymously), invalid (refused: unknown token, certificate without a usable SPIFFE ID, token and certificate disagreeing), mismatch (an authenticated request refused for claiming another cluster or tenant; also counted as ok).",
		}, []string{"result"}),
		tokens: f.NewGauge(prometheus.GaugeOpts{
			Name: "tributary_gateway_auth_tokens",
			Help: "Tokens in the tokens file as last loaded.",
		}),
		certReloads: f.NewCounterVec(prometheus.CounterOpts{
			Name: "tributary_gateway_tls_certificate_reloads_total",
			Help: "Reloads of a changed server certificate, by outcome (error: the last good certificate stays in use).",
		}, []string{"outcome"}),
	}
	for _, r := range []string{ResultOK, ResultMissing, ResultInvalid, ResultMismatch} {
		m.requests.WithLabelValues(r)
	}
	for _, o := range []string{"success", "error"} {
		m.certReloads.WithLabelValues(o)
	}
	return m
}
