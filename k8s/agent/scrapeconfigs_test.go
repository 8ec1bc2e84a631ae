// Tests of the shipped default scrape configs (scrape-configs.yaml), loaded
// by Prometheus's config package and run through its Kubernetes discovery
// and target building against a real kube-apiserver.
package agent_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/prometheus/config"
	"github.com/prometheus/prometheus/discovery"
	"github.com/prometheus/prometheus/discovery/kubernetes"
	"github.com/prometheus/prometheus/discovery/targetgroup"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/scrape"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/tributary-io/tributary/internal/testenv"
)

// The jobs the agent's config must list in metrics.cluster_wide_jobs.
var clusterWideJobs = []string{"apiserver", "kube-state-metrics", "etcd", "kube-scheduler", "kube-controller-manager"}

var envRef = regexp.MustCompile(`\$\{([A-Za-z_][A-Za-z0-9_]*)\}`)

// loadDefault reads scrape-configs.yaml with ${NODE_NAME} set to node, as the
// agent does, and parses it with Prometheus's config package.
func loadDefault(t *testing.T, node string) []*config.ScrapeConfig {
	t.Helper()
	data, err := os.ReadFile("scrape-configs.yaml")
	require.NoError(t, err)
	for _, m := range envRef.FindAllStringSubmatch(string(data), -1) {
		require.Equal(t, "NODE_NAME", m[1], "the file may refer to no environment variable but NODE_NAME")
	}
	expanded := strings.ReplaceAll(string(data), "${NODE_NAME}", node)
	cfg, err := config.Load(expanded, slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	scfgs, err := cfg.GetScrapeConfigs()
	require.NoError(t, err)
	return scfgs
}

func TestDefaultScrapeConfigsLoad(t *testing.T) {
	scfgs := loadDefault(t, "node-a")
	var jobs []string
	for _, sc := range scfgs {
		jobs = append(jobs, sc.JobName)
		require.NotEmpty(t, sc.ServiceDiscoveryConfigs, "job %s discovers nothing", sc.JobName)
		for _, d := range sc.ServiceDiscoveryConfigs {
			kd, ok := d.(*kubernetes.SDConfig)
			require.True(t, ok, "job %s: %T, want kubernetes_sd_configs only", sc.JobName, d)
			if slices.Contains(clusterWideJobs, sc.JobName) {
				continue
			}
			// Per-node jobs see only this node's objects.
			var limited bool
			for _, s := range kd.Selectors {
				limited = limited || s.Field == "spec.nodeName=node-a" || s.Field == "metadata.name=node-a"
			}
			require.True(t, limited, "per-node job %s has no selector for its own node: %+v", sc.JobName, kd.Selectors)
		}
	}
	require.Equal(t, []string{
		"kubelet", "cadvisor", "node-exporter", "kubernetes-pods",
		"apiserver", "kube-state-metrics", "etcd", "kube-scheduler", "kube-controller-manager",
	}, jobs)
}

// discovered runs Prometheus's discovery manager on the jobs' Kubernetes
// discovery and keeps the latest target groups of every job.
type discovered struct {
	mu     sync.Mutex
	groups map[string][]*targetgroup.Group
	scfgs  map[string]*config.ScrapeConfig
}

func discover(t *testing.T, scfgs []*config.ScrapeConfig, kubeconfig string, reg prometheus.Registerer) *discovered {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	sdMetrics, err := discovery.CreateAndRegisterSDMetrics(reg)
	require.NoError(t, err)
	mgr := discovery.NewManager(ctx, slog.New(slog.DiscardHandler), reg, sdMetrics, discovery.Updatert(100*time.Millisecond))
	require.NotNil(t, mgr)
	d := &discovered{scfgs: map[string]*config.ScrapeConfig{}}
	cfgs := map[string]discovery.Configs{}
	for _, sc := range scfgs {
		for _, c := range sc.ServiceDiscoveryConfigs {
			// In a pod the discovery uses the service account; here the
			// test cluster's kubeconfig.
			c.(*kubernetes.SDConfig).KubeConfig = kubeconfig
		}
		cfgs[sc.JobName] = sc.ServiceDiscoveryConfigs
		d.scfgs[sc.JobName] = sc
	}
	require.NoError(t, mgr.ApplyConfig(cfgs))
	done := make(chan struct{})
	go func() { defer close(done); _ = mgr.Run() }()
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case g := <-mgr.SyncCh():
				d.mu.Lock()
				d.groups = g
				d.mu.Unlock()
			}
		}
	}()
	t.Cleanup(func() { cancel(); <-done })
	return d
}

