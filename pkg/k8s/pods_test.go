package k8s

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/tributary-io/tributary/internal/testenv"
)

func testPod(name, node, ip string, hostNetwork bool) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"app": name}, Annotations: map[string]string{"note": name}},
		Spec: corev1.PodSpec{
			NodeName: node, HostNetwork: hostNetwork,
			InitContainers: []corev1.Container{{Name: "setup", Image: "busybox"}},
			Containers:     []corev1.Container{{Name: "app", Image: "busybox"}, {Name: "sidecar", Image: "busybox"}},
		},
		Status: corev1.PodStatus{PodIP: ip},
	}
}

// The informer sees the pods of its node only, follows creations, status
// changes and deletions, and ByIP names no pod for an IP that is not one
// running pod's own.
func TestPods(t *testing.T) {
	t.Parallel()
	kube := testenv.StartKube(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	a1 := kube.RunPod(t, testPod("a1", "node-a", "10.1.0.1", false))
	kube.RunPod(t, testPod("b1", "node-b", "10.1.0.2", false))
	// A host-network pod has the node's IP, which is not its own.
	kube.RunPod(t, testPod("h1", "node-a", "10.1.0.50", true))
	// Two pods with the same IP (a stale status): neither is named.
	kube.RunPod(t, testPod("d1", "node-a", "10.1.0.9", false))
	kube.RunPod(t, testPod("d2", "node-a", "10.1.0.9", false))

	reg := prometheus.NewRegistry()
	pods := NewPods(kube.Client, "node-a", reg, nil)
	done := make(chan error, 1)
	go func() { done <- pods.Run(ctx) }()
	syncCtx, syncCancel := context.WithTimeout(ctx, 30*time.Second)
	require.True(t, pods.WaitSynced(syncCtx))
	syncCancel()

	got, ok := pods.ByName("default", "a1")
	require.True(t, ok)
	require.Equal(t, PodInfo{
		Namespace: "default", Name: "a1", UID: string(a1.UID), Node: "node-a",
		Labels: map[string]string{"app": "a1"}, Annotations: map[string]string{"note": "a1"},
		IPs: []string{"10.1.0.1"}, Containers: []string{"setup", "app", "sidecar"},
	}, got)
	byUID, ok := pods.ByUID(string(a1.UID))
	require.True(t, ok)
	require.Equal(t, got, byUID)
	byIP, ok := pods.ByIP("10.1.0.1")
	require.True(t, ok)
	require.Equal(t, got, byIP)

	_, ok = pods.ByName("default", "b1")
	require.False(t, ok, "a pod of another node")
	_, ok = pods.ByIP("10.1.0.2")
	require.False(t, ok, "a pod of another node")
	_, ok = pods.ByIP("10.1.0.50")
	require.False(t, ok, "the node's IP, shared by host-network pods")
	_, ok = pods.ByIP("10.1.0.9")
	require.False(t, ok, "an IP two pods claim")
	_, ok = pods.ByName("default", "h1")
	require.True(t, ok, "host-network pods are in the cache")
	require.Equal(t, 4.0, testutil.ToFloat64(pods.pods))

	// A pod created after the first list arrives through the watch.
	a2 := kube.RunPod(t, testPod("a2", "node-a", "10.1.0.3", false))
	testenv.Eventually(t, 10*time.Second, func() error {
		if _, ok := pods.ByIP("10.1.0.3"); ok {
			return nil
		}
		return errors.New("new pod a2 by IP")
	})

	// A pod that finished keeps its name but no longer owns its IP.
	a2.Status.Phase = corev1.PodSucceeded
	_, err := kube.Client.CoreV1().Pods("default").UpdateStatus(ctx, a2, metav1.UpdateOptions{})
	require.NoError(t, err)
	testenv.Eventually(t, 10*time.Second, func() error {
		if _, ok := pods.ByIP("10.1.0.3"); !ok {
			return nil
		}
		return errors.New("finished pod a2 gives up its IP")
	})
	_, ok = pods.ByName("default", "a2")
	require.True(t, ok)

	// A deleted pod is gone.
	require.NoError(t, kube.Client.CoreV1().Pods("default").Delete(ctx, "a1", metav1.DeleteOptions{GracePeriodSeconds: new(int64)}))
	testenv.Eventually(t, 10*time.Second, func() error {
		if _, ok := pods.ByUID(string(a1.UID)); !ok {
			return nil
		}
		return errors.New("deleted pod a1 still in the cache")
	})

	cancel()
	select {
	case err := <-done:
		require.NoError(t, err)
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after ctx ended")
	}
}
