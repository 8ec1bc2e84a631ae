package grafana

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.yaml.in/yaml/v3"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/tributary-io/tributary/internal/testenv"
)

// lokiResult is one series (metric query) or stream (log query) of a Loki
// query_range answer, with its values' lines (log queries only).
type lokiResult struct {
	Labels map[string]string
	Points int
	Lines  []string
}

// lokiQueryRange runs q over [start, end] at step through Loki's HTTP API,
// as Grafana's Loki data source does, and returns the series or streams.
// A query Loki refuses (syntax, an empty-compatible selector) is an error
// with Loki's message.
func lokiQueryRange(lokiURL, q string, start, end time.Time, step time.Duration) ([]lokiResult, error) {
	v := url.Values{
		"query": {q},
		"start": {strconv.FormatInt(start.UnixNano(), 10)},
		"end":   {strconv.FormatInt(end.UnixNano(), 10)},
		"step":  {fmt.Sprintf("%ds", int(step.Seconds()))},
		"limit": {"1000"},
	}
	return lokiGet(lokiURL + "/loki/api/v1/query_range?" + v.Encode())
}

func lokiGet(u string) ([]lokiResult, error) {
	resp, err := (&http.Client{Timeout: 30 * time.Second}).Get(u)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("loki: HTTP %d: %s", resp.StatusCode, strings.TrimSpace(string(body)))
	}
	var r struct {
		Data struct {
			ResultType string `json:"resultType"`
			Result     []struct {
				Metric map[string]string `json:"metric"`
				Stream map[string]string `json:"stream"`
				Values [][]any           `json:"values"`
			} `json:"result"`
		} `json:"data"`
	}
	if err := json.Unmarshal(body, &r); err != nil {
		return nil, fmt.Errorf("loki answer: %w: %.300s", err, body)
	}
	var out []lokiResult
	for _, res := range r.Data.Result {
		lr := lokiResult{Labels: res.Metric, Points: len(res.Values)}
		if r.Data.ResultType == "streams" {
			lr.Labels = res.Stream
			for _, v := range res.Values {
				if s, ok := v[1].(string); ok {
					lr.Lines = append(lr.Lines, s)
				}
			}
		}
		out = append(out, lr)
	}
	return out, nil
}

// lokiLabelValues is Loki's label values API for label within selector,
// the call behind a label_values() variable.
func lokiLabelValues(lokiURL, label, selector string, start, end time.Time) ([]string, error) {
	v := url.Values{
		"query": {selector},
		"start": {strconv.FormatInt(start.UnixNano(), 10)},
		"end":   {strconv.FormatInt(end.UnixNano(), 10)},
	}
	resp, err := (&http.Client{Timeout: 30 * time.Second}).Get(lokiURL + "/loki/api/v1/label/" + label + "/values?" + v.Encode())
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var r struct {
		Data []string `json:"data"`
	}
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("loki label values: HTTP %d: %s", resp.StatusCode, body)
	}
	if err := json.Unmarshal(body, &r); err != nil {
		return nil, fmt.Errorf("loki label values: %w", err)
	}
	return r.Data, nil
}

// examplesFiles is the logs.files list of the shipped examples (audit,
// ingress-nginx) with their paths moved under dir, as YAML list items
// under "  files:".
func examplesFiles(t *testing.T, dir string, examples ...string) string {
	t.Helper()
	var files []any
	for _, ex := range examples {
		raw, err := os.ReadFile(filepath.Join(testenv.RepoRoot(t), "k8s", "agent", "examples", ex))
		require.NoError(t, err)
		var doc struct {
			Logs struct {
				Files []map[string]any `yaml:"files"`
			} `yaml:"logs"`
		}
		require.NoError(t, yaml.Unmarshal(raw, &doc), ex)
		require.NotEmpty(t, doc.Logs.Files, ex)
		for _, f := range doc.Logs.Files {
			var paths []any
			for _, p := range f["paths"].([]any) {
				paths = append(paths, dir+p.(string))
			}
			f["paths"] = paths
			files = append(files, f)
		}
	}
	out, err := yaml.Marshal(map[string]any{"files": files})
	require.NoError(t, err)
	return "  " + strings.ReplaceAll(strings.TrimSuffix(string(out), "\n"), "\n", "\n  ") + "\n"
}

