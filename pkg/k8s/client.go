// Package k8s is what the agent's parts share to talk to Kubernetes: the
// client (in-cluster or from a kubeconfig) and the leader election that
// picks the one agent per cluster doing cluster-wide work.
package k8s

import (
	"fmt"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

// ClientConfig says how to reach the API server.
type ClientConfig struct {
	// Kubeconfig is the path of a kubeconfig file (its current context is
	// used); empty means in-cluster: the pod's service account token and
	// KUBERNETES_SERVICE_HOST/PORT.
	Kubeconfig string `yaml:"kubeconfig"`
}

// userAgent names the agent in the API server's audit log and metrics.
const userAgent = "tributary-agent"

// NewClient builds a clientset and the rest.Config it was made from (for
// callers that need another client of the same server, e.g. a dynamic one).
func NewClient(cfg ClientConfig) (kubernetes.Interface, *rest.Config, error) {
	var (
		rc  *rest.Config
		err error
	)
	if cfg.Kubeconfig == "" {
		rc, err = rest.InClusterConfig()
		if err != nil {
			return nil, nil, fmt.Errorf("in-cluster Kubernetes config (set kubeconfig when not running in a pod): %w", err)
		}
	} else {
		rc, err = clientcmd.BuildConfigFromFlags("", cfg.Kubeconfig)
		if err != nil {
			return nil, nil, fmt.Errorf("load kubeconfig %s: %w", cfg.Kubeconfig, err)
		}
	}
	rc.UserAgent = userAgent
	client, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return nil, nil, fmt.Errorf("build Kubernetes client for %s: %w", rc.Host, err)
	}
	return client, rc, nil
}
