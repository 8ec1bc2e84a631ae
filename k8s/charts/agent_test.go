package charts

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	kyvernov1 "github.com/kyverno/kyverno/api/kyverno/v1"
	"github.com/stretchr/testify/require"
	"go.yaml.in/yaml/v3"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	sigsyaml "sigs.k8s.io/yaml"

	"github.com/tributary-io/tributary/internal/charttest"
	"github.com/tributary-io/tributary/internal/testenv"
	"github.com/tributary-io/tributary/pkg/agent"
)

const agentChart = "tributary-agent"

// agentRequired are the three required values, as --set would give them.
var agentRequired = map[string]any{
	"cluster.name":        "test-cluster",
	"gateway.url":         "https://gateway.example.com:8080",
	"gateway.token.value": "s3cret\n",
}

// agentCase is one way users install the agent chart.
type agentCase struct {
	name    string
	files   []string // relative to k8s/charts
	set     map[string]any
	sidecar bool
	cluster string // the cluster name the agent config must carry
}

var agentCases = []agentCase{
	{name: "defaults", set: agentRequired, cluster: "test-cluster"},
	// Several clusters: the shared file plus one file per cluster.
	{name: "prod-eu", files: []string{"examples/agent-common.yaml", "examples/agent-prod-eu.yaml"}, cluster: "prod-eu"},
	{name: "prod-us", files: []string{"examples/agent-common.yaml", "examples/agent-prod-us.yaml"}, cluster: "prod-us"},
	{name: "staging", files: []string{"examples/agent-common.yaml", "examples/agent-staging.yaml"}, cluster: "staging"},
	{name: "sidecar-kyverno", files: []string{"examples/agent-sidecar.yaml"}, set: map[string]any{"gateway.token.value": "s3cret"}, sidecar: true, cluster: "prod-eu-fargate"},
	{name: "sidecar-no-kyverno", files: []string{"examples/agent-sidecar-no-kyverno.yaml"}, sidecar: true, cluster: "edge-1"},
}

// Every example values file of the agent chart is covered by a case.
func TestAgentChartExamplesCovered(t *testing.T) {
	files, err := filepath.Glob("examples/agent-*.yaml")
	require.NoError(t, err)
	require.NotEmpty(t, files)
	var used []string
	for _, c := range agentCases {
		used = append(used, c.files...)
	}
	for _, f := range files {
		require.Contains(t, used, f, "example %s is rendered by no test case", f)
	}
}

// Each case renders, lints, decodes strictly with client-go's scheme (the
// Kyverno policy with Kyverno's own types), passes a server-side dry-run
// apply on the real apiserver (the ClusterPolicy too, against Kyverno's
// CRD), and its agent configuration is one the agent itself loads.
func TestAgentChartRender(t *testing.T) {
	k := sharedKube(t)
	installKyvernoCRD(t, k)
	for _, c := range agentCases {
		t.Run(c.name, func(t *testing.T) {
			if c.files != nil {
				lint(t, agentChart, c.files)
			}
			ns := "agent-render-" + strings.ReplaceAll(c.name, "_", "-")
			objs := render(t, agentChart, ns, c.files, c.set)
			typed, other := decodeStrict(t, objs)
			require.NotEmpty(t, typed)
			for _, o := range other {
				require.Equal(t, "ClusterPolicy", o.GetKind(), "only the Kyverno policy is outside client-go's scheme")
				policy := decodeClusterPolicy(t, o)
				require.True(t, policy.HasMutate())
			}
			skipped := dryRunApply(t, k, ns, objs)
			require.Empty(t, skipped, "every object, the ClusterPolicy included, is checked by the apiserver")

			kinds := map[string]int{}
			for _, o := range objs {
				kinds[o.GetKind()]++
				// Nothing of the chart is a Secret reader or a hostPath
				// in sidecar mode; no object lands outside its namespace.
				if c.sidecar {
					require.NotContains(t, mustJSON(t, o), "hostPath", "%s %s", o.GetKind(), o.GetName())
				}
			}
			if c.sidecar {
				require.Zero(t, kinds["DaemonSet"])
				require.Zero(t, kinds["ClusterRole"])
				require.Zero(t, kinds["ServiceAccount"])
				cms := sidecarConfigMaps(objs)
				require.NotEmpty(t, cms)
				for _, cm := range cms {
					cfg := loadAgentConfig(t, cm)
					require.Equal(t, c.cluster, cfg.Cluster)
					require.Nil(t, cfg.Kubernetes, "the sidecar talks to no apiserver")
					require.Nil(t, cfg.Events)
					require.NotNil(t, cfg.Logs)
					require.True(t, cfg.Logs.SkipContainerLogs, "the sidecar reads no /var/log/pods")
				}
				return
			}
			require.Equal(t, 1, kinds["DaemonSet"])
			ds := &appsv1.DaemonSet{}
			require.NoError(t, toTyped(charttest.Find(objs, "DaemonSet")[0], ds))
			checkDaemonSet(t, ds)
			cm := charttest.Find(objs, "ConfigMap")
			require.Len(t, cm, 1)
			cfg := loadAgentConfig(t, cm[0])
			require.Equal(t, c.cluster, cfg.Cluster)
			require.Equal(t, "${NODE_NAME}", rawKey(t, cm[0], "kubernetes", "node_name"))
			require.Equal(t, ns, cfg.Kubernetes.LeaderElection.Namespace)
			require.NotNil(t, cfg.Events)
			require.NotNil(t, cfg.OTLP)
			require.Equal(t, "/var/log/pods", cfg.Logs.PodsDir)
		})
	}
}