// targets is what the scrape manager would scrape for job: one line per
// distinct target, "URL {labels other than job and instance}", sorted.
func (d *discovered) targets(t *testing.T, job string) []string {
	t.Helper()
	d.mu.Lock()
	groups := d.groups[job]
	d.mu.Unlock()
	lb := labels.NewBuilder(labels.EmptyLabels())
	seen := map[string]bool{}
	var out []string
	for _, g := range groups {
		ts, errs := scrape.TargetsFromGroup(g, d.scfgs[job], nil, lb)
		require.Empty(t, errs, "job %s: target building failed", job)
		for _, tg := range ts {
			ls := tg.Labels(labels.NewBuilder(labels.EmptyLabels()))
			if ls.IsEmpty() {
				continue // dropped by relabelling, as the scrape pool does
			}
			ls = labels.NewBuilder(ls).Del("job", "instance").Labels()
			line := fmt.Sprintf("%s %s", tg.URL(), ls)
			if !seen[line] {
				seen[line] = true
				out = append(out, line)
			}
		}
	}
	sort.Strings(out)
	return out
}

// expect waits until every job of want has exactly those targets.
func (d *discovered) expect(t *testing.T, want map[string][]string) {
	t.Helper()
	testenv.Eventually(t, 30*time.Second, func() error {
		var diffs []string
		for job, w := range want {
			if w == nil {
				w = []string{}
			}
			got := d.targets(t, job)
			if got == nil {
				got = []string{}
			}
			if !slices.Equal(got, w) {
				diffs = append(diffs, fmt.Sprintf("%s: got %q, want %q", job, got, w))
			}
		}
		if len(diffs) > 0 {
			return fmt.Errorf("targets differ:\n%s", strings.Join(diffs, "\n"))
		}
		return nil
	})
}

type podSpec struct {
	name, namespace, node, ip string
	labels, annotations       map[string]string
	ports                     []corev1.ContainerPort
	sidecar                   bool // a second container without ports
}

func (p podSpec) pod() *corev1.Pod {
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: p.name, Namespace: p.namespace, Labels: p.labels, Annotations: p.annotations},
		Spec: corev1.PodSpec{
			NodeName:   p.node,
			Containers: []corev1.Container{{Name: "app", Image: "none", Ports: p.ports}},
		},
		Status: corev1.PodStatus{PodIP: p.ip},
	}
	if p.sidecar {
		pod.Spec.Containers = append(pod.Spec.Containers, corev1.Container{Name: "sidecar", Image: "none"})
	}
	return pod
}

func scrapeAnnotations(kv ...string) map[string]string {
	m := map[string]string{}
	for i := 0; i < len(kv); i += 2 {
		m["prometheus.io/"+kv[i]] = kv[i+1]
	}
	return m
}

