package gateway

import (
	"context"
	"crypto/tls"
	"net/http"
	"strconv"
	"time"

	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/tap"

	"github.com/tributary-io/tributary/pkg/auth"
	"github.com/tributary-io/tributary/pkg/reject"
	recordpb "github.com/tributary-io/tributary/proto/record/v1"
)

// WithAuth makes g serve TLS as a says and authenticate writes with it.
// Without it (or with an a that has no identity source) every write is
// admitted as before.
func (g *Gateway) WithAuth(a *auth.Authenticator) *Gateway {
	g.auth = a
	if a != nil {
		a.OnTokenLimits(g.SetTokenLimits)
	}
	return g
}

// authenticating reports whether writes are authenticated.
func (g *Gateway) authenticating() bool { return g.auth != nil && g.auth.Enabled() }

// authState is what authentication said about a request: an identity, none
// (anonymous, allowed without -auth.required), or why it was refused. It
// rides in the request context from the middleware or the gRPC tap to
// receive and serveGRPC, which refuse or apply it.
type authState struct {
	id  *auth.Identity
	err error
}

type authStateKey struct{}

func withAuthState(ctx context.Context, st *authState) context.Context {
	ctx = context.WithValue(ctx, authStateKey{}, st)
	if st.id != nil {
		ctx = auth.NewContext(ctx, st.id)
	}
	return ctx
}

// authenticate is the HTTP middleware of the write endpoints: it puts the
// request's identity (or the reason it has none) in the context. The
// refusal itself comes from receive, so that it is answered and counted
// like every other refusal of its endpoint (OTLP/HTTP as a Status body).
func (g *Gateway) authenticate(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !g.authenticating() || r.Method != http.MethodPost { // writes are POST; probes and /metrics are not
			next.ServeHTTP(w, r)
			return
		}
		id, err := g.auth.Authenticate(r.Header.Get("Authorization"), r.TLS)
		if err != nil {
			w.Header().Set("WWW-Authenticate", `Bearer realm="tributary"`)
		}
		next.ServeHTTP(w, r.WithContext(withAuthState(r.Context(), &authState{id: id, err: err})))
	})
}

// tap is the gRPC server's tap: it authenticates an OTLP export before
// gRPC reads its message, so a request without a valid identity costs no
// message allocation (UNAUTHENTICATED), then applies admit.
func (g *Gateway) tap(ctx context.Context, info *tap.Info) (context.Context, error) {
	signal, ok := grpcSignals[info.FullMethodName]
	if !ok || !g.authenticating() { // health checks need no identity
		return g.admit(ctx, info)
	}
	start := time.Now()
	ctx, err := g.authenticateGRPC(ctx, info.Header)
	if err != nil {
		code, reason := g.failed(ctx, signal, err, mdValue(info.Header, "x-scope-orgid"), "")
		g.count(signal, code, start)
		return nil, status.Error(grpcCode(code), reason)
	}
	return g.admit(ctx, info)
}

// grpcCredentials is the OTLP gRPC server's TLS, the HTTP listener's
// configuration; nil for plain text.
func (g *Gateway) grpcCredentials() credentials.TransportCredentials {
	tc := g.TLSConfig()
	if tc == nil {
		return nil
	}
	return credentials.NewTLS(tc.Clone())
}

// authenticateGRPC is the identity of a gRPC request, from its
// "authorization" metadata and its connection's verified client
// certificate.
func (g *Gateway) authenticateGRPC(ctx context.Context, md metadata.MD) (context.Context, error) {
	var cs *tls.ConnectionState
	if p, ok := peer.FromContext(ctx); ok {
		if ti, ok := p.AuthInfo.(credentials.TLSInfo); ok {
			cs = &ti.State
		}
	}
	id, err := g.auth.Authenticate(mdValue(md, "authorization"), cs)
	if err != nil {
		return ctx, unauthenticated(err)
	}
	return withAuthState(ctx, &authState{id: id}), nil
}