// checkDaemonSet checks what the issue asks of the agent's DaemonSet.
func checkDaemonSet(t *testing.T, ds *appsv1.DaemonSet) {
	t.Helper()
	spec := ds.Spec.Template.Spec
	require.Contains(t, spec.Tolerations, corev1.Toleration{Operator: corev1.TolerationOpExists}, "tolerates every taint")
	require.Len(t, spec.Containers, 1)
	c := spec.Containers[0]
	mounts := map[string]corev1.VolumeMount{}
	for _, m := range c.VolumeMounts {
		mounts[m.MountPath] = m
	}
	vols := map[string]corev1.Volume{}
	for _, v := range spec.Volumes {
		vols[v.Name] = v
	}
	logs := mounts["/var/log/pods"]
	require.True(t, logs.ReadOnly, "/var/log/pods is mounted read-only")
	require.Equal(t, "/var/log/pods", vols[logs.Name].HostPath.Path)
	state := mounts["/var/lib/tributary-agent"]
	require.False(t, state.ReadOnly)
	require.Equal(t, "/var/lib/tributary-agent", vols[state.Name].HostPath.Path, "WAL and positions on a hostPath")
	for _, v := range spec.Volumes {
		if v.HostPath != nil && v.HostPath.Path != "/var/lib/tributary-agent" {
			for _, m := range c.VolumeMounts {
				if m.Name == v.Name {
					require.True(t, m.ReadOnly, "hostPath %s is mounted read-only", v.HostPath.Path)
				}
			}
		}
	}
	var nodeName bool
	for _, e := range c.Env {
		if e.Name == "NODE_NAME" {
			nodeName = e.ValueFrom != nil && e.ValueFrom.FieldRef != nil && e.ValueFrom.FieldRef.FieldPath == "spec.nodeName"
		}
	}
	require.True(t, nodeName, "NODE_NAME from the downward API spec.nodeName")
	require.Equal(t, "/-/healthy", c.LivenessProbe.HTTPGet.Path)
	require.Equal(t, "/-/ready", c.ReadinessProbe.HTTPGet.Path)
	hostPorts := map[int32]bool{}
	for _, p := range c.Ports {
		if p.HostPort != 0 {
			hostPorts[p.HostPort] = true
		}
	}
	require.Equal(t, map[int32]bool{4317: true, 4318: true}, hostPorts, "OTLP hostPorts")
	sc := c.SecurityContext
	require.True(t, *sc.ReadOnlyRootFilesystem)
	require.False(t, *sc.AllowPrivilegeEscalation)
	require.Equal(t, []corev1.Capability{"ALL"}, sc.Capabilities.Drop)
	require.Empty(t, sc.Capabilities.Add)
	require.False(t, spec.HostNetwork)
	require.False(t, spec.HostPID)
	require.NotNil(t, c.Resources.Requests.Memory())
	require.False(t, c.Resources.Limits.Memory().IsZero(), "a memory limit")
}

