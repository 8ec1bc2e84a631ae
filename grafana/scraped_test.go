package grafana

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/stretchr/testify/require"
	"go.yaml.in/yaml/v3"
	"google.golang.org/protobuf/proto"

	"github.com/tributary-io/tributary/internal/testenv"
)

// fixtureTarget serves a recorded exposition (testdata/scrape/*.prom) as a
// scrape target. Scrape n answers the counters and histograms multiplied
// by n, so that rate() and increase() see them grow as on a live
// exporter; gauges stay as recorded.
type fixtureTarget struct {
	families []*dto.MetricFamily
	scrapes  atomic.Int64
}

func serveFixture(t *testing.T, file string) string {
	t.Helper()
	f, err := os.Open(filepath.Join("testdata", "scrape", file))
	require.NoError(t, err)
	defer f.Close()
	parser := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := parser.TextToMetricFamilies(f)
	require.NoError(t, err, file)
	require.NotEmpty(t, mfs, file)
	ft := &fixtureTarget{}
	for _, mf := range mfs {
		ft.families = append(ft.families, mf)
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := float64(ft.scrapes.Add(1))
		format := expfmt.NewFormat(expfmt.TypeTextPlain)
		w.Header().Set("Content-Type", string(format))
		enc := expfmt.NewEncoder(w, format)
		for _, mf := range ft.families {
			_ = enc.Encode(grown(mf, n))
		}
	}))
	t.Cleanup(srv.Close)
	return srv.Listener.Addr().String()
}

// grown is mf with its counters and histograms multiplied by n.
func grown(mf *dto.MetricFamily, n float64) *dto.MetricFamily {
	out := proto.Clone(mf).(*dto.MetricFamily)
	for _, m := range out.GetMetric() {
		switch {
		case m.GetCounter() != nil:
			m.Counter.Value = proto.Float64(m.GetCounter().GetValue() * n)
		case m.GetHistogram() != nil:
			h := m.Histogram
			h.SampleCount = proto.Uint64(uint64(float64(h.GetSampleCount()) * n))
			h.SampleSum = proto.Float64(h.GetSampleSum() * n)
			for _, b := range h.GetBucket() {
				b.CumulativeCount = proto.Uint64(uint64(float64(b.GetCumulativeCount()) * n))
			}
		}
	}
	return out
}

// fixtureJobs are the recorded expositions and the job names the agent's
// default scrape configs (k8s/agent/scrape-configs.yaml) give them; extra
// is what the default job's relabelling adds to a static target.
var fixtureJobs = []struct{ job, file, extra string }{
	{"node-exporter", "node-exporter.prom", ", labels: {node: worker-1}"},
	{"cadvisor", "cadvisor.prom", ", labels: {node: worker-1}"},
	{"kube-state-metrics", "kube-state-metrics.prom", ""},
	{"apiserver", "apiserver.prom", ""},
	{"etcd", "etcd.prom", ", labels: {node: control-plane-1}"},
	{"kube-scheduler", "kube-scheduler.prom", ", labels: {node: control-plane-1}"},
	{"kube-controller-manager", "kube-controller-manager.prom", ", labels: {node: control-plane-1}"},
}

// kubeletOnlyPanels are the panels whose data cannot exist on a machine
// without a kubelet (cAdvisor is in it), kube-state-metrics, node-exporter,
// an API server, etcd, a scheduler and a controller manager: all the
// panels of these three dashboards. Each is fed from the recorded
// fixture of the job its query reads.
var kubeletOnlyPanels = map[string]map[string]string{
	"nodes.json": {
		"CPU utilisation":     "node-exporter",
		"Load per CPU":        "node-exporter",
		"Memory utilisation":  "node-exporter",
		"Disk space used":     "node-exporter",
		"Disk busy":           "node-exporter",
		"Network traffic":     "node-exporter",
		"Nodes not Ready":     "kube-state-metrics",
		"Pressure conditions": "kube-state-metrics",
	},
	"pods-containers.json": {
		"Top 10 pods by CPU":    "cadvisor",
		"Top 10 pods by memory": "cadvisor",
		"CPU throttling":        "cadvisor",
		"Pods by phase":         "kube-state-metrics",
		"Container restarts":    "kube-state-metrics",
		"OOMKilled containers":  "kube-state-metrics",
		"CrashLoopBackOff":      "kube-state-metrics",
		"Evicted pods":          "kube-state-metrics",
	},
	"control-plane.json": {
		"Requests by verb":               "apiserver",
		"Requests by code":               "apiserver",
		"Request latency p99 by verb":    "apiserver",
		"In-flight requests":             "apiserver",
		"Rejected requests":              "apiserver",
		"Database size":                  "etcd",
		"Leader changes":                 "etcd",
		"WAL fsync p99":                  "etcd",
		"API server to etcd latency p99": "apiserver",
		"Pending pods":                   "kube-scheduler",
		"Scheduling attempts by result":  "kube-scheduler",
		"Controller work queue depth":    "kube-controller-manager",
		"Controller work queue adds":     "kube-controller-manager",
	},
}