func unauthenticated(err error) error {
	return &reject.Error{Status: http.StatusUnauthorized, Reason: err.Error()}
}

func forbidden(reason string) error {
	return &reject.Error{Status: http.StatusForbidden, Reason: reason}
}

// applyIdentity turns a request's tenant, claimed cluster (its cluster
// header, "" if none) and default cluster into the ones it is written
// with. With an identity, the identity's cluster is the default of data
// without a cluster label and its tenant (when it names one) the tenant; a
// header claiming another cluster or tenant is refused (403), or ignored
// with -auth.cluster-mismatch=overwrite, in which case override tells the
// decoders to replace every other cluster label too. A request whose
// authentication failed is refused here (401).
func (g *Gateway) applyIdentity(ctx context.Context, tenant, claimed, cluster string) (string, string, bool, error) {
	st, _ := ctx.Value(authStateKey{}).(*authState)
	if st == nil {
		return tenant, cluster, false, nil
	}
	if st.err != nil {
		return "", "", false, unauthenticated(st.err)
	}
	id := st.id
	if id == nil {
		return tenant, cluster, false, nil // anonymous: -auth.required is off
	}
	overwrite := g.auth.Overwrite()
	if claimed != "" && claimed != id.Cluster && !overwrite {
		g.auth.Mismatch()
		return "", "", false, forbidden("identity of cluster " + quote(id.Cluster) + " may not write cluster " + quote(claimed) + " (" + g.cfg.ClusterHeader + " header; -auth.cluster-mismatch=refuse)")
	}
	if id.Tenant != "" {
		if tenant != "" && tenant != id.Tenant && !overwrite {
			g.auth.Mismatch()
			return "", "", false, forbidden("identity of tenant " + quote(id.Tenant) + " may not write tenant " + quote(tenant) + " (X-Scope-OrgID; -auth.cluster-mismatch=refuse)")
		}
		tenant = id.Tenant
	}
	return tenant, id.Cluster, overwrite, nil
}

// admitIdentity refuses records whose cluster the request's identity may
// not write: the last check, after the decoders, so that data labelled
// with another cluster never reaches Kafka whatever the decoders did.
// Without an identity, everything is admitted.
func (g *Gateway) admitIdentity(ctx context.Context, signal recordpb.Signal, recs []outRecord) error {
	id := auth.FromContext(ctx)
	if id == nil {
		return nil
	}
	for _, rec := range recs {
		if rec.cluster != id.Cluster {
			g.auth.Mismatch()
			return forbidden("identity of cluster " + quote(id.Cluster) + " may not write " + signalNoun(signal) + " of cluster " + quote(rec.cluster) + " (-auth.cluster-mismatch=refuse); nothing was written")
		}
	}
	return nil
}

func signalNoun(s recordpb.Signal) string {
	switch s {
	case recordpb.Signal_SIGNAL_METRICS:
		return "series"
	case recordpb.Signal_SIGNAL_LOGS:
		return "streams"
	case recordpb.Signal_SIGNAL_SPANS:
		return "spans"
	}
	return "data"
}

// quote bounds a client-given name in a message.
func quote(s string) string {
	const max = 128
	if len(s) > max {
		s = s[:max] + "..."
	}
	return strconv.Quote(s)
}

// TLSConfig is the listeners' TLS configuration, nil for plain text.
func (g *Gateway) TLSConfig() *tls.Config {
	if g.auth == nil {
		return nil
	}
	return g.auth.TLS()
}

// RunAuth reloads the tokens file and the client CA bundle until ctx ends.
func (g *Gateway) RunAuth(ctx context.Context) error {
	if g.auth != nil {
		g.auth.Run(ctx)
	}
	// Without a file to watch Run returns at once; a run-group block that
	// returns stops the whole gateway, so wait for the end.
	<-ctx.Done()
	return nil
}