// The chart's default scrape configs are the repository's, byte for byte:
// k8s/agent/scrape-configs.yaml is the source (its tests run Prometheus's
// discovery on it), the chart holds a copy because Helm reads only files
// inside the chart. Copy it again after a change:
//
//	cp k8s/agent/scrape-configs.yaml k8s/charts/tributary-agent/files/
func TestAgentChartScrapeConfigsAreTheRepositorys(t *testing.T) {
	want, err := os.ReadFile(filepath.Join(testenv.RepoRoot(t), "k8s", "agent", "scrape-configs.yaml"))
	require.NoError(t, err)
	got, err := os.ReadFile(filepath.Join(agentChart, "files", "scrape-configs.yaml"))
	require.NoError(t, err)
	require.Equal(t, string(want), string(got), "the chart's files/scrape-configs.yaml differs from k8s/agent/scrape-configs.yaml")

	// And the rendered agent.yml carries exactly those jobs, plus extras.
	var file struct {
		ScrapeConfigs []map[string]any `yaml:"scrape_configs"`
	}
	require.NoError(t, yaml.Unmarshal(want, &file))
	extra := map[string]any{"job_name": "extra", "static_configs": []any{map[string]any{"targets": []any{"localhost:1"}}}}
	cm := charttest.Find(render(t, agentChart, "tributary", nil, withValues(agentRequired, map[string]any{
		"metrics.extraScrapeConfigs": []any{extra},
	})), "ConfigMap")[0]
	var rendered struct {
		Metrics struct {
			ScrapeConfigs []map[string]any `yaml:"scrape_configs"`
		} `yaml:"metrics"`
	}
	require.NoError(t, yaml.Unmarshal([]byte(agentYAML(t, cm)), &rendered))
	require.Equal(t, append(file.ScrapeConfigs, extra), rendered.Metrics.ScrapeConfigs)
}

// values.schema.json and the templates refuse what would make an agent
// that cannot send: no cluster name, a malformed gateway URL, no token.
func TestAgentChartRefusesMissingValues(t *testing.T) {
	_, err := renderErr(t, agentChart, "tributary", nil, agentRequired)
	require.NoError(t, err, "the three required values are enough")
	for _, c := range []struct {
		name string
		set  map[string]any
		want string
	}{
		{"no cluster name", map[string]any{"cluster.name": ""}, "/cluster/name"},
		{"cluster name with a space", map[string]any{"cluster.name": "prod eu"}, "/cluster/name"},
		{"gateway URL without scheme", map[string]any{"gateway.url": "gateway.example.com:8080"}, "/gateway/url"},
		{"gateway URL of another scheme", map[string]any{"gateway.url": "grpc://gateway.example.com:4317"}, "/gateway/url"},
		{"gateway URL without host", map[string]any{"gateway.url": "https://"}, "/gateway/url"},
		{"no gateway URL", map[string]any{"gateway.url": ""}, "/gateway/url"},
		{"no token", map[string]any{"gateway.token.value": ""}, "gateway.token"},
		{"unknown mode", map[string]any{"mode": "deployment"}, "mode"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := renderErr(t, agentChart, "tributary", nil, withValues(agentRequired, c.set))
			require.Error(t, err)
			require.Contains(t, err.Error(), c.want)
		})
	}
	// No values at all: the cluster name is what is missing first.
	_, err = renderErr(t, agentChart, "tributary", nil, nil)
	require.ErrorContains(t, err, "cluster")
}

