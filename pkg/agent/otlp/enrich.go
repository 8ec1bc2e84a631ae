package otlp

import (
	"net"
	"net/netip"

	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	resourcepb "go.opentelemetry.io/proto/otlp/resource/v1"

	"github.com/tributary-io/tributary/pkg/k8s"
)

// The OpenTelemetry semantic-convention names of the Kubernetes resource
// attributes the agent adds.
const (
	attrCluster   = "k8s.cluster.name"
	attrNamespace = "k8s.namespace.name"
	attrPodName   = "k8s.pod.name"
	attrPodUID    = "k8s.pod.uid"
	attrPodIP     = "k8s.pod.ip"
	attrNode      = "k8s.node.name"
)

// podLookup finds a pod of this node; *k8s.Pods implements it.
type podLookup interface {
	ByUID(uid string) (k8s.PodInfo, bool)
	ByName(namespace, name string) (k8s.PodInfo, bool)
	ByIP(ip string) (k8s.PodInfo, bool)
}

// enricher adds the Kubernetes attributes to resources.
type enricher struct {
	cluster string
	pods    podLookup // nil: no Kubernetes, only the cluster is set
}

// lookup outcomes, the values of the enrichment metric's outcome label.
const (
	lookupHit  = "hit"  // the resource's pod was found
	lookupMiss = "miss" // no pod of this node matched
	lookupOff  = "off"  // the agent has no pod informer
)

// enrich sets k8s.cluster.name to the agent's cluster, replacing what the
// sender wrote: the cluster is the agent's identity, and the gateway files
// a resource under its k8s.cluster.name, so a sender's own value would send
// data under another cluster's name (the metrics path pins its cluster
// label the same way). It returns whether it replaced another value.
//
// It then finds the sender's pod and adds the pod attributes the resource
// lacks; attributes the sender set are kept. The pod is looked up, first
// match wins, by the resource's k8s.pod.uid, k8s.pod.ip, k8s.namespace.name
// with k8s.pod.name, and last by the connection's source address peer: a
// collector that forwards other pods' spans usually sets the first ones,
// and its own address would name the wrong pod.
func (e *enricher) enrich(res *resourcepb.Resource, peer netip.Addr) (outcome string, replaced bool) {
	attrs := attrIndex(res)
	if _, ok := attrs[attrCluster]; !ok {
		res.Attributes = append(res.Attributes, stringAttr(attrCluster, e.cluster))
	}
	for _, kv := range res.Attributes {
		if kv.GetKey() == attrCluster && kv.GetValue().GetStringValue() != e.cluster {
			replaced = true
			kv.Value = stringValue(e.cluster) // every copy of a repeated key
		}
	}
	if e.pods == nil {
		return lookupOff, replaced
	}
	pod, ok := e.find(attrs, peer)
	if !ok {
		return lookupMiss, replaced
	}
	for _, a := range [...]struct{ key, value string }{
		{attrNamespace, pod.Namespace},
		{attrPodName, pod.Name},
		{attrPodUID, pod.UID},
		{attrNode, pod.Node},
	} {
		if _, set := attrs[a.key]; !set && a.value != "" {
			res.Attributes = append(res.Attributes, stringAttr(a.key, a.value))
		}
	}
	return lookupHit, replaced
}

func (e *enricher) find(attrs map[string]*commonpb.KeyValue, peer netip.Addr) (k8s.PodInfo, bool) {
	str := func(key string) string { return attrs[key].GetValue().GetStringValue() }
	if uid := str(attrPodUID); uid != "" {
		return e.pods.ByUID(uid)
	}
	if ip := str(attrPodIP); ip != "" {
		return e.pods.ByIP(ip)
	}
	if ns, name := str(attrNamespace), str(attrPodName); ns != "" && name != "" {
		return e.pods.ByName(ns, name)
	}
	if peer.IsValid() {
		return e.pods.ByIP(peer.String())
	}
	return k8s.PodInfo{}, false
}

// attrIndex maps the resource's attribute keys to the attributes (the
// first of a repeated key).
func attrIndex(res *resourcepb.Resource) map[string]*commonpb.KeyValue {
	m := make(map[string]*commonpb.KeyValue, len(res.Attributes)+5)
	for _, kv := range res.Attributes {
		if kv == nil {
			continue
		}
		if _, dup := m[kv.Key]; !dup {
			m[kv.Key] = kv
		}
	}
	return m
}

func stringValue(s string) *commonpb.AnyValue {
	return &commonpb.AnyValue{Value: &commonpb.AnyValue_StringValue{StringValue: s}}
}

func stringAttr(key, value string) *commonpb.KeyValue {
	return &commonpb.KeyValue{Key: key, Value: stringValue(value)}
}

// addrOf is the IP of a connection's remote address (IPv4-mapped IPv6
// unmapped, as pod IPs are written), or the zero Addr.
func addrOf(a net.Addr) netip.Addr {
	if a == nil {
		return netip.Addr{}
	}
	if tcp, ok := a.(*net.TCPAddr); ok {
		ip, _ := netip.AddrFromSlice(tcp.IP)
		return ip.Unmap()
	}
	ap, err := netip.ParseAddrPort(a.String())
	if err != nil {
		return netip.Addr{}
	}
	return ap.Addr().Unmap()
}

// remoteAddr parses an http.Request's RemoteAddr.
func remoteAddr(s string) netip.Addr {
	ap, err := netip.ParseAddrPort(s)
	if err != nil {
		return netip.Addr{}
	}
	return ap.Addr().Unmap()
}
