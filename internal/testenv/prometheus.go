package testenv

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"
)

var installOnce sync.Once

// PrometheusBinary finds the Debian prometheus binary, installing it with
// scripts/install-deps.sh when it is missing.
func PrometheusBinary(t testing.TB) string {
	t.Helper()
	if p, err := exec.LookPath("prometheus"); err == nil {
		return p
	}
	installOnce.Do(func() { runInstallDeps(t) })
	p, err := exec.LookPath("prometheus")
	if err != nil {
		t.Fatalf("prometheus not found after install: %v", err)
	}
	return p
}

// runInstallDeps installs the Debian packages the tests need
// (scripts/install-deps.sh: Prometheus, the blackbox exporter, kcat).
func runInstallDeps(t testing.TB) {
	t.Helper()
	cmd := exec.Command("bash", filepath.Join(RepoRoot(t), "scripts", "install-deps.sh"))
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("scripts/install-deps.sh: %v\n%s", err, out)
	}
}

// PrometheusServer is a real Prometheus started by a test.
type PrometheusServer struct {
	URL     string
	Port    int
	DataDir string
	Config  string
	server
}

// SinkConfig accepts samples up to a day out of order: an at-least-once
// pipeline replays records after a crash, and replayed samples are older
// than what the series already has.
const SinkConfig = `
global:
  scrape_interval: 1h
storage:
  tsdb:
    out_of_order_time_window: 1d
`

// Prometheus starts a Prometheus with config (YAML) and the remote-write
// receiver enabled, on a free loopback port with a temporary data dir.
func Prometheus(t testing.TB, config string) *PrometheusServer {
	t.Helper()
	return startPrometheus(t, config, "prometheus", PrometheusBinary(t), "--web.enable-lifecycle")
}

// startPrometheus starts bin as a Prometheus with config, the remote-write
// receiver and extra flags, and keeps how to start it again (Restart).
func startPrometheus(t testing.TB, config, name, bin string, extra ...string) *PrometheusServer {
	t.Helper()
	dir := t.TempDir()
	cfg := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(cfg, []byte(config), 0o644); err != nil {
		t.Fatal(err)
	}
	p := &PrometheusServer{DataDir: filepath.Join(dir, "data"), Config: cfg}
	run := func(t testing.TB) {
		p.Proc = StartProcess(t, name, bin, append([]string{
			"--config.file=" + p.Config,
			"--storage.tsdb.path=" + p.DataDir,
			"--web.listen-address=" + Addr(p.Port),
			"--web.enable-remote-write-receiver",
			"--log.level=warn",
		}, extra...))
	}
	p.launch = func(t testing.TB) {
		t.Helper()
		run(t)
		WaitHTTP(t, p.Proc, p.URL+"/-/ready", 60*time.Second)
	}
	startOnFreePorts(t, 60*time.Second, func() (*Process, string) {
		p.Port = FreePort(t)
		p.URL = "http://" + Addr(p.Port)
		run(t)
		return p.Proc, p.URL + "/-/ready"
	})
	return p
}

// Sample is one element of an instant-query vector.
type Sample struct {
	Metric map[string]string
	Value  float64
}

// Query runs an instant query at ts.
func (p *PrometheusServer) Query(q string, ts time.Time) ([]Sample, error) {
	u := p.URL + "/api/v1/query?" + url.Values{
		"query": {q},
		"time":  {strconv.FormatFloat(float64(ts.UnixMilli())/1000, 'f', 3, 64)},
	}.Encode()
	resp, err := http.Get(u)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var body struct {
		Status string `json:"status"`
		Error  string `json:"error"`
		Data   struct {
			ResultType string `json:"resultType"`
			Result     []struct {
				Metric map[string]string `json:"metric"`
				Value  [2]any            `json:"value"`
			} `json:"result"`
		} `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		return nil, fmt.Errorf("query %q: %w", q, err)
	}
	if body.Status != "success" {
		return nil, fmt.Errorf("query %q: %s", q, body.Error)
	}
	out := make([]Sample, 0, len(body.Data.Result))
	for _, r := range body.Data.Result {
		s, _ := r.Value[1].(string)
		v, err := strconv.ParseFloat(s, 64)
		if err != nil {
			return nil, fmt.Errorf("query %q: value %v", q, r.Value[1])
		}
		out = append(out, Sample{Metric: r.Metric, Value: v})
	}
	return out, nil
}