// The ClusterRole and Role grant exactly what the agent uses: the rules
// are compared whole, so a rule added by mistake (a Secret reader, a
// write verb) fails here before it fails the RBAC test in integration/.
func TestAgentChartRBACRules(t *testing.T) {
	objs := render(t, agentChart, "tributary", nil, agentRequired)
	cr := &rbacv1.ClusterRole{}
	require.NoError(t, toTyped(charttest.Find(objs, "ClusterRole")[0], cr))
	require.Equal(t, []rbacv1.PolicyRule{
		{APIGroups: []string{""}, Resources: []string{"nodes", "pods", "services"}, Verbs: []string{"list", "watch"}},
		{APIGroups: []string{"discovery.k8s.io"}, Resources: []string{"endpointslices"}, Verbs: []string{"list", "watch"}},
		{APIGroups: []string{""}, Resources: []string{"nodes/metrics"}, Verbs: []string{"get"}},
		{NonResourceURLs: []string{"/metrics"}, Verbs: []string{"get"}},
		{APIGroups: []string{""}, Resources: []string{"events"}, Verbs: []string{"list", "watch"}},
	}, cr.Rules)
	role := &rbacv1.Role{}
	require.NoError(t, toTyped(charttest.Find(objs, "Role")[0], role))
	require.Equal(t, []rbacv1.PolicyRule{
		{APIGroups: []string{"coordination.k8s.io"}, Resources: []string{"leases"}, Verbs: []string{"create"}},
		{APIGroups: []string{"coordination.k8s.io"}, Resources: []string{"leases"}, ResourceNames: []string{"rel-tributary-agent"}, Verbs: []string{"get", "update"}},
		{APIGroups: []string{""}, Resources: []string{"configmaps"}, Verbs: []string{"create"}},
		{APIGroups: []string{""}, Resources: []string{"configmaps"}, ResourceNames: []string{"rel-tributary-agent-events"}, Verbs: []string{"get", "update"}},
	}, role.Rules)
	cfg := loadAgentConfig(t, charttest.Find(objs, "ConfigMap")[0])
	require.Equal(t, "rel-tributary-agent", cfg.Kubernetes.LeaderElection.LeaseName, "the Role names the agent's Lease")
	require.Equal(t, "rel-tributary-agent-events", cfg.Events.ResumeConfigMap, "the Role names the events resume ConfigMap")

	// Without events and cluster-wide jobs there is no Lease or resume
	// point, and no Role.
	objs = render(t, agentChart, "tributary", nil, withValues(agentRequired, map[string]any{
		"events.enabled": false, "metrics.clusterWideJobs": []any{},
	}))
	require.Empty(t, charttest.Find(objs, "Role"))
	require.NoError(t, toTyped(charttest.Find(objs, "ClusterRole")[0], cr))
	for _, r := range cr.Rules {
		require.NotContains(t, r.Resources, "events")
	}
}

