package otlp

import (
	"net/netip"
	"testing"

	"github.com/stretchr/testify/require"
	resourcepb "go.opentelemetry.io/proto/otlp/resource/v1"

	"github.com/tributary-io/tributary/pkg/k8s"
)

func TestEnrich(t *testing.T) {
	pods := fakePods{[]k8s.PodInfo{
		{Namespace: "shop", Name: "cart", UID: "uid-cart", Node: "n1", IPs: []string{"10.0.0.5"}},
		{Namespace: "shop", Name: "pay", UID: "uid-pay", Node: "n1", IPs: []string{"10.0.0.6"}},
		{Namespace: "obs", Name: "collector", UID: "uid-coll", Node: "n1", IPs: []string{"10.0.0.9"}},
	}}
	cart := map[string]string{"k8s.cluster.name": "c1", "k8s.namespace.name": "shop", "k8s.pod.name": "cart", "k8s.pod.uid": "uid-cart", "k8s.node.name": "n1"}
	with := func(base map[string]string, kv ...string) map[string]string {
		m := map[string]string{}
		for k, v := range base {
			m[k] = v
		}
		for i := 0; i+1 < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
		return m
	}
	for _, tc := range []struct {
		name         string
		pods         podLookup
		attrs        map[string]string
		peer         string
		want         map[string]string
		wantOutcome  string
		wantReplaced bool
	}{
		{"by peer address", pods, nil, "10.0.0.5", cart, lookupHit, false},
		{"unknown peer", pods, nil, "10.0.0.77", map[string]string{"k8s.cluster.name": "c1"}, lookupMiss, false},
		{"no informer", nil, map[string]string{"service.name": "x"}, "10.0.0.5", map[string]string{"service.name": "x", "k8s.cluster.name": "c1"}, lookupOff, false},
		{"sender's cluster replaced", pods, map[string]string{"k8s.cluster.name": "other"}, "10.0.0.5", cart, lookupHit, true},
		{"sender's own pod name kept", pods, map[string]string{"k8s.pod.name": "mine"}, "10.0.0.5", with(cart, "k8s.pod.name", "mine"), lookupHit, false},
		// A collector (10.0.0.9) forwarding pay's spans: the resource's
		// own attributes name the pod, not the connection.
		{"by k8s.pod.uid", pods, map[string]string{"k8s.pod.uid": "uid-pay"}, "10.0.0.9",
			map[string]string{"k8s.cluster.name": "c1", "k8s.namespace.name": "shop", "k8s.pod.name": "pay", "k8s.pod.uid": "uid-pay", "k8s.node.name": "n1"}, lookupHit, false},
		{"by k8s.pod.ip", pods, map[string]string{"k8s.pod.ip": "10.0.0.6"}, "10.0.0.9",
			map[string]string{"k8s.cluster.name": "c1", "k8s.namespace.name": "shop", "k8s.pod.name": "pay", "k8s.pod.uid": "uid-pay", "k8s.node.name": "n1", "k8s.pod.ip": "10.0.0.6"}, lookupHit, false},
		{"by namespace and name", pods, map[string]string{"k8s.namespace.name": "shop", "k8s.pod.name": "pay"}, "10.0.0.9",
			map[string]string{"k8s.cluster.name": "c1", "k8s.namespace.name": "shop", "k8s.pod.name": "pay", "k8s.pod.uid": "uid-pay", "k8s.node.name": "n1"}, lookupHit, false},
		{"uid of no pod here: no guess from the peer", pods, map[string]string{"k8s.pod.uid": "gone"}, "10.0.0.5",
			map[string]string{"k8s.cluster.name": "c1", "k8s.pod.uid": "gone"}, lookupMiss, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res := &resourcepb.Resource{}
			for k, v := range tc.attrs {
				res.Attributes = append(res.Attributes, stringAttr(k, v))
			}
			e := &enricher{cluster: "c1", pods: tc.pods}
			outcome, replaced := e.enrich(res, netip.MustParseAddr(tc.peer))
			got := map[string]string{}
			for _, kv := range res.Attributes {
				_, dup := got[kv.Key]
				require.False(t, dup, "attribute %s twice", kv.Key)
				got[kv.Key] = kv.GetValue().GetStringValue()
			}
			require.Equal(t, tc.want, got)
			require.Equal(t, tc.wantOutcome, outcome)
			require.Equal(t, tc.wantReplaced, replaced)
		})
	}
}

func TestAddrOf(t *testing.T) {
	require.Equal(t, "127.0.0.1", remoteAddr("127.0.0.1:4318").String())
	require.Equal(t, "10.1.2.3", remoteAddr("[::ffff:10.1.2.3]:1").String(), "IPv4-mapped IPv6 is unmapped")
	require.Equal(t, "fd00::1", remoteAddr("[fd00::1]:1").String())
	require.False(t, remoteAddr("garbage").IsValid())
}
