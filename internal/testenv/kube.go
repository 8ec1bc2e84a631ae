package testenv

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// Kube is a real kube-apiserver backed by its own etcd, on loopback, with
// nothing else of a cluster: no kubelet, scheduler or controller-manager.
// Tests create Nodes, Pods (and set their status with SetPodRunning),
// Endpoints and EndpointSlices themselves. The default/kubernetes Service
// exists but has no endpoints: the API refuses loopback addresses in
// Endpoints and EndpointSlices (pods and nodes may have them).
type Kube struct {
	Etcd, APIServer *Process
	// URL is https://127.0.0.1:<port> of the apiserver; EtcdURL is etcd's
	// client URL (e.g. to compact its history: POST /v3/kv/compaction).
	URL, EtcdURL string
	// Kubeconfig is a kubeconfig file for Token (a member of
	// system:masters) that trusts the apiserver's serving certificate.
	Kubeconfig string
	// Token is the admin bearer token; CAFile the PEM CA of the apiserver's
	// serving certificate.
	Token, CAFile string
	// Client and Config are an admin client of the apiserver.
	Client kubernetes.Interface
	Config *rest.Config
}

// kubeAdminToken is in a token file on the test's temp dir only.
const kubeAdminToken = "tributary-test-admin-token"

// KubeBinaries returns the paths of kube-apiserver and etcd, building them
// with scripts/build-kube.sh the first time (cold: ~15 min on 2 cores). The
// test fails with the build's output if they cannot be built.
func KubeBinaries(t testing.TB) (apiserver, etcd string) {
	t.Helper()
	kubeBuild.once.Do(func() {
		root := RepoRoot(t)
		start := time.Now()
		var stdout bytes.Buffer
		combined := &syncBuffer{}
		cmd := exec.Command("bash", filepath.Join(root, "scripts", "build-kube.sh"))
		cmd.Dir = root
		cmd.Stdout = io.MultiWriter(&stdout, combined)
		cmd.Stderr = combined
		kubeBuild.err = cmd.Run()
		kubeBuild.out = string(combined.Bytes())
		if kubeBuild.err != nil {
			return
		}
		lines := strings.Split(strings.TrimSpace(stdout.String()), "\n")
		if len(lines) < 2 {
			kubeBuild.err = fmt.Errorf("build-kube.sh printed %q, want two paths", stdout.String())
			return
		}
		kubeBuild.apiserver = strings.TrimSpace(lines[len(lines)-2])
		kubeBuild.etcd = strings.TrimSpace(lines[len(lines)-1])
		for _, p := range []string{kubeBuild.apiserver, kubeBuild.etcd} {
			if fi, err := os.Stat(p); err != nil || fi.IsDir() || fi.Mode()&0o111 == 0 {
				kubeBuild.err = fmt.Errorf("build-kube.sh printed %q, which is not an executable file", p)
				return
			}
		}
		if d := time.Since(start); d > 5*time.Second {
			t.Logf("scripts/build-kube.sh built %s and %s in %s", kubeBuild.apiserver, kubeBuild.etcd, d.Round(time.Second))
		}
	})
	if kubeBuild.err != nil {
		t.Fatalf("scripts/build-kube.sh failed: %v\n%s", kubeBuild.err, kubeBuild.out)
	}
	return kubeBuild.apiserver, kubeBuild.etcd
}

var kubeBuild struct {
	once            sync.Once
	apiserver, etcd string
	out             string
	err             error
}

