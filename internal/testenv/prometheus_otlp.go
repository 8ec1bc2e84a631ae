package testenv

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

// PrometheusOTLP starts Prometheus 3 (built by scripts/build-prometheus.sh
// from the prometheus/prometheus module version the gateway's OTLP
// translator comes from) with its own OTLP receiver
// (POST /api/v1/otlp/v1/metrics) and the remote-write receiver, on a free
// loopback port with a temporary data dir: the reference the gateway's
// OTLP metrics conversion is compared with, and a sink for it. Debian's
// Prometheus (2.42) has no OTLP receiver.
func PrometheusOTLP(t testing.TB, config string) *PrometheusServer {
	t.Helper()
	bin := serverBinary(t, "build-prometheus.sh")
	dir := t.TempDir()
	cfg := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(cfg, []byte(config), 0o644); err != nil {
		t.Fatal(err)
	}
	p := &PrometheusServer{Port: FreePort(t), DataDir: filepath.Join(dir, "data"), Config: cfg}
	p.URL = "http://" + Addr(p.Port)
	p.launch = func(t testing.TB) {
		t.Helper()
		p.Proc = StartProcess(t, "prometheus3", bin, []string{
			"--config.file=" + p.Config,
			"--storage.tsdb.path=" + p.DataDir,
			"--web.listen-address=" + Addr(p.Port),
			"--web.enable-remote-write-receiver",
			"--web.enable-otlp-receiver",
			"--log.level=warn",
		})
		WaitHTTP(t, p.Proc, p.URL+"/-/ready", 60*time.Second)
	}
	p.launch(t)
	return p
}
