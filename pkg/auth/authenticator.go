package auth

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tributary-io/tributary/pkg/limits"
)

// ErrMissing: the request presented no identity and one is required.
var ErrMissing = errors.New("no identity: send \"Authorization: Bearer <token>\" or a client certificate (-auth.required)")

// InvalidError: the request presented an identity that does not hold.
type InvalidError struct{ reason string }

func (e *InvalidError) Error() string { return "invalid identity: " + e.reason }

func invalid(format string, args ...any) error {
	return &InvalidError{reason: fmt.Sprintf(format, args...)}
}

// Authenticator turns a request's credentials into an Identity.
type Authenticator struct {
	cfg     Config
	tokens  *TokenFile // nil without -auth.tokens-file
	certs   bool       // client certificates are verified
	tls     *tls.Config
	cas     *clientCAs // nil without -tls.client-ca-file
	metrics *metrics
}

// New builds the authenticator and the listeners' TLS configuration from
// cfg and tlsCfg (validated). It reads the tokens file, the certificate and
// the client CA, and fails if any of them is unusable; Run keeps the
// tokens file and the client CA current; handshakes check the certificate.
func New(cfg Config, tlsCfg TLSConfig, reg prometheus.Registerer, log *slog.Logger) (*Authenticator, error) {
	m := newMetrics(reg)
	a := &Authenticator{cfg: cfg, certs: tlsCfg.ClientCAFile != "", metrics: m}
	var err error
	if a.tls, a.cas, err = serverTLS(tlsCfg, reg, m, log); err != nil {
		return nil, err
	}
	if cfg.TokensFile != "" {
		if a.tokens, err = loadTokenFile(cfg.TokensFile, cfg.TokensReloadInterval, reg, m, log.With("component", "auth")); err != nil {
			return nil, err
		}
	}
	return a, nil
}

// TLS is the listeners' TLS configuration, nil for plain text. Each
// listener takes a Clone.
func (a *Authenticator) TLS() *tls.Config { return a.tls }

// Enabled reports whether requests are authenticated at all.
func (a *Authenticator) Enabled() bool { return a.tokens != nil || a.certs }

// Overwrite reports whether a claimed cluster that is not the identity's
// is replaced (true) or refused (false).
func (a *Authenticator) Overwrite() bool { return a.cfg.ClusterMismatch == MismatchOverwrite }

// Run reloads the tokens file and the client CA bundle until ctx ends.
func (a *Authenticator) Run(ctx context.Context) {
	var wg sync.WaitGroup
	if a.tokens != nil {
		wg.Go(func() { a.tokens.Run(ctx) })
	}
	if a.cas != nil {
		wg.Go(func() { a.cas.watch.Run(ctx) })
	}
	wg.Wait()
}

// Authenticate is the identity of a request with the Authorization header
// value authorization, over a connection in state cs (nil for plain
// text). It returns nil, nil for a request without credentials when none
// are required; ErrMissing when they are; an *InvalidError for a bad or
// unknown token, a verified certificate without a usable SPIFFE ID, or a
// token and a certificate naming different clusters or tenants. Each call
// is counted by result.
func (a *Authenticator) Authenticate(authorization string, cs *tls.ConnectionState) (*Identity, error) {
	id, err := a.authenticate(authorization, cs)
	switch {
	case errors.Is(err, ErrMissing), err == nil && id == nil:
		a.metrics.requests.WithLabelValues(ResultMissing).Inc()
	case err != nil:
		a.metrics.requests.WithLabelValues(ResultInvalid).Inc()
	default:
		a.metrics.requests.WithLabelValues(ResultOK).Inc()
	}
	return id, err
}

func (a *Authenticator) authenticate(authorization string, cs *tls.ConnectionState) (*Identity, error) {
	var fromToken, fromCert *Identity
	token, err := BearerToken(authorization)
	if err != nil {
		return nil, invalid("%v", err)
	}
	if token != "" {
		if a.tokens == nil {
			return nil, invalid("bearer token presented, but the gateway has no -auth.tokens-file")
		}
		if fromToken = a.tokens.Lookup(token); fromToken == nil {
			return nil, invalid("unknown bearer token")
		}
	}
	// The handshake verified the chain against the client CA: only then
	// is a certificate an identity.
	if a.certs && cs != nil && len(cs.VerifiedChains) > 0 {
		if fromCert, err = certIdentity(cs.VerifiedChains[0][0], a.cfg.SPIFFETrustDomain); err != nil {
			return nil, invalid("%v", err)
		}
	}
	switch {
	case fromToken != nil && fromCert != nil:
		if fromToken.Cluster != fromCert.Cluster || fromToken.Tenant != fromCert.Tenant {
			return nil, invalid("bearer token (cluster %q, tenant %q) and client certificate (cluster %q, tenant %q) disagree",
				fromToken.Cluster, fromToken.Tenant, fromCert.Cluster, fromCert.Tenant)
		}
		return fromToken, nil // it carries the limits
	case fromToken != nil:
		return fromToken, nil
	case fromCert != nil:
		return fromCert, nil
	case a.cfg.Required:
		return nil, ErrMissing
	}
	return nil, nil
}

// OnTokenLimits calls fn with the tokens file's per-cluster limits now and
// after every reload (not at all without a tokens file).
func (a *Authenticator) OnTokenLimits(fn func(map[string]limits.Cluster)) {
	if a.tokens != nil {
		a.tokens.OnLoad(func(t TokenTable) { fn(t.ClusterLimits()) })
	}
}

// Mismatch counts a request refused for claiming another cluster or
// tenant than its identity.
func (a *Authenticator) Mismatch() { a.metrics.requests.WithLabelValues(ResultMismatch).Inc() }
