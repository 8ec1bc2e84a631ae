package auth

import (
	"crypto/x509"
	"errors"
	"fmt"
	"strings"
)

// The SPIFFE ID form that names a cluster, and optionally a tenant:
//
//	spiffe://<trust-domain>/cluster/<name>
//	spiffe://<trust-domain>/cluster/<name>/tenant/<tenant>
//
// The trust domain is lower-case letters, digits, '.', '-' and '_'; path
// segments are letters, digits, '.', '-' and '_' (the SPIFFE ID
// specification's rules), so a name never needs escaping.
const (
	spiffeScheme = "spiffe://"
	// maxSPIFFELen is the SPIFFE specification's bound on an ID.
	maxSPIFFELen = 2048
)

// SPIFFEID is a parsed SPIFFE ID of the cluster form.
type SPIFFEID struct {
	TrustDomain string
	Cluster     string
	Tenant      string // "" when the ID names none
}

// ParseSPIFFEID parses id in the cluster form above. Anything else
// (another scheme, a port, user info, a query, a fragment, an empty, "."
// or ".." segment, percent-escapes, another path shape) is an error.
func ParseSPIFFEID(id string) (SPIFFEID, error) {
	if len(id) > maxSPIFFELen {
		return SPIFFEID{}, fmt.Errorf("SPIFFE ID longer than %d bytes", maxSPIFFELen)
	}
	rest, ok := strings.CutPrefix(id, spiffeScheme)
	if !ok {
		return SPIFFEID{}, fmt.Errorf("%q: not a spiffe:// URI", id)
	}
	td, path, _ := strings.Cut(rest, "/")
	if err := checkTrustDomain(td); err != nil {
		return SPIFFEID{}, fmt.Errorf("%q: %w", id, err)
	}
	segs := strings.Split(path, "/")
	for _, s := range segs {
		if err := checkSegment(s); err != nil {
			return SPIFFEID{}, fmt.Errorf("%q: %w", id, err)
		}
	}
	switch {
	case len(segs) == 2 && segs[0] == "cluster":
		return SPIFFEID{TrustDomain: td, Cluster: segs[1]}, nil
	case len(segs) == 4 && segs[0] == "cluster" && segs[2] == "tenant":
		return SPIFFEID{TrustDomain: td, Cluster: segs[1], Tenant: segs[3]}, nil
	}
	return SPIFFEID{}, fmt.Errorf("%q: want spiffe://<trust-domain>/cluster/<name>[/tenant/<tenant>]", id)
}

func checkTrustDomain(td string) error {
	if td == "" {
		return errors.New("empty trust domain")
	}
	for i := 0; i < len(td); i++ {
		c := td[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '.' || c == '-' || c == '_') {
			return fmt.Errorf("trust domain %q: only lower-case letters, digits, '.', '-' and '_' are allowed", td)
		}
	}
	return nil
}

func checkSegment(s string) error {
	if s == "" || s == "." || s == ".." {
		return fmt.Errorf("path segment %q: empty, '.' and '..' are not allowed", s)
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '-' || c == '_') {
			return fmt.Errorf("path segment %q: only letters, digits, '.', '-' and '_' are allowed", s)
		}
	}
	return nil
}

// certIdentity is the identity of a verified client certificate: its one
// spiffe:// URI SAN, in trustDomain unless that is "".
func certIdentity(cert *x509.Certificate, trustDomain string) (*Identity, error) {
	var found []string
	for _, u := range cert.URIs {
		if strings.EqualFold(u.Scheme, "spiffe") {
			found = append(found, u.String())
		}
	}
	switch len(found) {
	case 0:
		return nil, errors.New("client certificate has no spiffe:// URI SAN")
	case 1:
	default:
		return nil, fmt.Errorf("client certificate has %d spiffe:// URI SANs, want one", len(found))
	}
	id, err := ParseSPIFFEID(found[0])
	if err != nil {
		return nil, fmt.Errorf("client certificate: %w", err)
	}
	if trustDomain != "" && id.TrustDomain != trustDomain {
		return nil, fmt.Errorf("client certificate: trust domain %q, want %q (-auth.spiffe-trust-domain)", id.TrustDomain, trustDomain)
	}
	return &Identity{Cluster: id.Cluster, Tenant: id.Tenant, Source: SourceCertificate}, nil
}
