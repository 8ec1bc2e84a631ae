package auth

import (
	"crypto/tls"
	"errors"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"
)

func TestAuthenticate(t *testing.T) {
	p := newPKI(t)
	tokens := writeTokens(t, t.TempDir(), tokensYAML(
		"tokens:",
		"  - sha256: "+HashToken(tokenA), "    cluster: a",
		"  - sha256: "+HashToken(tokenB), "    cluster: b", "    tenant: tb",
	))
	tlsCfg := TLSConfig{CertFile: p.serverCert, KeyFile: p.serverKey, ClientCAFile: p.ca.File}
	newAuth := func(t *testing.T, cfg Config) (*Authenticator, *metrics) {
		cfg.TokensFile = tokens
		cfg.ClusterMismatch = MismatchRefuse
		cfg.TokensReloadInterval = time.Second
		require.NoError(t, cfg.Validate(tlsCfg))
		a, err := New(cfg, tlsCfg, prometheus.NewRegistry(), discard())
		require.NoError(t, err)
		return a, a.metrics
	}
	state := func(t *testing.T, a *Authenticator, uris ...string) *tls.ConnectionState {
		c := p.client(t, p.ca, "client", uris...)
		cs, _, err := handshake(t, a.TLS(), p.ca.Pool(), &c)
		require.NoError(t, err)
		return cs
	}
	var invalid *InvalidError

	a, m := newAuth(t, Config{SPIFFETrustDomain: "example.org"})
	id, err := a.Authenticate("Bearer "+tokenA, nil)
	require.NoError(t, err)
	require.Equal(t, "a", id.Cluster)

	id, err = a.Authenticate("", state(t, a, "spiffe://example.org/cluster/b/tenant/tb"))
	require.NoError(t, err)
	require.Equal(t, &Identity{Cluster: "b", Tenant: "tb", Source: SourceCertificate}, id)

	id, err = a.Authenticate("Bearer "+tokenB, state(t, a, "spiffe://example.org/cluster/b/tenant/tb"))
	require.NoError(t, err, "token and certificate agree")
	require.Equal(t, SourceToken, id.Source)

	_, err = a.Authenticate("Bearer "+tokenA, state(t, a, "spiffe://example.org/cluster/b/tenant/tb"))
	require.ErrorAs(t, err, &invalid)
	require.ErrorContains(t, err, "disagree")

	_, err = a.Authenticate("", state(t, a, "spiffe://other.org/cluster/a"))
	require.ErrorAs(t, err, &invalid, "another trust domain")

	_, err = a.Authenticate("Bearer wrong-token-0123456789", nil)
	require.ErrorAs(t, err, &invalid)
	require.NotContains(t, err.Error(), "wrong-token")

	id, err = a.Authenticate("", nil)
	require.NoError(t, err, "not required: anonymous")
	require.Nil(t, id)
	require.Equal(t, 3.0, testutil.ToFloat64(m.requests.WithLabelValues(ResultOK)))
	require.Equal(t, 3.0, testutil.ToFloat64(m.requests.WithLabelValues(ResultInvalid)))
	require.Equal(t, 1.0, testutil.ToFloat64(m.requests.WithLabelValues(ResultMissing)))

	a, m = newAuth(t, Config{Required: true})
	_, err = a.Authenticate("", nil)
	require.True(t, errors.Is(err, ErrMissing))
	_, err = a.Authenticate("", state(t, a))
	require.ErrorAs(t, err, &invalid, "a verified certificate without a SPIFFE ID is no identity")
	require.Equal(t, 1.0, testutil.ToFloat64(m.requests.WithLabelValues(ResultMissing)))
}

func TestConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		cfg  Config
		tls  TLSConfig
		want string
	}{
		{Config{ClusterMismatch: "drop"}, TLSConfig{}, "auth.cluster-mismatch"},
		{Config{ClusterMismatch: MismatchRefuse, Required: true}, TLSConfig{}, "auth.required needs"},
		{Config{ClusterMismatch: MismatchRefuse, SPIFFETrustDomain: "Example.org"}, TLSConfig{}, "auth.spiffe-trust-domain"},
		{Config{ClusterMismatch: MismatchRefuse}, TLSConfig{CertFile: "c"}, "go together"},
		{Config{ClusterMismatch: MismatchRefuse}, TLSConfig{ClientCAFile: "ca"}, "needs -tls.cert-file"},
		{Config{ClusterMismatch: MismatchRefuse}, TLSConfig{CertFile: "c", KeyFile: "k", ClientAuth: ClientAuthRequired}, "needs -tls.client-ca-file"},
		{Config{ClusterMismatch: MismatchRefuse}, TLSConfig{CertFile: "c", KeyFile: "k", ClientCAFile: "ca", ClientAuth: ClientAuthNone}, "never be verified"},
		{Config{ClusterMismatch: MismatchRefuse}, TLSConfig{CertFile: "c", KeyFile: "k", ClientAuth: "maybe"}, "tls.client-auth"},
		{Config{ClusterMismatch: MismatchOverwrite, Required: true, TokensFile: "t", TokensReloadInterval: 1}, TLSConfig{}, ""},
	} {
		err := tc.cfg.Validate(tc.tls)
		if tc.want == "" {
			require.NoError(t, err)
			continue
		}
		require.ErrorContains(t, err, tc.want)
	}
}
