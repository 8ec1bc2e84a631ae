package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.yaml.in/yaml/v3"
	authnv1 "k8s.io/api/authentication/v1"
	authzv1 "k8s.io/api/authorization/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/tributary-io/tributary/internal/charttest"
	"github.com/tributary-io/tributary/internal/testenv"
	"github.com/tributary-io/tributary/pkg/agent/logs/logstest"
)

// renderAgentChart renders k8s/charts/tributary-agent (as helm template)
// for namespace ns with set (dotted keys, as --set).
func renderAgentChart(t *testing.T, ns string, set map[string]any) []*unstructured.Unstructured {
	t.Helper()
	root := testenv.RepoRoot(t)
	vals, err := charttest.Values(nil, set)
	require.NoError(t, err)
	kv, err := charttest.KubeVersion(root)
	require.NoError(t, err)
	objs, err := charttest.Render(filepath.Join(root, "k8s", "charts", "tributary-agent"), ns, vals, kv)
	require.NoError(t, err)
	return objs
}

// chartAgentYAML is the agent.yml of the rendered ConfigMap named name.
func chartAgentYAML(t *testing.T, objs []*unstructured.Unstructured, ns, name string) string {
	t.Helper()
	for _, cm := range charttest.Find(objs, "ConfigMap") {
		if cm.GetNamespace() == ns && cm.GetName() == name {
			s, ok, err := unstructured.NestedString(cm.Object, "data", "agent.yml")
			require.NoError(t, err)
			require.True(t, ok)
			return s
		}
	}
	t.Fatalf("no ConfigMap %s/%s rendered", ns, name)
	return ""
}

// adaptAgentYAML turns a rendered agent.yml into the one a test runs: each
// path of the pod's filesystem in paths becomes the test's (as the pod's
// mounts would map it), and, with kubeconfig, the agent and every
// Kubernetes discovery use that kubeconfig (in a pod: the in-cluster
// service account, whose fixed paths a test cannot provide). Nothing else
// changes.
func adaptAgentYAML(t *testing.T, text string, paths map[string]string, kubeconfig string) string {
	t.Helper()
	for from, to := range paths {
		require.Contains(t, text, from, "the rendered agent.yml no longer mentions %s", from)
		text = strings.ReplaceAll(text, from, to)
	}
	if kubeconfig == "" {
		return text
	}
	var doc map[string]any
	require.NoError(t, yaml.Unmarshal([]byte(text), &doc))
	kube, ok := doc["kubernetes"].(map[string]any)
	require.True(t, ok, "no kubernetes section")
	kube["kubeconfig"] = kubeconfig
	metrics := doc["metrics"].(map[string]any)
	for _, sc := range metrics["scrape_configs"].([]any) {
		sds, _ := sc.(map[string]any)["kubernetes_sd_configs"].([]any)
		for _, sd := range sds {
			sd.(map[string]any)["kubeconfig_file"] = kubeconfig
		}
	}
	out, err := yaml.Marshal(doc)
	require.NoError(t, err)
	return string(out)
}

// applyRendered creates the rendered objects of kinds for real, as the
// admin (what helm install does for them). The cluster-scoped ones are
// deleted when the test ends: the apiserver is shared, and a rerun
// (-count) renders the same names.
func applyRendered(t *testing.T, k *testenv.Kube, objs []*unstructured.Unstructured, kinds ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, kind := range kinds {
		found := charttest.Find(objs, kind)
		require.NotEmpty(t, found, "the chart rendered no %s", kind)
		for _, u := range found {
			var err error
			switch kind {
			case "ServiceAccount":
				o := &corev1.ServiceAccount{}
				require.NoError(t, runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, o))
				_, err = k.Client.CoreV1().ServiceAccounts(o.Namespace).Create(ctx, o, metav1.CreateOptions{})
			case "ClusterRole":
				o := &rbacv1.ClusterRole{}
				require.NoError(t, runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, o))
				_, err = k.Client.RbacV1().ClusterRoles().Create(ctx, o, metav1.CreateOptions{})
				t.Cleanup(func() {
					_ = k.Client.RbacV1().ClusterRoles().Delete(context.Background(), o.Name, metav1.DeleteOptions{})
				})
			case "ClusterRoleBinding":
				o := &rbacv1.ClusterRoleBinding{}
				require.NoError(t, runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, o))
				_, err = k.Client.RbacV1().ClusterRoleBindings().Create(ctx, o, metav1.CreateOptions{})
				t.Cleanup(func() {
					_ = k.Client.RbacV1().ClusterRoleBindings().Delete(context.Background(), o.Name, metav1.DeleteOptions{})
				})
			case "Role":
				o := &rbacv1.Role{}
				require.NoError(t, runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, o))
				_, err = k.Client.RbacV1().Roles(o.Namespace).Create(ctx, o, metav1.CreateOptions{})
			case "RoleBinding":
				o := &rbacv1.RoleBinding{}
				require.NoError(t, runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, o))
				_, err = k.Client.RbacV1().RoleBindings(o.Namespace).Create(ctx, o, metav1.CreateOptions{})
			default:
				t.Fatalf("applyRendered: kind %s", kind)
			}
			require.NoError(t, err, "create %s %s", kind, u.GetName())
		}
	}
}

