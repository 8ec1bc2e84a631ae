package testenv

import (
	"context"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

func TestStartKube(t *testing.T) {
	t.Parallel()
	var k *Kube
	t.Run("cluster", func(t *testing.T) {
		k = StartKube(t)
		checkKube(t, k)
	})
	if k == nil {
		return
	}
	// Cleanup of the subtest stopped both processes.
	for _, p := range []*Process{k.Etcd, k.APIServer} {
		if !p.Exited() {
			t.Errorf("%s (pid %d) still runs after the test that started it ended", p.Name, p.PID())
		}
	}
}

// The shared apiserver outlives the test that started it, every test gets
// the same one and namespaces of its own, and Stop kills both processes
// and removes their data.
func TestSharedKube(t *testing.T) {
	t.Parallel()
	var s SharedKube
	var first *Kube
	t.Run("first", func(t *testing.T) { first = s.Get(t) })
	if first == nil {
		t.Fatal("the first test got no apiserver")
	}
	t.Run("second", func(t *testing.T) {
		k := s.Get(t)
		if k != first {
			t.Fatal("a second apiserver was started")
		}
		for _, p := range []*Process{k.Etcd, k.APIServer} {
			if p.Exited() {
				t.Fatalf("%s (pid %d) ended with the test that started it", p.Name, p.PID())
			}
		}
		a, b := k.CreateNamespace(t), k.CreateNamespace(t)
		if a == b || !strings.HasPrefix(a, "sharedkube-second-") || !strings.HasPrefix(b, "sharedkube-second-") {
			t.Fatalf("namespaces %q and %q, want two of the test's own", a, b)
		}
		checkKube(t, k)
	})
	s.Stop(false)
	for _, p := range []*Process{first.Etcd, first.APIServer} {
		if !p.Exited() {
			t.Errorf("%s (pid %d) still runs after Stop", p.Name, p.PID())
		}
	}
	if _, err := os.Stat(first.CAFile); !os.IsNotExist(err) {
		t.Errorf("the apiserver's data is still there after Stop: stat %s: %v", first.CAFile, err)
	}
}

func checkKube(t *testing.T, k *Kube) {
	ctx := context.Background()

	// The kubeconfig works on its own (as a user of it would load it).
	cfg, err := clientcmd.BuildConfigFromFlags("", k.Kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	v, err := client.Discovery().ServerVersion()
	if err != nil {
		t.Fatalf("server version through the kubeconfig: %v", err)
	}
	if v.Major != "1" || v.Minor == "" {
		t.Fatalf("server version %+v, want a 1.x release", v)
	}

	// Token auth: a wrong token is refused, so the right one is what let
	// us in above.
	bad := rest.CopyConfig(cfg)
	bad.BearerToken = "wrong"
	badClient, err := kubernetes.NewForConfig(bad)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := badClient.CoreV1().Namespaces().List(ctx, metav1.ListOptions{}); err == nil {
		t.Fatal("a wrong token was accepted")
	}

	n := k.CreateNode(t, "node-a", 10250)
	if n.Status.DaemonEndpoints.KubeletEndpoint.Port != 10250 || n.Status.Addresses[0].Address != "127.0.0.1" {
		t.Fatalf("node status not kept: %+v", n.Status)
	}
	p := k.RunPod(t, &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "web"},
		Spec: corev1.PodSpec{
			NodeName:   "node-a",
			Containers: []corev1.Container{{Name: "app", Image: "none"}},
		},
	})
	got, err := k.Client.CoreV1().Pods("default").Get(ctx, p.Name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got.Status.Phase != corev1.PodRunning || got.Status.PodIP != "127.0.0.1" || len(got.Status.ContainerStatuses) != 1 || !got.Status.ContainerStatuses[0].Ready {
		t.Fatalf("pod status not kept: %+v", got.Status)
	}

	// The apiserver creates the default/kubernetes Service itself.
	Eventually(t, 30*time.Second, func() error {
		_, err := k.Client.CoreV1().Services("default").Get(ctx, "kubernetes", metav1.GetOptions{})
		return err
	})

	// The processes are ours and die with the test.
	for _, p := range []*Process{k.Etcd, k.APIServer} {
		if p.Exited() {
			t.Fatalf("%s exited: %s", p.Name, p.Output())
		}
	}
	if _, err := os.Stat(k.CAFile); err != nil {
		t.Fatal(err)
	}
	// /readyz answers anonymous callers too (what a probe would use), over
	// TLS that the CA file verifies.
	tlsClient, err := rest.HTTPClientFor(&rest.Config{Host: k.URL, TLSClientConfig: rest.TLSClientConfig{CAFile: k.CAFile}})
	if err != nil {
		t.Fatal(err)
	}
	resp, err := tlsClient.Get(k.URL + "/readyz")
	if err != nil {
		t.Fatalf("readyz with the CA file: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("readyz: HTTP %d", resp.StatusCode)
	}
}
