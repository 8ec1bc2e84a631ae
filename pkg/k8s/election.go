package k8s

import (
	"context"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/client-go/kubernetes"
)

// ElectionConfig names the Lease the agents of one cluster campaign for.
type ElectionConfig struct {
	Namespace, LeaseName, Identity            string
	LeaseDuration, RenewDeadline, RetryPeriod time.Duration
}

// Elector campaigns for a coordination.k8s.io Lease until ctx ends.
type Elector struct{}

// NewElector checks cfg and builds an Elector; it does not campaign yet.
func NewElector(client kubernetes.Interface, cfg ElectionConfig, reg prometheus.Registerer, log *slog.Logger) (*Elector, error) {
	panic("not implemented yet")
}

// Run campaigns until ctx ends, again after each lost term; it blocks.
func (e *Elector) Run(ctx context.Context) error { panic("not implemented yet") }

// IsLeader reports whether this process holds the Lease now.
func (e *Elector) IsLeader() bool { panic("not implemented yet") }

// Subscribe returns a channel that receives the current state first, then
// each change.
func (e *Elector) Subscribe() <-chan bool { panic("not implemented yet") }