// writeSample copies an example's sample log (k8s/agent/examples/testdata)
// to path with its timestamps (the JSON fields in tsFields) moved to the
// last minutes, one second apart: lines exactly as the component writes
// them, dated now.
func writeSample(t *testing.T, sample, path string, tsFields ...string) {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(testenv.RepoRoot(t), "k8s", "agent", "examples", "testdata", sample))
	require.NoError(t, err)
	lines := strings.Split(strings.TrimSpace(string(raw)), "\n")
	start := time.Now().Add(-time.Duration(len(lines)+5) * time.Second).UTC()
	for i, l := range lines {
		ts := start.Add(time.Duration(i) * time.Second)
		for _, f := range tsFields {
			re := regexp.MustCompile(`("` + f + `": ?)"[^"]+"`)
			require.True(t, re.MatchString(l), "%s line %d has no %s", sample, i+1, f)
			l = re.ReplaceAllString(l, `${1}"`+ts.Format(time.RFC3339Nano)+`"`)
		}
		lines[i] = l
	}
	require.NoError(t, os.MkdirAll(filepath.Dir(path), 0o755))
	require.NoError(t, os.WriteFile(path, []byte(strings.Join(lines, "\n")+"\n"), 0o644))
}

// The events and logs dashboard against the real Loki filled by the real
// agent: its events section watches a real kube-apiserver, its logs
// section tails a pods directory in the kubelet's layout and the audit and
// ingress-nginx files of the shipped examples (their sample lines, dated
// now), through gateway, Kafka and ingester. Every LogQL query of the
// dashboard is accepted by Loki with the cluster variable at All and
// returns data with it set to the cluster; every variable has values.
func TestEventsLogsDashboardQueriesReturnData(t *testing.T) {
	t.Parallel()
	kube := testenv.StartKube(t)
	p := startLogsPipeline(t)
	dir := t.TempDir()
	ctx := context.Background()

	_, err := kube.Client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "shop"}}, metav1.CreateOptions{})
	require.NoError(t, err)
	now := metav1.Now()
	for i, e := range []struct{ typ, reason, kind, name, msg string }{
		{corev1.EventTypeNormal, "Scheduled", "Pod", "cart-7d9f8b6c5-x2k4p", "Successfully assigned shop/cart-7d9f8b6c5-x2k4p to worker-1"},
		{corev1.EventTypeWarning, "BackOff", "Pod", "cart-7d9f8b6c5-x2k4p", "Back-off restarting failed container cart in pod cart-7d9f8b6c5-x2k4p_shop"},
		{corev1.EventTypeWarning, "Unhealthy", "Pod", "frontend-5c7b9d8f4-q8r2t", "Readiness probe failed: HTTP probe failed with statuscode: 503"},
		{corev1.EventTypeNormal, "ScalingReplicaSet", "Deployment", "cart", "Scaled up replica set cart-7d9f8b6c5 to 2"},
	} {
		_, err := kube.Client.CoreV1().Events("shop").Create(ctx, &corev1.Event{
			ObjectMeta:     metav1.ObjectMeta{Name: fmt.Sprintf("ev-%d", i), Namespace: "shop"},
			InvolvedObject: corev1.ObjectReference{Kind: e.kind, Namespace: "shop", Name: e.name},
			Type:           e.typ, Reason: e.reason, Message: e.msg, Count: 1,
			FirstTimestamp: now, LastTimestamp: now, Source: corev1.EventSource{Component: "kubelet", Host: "worker-1"},
		}, metav1.CreateOptions{})
		require.NoError(t, err)
	}

	// A container's log in the kubelet's layout and CRI format.
	podDir := filepath.Join(dir, "pods", "shop_cart-7d9f8b6c5-x2k4p_0a9d3c1e-1111-4a6b-9c2d-000000000001", "cart")
	require.NoError(t, os.MkdirAll(podDir, 0o755))
	var cri strings.Builder
	for i, msg := range []string{
		`level=info msg="listening" addr=:8080`,
		`level=error msg="payment backend refused the order" order=1041 status=502`,
		`level=info msg="order placed" order=1042`,
		`panic: runtime error: invalid memory address or nil pointer dereference`,
	} {
		ts := time.Now().Add(time.Duration(i-10) * time.Second).UTC().Format(time.RFC3339Nano)
		fmt.Fprintf(&cri, "%s stdout F %s\n", ts, msg)
	}
	require.NoError(t, os.WriteFile(filepath.Join(podDir, "0.log"), []byte(cri.String()), 0o644))

	writeSample(t, "audit.log", dir+"/var/log/kubernetes/audit/audit.log", "requestReceivedTimestamp", "stageTimestamp")
	writeSample(t, "ingress-nginx-access.log", dir+"/var/log/ingress-nginx/access.log", "time")

	sections := fmt.Sprintf(`kubernetes:
  kubeconfig: %s
  leader_election:
    namespace: default
    identity: dashboards
    lease_duration: 4s
    renew_deadline: 3s
    retry_period: 500ms
events:
  batch_size: 10
  batch_wait: 200ms
logs:
  pods_dir: %s
  positions_file: %s
  poll_interval: 100ms
  batch_max_wait: 100ms
%s`, kube.Kubeconfig, filepath.Join(dir, "pods"), filepath.Join(dir, "positions.json"),
		examplesFiles(t, dir, "audit.yaml", "ingress-nginx.yaml"))
	p.startAgentWith(t, "evlogs", testenv.FreePort(t), sections)

	d := loadDashboards(t)["events-logs.json"]
	require.Equal(t, "loki", d.Templating.List[0].Query)
	from, to := time.Now().Add(-15*time.Minute), time.Now().Add(5*time.Minute)

	// What some panels must show beyond "some data": the fields the
	// dashboard names exist in the lines as the agent ships them.
	checks := map[string]func([]lokiResult) error{
		"Event stream": func(rs []lokiResult) error {
			return anyLine(rs, "Warning Pod/cart-7d9f8b6c5-x2k4p BackOff: Back-off restarting")
		},
		"Events by reason": func(rs []lokiResult) error {
			return labelValues(rs, "reason", "BackOff", "Scheduled", "ScalingReplicaSet", "Unhealthy")
		},
		"Error log rate": func(rs []lokiResult) error {
			return labelValues(rs, "pod", "cart-7d9f8b6c5-x2k4p")
		},
		"Requests by user": func(rs []lokiResult) error {
			return labelValues(rs, "user_username", "kubernetes-admin", "system:node:worker-1")
		},
		"Refused requests": func(rs []lokiResult) error {
			return labelValues(rs, "responseStatus_code", "403")
		},
		"Audit events": func(rs []lokiResult) error {
			return anyLine(rs, "kubernetes-admin list pods /api/v1/namespaces/default/pods?limit=500 -> 200")
		},
		"Responses by status class": func(rs []lokiResult) error {
			return labelValues(rs, "status_class", "2xx", "3xx", "5xx")
		},
		"Slow requests": func(rs []lokiResult) error {
			return labelValues(rs, "path", "/api/cart")
		},
		"Slow requests log": func(rs []lokiResult) error {
			return anyLine(rs, "GET shop.example.com/api/cart 502 1.002s shop-cart-8080")
		},
	}
	checked := 0
	for _, pn := range d.queryPanels() {
		for _, tg := range pn.Targets {
			all := mustExpand(t, d, tg.Expr)
			one := mustExpandWith(t, d, tg.Expr, map[string]string{"cluster": "evlogs"})
			testenv.Eventually(t, 60*time.Second, func() error {
				// All clusters: what Grafana sends with the All value.
				if _, err := lokiQueryRange(p.loki.URL, all, from, to, 15*time.Second); err != nil {
					return fmt.Errorf("%s: %w", pn.Title, err)
				}
				rs, err := lokiQueryRange(p.loki.URL, one, from, to, 15*time.Second)
				if err != nil {
					return fmt.Errorf("%s: %w", pn.Title, err)
				}
				if len(rs) == 0 {
					return fmt.Errorf("%s: no data for %s", pn.Title, one)
				}
				for _, r := range rs {
					for _, l := range r.Lines {
						if strings.Contains(l, "<no value>") || strings.TrimSpace(l) == "" {
							return fmt.Errorf("%s: line_format left a field empty: %q", pn.Title, l)
						}
					}
				}
				if check := checks[pn.Title]; check != nil {
					if err := check(rs); err != nil {
						return fmt.Errorf("%s: %w", pn.Title, err)
					}
				}
				return nil
			})
			checked++
		}
	}
	require.Equal(t, 16, checked)

	labelValuesQuery := regexp.MustCompile(`^label_values\((.+), *(\w+)\)$`)
	want := map[string]string{"cluster": "evlogs", "namespace": "shop", "pod": "cart-7d9f8b6c5-x2k4p"}
	for _, v := range d.Templating.List {
		if v.Type != "query" {
			continue
		}
		m := labelValuesQuery.FindStringSubmatch(variableQuery(v))
		require.NotNil(t, m, v.Name)
		got, err := lokiLabelValues(p.loki.URL, m[2], mustExpand(t, d, m[1]), from, to)
		require.NoError(t, err, v.Name)
		require.Contains(t, got, want[v.Name], "variable %s", v.Name)
	}
}

func anyLine(rs []lokiResult, want string) error {
	var some string
	for _, r := range rs {
		for _, l := range r.Lines {
			if strings.Contains(l, want) {
				return nil
			}
			some = l
		}
	}
	return fmt.Errorf("no line contains %q (one line: %q)", want, some)
}

func labelValues(rs []lokiResult, label string, want ...string) error {
	var got []string
	for _, r := range rs {
		got = append(got, r.Labels[label])
	}
	for _, w := range want {
		if !slices.Contains(got, w) {
			return fmt.Errorf("%s values %q, want %q among them", label, got, w)
		}
	}
	return nil
}
