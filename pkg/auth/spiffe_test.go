package auth

import (
	"crypto/x509"
	"net/url"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestParseSPIFFEID(t *testing.T) {
	for _, tc := range []struct {
		id   string
		want SPIFFEID
		err  string
	}{
		{id: "spiffe://example.org/cluster/prod-eu-1", want: SPIFFEID{TrustDomain: "example.org", Cluster: "prod-eu-1"}},
		{id: "spiffe://example.org/cluster/a/tenant/team_A.1", want: SPIFFEID{TrustDomain: "example.org", Cluster: "a", Tenant: "team_A.1"}},
		{id: "spiffe://td/cluster/a", want: SPIFFEID{TrustDomain: "td", Cluster: "a"}},
		{id: "SPIFFE://example.org/cluster/a", err: "not a spiffe:// URI"},
		{id: "https://example.org/cluster/a", err: "not a spiffe:// URI"},
		{id: "spiffe://Example.org/cluster/a", err: "trust domain"},
		{id: "spiffe://example.org:8443/cluster/a", err: "trust domain"},
		{id: "spiffe://user@example.org/cluster/a", err: "trust domain"},
		{id: "spiffe:///cluster/a", err: "empty trust domain"},
		{id: "spiffe://example.org", err: "path segment"},
		{id: "spiffe://example.org/", err: "path segment"},
		{id: "spiffe://example.org/cluster/", err: "path segment"},
		{id: "spiffe://example.org/cluster//a", err: "path segment"},
		{id: "spiffe://example.org/cluster/a/", err: "path segment"},
		{id: "spiffe://example.org/cluster/..", err: "path segment"},
		{id: "spiffe://example.org/cluster/a%2Fb", err: "path segment"},
		{id: "spiffe://example.org/cluster/a?x=1", err: "path segment"},
		{id: "spiffe://example.org/cluster/a#f", err: "path segment"},
		{id: "spiffe://example.org/cluster/a b", err: "path segment"},
		{id: "spiffe://example.org/ns/a", err: "want spiffe://<trust-domain>/cluster/<name>"},
		{id: "spiffe://example.org/cluster/a/ns/b", err: "want spiffe://"},
		{id: "spiffe://example.org/cluster/a/tenant/b/c", err: "want spiffe://"},
		{id: "spiffe://example.org/cluster", err: "want spiffe://"},
		{id: "spiffe://example.org/cluster/" + strings.Repeat("a", 2100), err: "longer than 2048"},
	} {
		t.Run(tc.id[:min(len(tc.id), 60)], func(t *testing.T) {
			got, err := ParseSPIFFEID(tc.id)
			if tc.err != "" {
				require.ErrorContains(t, err, tc.err)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tc.want, got)
		})
	}
}

func certWithURIs(t *testing.T, uris ...string) *x509.Certificate {
	c := &x509.Certificate{}
	for _, s := range uris {
		u, err := url.Parse(s)
		require.NoError(t, err)
		c.URIs = append(c.URIs, u)
	}
	return c
}

func TestCertIdentity(t *testing.T) {
	id, err := certIdentity(certWithURIs(t, "https://example.org/x", "spiffe://example.org/cluster/a/tenant/t"), "example.org")
	require.NoError(t, err)
	require.Equal(t, &Identity{Cluster: "a", Tenant: "t", Source: SourceCertificate}, id)

	id, err = certIdentity(certWithURIs(t, "spiffe://other.org/cluster/a"), "")
	require.NoError(t, err, "no trust domain configured: any")
	require.Equal(t, "a", id.Cluster)

	_, err = certIdentity(certWithURIs(t, "spiffe://other.org/cluster/a"), "example.org")
	require.ErrorContains(t, err, `trust domain "other.org", want "example.org"`)
	_, err = certIdentity(certWithURIs(t), "")
	require.ErrorContains(t, err, "no spiffe:// URI SAN")
	_, err = certIdentity(certWithURIs(t, "spiffe://example.org/cluster/a", "spiffe://example.org/cluster/b"), "")
	require.ErrorContains(t, err, "2 spiffe:// URI SANs")
	_, err = certIdentity(certWithURIs(t, "spiffe://example.org/workload/a"), "")
	require.ErrorContains(t, err, "want spiffe://")
}