var jobMatcher = regexp.MustCompile(`job="([^"]+)"`)

// The node, pod and control-plane dashboards through the real pipeline:
// the agent scrapes recorded expositions of node-exporter, cAdvisor,
// kube-state-metrics, the API server, etcd, the scheduler and the
// controller manager under the default config's job names; every panel's
// query and every variable's selector must return data for the cluster.
func TestKubernetesDashboardsQueriesReturnData(t *testing.T) {
	t.Parallel()
	p := startMetricsPipeline(t)
	var jobs []string
	for _, f := range fixtureJobs {
		jobs = append(jobs, scrapeJob(f.job, serveFixture(t, f.file), f.extra))
	}
	p.startAgent(t, "kubefix", testenv.FreePort(t), jobs...)

	all := loadDashboards(t)
	checked := 0
	for file, panels := range kubeletOnlyPanels {
		d, ok := all[file]
		require.True(t, ok, file)
		seen := map[string]bool{}
		for _, pn := range d.queryPanels() {
			job, ok := panels[pn.Title]
			require.True(t, ok, "%s: panel %q is fed by no fixture; add it to kubeletOnlyPanels", file, pn.Title)
			seen[pn.Title] = true
			for _, tg := range pn.Targets {
				m := jobMatcher.FindStringSubmatch(tg.Expr)
				require.NotNil(t, m, "%s %q: no job matcher", file, pn.Title)
				require.Equal(t, job, m[1], "%s %q", file, pn.Title)
				waitForData(t, p.prom, mustExpandWith(t, d, tg.Expr, map[string]string{"cluster": "kubefix"}))
				checked++
			}
		}
		require.Len(t, seen, len(panels), "%s: kubeletOnlyPanels names panels the dashboard does not have", file)
		for _, v := range d.Templating.List {
			if v.Type != "query" {
				continue
			}
			m := regexp.MustCompile(`^label_values\((.+), *(\w+)\)$`).FindStringSubmatch(variableQuery(v))
			require.NotNil(t, m, "%s variable %s", file, v.Name)
			waitForData(t, p.prom, mustExpandWith(t, d, m[1], map[string]string{"cluster": "kubefix"}))
		}
	}
	require.Equal(t, 30, checked)
}

func mustExpandWith(t *testing.T, d dashboard, expr string, values map[string]string) string {
	t.Helper()
	out, err := expandWith(d, expr, values)
	require.NoError(t, err)
	return out
}

// flakyTarget answers every fourth request with 500, the others with 200,
// and counts both.
type flakyTarget struct {
	mu               sync.Mutex
	requests, failed int
}

func (f *flakyTarget) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	f.requests++
	fail := f.requests%4 == 0
	if fail {
		f.failed++
	}
	f.mu.Unlock()
	if fail {
		http.Error(w, "every fourth request fails", http.StatusInternalServerError)
		return
	}
	_, _ = w.Write([]byte("ok\n"))
}

func (f *flakyTarget) counts() (requests, failed int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.requests, f.failed
}

// blackboxModules is the exporter's module file of the test: the example's
// http_2xx module (any 2xx is success).
const blackboxModules = `modules:
  http_2xx:
    prober: http
    timeout: 5s
    http:
      preferred_ip_protocol: ip4
`

// exampleBlackboxJob is the blackbox job of k8s/agent/examples/blackbox.yaml
// as it is documented, with only what differs on this machine changed: the
// exporter's address, the probed URL and a 1 s interval. It is returned as
// a scrape_configs list item.
func exampleBlackboxJob(t *testing.T, exporter, target string) string {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(testenv.RepoRoot(t), "k8s", "agent", "examples", "blackbox.yaml"))
	require.NoError(t, err)
	var ex struct {
		Metrics struct {
			ClusterWideJobs []string         `yaml:"cluster_wide_jobs"`
			ScrapeConfigs   []map[string]any `yaml:"scrape_configs"`
		} `yaml:"metrics"`
	}
	require.NoError(t, yaml.Unmarshal(raw, &ex))
	require.Len(t, ex.Metrics.ScrapeConfigs, 1)
	job := ex.Metrics.ScrapeConfigs[0]
	require.Equal(t, []string{job["job_name"].(string)}, ex.Metrics.ClusterWideJobs, "the probes run once per cluster, not once per node")
	job["scrape_interval"], job["scrape_timeout"] = "1s", "900ms"
	job["static_configs"] = []any{map[string]any{"targets": []any{target}}}
	replaced := false
	for _, rc := range job["relabel_configs"].([]any) {
		rc := rc.(map[string]any)
		if rc["target_label"] == "__address__" {
			rc["replacement"] = exporter
			replaced = true
		}
	}
	require.True(t, replaced, "the example sends no scrape to the exporter (no relabelling of __address__)")
	out, err := yaml.Marshal([]any{job})
	require.NoError(t, err)
	return "    " + strings.ReplaceAll(strings.TrimSuffix(string(out), "\n"), "\n", "\n    ") + "\n"
}