// tokenKubeconfig asks the TokenRequest API for a token bound to the
// ServiceAccount ns/sa and writes a kubeconfig with it; it returns the
// kubeconfig's path, the token's file and a client using the token.
func tokenKubeconfig(t *testing.T, k *testenv.Kube, ns, sa, dir string) (kubeconfig, tokenFile string, client kubernetes.Interface) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	tr, err := k.Client.CoreV1().ServiceAccounts(ns).CreateToken(ctx, sa, &authnv1.TokenRequest{
		Spec: authnv1.TokenRequestSpec{ExpirationSeconds: new(int64(3600))},
	}, metav1.CreateOptions{})
	require.NoError(t, err)
	ca, err := os.ReadFile(k.CAFile)
	require.NoError(t, err)
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["test"] = &clientcmdapi.Cluster{Server: k.URL, CertificateAuthorityData: ca}
	cfg.AuthInfos["agent"] = &clientcmdapi.AuthInfo{Token: tr.Status.Token}
	cfg.Contexts["test"] = &clientcmdapi.Context{Cluster: "test", AuthInfo: "agent"}
	cfg.CurrentContext = "test"
	kubeconfig = filepath.Join(dir, "agent.kubeconfig")
	require.NoError(t, clientcmd.WriteToFile(*cfg, kubeconfig))
	tokenFile = filepath.Join(dir, "sa-token")
	writeFile(t, tokenFile, tr.Status.Token)
	rc, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	require.NoError(t, err)
	client, err = kubernetes.NewForConfig(rc)
	require.NoError(t, err)
	return kubeconfig, tokenFile, client
}

// fakeKubelet serves /metrics and /metrics/cadvisor over HTTPS and
// authorizes each scrape as a kubelet does (webhook mode): TokenReview of
// the bearer token, then a SubjectAccessReview of get nodes/metrics.
type fakeKubelet struct {
	addr            string
	allowed, denied atomic.Int64
}

func startFakeKubelet(t *testing.T, k *testenv.Kube, node string) *fakeKubelet {
	t.Helper()
	fk := &fakeKubelet{}
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/metrics" && r.URL.Path != "/metrics/cadvisor" {
			http.NotFound(w, r)
			return
		}
		ctx := r.Context()
		token := strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")
		rev, err := k.Client.AuthenticationV1().TokenReviews().Create(ctx, &authnv1.TokenReview{Spec: authnv1.TokenReviewSpec{Token: token}}, metav1.CreateOptions{})
		if err != nil || !rev.Status.Authenticated {
			fk.denied.Add(1)
			http.Error(w, "Unauthorized", http.StatusUnauthorized)
			return
		}
		u := rev.Status.User
		extra := map[string]authzv1.ExtraValue{}
		for k, v := range u.Extra {
			extra[k] = authzv1.ExtraValue(v)
		}
		sar, err := k.Client.AuthorizationV1().SubjectAccessReviews().Create(ctx, &authzv1.SubjectAccessReview{Spec: authzv1.SubjectAccessReviewSpec{
			User: u.Username, Groups: u.Groups, UID: u.UID, Extra: extra,
			ResourceAttributes: &authzv1.ResourceAttributes{Verb: "get", Resource: "nodes", Subresource: "metrics", Name: node},
		}}, metav1.CreateOptions{})
		if err != nil || !sar.Status.Allowed {
			fk.denied.Add(1)
			http.Error(w, "Forbidden (user="+u.Username+", verb=get, resource=nodes, subresource=metrics)", http.StatusForbidden)
			return
		}
		fk.allowed.Add(1)
		w.Header().Set("Content-Type", "text/plain; version=0.0.4")
		fmt.Fprintf(w, "tributary_fake_kubelet_up{path=%q} 1\n", r.URL.Path)
	}))
	t.Cleanup(srv.Close)
	fk.addr = srv.Listener.Addr().String()
	return fk
}