// The Kyverno policy's patch, applied to a labelled pod with Kubernetes'
// strategic-merge-patch code, makes a valid pod (strict decode and a
// server-side dry-run create) that runs the agent as a native sidecar with
// its config, token, state and the shared logs directory, and nothing of
// the node. Without the patch the same pod is refused: it mounts the
// shared volume only the patch declares.
func TestAgentChartSidecarInjection(t *testing.T) {
	k := sharedKube(t)
	const ns = "payments" // one of agent-sidecar.yaml's sidecar.namespaces
	objs := render(t, agentChart, "tributary", []string{"examples/agent-sidecar.yaml"}, map[string]any{"gateway.token.value": "s3cret"})
	policies := charttest.Find(objs, "ClusterPolicy")
	require.Len(t, policies, 1)
	policy := decodeClusterPolicy(t, policies[0])
	require.Len(t, policy.Spec.Rules, 1)
	rule := policy.Spec.Rules[0]
	require.Len(t, rule.MatchResources.Any, 1)
	match := rule.MatchResources.Any[0].ResourceDescription
	require.Equal(t, []string{"Pod"}, match.Kinds)
	require.Equal(t, []string{"payments", "checkout"}, match.Namespaces)
	require.Equal(t, map[string]string{"tributary.io/inject": "true"}, match.Selector.MatchLabels)
	patch := rule.Mutation.RawPatchStrategicMerge.Raw
	require.NotEmpty(t, patch)

	app := func(declareVolume bool) *corev1.Pod {
		p := &corev1.Pod{
			TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
			ObjectMeta: metav1.ObjectMeta{Name: "app", Namespace: ns, Labels: map[string]string{"tributary.io/inject": "true"}},
			Spec: corev1.PodSpec{Containers: []corev1.Container{{
				Name: "app", Image: "registry.example.com/app:1",
				VolumeMounts: []corev1.VolumeMount{{Name: "tributary-agent-logs", MountPath: "/var/log/app"}},
			}}},
		}
		if declareVolume {
			p.Spec.Volumes = []corev1.Volume{{Name: "tributary-agent-logs", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}}
		}
		return p
	}
	ensureNamespace(t, k, ns)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	_, err := k.Client.CoreV1().Pods(ns).Create(ctx, app(false), metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
	require.ErrorContains(t, err, "tributary-agent-logs", "the unpatched pod mounts a volume it does not declare")

	for _, declared := range []bool{false, true} {
		pod, err := charttest.PatchPod(app(declared), patch)
		require.NoError(t, err)
		u := &unstructured.Unstructured{}
		u.Object, err = runtime.DefaultUnstructuredConverter.ToUnstructured(pod)
		require.NoError(t, err)
		typed, other := decodeStrict(t, []*unstructured.Unstructured{u})
		require.Len(t, typed, 1)
		require.Empty(t, other)
		_, err = k.Client.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}, FieldValidation: "Strict"})
		require.NoError(t, err, "the patched pod (app declares the volume: %v)", declared)

		require.Len(t, pod.Spec.Containers, 1, "the app's containers are untouched")
		require.Equal(t, app(declared).Spec.Containers[0], pod.Spec.Containers[0])
		require.Len(t, pod.Spec.InitContainers, 1)
		sc := pod.Spec.InitContainers[0]
		require.Equal(t, "tributary-agent", sc.Name)
		require.Equal(t, corev1.ContainerRestartPolicyAlways, *sc.RestartPolicy, "a native sidecar")
		require.True(t, *sc.SecurityContext.RunAsNonRoot)
		require.True(t, *sc.SecurityContext.ReadOnlyRootFilesystem)
		for _, p := range sc.Ports {
			require.Zero(t, p.HostPort)
		}
		vols := map[string]corev1.Volume{}
		for _, v := range pod.Spec.Volumes {
			require.Nil(t, v.HostPath, "volume %s", v.Name)
			_, dup := vols[v.Name]
			require.False(t, dup, "volume %s twice", v.Name)
			vols[v.Name] = v
		}
		require.NotNil(t, vols["tributary-agent-logs"].EmptyDir)
		require.NotNil(t, vols["tributary-agent-state"].EmptyDir)
		require.Equal(t, "rel-tributary-agent-sidecar", vols["tributary-agent-config"].ConfigMap.Name)
		require.Equal(t, "rel-tributary-agent-token", vols["tributary-agent-token"].Secret.SecretName)
		require.False(t, pod.Spec.HostNetwork)
	}
	// The ConfigMap and Secret the pod mounts are rendered in its namespace.
	var names []string
	for _, o := range objs {
		if o.GetNamespace() == ns {
			names = append(names, o.GetKind()+"/"+o.GetName())
		}
	}
	slices.Sort(names)
	require.Equal(t, []string{"ConfigMap/rel-tributary-agent-sidecar", "Secret/rel-tributary-agent-token"}, names)
}

// decodeClusterPolicy decodes the policy strictly into Kyverno's own Go
// type and runs Kyverno's own validation of it.
func decodeClusterPolicy(t *testing.T, u *unstructured.Unstructured) *kyvernov1.ClusterPolicy {
	t.Helper()
	p := &kyvernov1.ClusterPolicy{}
	require.NoError(t, toTyped(u, p), "strict decode into kyverno/api/kyverno/v1.ClusterPolicy")
	warnings, errs := p.Validate(nil)
	require.Empty(t, errs.ToAggregate(), "Kyverno's validation")
	require.Empty(t, warnings, "Kyverno's validation warnings")
	return p
}

var kyvernoCRD sync.Once

