// Package k8s is what the agent's parts share to talk to Kubernetes: the
// client (in-cluster or from a kubeconfig) and the leader election that
// picks the one agent per cluster doing cluster-wide work.
package k8s

import (
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
)

// ClientConfig says how to reach the API server.
type ClientConfig struct {
	// Kubeconfig is the path of a kubeconfig file; empty means in-cluster
	// (the pod's service account).
	Kubeconfig string `yaml:"kubeconfig"`
}

// NewClient builds a clientset and the rest.Config it was made from.
func NewClient(cfg ClientConfig) (kubernetes.Interface, *rest.Config, error) {
	panic("not implemented yet")
}
