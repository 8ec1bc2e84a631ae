package k8s

import (
	"context"
	"log/slog"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
)

// PodInfo is what the agent's components need of a pod on their node.
type PodInfo struct {
	Namespace, Name, UID, Node string
	Labels, Annotations        map[string]string
	// IPs are status.podIPs.
	IPs []string
	// Containers are the names of spec.containers and spec.initContainers.
	Containers []string
}

// podResync: 0, no periodic resync. The informer's watch keeps the cache
// current; a resync would only replay the cache to handlers we do not have.
const podResync = 0

const (
	byUID = "uid"
	byIP  = "ip"
)

// Pods is an informer on the pods of one node (field selector
// spec.nodeName=<node>): the apiserver sends only this node's pods, so the
// agent's memory does not grow with the cluster. The lookups read a local
// cache and never call the apiserver.
type Pods struct {
	node     string
	informer cache.SharedIndexInformer
	log      *slog.Logger
	pods     prometheus.GaugeFunc
}

// NewPods builds the informer; Run starts it. The gauge
// tributary_agent_pods_cached counts the pods in the cache.
func NewPods(client kubernetes.Interface, node string, reg prometheus.Registerer, log *slog.Logger) *Pods {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	selector := fields.OneTermEqualSelector("spec.nodeName", node).String()
	lw := &cache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
			o.FieldSelector = selector
			return client.CoreV1().Pods(metav1.NamespaceAll).List(ctx, o)
		},
		WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			o.FieldSelector = selector
			return client.CoreV1().Pods(metav1.NamespaceAll).Watch(ctx, o)
		},
	}
	inf := cache.NewSharedIndexInformer(lw, &corev1.Pod{}, podResync, cache.Indexers{
		byUID: func(obj any) ([]string, error) { return []string{string(obj.(*corev1.Pod).UID)}, nil },
		byIP: func(obj any) ([]string, error) {
			p := obj.(*corev1.Pod)
			// Only running pods own their IP: a finished pod's IP may
			// already belong to a new pod. A host-network pod's IP is the
			// node's, shared with every process of the node.
			if p.Status.Phase != corev1.PodRunning || p.Spec.HostNetwork {
				return nil, nil
			}
			ips := make([]string, 0, len(p.Status.PodIPs))
			for _, ip := range p.Status.PodIPs {
				ips = append(ips, ip.IP)
			}
			return ips, nil
		},
	})
	// Keep only what PodInfo needs: a node with 110 pods carries their
	// full specs and statuses otherwise (tens of KiB each).
	_ = inf.SetTransform(stripPod)
	p := &Pods{node: node, informer: inf, log: log.With("node", node)}
	p.pods = prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "tributary_agent_pods_cached",
		Help: "Pods of this agent's node in the agent's pod cache (the node-scoped informer).",
	}, func() float64 { return float64(len(inf.GetStore().ListKeys())) })
	if reg != nil {
		if err := reg.Register(p.pods); err != nil {
			p.log.Warn("pod cache gauge not registered", "err", err)
		}
	}
	return p
}

// stripPod is the informer's transform: the fields PodInfo and the indexers
// read, nothing else.
func stripPod(obj any) (any, error) {
	p, ok := obj.(*corev1.Pod)
	if !ok {
		return obj, nil // a DeletedFinalStateUnknown tombstone
	}
	out := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Namespace: p.Namespace, Name: p.Name, UID: p.UID, ResourceVersion: p.ResourceVersion,
			Labels: p.Labels, Annotations: p.Annotations,
		},
		Spec:   corev1.PodSpec{NodeName: p.Spec.NodeName, HostNetwork: p.Spec.HostNetwork},
		Status: corev1.PodStatus{Phase: p.Status.Phase, PodIPs: p.Status.PodIPs},
	}
	// last-applied-configuration repeats the whole spec.
	if _, ok := out.Annotations[corev1.LastAppliedConfigAnnotation]; ok {
		a := make(map[string]string, len(out.Annotations)-1)
		for k, v := range out.Annotations {
			if k != corev1.LastAppliedConfigAnnotation {
				a[k] = v
			}
		}
		out.Annotations = a
	}
	for _, c := range p.Spec.InitContainers {
		out.Spec.InitContainers = append(out.Spec.InitContainers, corev1.Container{Name: c.Name})
	}
	for _, c := range p.Spec.Containers {
		out.Spec.Containers = append(out.Spec.Containers, corev1.Container{Name: c.Name})
	}
	return out, nil
}

// Run runs the informer until ctx ends.
func (p *Pods) Run(ctx context.Context) error {
	p.log.Info("watching the node's pods")
	p.informer.RunWithContext(ctx)
	return nil
}

// WaitSynced waits until the first list is in the cache; false if ctx
// ended first.
func (p *Pods) WaitSynced(ctx context.Context) bool {
	return cache.WaitForCacheSync(ctx.Done(), p.informer.HasSynced)
}

// ByUID returns the pod with this UID.
func (p *Pods) ByUID(uid string) (PodInfo, bool) {
	return p.one(byUID, uid)
}

// ByName returns the pod namespace/name.
func (p *Pods) ByName(namespace, name string) (PodInfo, bool) {
	obj, ok, err := p.informer.GetStore().GetByKey(namespace + "/" + name)
	if err != nil || !ok {
		return PodInfo{}, false
	}
	return info(obj.(*corev1.Pod)), true
}

// ByIP returns the running pod with this IP. Host-network pods share the
// node's IP and are never returned; an IP that more than one running pod
// has (a stale status) names no pod either: ByIP returns false rather than
// guess.
func (p *Pods) ByIP(ip string) (PodInfo, bool) {
	return p.one(byIP, ip)
}

func (p *Pods) one(index, key string) (PodInfo, bool) {
	objs, err := p.informer.GetIndexer().ByIndex(index, key)
	if err != nil || len(objs) != 1 {
		return PodInfo{}, false
	}
	return info(objs[0].(*corev1.Pod)), true
}

func info(p *corev1.Pod) PodInfo {
	pi := PodInfo{
		Namespace: p.Namespace, Name: p.Name, UID: string(p.UID), Node: p.Spec.NodeName,
		Labels: p.Labels, Annotations: p.Annotations,
	}
	for _, ip := range p.Status.PodIPs {
		pi.IPs = append(pi.IPs, ip.IP)
	}
	for _, c := range p.Spec.InitContainers {
		pi.Containers = append(pi.Containers, c.Name)
	}
	for _, c := range p.Spec.Containers {
		pi.Containers = append(pi.Containers, c.Name)
	}
	return pi
}