// StartKube starts etcd and kube-apiserver for this test (data in
// t.TempDir()) and waits until the apiserver is ready and the default
// namespace exists. Both are killed when the test ends. Tests that can
// share one apiserver use SharedKube instead.
func StartKube(t testing.TB) *Kube {
	t.Helper()
	apiserverBin, etcdBin := KubeBinaries(t)
	dir := t.TempDir()

	clientPort, peerPort := FreePort(t), FreePort(t)
	clientURL := "http://" + Addr(clientPort)
	peerURL := "http://" + Addr(peerPort)
	etcd := StartProcess(t, "etcd", etcdBin, []string{
		"--name=test",
		"--data-dir=" + filepath.Join(dir, "etcd"),
		"--listen-client-urls=" + clientURL,
		"--advertise-client-urls=" + clientURL,
		"--listen-peer-urls=" + peerURL,
		"--initial-advertise-peer-urls=" + peerURL,
		"--initial-cluster=test=" + peerURL,
		// The data lives as long as the test: durability buys nothing.
		"--unsafe-no-fsync",
		"--log-level=warn",
	})
	WaitHTTP(t, etcd, clientURL+"/health", 60*time.Second)

	caFile, certFile, keyFile := writeServingCert(t, dir)
	saKey := writeECKey(t, filepath.Join(dir, "sa.key"))
	tokenFile := filepath.Join(dir, "tokens.csv")
	writeFile(t, tokenFile, kubeAdminToken+`,admin,admin,"system:masters"`+"\n")

	port := FreePort(t)
	apiserver := StartProcess(t, "kube-apiserver", apiserverBin, []string{
		"--etcd-servers=" + clientURL,
		"--bind-address=127.0.0.1",
		"--advertise-address=127.0.0.1",
		"--secure-port=" + strconv.Itoa(port),
		"--cert-dir=" + filepath.Join(dir, "certs"),
		"--tls-cert-file=" + certFile,
		"--tls-private-key-file=" + keyFile,
		"--token-auth-file=" + tokenFile,
		"--authorization-mode=RBAC",
		"--service-account-issuer=https://kubernetes.default.svc",
		"--service-account-key-file=" + saKey,
		"--service-account-signing-key-file=" + saKey,
		"--service-cluster-ip-range=10.96.0.0/24",
		// The endpoint reconciler refuses a loopback address, and so does
		// the API for Endpoints and EndpointSlices: default/kubernetes has
		// none here (tests that need one write it with another address).
		"--endpoint-reconciler-type=none",
		// Without a controller-manager nobody creates the "default"
		// ServiceAccount, and this plugin would refuse every Pod.
		"--disable-admission-plugins=ServiceAccount",
		"--profiling=false",
	})
	k := &Kube{
		Etcd:      etcd,
		APIServer: apiserver,
		URL:       "https://" + Addr(port),
		EtcdURL:   clientURL,
		Token:     kubeAdminToken,
		CAFile:    caFile,
	}
	k.Kubeconfig = filepath.Join(dir, "kubeconfig")
	writeKubeconfig(t, k)
	cfg, err := clientcmd.BuildConfigFromFlags("", k.Kubeconfig)
	if err != nil {
		t.Fatalf("load test kubeconfig: %v", err)
	}
	k.Config = cfg
	k.Client, err = kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatalf("kubernetes client: %v", err)
	}
	k.waitReady(t, 120*time.Second)
	return k
}

// waitReady polls /readyz, then the default namespace (created by the
// apiserver itself shortly after start).
func (k *Kube) waitReady(t testing.TB, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var last error
	for time.Now().Before(deadline) {
		if k.APIServer.Exited() {
			t.Fatalf("kube-apiserver exited before it was ready\n%s", lastBytes(k.APIServer.out.Bytes(), 6000))
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_, last = k.Client.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(ctx)
		if last == nil {
			_, last = k.Client.CoreV1().Namespaces().Get(ctx, metav1.NamespaceDefault, metav1.GetOptions{})
		}
		cancel()
		if last == nil {
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("kube-apiserver not ready within %s: %v", timeout, last)
}

// CreateNamespace creates a namespace of the test's own: its name is the
// test's (lower case, at most 40 characters) and a suffix the apiserver
// picks, so that a rerun (-count) or another test on the same apiserver
// never meets it. It is not deleted: without a controller-manager a
// deleted namespace stays Terminating, its objects in place, until the
// apiserver goes.
func (k *Kube) CreateNamespace(t testing.TB) string {
	t.Helper()
	prefix := strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9':
			return r
		case r >= 'A' && r <= 'Z':
			return r - 'A' + 'a'
		}
		return '-'
	}, strings.TrimPrefix(t.Name(), "Test"))
	prefix = strings.Trim(prefix[:min(len(prefix), 40)], "-")
	if prefix == "" {
		prefix = "test"
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ns, err := k.Client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: prefix + "-"}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create namespace %s-*: %v", prefix, err)
	}
	return ns.Name
}