// The agent runs with exactly the ServiceAccount, ClusterRole, Role and
// bindings the chart renders, authenticated by a token bound to that
// ServiceAccount (TokenRequest), and with the chart's agent.yml (paths of
// the pod's filesystem and the in-cluster credentials mapped to the
// test's): node discovery and the kubelet/cAdvisor scrapes (authorized by
// the kubelet's own SubjectAccessReview), pod discovery, pod metadata on
// log streams, the events (to Loki, with their resume point) and the
// leader-election Lease all work, and nothing the agent did was refused.
// With the same token, reading Secrets and writing Pods are forbidden.
func TestAgentChartRBAC(t *testing.T) {
	t.Parallel()
	const cluster = "rbac"
	k := sharedKube.Get(t)
	ns := k.CreateNamespace(t)
	node := ns + "-node"
	p := startLogsPipeline(t)
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	objs := renderAgentChart(t, ns, map[string]any{
		"cluster.name": cluster, "gateway.url": p.gw.URL, "gateway.token.value": "gateway-token",
		// The test's own pace; nothing else of the values changes.
		"metrics.scrapeInterval": "1s",
	})
	applyRendered(t, k, objs, "ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding")
	sa := charttest.Find(objs, "ServiceAccount")[0].GetName()
	kubeconfig, saToken, client := tokenKubeconfig(t, k, ns, sa, dir)

	// The node, with the fake kubelet on its kubelet port; an annotated pod
	// on it; a labelled pod whose container log the agent tails; an event.
	kubelet := startFakeKubelet(t, k, node)
	k.CreateNode(t, node, port(t, kubelet.addr))
	tg := startTarget(t, "tributary_rbac_probe 1\n")
	k.RunPod(t, annotatedPod(ns, "scraped", node, port(t, tg.addr), "scrape", "true"))
	web := k.RunPod(t, &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: ns, Labels: map[string]string{"app.kubernetes.io/name": "shop"}},
		Spec:       corev1.PodSpec{NodeName: node, Containers: []corev1.Container{{Name: "app", Image: "none"}}},
	})
	pods := filepath.Join(dir, "pods")
	w := logstest.NewWriter(t, filepath.Join(pods, fmt.Sprintf("%s_web_%s", ns, web.UID), "app", "0.log"))
	w.Lines(0, 5)
	from := time.Now().Add(-2 * time.Hour)
	// The agent ships the events of every namespace: the message names
	// this test's namespace, so that only this event can pass the check.
	eventMessage := "Readiness probe of " + ns + "/web failed"
	_, err := k.Client.CoreV1().Events(ns).Create(ctx, &corev1.Event{
		ObjectMeta:     metav1.ObjectMeta{Name: "web-unhealthy"},
		InvolvedObject: corev1.ObjectReference{Kind: "Pod", Namespace: ns, Name: "web"},
		Reason:         "Unhealthy", Message: eventMessage, Type: corev1.EventTypeWarning, Count: 1,
		FirstTimestamp: metav1.Now(), LastTimestamp: metav1.Now(), Source: corev1.EventSource{Component: "kubelet", Host: node},
	}, metav1.CreateOptions{})
	require.NoError(t, err)

	gwToken := filepath.Join(dir, "gateway-token")
	writeFile(t, gwToken, "gateway-token")
	otlpGRPC, otlpHTTP := testenv.FreePort(t), testenv.FreePort(t)
	cfgText := adaptAgentYAML(t, chartAgentYAML(t, objs, ns, "rel-tributary-agent"), map[string]string{
		"/var/run/secrets/kubernetes.io/serviceaccount/token":  saToken,
		"/var/run/secrets/kubernetes.io/serviceaccount/ca.crt": k.CAFile,
		"/etc/tributary/token/token":                           gwToken,
		"/var/lib/tributary-agent":                             filepath.Join(dir, "state"),
		`":4317"`:                                              fmt.Sprintf("%q", testenv.Addr(otlpGRPC)),
		`":4318"`:                                              fmt.Sprintf("%q", testenv.Addr(otlpHTTP)),
		// The DaemonSet mounts the node's /var/log/pods there.
		"logs:\n": "logs:\n  pods_dir: " + pods + "\n",
	}, kubeconfig)
	cfg := filepath.Join(dir, "agent.yml")
	writeFile(t, cfg, cfgText)
	a := startAgentEnv(t, cfg, testenv.FreePort(t), []string{"NODE_NAME=" + node, "POD_NAME=agent-a", "POD_NAMESPACE=" + ns})

	// Leader election: the Lease the Role names is held by this agent.
	testenv.Eventually(t, 30*time.Second, func() error {
		l, err := k.Client.CoordinationV1().Leases(ns).Get(ctx, "rel-tributary-agent", metav1.GetOptions{})
		if err != nil {
			return err
		}
		if l.Spec.HolderIdentity == nil || *l.Spec.HolderIdentity != "agent-a" {
			return fmt.Errorf("lease holder %v", l.Spec.HolderIdentity)
		}
		return nil
	})
	// Discovery and scraping: the annotated pod of the node, the node's
	// kubelet and cAdvisor (each scrape authorized as nodes/metrics).
	waitFor(t, func() bool { return tg.served.Load() >= 2 && kubelet.allowed.Load() >= 4 })
	require.Zero(t, kubelet.denied.Load(), "the kubelet refused a scrape")
	// Pod metadata: the container log's stream carries the pod's label,
	// which only the pod informer (list/watch pods) knows.
	labels := waitLokiLines(t, p.loki, fmt.Sprintf(`{cluster=%q, namespace=%q, pod="web", container="app"}`, cluster, ns), from, logstest.Seq(0, 5), 60*time.Second)
	require.Equal(t, "shop", labels["app_kubernetes_io_name"], "stream labels %v", labels)
	// Events: the event is in Loki, and its resume point is written.
	testenv.Eventually(t, 60*time.Second, func() error {
		streams, err := p.loki.QueryRange(t, fmt.Sprintf(`{cluster=%q, source="kubernetes-events"}`, cluster), from, time.Now().Add(time.Minute), 100)
		if err != nil {
			return err
		}
		for _, s := range streams {
			for _, e := range s.Entries {
				if strings.Contains(e.Line, eventMessage) {
					return nil
				}
			}
		}
		return fmt.Errorf("event not in Loki (%d streams)", len(streams))
	})
	testenv.Eventually(t, 30*time.Second, func() error {
		_, err := k.Client.CoreV1().ConfigMaps(ns).Get(ctx, "rel-tributary-agent-events", metav1.GetOptions{})
		return err
	})
	// Nothing the agent asked for was refused (client-go and Prometheus's
	// discovery log a refused list or watch; the cluster-wide jobs'
	// discovery of services and endpointslices runs on the leader).
	require.NotContains(t, strings.ToLower(a.Output()), "forbidden", "the agent was refused something")

	// The same token may not read Secrets or write Pods.
	_, err = client.CoreV1().Secrets(ns).List(ctx, metav1.ListOptions{})
	require.True(t, apierrors.IsForbidden(err), "list secrets: %v", err)
	_, err = client.CoreV1().Secrets(ns).Get(ctx, "rel-tributary-agent-token", metav1.GetOptions{})
	require.True(t, apierrors.IsForbidden(err), "get secret: %v", err)
	_, err = client.CoreV1().Pods(ns).Create(ctx, &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "intruder"},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "x", Image: "none"}}},
	}, metav1.CreateOptions{})
	require.True(t, apierrors.IsForbidden(err), "create pod: %v", err)
	err = client.CoreV1().Pods(ns).Delete(ctx, "web", metav1.DeleteOptions{})
	require.True(t, apierrors.IsForbidden(err), "delete pod: %v", err)
	// Its write rights on Leases stop at its own.
	_, err = k.Client.CoordinationV1().Leases(ns).Create(ctx, &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Name: "someone-else"}}, metav1.CreateOptions{})
	require.NoError(t, err)
	other, err := client.CoordinationV1().Leases(ns).Get(ctx, "someone-else", metav1.GetOptions{})
	require.True(t, apierrors.IsForbidden(err), "get another lease: %v %v", other, err)
	for _, c := range []struct {
		attrs *authzv1.ResourceAttributes
		want  bool
	}{
		{&authzv1.ResourceAttributes{Verb: "get", Resource: "secrets", Namespace: ns}, false},
		{&authzv1.ResourceAttributes{Verb: "list", Resource: "secrets"}, false},
		{&authzv1.ResourceAttributes{Verb: "create", Resource: "pods", Namespace: ns}, false},
		{&authzv1.ResourceAttributes{Verb: "patch", Resource: "pods", Namespace: ns}, false},
		{&authzv1.ResourceAttributes{Verb: "update", Resource: "configmaps", Namespace: ns, Name: "kube-root-ca.crt"}, false},
		{&authzv1.ResourceAttributes{Verb: "update", Resource: "leases", Group: "coordination.k8s.io", Namespace: ns, Name: "someone-else"}, false},
		{&authzv1.ResourceAttributes{Verb: "get", Resource: "nodes", Subresource: "proxy", Name: node}, false},
		{&authzv1.ResourceAttributes{Verb: "get", Resource: "nodes", Subresource: "metrics", Name: node}, true},
		{&authzv1.ResourceAttributes{Verb: "update", Resource: "leases", Group: "coordination.k8s.io", Namespace: ns, Name: "rel-tributary-agent"}, true},
	} {
		r, err := client.AuthorizationV1().SelfSubjectAccessReviews().Create(ctx, &authzv1.SelfSubjectAccessReview{
			Spec: authzv1.SelfSubjectAccessReviewSpec{ResourceAttributes: c.attrs},
		}, metav1.CreateOptions{})
		require.NoError(t, err)
		require.Equal(t, c.want, r.Status.Allowed, "%+v", *c.attrs)
	}
}