// The synthetic checks end to end: the real blackbox exporter probes a
// local server that fails every fourth request; the agent scrapes the
// exporter with the documented job (multi-target: /probe?target=...);
// the samples go through gateway, Kafka and ingester into Prometheus.
// Every panel of the synthetic dashboard returns data, and the success
// ratio of its SLO panels and of the TributaryProbeFailing rule is the
// one the server counted, within what one unrecorded probe can move it.
func TestSyntheticChecks(t *testing.T) {
	t.Parallel()
	p := startMetricsPipeline(t)
	bb := testenv.Blackbox(t, blackboxModules)
	flaky := &flakyTarget{}
	srv := httptest.NewServer(flaky)
	t.Cleanup(srv.Close)
	agent := p.startAgent(t, "synth", testenv.FreePort(t), exampleBlackboxJob(t, bb.Addr, srv.URL+"/healthz"))

	d := loadDashboards(t)["synthetic.json"]
	require.NotEmpty(t, d.UID)
	vars := map[string]string{"cluster": "synth"}
	for _, pn := range d.queryPanels() {
		for _, tg := range pn.Targets {
			waitForData(t, p.prom, mustExpandWith(t, d, tg.Expr, vars))
		}
	}
	// Enough probes that the ratio is a ratio, then a clean stop: the
	// agent sends what it scraped, and the number of probes is fixed.
	testenv.Eventually(t, 60*time.Second, func() error {
		if n, _ := flaky.counts(); n < 16 {
			return fmt.Errorf("%d probes so far", n)
		}
		return nil
	})
	require.NoError(t, agent.Stop(30*time.Second))
	requests, failed := flaky.counts()
	require.Positive(t, failed)
	want := float64(requests-failed) / float64(requests)

	// Every probe is a sample, but for at most one the stop cut short.
	var n int
	testenv.Eventually(t, 30*time.Second, func() error {
		got, err := p.prom.Query(`count_over_time(probe_success{cluster="synth"}[1h])`, time.Now())
		if err != nil {
			return err
		}
		if len(got) != 1 {
			return fmt.Errorf("%d probe_success series, want 1", len(got))
		}
		if n = int(got[0].Value); n < requests-1 {
			return fmt.Errorf("%d probes in Prometheus, %d answered", n, requests)
		}
		return nil
	})
	require.LessOrEqual(t, n, requests)
	tolerance := 1 / float64(n)
	t.Logf("%d probes, %d failed: success ratio %.4f, tolerance %.4f", requests, failed, want, tolerance)

	ratio := func(title string) float64 {
		for _, pn := range d.queryPanels() {
			if pn.Title == title {
				got, err := p.prom.Query(mustExpandWith(t, d, pn.Targets[0].Expr, vars), time.Now())
				require.NoError(t, err)
				require.Len(t, got, 1, title)
				return got[0].Value
			}
		}
		t.Fatalf("no panel %q", title)
		return 0
	}
	require.InDelta(t, want, ratio("Success ratio (7d)"), tolerance)
	require.InDelta(t, want, ratio("Success ratio (30d)"), tolerance)
	// 1 - (1 - ratio) / (1 - 0.999): the budget moves 1000 times as fast.
	require.InDelta(t, 1-(1-want)/(1-0.999), ratio("Error budget left (30d)"), tolerance/(1-0.999))

	// The alert rule's expression on the same data: the ratio, below its
	// 0.9 threshold.
	expr := ruleExpr(t, "TributaryProbeFailing")
	got, err := p.prom.Query(expr, time.Now())
	require.NoError(t, err)
	require.Len(t, got, 1, expr)
	require.Equal(t, "synth", got[0].Metric["cluster"])
	require.Equal(t, srv.URL+"/healthz", got[0].Metric["instance"])
	require.InDelta(t, want, got[0].Value, tolerance)
}

// ruleExpr is the expression of the alert named alert in
// prometheus/rules/tributary.rules.yaml.
func ruleExpr(t *testing.T, alert string) string {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(testenv.RepoRoot(t), "prometheus", "rules", "tributary.rules.yaml"))
	require.NoError(t, err)
	var f struct {
		Groups []struct {
			Rules []struct {
				Alert string `yaml:"alert"`
				Expr  string `yaml:"expr"`
			} `yaml:"rules"`
		} `yaml:"groups"`
	}
	require.NoError(t, yaml.Unmarshal(raw, &f))
	for _, g := range f.Groups {
		for _, r := range g.Rules {
			if r.Alert == alert {
				return r.Expr
			}
		}
	}
	t.Fatalf("no alert %s", alert)
	return ""
}