// CreateNode creates a Node whose InternalIP is 127.0.0.1 and whose kubelet
// port is kubeletPort (what the node role of Prometheus's discovery turns
// into the target 127.0.0.1:kubeletPort).
func (k *Kube) CreateNode(t testing.TB, name string, kubeletPort int) *corev1.Node {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	n, err := k.Client.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create node %s: %v", name, err)
	}
	n.Status = corev1.NodeStatus{
		Addresses:       []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: "127.0.0.1"}, {Type: corev1.NodeHostName, Address: name}},
		DaemonEndpoints: corev1.NodeDaemonEndpoints{KubeletEndpoint: corev1.DaemonEndpoint{Port: int32(kubeletPort)}},
		Conditions:      []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue, LastHeartbeatTime: metav1.Now(), LastTransitionTime: metav1.Now()}},
	}
	n, err = k.Client.CoreV1().Nodes().UpdateStatus(ctx, n, metav1.UpdateOptions{})
	if err != nil {
		t.Fatalf("set status of node %s: %v", name, err)
	}
	return n
}

// RunPod creates pod (namespace "default" if unset) and sets its status as
// a kubelet would once it runs: phase Running, Ready, pod IP 127.0.0.1
// (unless pod.Status.PodIP is set), every container running and ready.
func (k *Kube) RunPod(t testing.TB, pod *corev1.Pod) *corev1.Pod {
	t.Helper()
	if pod.Namespace == "" {
		pod.Namespace = metav1.NamespaceDefault
	}
	ip := pod.Status.PodIP
	if ip == "" {
		ip = "127.0.0.1"
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	p, err := k.Client.CoreV1().Pods(pod.Namespace).Create(ctx, pod, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create pod %s/%s: %v", pod.Namespace, pod.Name, err)
	}
	now := metav1.Now()
	p.Status = corev1.PodStatus{
		Phase:     corev1.PodRunning,
		PodIP:     ip,
		PodIPs:    []corev1.PodIP{{IP: ip}},
		HostIP:    "127.0.0.1",
		StartTime: &now,
		Conditions: []corev1.PodCondition{
			{Type: corev1.PodReady, Status: corev1.ConditionTrue, LastTransitionTime: now},
			{Type: corev1.ContainersReady, Status: corev1.ConditionTrue, LastTransitionTime: now},
		},
	}
	for _, c := range p.Spec.Containers {
		p.Status.ContainerStatuses = append(p.Status.ContainerStatuses, corev1.ContainerStatus{
			Name: c.Name, Image: c.Image, Ready: true, Started: new(true),
			State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: now}},
		})
	}
	p, err = k.Client.CoreV1().Pods(p.Namespace).UpdateStatus(ctx, p, metav1.UpdateOptions{})
	if err != nil {
		t.Fatalf("set status of pod %s/%s: %v", pod.Namespace, pod.Name, err)
	}
	return p
}

// writeServingCert writes a CA and a serving certificate for 127.0.0.1,
// localhost and the in-cluster names of the apiserver, signed by it; it
// returns the paths of the CA, cert and key.
func writeServingCert(t testing.TB, dir string) (caFile, certFile, keyFile string) {
	t.Helper()
	ca := NewCA(t, dir, "ca")
	certFile, keyFile = ca.Issue(t, dir, Leaf{Name: "apiserver", Server: true,
		IPs:      []net.IP{net.IPv4(10, 96, 0, 1)},
		DNSNames: []string{"kubernetes", "kubernetes.default", "kubernetes.default.svc"}})
	return ca.File, certFile, keyFile
}

// writeECKey writes a new P-256 private key (the service-account token
// signing key; the apiserver derives the public half from it).
func writeECKey(t testing.TB, path string) string {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return writeKey(t, path, key)
}

func writeKey(t testing.TB, path string, key *ecdsa.PrivateKey) string {
	t.Helper()
	der, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, path, string(pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der})))
	return path
}

func writeKubeconfig(t testing.TB, k *Kube) {
	t.Helper()
	ca, err := os.ReadFile(k.CAFile)
	if err != nil {
		t.Fatal(err)
	}
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["test"] = &clientcmdapi.Cluster{Server: k.URL, CertificateAuthorityData: ca}
	cfg.AuthInfos["admin"] = &clientcmdapi.AuthInfo{Token: k.Token}
	cfg.Contexts["test"] = &clientcmdapi.Context{Cluster: "test", AuthInfo: "admin"}
	cfg.CurrentContext = "test"
	if err := clientcmd.WriteToFile(*cfg, k.Kubeconfig); err != nil {
		t.Fatalf("write kubeconfig: %v", err)
	}
}

func writeFile(t testing.TB, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}
