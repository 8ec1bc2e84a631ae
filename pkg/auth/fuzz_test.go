package auth

import (
	"strings"
	"testing"
)

// FuzzBearerToken: any Authorization header either yields a token of
// visible ASCII that round-trips, or an error that does not echo it.
func FuzzBearerToken(f *testing.F) {
	for _, s := range []string{"", "Bearer abc", "bearer  x", "Basic x", "Bearer \x00", "Bearer é"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, h string) {
		tok, err := BearerToken(h)
		if err != nil {
			if tok != "" {
				t.Fatalf("token %q with error %v", tok, err)
			}
			if len(h) > 8 && strings.Contains(err.Error(), h) {
				t.Fatalf("error echoes the header: %v", err)
			}
			return
		}
		if h == "" {
			if tok != "" {
				t.Fatal("token from an empty header")
			}
			return
		}
		if tok == "" || len(tok) > maxTokenLen || !strings.HasSuffix(h, tok) {
			t.Fatalf("header %q gave token %q", h, tok)
		}
		for i := 0; i < len(tok); i++ {
			if tok[i] <= ' ' || tok[i] >= 0x7f {
				t.Fatalf("token %q has byte %#x", tok, tok[i])
			}
		}
	})
}

// FuzzParseSPIFFEID: an accepted ID is exactly the cluster form, built
// back from its parts.
func FuzzParseSPIFFEID(f *testing.F) {
	for _, s := range []string{"spiffe://example.org/cluster/a", "spiffe://td/cluster/a/tenant/b", "spiffe://x/cluster/..", "spiffe://x:1/cluster/a", "spiffe://x/cluster/a%20"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		id, err := ParseSPIFFEID(s)
		if err != nil {
			return
		}
		back := "spiffe://" + id.TrustDomain + "/cluster/" + id.Cluster
		if id.Tenant != "" {
			back += "/tenant/" + id.Tenant
		}
		if back != s {
			t.Fatalf("%q parsed as %+v", s, id)
		}
		if checkTrustDomain(id.TrustDomain) != nil || checkSegment(id.Cluster) != nil {
			t.Fatalf("%q: invalid parts accepted: %+v", s, id)
		}
	})
}

// FuzzParseTokens: any file either parses into entries that pass the
// checks, or is an error; never a panic.
func FuzzParseTokens(f *testing.F) {
	f.Add([]byte("tokens:\n  - sha256: " + HashToken("x") + "\n    cluster: a\n"))
	f.Add([]byte("tokens: [{sha256: 00, cluster: a}]"))
	f.Add([]byte("tokens:\n  - limits: {samples_per_second: 1}\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		table, err := ParseTokens(data)
		if err != nil {
			return
		}
		for _, id := range table {
			if id.Cluster == "" || id.Source != SourceToken {
				t.Fatalf("bad identity %+v", id)
			}
		}
	})
}