// installKyvernoCRD creates Kyverno's ClusterPolicy CRD (from the Kyverno
// module this repository requires) in the shared apiserver, so that the
// dry-run apply checks the chart's ClusterPolicy against its schema.
func installKyvernoCRD(t *testing.T, k *testenv.Kube) {
	t.Helper()
	kyvernoCRD.Do(func() {
		dir := moduleDir(t, "github.com/kyverno/kyverno")
		data, err := os.ReadFile(filepath.Join(dir, "config", "crds", "kyverno", "kyverno.io_clusterpolicies.yaml"))
		require.NoError(t, err)
		u := &unstructured.Unstructured{}
		require.NoError(t, sigsyaml.Unmarshal(data, &u.Object))
		dyn, err := dynamic.NewForConfig(k.Config)
		require.NoError(t, err)
		crds := dyn.Resource(schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"})
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		_, err = crds.Create(ctx, u, metav1.CreateOptions{})
		require.NoError(t, err)
		testenv.Eventually(t, time.Minute, func() error {
			got, err := crds.Get(ctx, u.GetName(), metav1.GetOptions{})
			if err != nil {
				return err
			}
			conds, _, _ := unstructured.NestedSlice(got.Object, "status", "conditions")
			for _, c := range conds {
				m := c.(map[string]any)
				if m["type"] == "Established" && m["status"] == "True" {
					return nil
				}
			}
			return errNotEstablished
		})
		// Discovery sees the new kind only after the apiserver's
		// discovery cache caught up.
		testenv.Eventually(t, time.Minute, func() error {
			_, err := k.Client.Discovery().ServerResourcesForGroupVersion("kyverno.io/v1")
			return err
		})
	})
}

var errNotEstablished = stringError("CRD not established yet")

type stringError string

func (e stringError) Error() string { return string(e) }

// moduleDir is where the go command keeps module path's source.
func moduleDir(t *testing.T, path string) string {
	t.Helper()
	out, err := runGo(t, "list", "-m", "-f", "{{.Dir}}", path)
	require.NoError(t, err, "%s", out)
	dir := strings.TrimSpace(out)
	require.NotEmpty(t, dir, "module %s not downloaded", path)
	return dir
}

func runGo(t *testing.T, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command("go", args...)
	cmd.Dir = testenv.RepoRoot(t)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// sidecarConfigMaps are the sidecar agent's ConfigMaps.
func sidecarConfigMaps(objs []*unstructured.Unstructured) []*unstructured.Unstructured {
	var out []*unstructured.Unstructured
	for _, cm := range charttest.Find(objs, "ConfigMap") {
		if strings.HasSuffix(cm.GetName(), "-sidecar") {
			out = append(out, cm)
		}
	}
	return out
}

// agentYAML is the agent.yml of a rendered ConfigMap.
func agentYAML(t *testing.T, cm *unstructured.Unstructured) string {
	t.Helper()
	s, ok, err := unstructured.NestedString(cm.Object, "data", "agent.yml")
	require.NoError(t, err)
	require.True(t, ok, "ConfigMap %s has no agent.yml", cm.GetName())
	return s
}

// rawKey is a string at path in agent.yml, before the agent expands it.
func rawKey(t *testing.T, cm *unstructured.Unstructured, path ...string) string {
	t.Helper()
	var m map[string]any
	require.NoError(t, yaml.Unmarshal([]byte(agentYAML(t, cm)), &m))
	for _, p := range path[:len(path)-1] {
		m, _ = m[p].(map[string]any)
	}
	s, _ := m[path[len(path)-1]].(string)
	return s
}

// loadAgentConfig loads a rendered agent.yml with the agent's own loader,
// the downward API's variables set as in a pod.
func loadAgentConfig(t *testing.T, cm *unstructured.Unstructured) *agent.Config {
	t.Helper()
	envMu.Lock()
	defer envMu.Unlock()
	for k, v := range map[string]string{"NODE_NAME": "node-a", "POD_NAME": "agent-x", "POD_NAMESPACE": "tributary"} {
		old, had := os.LookupEnv(k)
		require.NoError(t, os.Setenv(k, v))
		defer func() {
			if had {
				_ = os.Setenv(k, old)
			} else {
				_ = os.Unsetenv(k)
			}
		}()
	}
	cfg, _, err := agent.Parse([]byte(agentYAML(t, cm)))
	require.NoError(t, err, "the agent refuses the rendered agent.yml:\n%s", agentYAML(t, cm))
	return cfg
}

var envMu sync.Mutex

// withValues is base with more on top (a new map).
func withValues(base, more map[string]any) map[string]any {
	out := map[string]any{}
	for k, v := range base {
		out[k] = v
	}
	for k, v := range more {
		out[k] = v
	}
	return out
}

func mustJSON(t *testing.T, u *unstructured.Unstructured) string {
	t.Helper()
	data, err := u.MarshalJSON()
	require.NoError(t, err)
	return string(bytes.TrimSpace(data))
}
