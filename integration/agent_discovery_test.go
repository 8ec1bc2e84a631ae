package integration

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
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

// shippedJob returns the job named name of the shipped default scrape
// configs (k8s/agent/scrape-configs.yaml), as YAML list items indented for
// agentConfig, with kubeconfig_file set on its Kubernetes discovery (in a
// pod the agent uses its service account; here the test cluster's
// kubeconfig). ${NODE_NAME} is left for the agent to expand.
func shippedJob(t *testing.T, name, kubeconfig string) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(testenv.RepoRoot(t), "k8s", "agent", "scrape-configs.yaml"))
	require.NoError(t, err)
	var file struct {
		ScrapeConfigs []map[string]any `yaml:"scrape_configs"`
	}
	require.NoError(t, yaml.Unmarshal(data, &file))
	for _, job := range file.ScrapeConfigs {
		if job["job_name"] != name {
			continue
		}
		sds, ok := job["kubernetes_sd_configs"].([]any)
		require.True(t, ok, "job %s has no kubernetes_sd_configs", name)
		for _, sd := range sds {
			sd.(map[string]any)["kubeconfig_file"] = kubeconfig
		}
		out, err := yaml.Marshal([]any{job})
		require.NoError(t, err)
		lines := strings.Split(strings.TrimRight(string(out), "\n"), "\n")
		return "    " + strings.Join(lines, "\n    ") + "\n"
	}
	t.Fatalf("no job %s in k8s/agent/scrape-configs.yaml", name)
	return ""
}

func port(t *testing.T, addr string) int {
	t.Helper()
	_, p, err := net.SplitHostPort(addr)
	require.NoError(t, err)
	n, err := strconv.Atoi(p)
	require.NoError(t, err)
	return n
}

// annotatedPod is a pod in namespace ns on node whose only container
// declares containerPort, with the prometheus.io/* annotations kv (scrape,
// port, path, scheme).
func annotatedPod(ns, name, node string, containerPort int, kv ...string) *corev1.Pod {
	ann := map[string]string{}
	for i := 0; i+1 < len(kv); i += 2 {
		ann["prometheus.io/"+kv[i]] = kv[i+1]
	}
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Annotations: ann},
		Spec: corev1.PodSpec{NodeName: node, Containers: []corev1.Container{{
			Name: "app", Image: "none", Ports: []corev1.ContainerPort{{Name: "web", ContainerPort: int32(containerPort)}},
		}}},
	}
}

// The agent of node a runs the shipped annotation job (kubernetes-pods, pod
// role with the field selector spec.nodeName=${NODE_NAME}) against a real
// API server: the annotated pods of its node are scraped at the annotated
// port, path and scheme, and arrive in the sink with their pod labels and
// the cluster; a pod on node b and a pod without the annotation are not
// scraped; a deleted pod stops being scraped and leaves the status page.
func TestAgentKubernetesPodDiscovery(t *testing.T) {
	t.Parallel()
	k := sharedKube.Get(t)
	ns := k.CreateNamespace(t)
	nodeA, nodeB := ns+"-node-a", ns+"-node-b"
	kafka := testenv.Kafka(t, 2)
	sink := testenv.Prometheus(t, testenv.SinkConfig)
	gw := startGateway(t, kafka.Addr)
	startIngester(t, kafka.Addr, sink.URL)
	k.CreateNode(t, nodeA, 10250)
	k.CreateNode(t, nodeB, 10250)

	// Each target answers only at the path (and over the scheme) its pod's
	// annotations name; a container port that differs from the annotated
	// one is a closed port, so only the annotation can lead to the target.
	custom := serveTarget(t, "tributary_agent_disc_probe 1\n", "/custom", true)
	defaults := serveTarget(t, "tributary_agent_disc_probe 2\n", "/metrics", false)
	elsewhere := serveTarget(t, "tributary_agent_disc_probe 3\n", "", false)
	unannotated := serveTarget(t, "tributary_agent_disc_probe 4\n", "", false)
	closed := testenv.FreePort(t)
	k.RunPod(t, annotatedPod(ns, "custom", nodeA, closed, "scrape", "true", "port", strconv.Itoa(port(t, custom.addr)), "path", "/custom", "scheme", "https"))
	k.RunPod(t, annotatedPod(ns, "defaults", nodeA, closed, "scrape", "true", "port", strconv.Itoa(port(t, defaults.addr))))
	k.RunPod(t, annotatedPod(ns, "elsewhere", nodeB, closed, "scrape", "true", "port", strconv.Itoa(port(t, elsewhere.addr))))
	k.RunPod(t, annotatedPod(ns, "unannotated", nodeA, port(t, unannotated.addr)))

	dir := t.TempDir()
	cfg := filepath.Join(dir, "agent.yml")
	writeFile(t, cfg, agentConfig("disc", gw.URL, filepath.Join(dir, "data"), shippedJob(t, "kubernetes-pods", k.Kubeconfig)))
	a := startAgentEnv(t, cfg, testenv.FreePort(t), []string{"NODE_NAME=" + nodeA})

	waitFor(t, func() bool { return custom.served.Load() >= 3 && defaults.served.Load() >= 3 })
	testenv.Eventually(t, 60*time.Second, func() error {
		res, err := sink.Query(`count by (cluster, namespace, pod, node, job) (tributary_agent_disc_probe)`, time.Now())
		if err != nil {
			return err
		}
		got := map[string]bool{}
		for _, s := range res {
			m := s.Metric
			got[fmt.Sprintf("%s/%s/%s/%s/%s", m["cluster"], m["job"], m["namespace"], m["pod"], m["node"])] = true
		}
		wantCustom := fmt.Sprintf("disc/kubernetes-pods/%s/custom/%s", ns, nodeA)
		wantDefaults := fmt.Sprintf("disc/kubernetes-pods/%s/defaults/%s", ns, nodeA)
		want := map[string]bool{wantCustom: true, wantDefaults: true}
		if len(got) != len(want) || !got[wantCustom] || !got[wantDefaults] {
			return fmt.Errorf("series in the sink: %v, want %v", got, want)
		}
		return nil
	})
	_, status := agentPage(t, a, "/status")
	require.Contains(t, status, "https://"+custom.addr+"/custom")
	require.Contains(t, status, "http://"+defaults.addr+"/metrics")
	require.Contains(t, status, "annotation prometheus.io/scrape on pod "+ns+"/custom")
	require.NotContains(t, status, elsewhere.addr)
	require.NotContains(t, status, unannotated.addr)
	require.Zero(t, elsewhere.served.Load(), "a pod of another node was scraped")
	require.Zero(t, unannotated.served.Load(), "a pod without the annotation was scraped")

	// A deleted pod stops being scraped; the others go on.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	require.NoError(t, k.Client.CoreV1().Pods(ns).Delete(ctx, "defaults", metav1.DeleteOptions{GracePeriodSeconds: new(int64(0))}))
	testenv.Eventually(t, 30*time.Second, func() error {
		if _, status := agentPage(t, a, "/status"); strings.Contains(status, defaults.addr) {
			return fmt.Errorf("deleted pod's target still on the status page:\n%s", status)
		}
		return nil
	})
	time.Sleep(1500 * time.Millisecond) // a scrape in flight finishes
	n, m := defaults.served.Load(), custom.served.Load()
	time.Sleep(4 * time.Second)
	require.Equal(t, n, defaults.served.Load(), "the deleted pod is still scraped")
	require.Greater(t, custom.served.Load(), m+2, "the remaining pod is no longer scraped")
	require.Zero(t, elsewhere.served.Load())
	require.Zero(t, unannotated.served.Load())
}
