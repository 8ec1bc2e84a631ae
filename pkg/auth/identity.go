package auth

import (
	"context"

	"github.com/tributary-io/tributary/pkg/limits"
)

// Sources of an identity.
const (
	SourceToken       = "token"
	SourceCertificate = "certificate"
)

// Identity is who sent a request: the one cluster it may write, and its
// tenant when its token or certificate names one.
type Identity struct {
	Cluster string
	Tenant  string // "" when not named: the request's X-Scope-OrgID applies
	// Limits are the token's per-cluster limits from tokens.yaml, nil when
	// the entry has none (or the identity is a certificate's).
	Limits *limits.Cluster
	Source string // SourceToken or SourceCertificate
}

type identityKey struct{}

// NewContext returns ctx carrying id.
func NewContext(ctx context.Context, id *Identity) context.Context {
	return context.WithValue(ctx, identityKey{}, id)
}

// FromContext is the identity ctx carries, or nil.
func FromContext(ctx context.Context) *Identity {
	id, _ := ctx.Value(identityKey{}).(*Identity)
	return id
}
