package gateway

import (
	"context"

	recordpb "github.com/tributary-io/tributary/proto/record/v1"
)

// admitWrite decides, before anything is produced, whether this request may
// write recs: first who the sender is (admitIdentity: 401/403), then how
// fast its clusters may write (admitRate: 429 with Retry-After). Every
// signal and transport passes here through produce, so a check added to
// either applies to metrics, logs and spans, over HTTP and gRPC alike.
func (g *Gateway) admitWrite(ctx context.Context, signal recordpb.Signal, recs []outRecord) error {
	if err := g.admitIdentity(ctx, signal, recs); err != nil {
		return err
	}
	return g.admitRate(ctx, signal, recs)
}