func TestDefaultScrapeConfigsDiscovery(t *testing.T) {
	k := testenv.StartKube(t)
	ctx := context.Background()
	k.CreateNode(t, "node-a", 10250)
	k.CreateNode(t, "node-b", 10250)

	web := []corev1.ContainerPort{{Name: "web", ContainerPort: 8080}}
	for _, p := range []podSpec{
		// Annotated, on this node: scraped at the annotation's port, path
		// and scheme (once, though two containers yield two raw targets).
		{name: "annotated", node: "node-a", ip: "127.0.0.11", ports: web, sidecar: true,
			annotations: scrapeAnnotations("scrape", "true", "port", "9102", "path", "/custom", "scheme", "https")},
		// Annotated without port/path/scheme: its declared port, /metrics, http.
		{name: "annotated-defaults", node: "node-a", ip: "127.0.0.12", ports: web,
			annotations: scrapeAnnotations("scrape", "true")},
		// Annotated, on another node: that node's agent scrapes it.
		{name: "other-node", node: "node-b", ip: "127.0.0.13", ports: web,
			annotations: scrapeAnnotations("scrape", "true", "port", "9102")},
		// Not annotated, or annotated "false": not scraped.
		{name: "not-annotated", node: "node-a", ip: "127.0.0.14", ports: web},
		{name: "scrape-false", node: "node-a", ip: "127.0.0.18", ports: web,
			annotations: scrapeAnnotations("scrape", "false", "port", "9102")},
		// node-exporter on this node (annotated too: scraped once, by its job).
		{name: "node-exporter-a", node: "node-a", ip: "127.0.0.15",
			labels:      map[string]string{"app.kubernetes.io/name": "node-exporter"},
			annotations: scrapeAnnotations("scrape", "true"),
			ports:       []corev1.ContainerPort{{Name: "metrics", ContainerPort: 9100}}},
		{name: "node-exporter-b", node: "node-b", ip: "127.0.0.25",
			labels: map[string]string{"app.kubernetes.io/name": "node-exporter"},
			ports:  []corev1.ContainerPort{{Name: "metrics", ContainerPort: 9100}}},
		// Cluster-wide: kube-state-metrics on any node, its metrics port only.
		{name: "kube-state-metrics", namespace: "kube-system", node: "node-b", ip: "127.0.0.16",
			labels: map[string]string{"app.kubernetes.io/name": "kube-state-metrics"},
			ports:  []corev1.ContainerPort{{Name: "http-metrics", ContainerPort: 8080}, {Name: "telemetry", ContainerPort: 8081}}},
		// A control-plane static pod (no declared ports); no etcd and no
		// controller-manager pods, as on a managed cluster.
		{name: "kube-scheduler-node-b", namespace: "kube-system", node: "node-b", ip: "127.0.0.17",
			labels: map[string]string{"component": "kube-scheduler", "tier": "control-plane"}},
	} {
		k.RunPod(t, p.pod())
	}

	// The API server's EndpointSlice, as its endpoint reconciler writes it
	// on a real cluster (the API refuses the test apiserver's loopback
	// address; a documentation address is only discovered, never dialled).
	apiPort, apiPortName, tcp := int32(6443), "https", corev1.ProtocolTCP
	_, err := k.Client.DiscoveryV1().EndpointSlices("default").Create(ctx, &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Name: "kubernetes", Labels: map[string]string{discoveryv1.LabelServiceName: "kubernetes"}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Endpoints:   []discoveryv1.Endpoint{{Addresses: []string{"192.0.2.10"}, Conditions: discoveryv1.EndpointConditions{Ready: new(true)}}},
		Ports:       []discoveryv1.EndpointPort{{Name: &apiPortName, Port: &apiPort, Protocol: &tcp}},
	}, metav1.CreateOptions{})
	require.NoError(t, err)

	reg := prometheus.NewRegistry()
	d := discover(t, loadDefault(t, "node-a"), k.Kubeconfig, reg)
	d.expect(t, map[string][]string{
		"kubelet":  {`https://127.0.0.1:10250/metrics {node="node-a"}`},
		"cadvisor": {`https://127.0.0.1:10250/metrics/cadvisor {node="node-a"}`},
		"kubernetes-pods": {
			`http://127.0.0.12:8080/metrics {namespace="default", node="node-a", pod="annotated-defaults"}`,
			`https://127.0.0.11:9102/custom {namespace="default", node="node-a", pod="annotated"}`,
		},
		"node-exporter":           {`http://127.0.0.15:9100/metrics {node="node-a"}`},
		"apiserver":               {`https://192.0.2.10:6443/metrics {}`},
		"kube-state-metrics":      {`http://127.0.0.16:8080/metrics {}`},
		"kube-scheduler":          {`https://127.0.0.17:10259/metrics {node="node-b"}`},
		"etcd":                    nil,
		"kube-controller-manager": nil,
	})

	// A deleted pod stops being a target; a new one becomes one.
	require.NoError(t, k.Client.CoreV1().Pods("default").Delete(ctx, "annotated", metav1.DeleteOptions{GracePeriodSeconds: new(int64(0))}))
	k.RunPod(t, podSpec{name: "late", node: "node-a", ip: "127.0.0.19", ports: web,
		annotations: scrapeAnnotations("scrape", "true", "port", "9200", "path", "/m")}.pod())
	d.expect(t, map[string][]string{
		"kubernetes-pods": {
			`http://127.0.0.12:8080/metrics {namespace="default", node="node-a", pod="annotated-defaults"}`,
			`http://127.0.0.19:9200/m {namespace="default", node="node-a", pod="late"}`,
		},
	})

	// Nothing above cost a failed list or watch: the jobs whose pods do not
	// exist degrade to no targets, quietly.
	mfs, err := reg.Gather()
	require.NoError(t, err)
	var found bool
	for _, mf := range mfs {
		if mf.GetName() == "prometheus_sd_kubernetes_failures_total" {
			found = true
			require.Zero(t, mf.GetMetric()[0].GetCounter().GetValue(), "Kubernetes discovery failures")
		}
	}
	require.True(t, found, "prometheus_sd_kubernetes_failures_total not registered")
}
