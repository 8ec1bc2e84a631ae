package testenv

import "testing"

// PrometheusOTLP starts Prometheus 3 (built by scripts/build-prometheus.sh
// from the prometheus/prometheus module version the gateway's OTLP
// translator comes from) with its own OTLP receiver
// (POST /api/v1/otlp/v1/metrics) and the remote-write receiver, on a free
// loopback port with a temporary data dir: the reference the gateway's
// OTLP metrics conversion is compared with, and a sink for it. Debian's
// Prometheus (2.42) has no OTLP receiver.
func PrometheusOTLP(t testing.TB, config string) *PrometheusServer {
	t.Helper()
	return startPrometheus(t, config, "prometheus3", serverBinary(t, "build-prometheus.sh"), "--web.enable-otlp-receiver")
}