// The sidecar the chart's Kyverno policy injects, run as the kubelet
// would run it in the patched pod: the policy's patch applied to a
// labelled pod with Kubernetes' strategic-merge-patch code, the agent
// container's own arguments and downward-API environment, the ConfigMap
// its config volume names (paths of its mounts mapped to the test's). It
// ships the shared directory's log lines (Loki, with the pod's namespace,
// pod and node), the app's localhost metrics endpoint (Prometheus) and
// OTLP sent to it on localhost (Kafka) through gateway → Kafka →
// ingester.
func TestAgentChartSidecarPipeline(t *testing.T) {
	t.Parallel()
	const ns, cluster, podName, nodeName = "payments", "fargate", "checkout-7d9f", "fargate-ip-10-0-1-2"
	kafka := testenv.Kafka(t, 2)
	sink := testenv.Prometheus(t, testenv.SinkConfig)
	loki := testenv.Loki(t)
	gw := startGateway(t, kafka.Addr)
	startIngester(t, kafka.Addr, sink.URL)
	startLogIngester(t, kafka.Addr, loki, nil)
	app := startTarget(t, "sidecar_app_requests_total 42\n")

	objs := renderAgentChart(t, "tributary", map[string]any{
		"cluster.name": cluster, "gateway.url": gw.URL, "gateway.token.value": "gateway-token",
		"mode": "sidecar", "kyverno.enabled": true, "sidecar.namespaces": []any{ns},
		// The app's metrics port on localhost, and the test's pace.
		"sidecar.metricsPort": port(t, app.addr), "metrics.scrapeInterval": "1s",
	})
	require.Empty(t, charttest.Find(objs, "DaemonSet"))
	policies := charttest.Find(objs, "ClusterPolicy")
	require.Len(t, policies, 1)
	rules, _, err := unstructured.NestedSlice(policies[0].Object, "spec", "rules")
	require.NoError(t, err)
	require.Len(t, rules, 1)
	patchObj, ok, err := unstructured.NestedMap(rules[0].(map[string]any), "mutate", "patchStrategicMerge")
	require.NoError(t, err)
	require.True(t, ok)
	patch, err := json.Marshal(patchObj)
	require.NoError(t, err)
	pod, err := charttest.PatchPod(&corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: podName, Namespace: ns, Labels: map[string]string{"tributary.io/inject": "true"}},
		Spec: corev1.PodSpec{NodeName: nodeName, Containers: []corev1.Container{{
			Name: "app", Image: "registry.example.com/checkout:1",
			VolumeMounts: []corev1.VolumeMount{{Name: "tributary-agent-logs", MountPath: "/var/log/app"}},
		}}},
	}, patch)
	require.NoError(t, err)

	// The injected container, as the kubelet would start it.
	require.Len(t, pod.Spec.InitContainers, 1)
	sc := pod.Spec.InitContainers[0]
	require.Equal(t, []string{"-config.file=/etc/tributary/agent.yml", "-http.listen-addr=:9095"}, sc.Args)
	var env []string
	for _, e := range sc.Env {
		require.NotNil(t, e.ValueFrom, "env %s", e.Name)
		v := map[string]string{"spec.nodeName": pod.Spec.NodeName, "metadata.name": pod.Name, "metadata.namespace": pod.Namespace}[e.ValueFrom.FieldRef.FieldPath]
		require.NotEmpty(t, v, "env %s: field %s", e.Name, e.ValueFrom.FieldRef.FieldPath)
		env = append(env, e.Name+"="+v)
	}
	vols := map[string]corev1.Volume{}
	for _, v := range pod.Spec.Volumes {
		vols[v.Name] = v
	}
	mounts := map[string]string{}
	for _, m := range sc.VolumeMounts {
		mounts[m.Name] = m.MountPath
	}
	require.Equal(t, "/etc/tributary", mounts["tributary-agent-config"])
	cfgText := chartAgentYAML(t, objs, ns, vols["tributary-agent-config"].ConfigMap.Name)

	dir := t.TempDir()
	logsDir := filepath.Join(dir, "shared-logs") // the emptyDir both containers mount
	require.NoError(t, os.MkdirAll(logsDir, 0o755))
	gwToken := filepath.Join(dir, "gateway-token")
	writeFile(t, gwToken, "gateway-token")
	otlpGRPC, otlpHTTP := testenv.FreePort(t), testenv.FreePort(t)
	cfgText = adaptAgentYAML(t, cfgText, map[string]string{
		mounts["tributary-agent-logs"]:  logsDir,
		mounts["tributary-agent-state"]: filepath.Join(dir, "state"),
		mounts["tributary-agent-token"]: filepath.Join(dir, "token"),
		"127.0.0.1:4317":                testenv.Addr(otlpGRPC),
		"127.0.0.1:4318":                testenv.Addr(otlpHTTP),
	}, "")
	require.NoError(t, os.MkdirAll(filepath.Join(dir, "token"), 0o755))
	writeFile(t, filepath.Join(dir, "token", "token"), "gateway-token")
	cfg := filepath.Join(dir, "agent.yml")
	writeFile(t, cfg, cfgText)
	startAgentEnv(t, cfg, testenv.FreePort(t), env)

	// The app writes its log file into the shared directory and sends
	// spans to localhost.
	from := time.Now().Add(-time.Hour)
	var lines []string
	for i := range 10 {
		lines = append(lines, fmt.Sprintf("checkout order %d placed", i))
	}
	writeFile(t, filepath.Join(logsDir, "checkout.log"), strings.Join(lines, "\n")+"\n")
	ctx := context.Background()
	exp, err := otlptracehttp.New(ctx, otlptracehttp.WithEndpoint(testenv.Addr(otlpHTTP)), otlptracehttp.WithInsecure())
	require.NoError(t, err)
	spans := spanBatch(7, 3)
	require.NoError(t, exp.ExportSpans(ctx, spans))
	require.NoError(t, exp.Shutdown(ctx))

	labels := waitLokiLines(t, loki, fmt.Sprintf(`{cluster=%q, source="sidecar"}`, cluster), from, lines, 60*time.Second)
	require.Equal(t, map[string]string{"cluster": cluster, "source": "sidecar", "namespace": ns, "pod": podName, "node": nodeName}, withoutLokiInternal(labels))
	testenv.Eventually(t, 60*time.Second, func() error {
		res, err := sink.Query(`sidecar_app_requests_total`, time.Now())
		if err != nil {
			return err
		}
		if len(res) != 1 {
			return fmt.Errorf("%d series", len(res))
		}
		m := res[0].Metric
		want := map[string]string{"cluster": cluster, "job": "sidecar", "namespace": ns, "pod": podName, "node": nodeName}
		for k, v := range want {
			if m[k] != v {
				return fmt.Errorf("series %v, want labels %v", m, want)
			}
		}
		if res[0].Value != 42 {
			return fmt.Errorf("value %v", res[0].Value)
		}
		return nil
	})
	testenv.Eventually(t, 30*time.Second, func() error {
		got := readRelayedSpans(t, kafka.Addr)
		for _, s := range spans {
			r, ok := got[s.SpanContext().SpanID().String()]
			if !ok {
				return fmt.Errorf("span %s not in Kafka (%d there)", s.Name(), len(got))
			}
			if r.cluster != cluster {
				return fmt.Errorf("span %s under cluster %q", s.Name(), r.cluster)
			}
		}
		return nil
	})
}

// withoutLokiInternal drops the labels Loki adds on its own.
func withoutLokiInternal(l map[string]string) map[string]string {
	out := map[string]string{}
	for k, v := range l {
		if k != "service_name" && k != "detected_level" {
			out[k] = v
		}
	}
	return out
}
