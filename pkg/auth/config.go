// Package auth tells the gateway who is writing: a bearer token looked up
// in tokens.yaml, or a client certificate whose SPIFFE ID names a cluster
// (and optionally a tenant). It also builds the gateway's TLS server
// configuration, with certificate reload.
//
// What is promised: an Identity is only returned for a token whose SHA-256
// is in the tokens file as last loaded, or for a certificate that the TLS
// handshake verified against -tls.client-ca-file and whose URI SAN is
// spiffe://<trust-domain>/cluster/<name>[/tenant/<tenant>]. Tokens are
// never stored in clear and never logged.
package auth

import (
	"errors"
	"flag"
	"fmt"
	"time"
)

// Cluster mismatch policies: what happens to data that claims another
// cluster than its sender's identity.
const (
	MismatchRefuse    = "refuse"
	MismatchOverwrite = "overwrite"
)

// Config is who may write and how the gateway checks it.
type Config struct {
	// TokensFile is tokens.yaml; "" accepts no bearer tokens.
	TokensFile string `yaml:"tokens_file"`
	// TokensReloadInterval is how often TokensFile is read again; a
	// changed file takes effect without a restart once two reads in a row
	// agree (pkg/filewatch).
	TokensReloadInterval time.Duration `yaml:"tokens_reload_interval"`
	// Required refuses (401) requests without a valid identity. Off, such
	// requests are written as before (anonymous), but an invalid token is
	// still refused.
	Required bool `yaml:"required"`
	// ClusterMismatch is MismatchRefuse (403) or MismatchOverwrite (the
	// identity's cluster replaces the claimed one).
	ClusterMismatch string `yaml:"cluster_mismatch"`
	// SPIFFETrustDomain is the trust domain client certificates' SPIFFE
	// IDs must be in; "" accepts any.
	SPIFFETrustDomain string `yaml:"spiffe_trust_domain"`
}

// RegisterFlags registers the -auth.* flags.
func (c *Config) RegisterFlags(fs *flag.FlagSet) {
	fs.StringVar(&c.TokensFile, "auth.tokens-file", "", "tokens.yaml: the SHA-256 of each bearer token with its cluster, tenant and limits (make an entry with -auth.hash-token). Read again every -auth.tokens-reload-interval; a file that does not parse is logged and the last good one kept. Empty: no tokens accepted.")
	// 5 s: a revoked token stops working within seconds, while reading a
	// file of a few KiB every 5 s costs nothing.
	fs.DurationVar(&c.TokensReloadInterval, "auth.tokens-reload-interval", 5*time.Second, "How often -auth.tokens-file is checked for changes; a change applies when two reads in a row agree (a file written in place is never applied half-written), so within two intervals.")
	fs.BoolVar(&c.Required, "auth.required", false, "Refuse writes without a valid identity (bearer token or verified client certificate) with 401 / UNAUTHENTICATED. Off: such writes are accepted as before; an invalid token is refused either way.")
	fs.StringVar(&c.ClusterMismatch, "auth.cluster-mismatch", MismatchRefuse, "Data claiming another cluster (or tenant) than the sender's identity: refuse (403 / PERMISSION_DENIED, nothing written) or overwrite (the identity's cluster replaces the claimed one on every series, stream and span).")
	fs.StringVar(&c.SPIFFETrustDomain, "auth.spiffe-trust-domain", "", "Trust domain of client certificates' SPIFFE IDs (spiffe://<trust-domain>/cluster/<name>[/tenant/<tenant>]); empty accepts any.")
}

// Enabled reports whether any identity source is configured.
func (c *Config) Enabled(tlsCfg TLSConfig) bool {
	return c.TokensFile != "" || tlsCfg.ClientCAFile != ""
}

// Validate checks c together with the TLS configuration it depends on.
func (c *Config) Validate(tlsCfg TLSConfig) error {
	if c.ClusterMismatch != MismatchRefuse && c.ClusterMismatch != MismatchOverwrite {
		return fmt.Errorf("auth.cluster-mismatch is %q: want %s or %s", c.ClusterMismatch, MismatchRefuse, MismatchOverwrite)
	}
	if c.Required && !c.Enabled(tlsCfg) {
		return errors.New("auth.required needs -auth.tokens-file or -tls.client-ca-file: otherwise every write would be refused")
	}
	if c.TokensFile != "" && c.TokensReloadInterval <= 0 {
		return errors.New("auth.tokens-reload-interval must be positive")
	}
	if c.SPIFFETrustDomain != "" {
		if err := checkTrustDomain(c.SPIFFETrustDomain); err != nil {
			return fmt.Errorf("auth.spiffe-trust-domain: %w", err)
		}
	}
	return tlsCfg.Validate()
}

// Client certificate policies of TLSConfig.ClientAuth.
const (
	ClientAuthNone     = "none"
	ClientAuthOptional = "optional"
	ClientAuthRequired = "required"
)

// TLSConfig is the gateway's TLS server side, shared by the HTTP and the
// OTLP gRPC listeners.
type TLSConfig struct {
	CertFile     string `yaml:"cert_file"`
	KeyFile      string `yaml:"key_file"`
	ClientCAFile string `yaml:"client_ca_file"`
	// ClientAuth is none, optional or required; "" is optional with a
	// client CA and none without.
	ClientAuth string `yaml:"client_auth"`
}

// RegisterFlags registers the -tls.* flags.
func (c *TLSConfig) RegisterFlags(fs *flag.FlagSet) {
	fs.StringVar(&c.CertFile, "tls.cert-file", "", "Server certificate (PEM) for the HTTP and OTLP gRPC listeners; read again when it changes. Empty: plain text.")
	fs.StringVar(&c.KeyFile, "tls.key-file", "", "Private key (PEM) of -tls.cert-file.")
	fs.StringVar(&c.ClientCAFile, "tls.client-ca-file", "", "CA bundle (PEM) client certificates are verified against; a verified certificate's SPIFFE ID is an identity. Read again every second: a changed bundle applies to new handshakes once two reads in a row agree; a bundle without a certificate is refused and the last good one kept. Needs -tls.cert-file.")
	fs.StringVar(&c.ClientAuth, "tls.client-auth", "", "Client certificates: none, optional (verified if presented) or required (the TLS handshake fails without one). Default: optional with -tls.client-ca-file, none without.")
}

// Enabled reports whether the listeners serve TLS.
func (c *TLSConfig) Enabled() bool { return c.CertFile != "" }

// clientAuth is ClientAuth with its default applied.
func (c *TLSConfig) clientAuth() string {
	if c.ClientAuth != "" {
		return c.ClientAuth
	}
	if c.ClientCAFile != "" {
		return ClientAuthOptional
	}
	return ClientAuthNone
}

// Validate checks that the files named go together.
func (c *TLSConfig) Validate() error {
	if (c.CertFile == "") != (c.KeyFile == "") {
		return errors.New("tls.cert-file and tls.key-file go together")
	}
	if c.ClientCAFile != "" && c.CertFile == "" {
		return errors.New("tls.client-ca-file needs -tls.cert-file: client certificates are only seen over TLS")
	}
	switch ca := c.clientAuth(); ca {
	case ClientAuthNone:
		if c.ClientCAFile != "" {
			return errors.New("tls.client-auth=none with -tls.client-ca-file: certificates would never be verified; drop one of them")
		}
	case ClientAuthOptional, ClientAuthRequired:
		if c.ClientCAFile == "" {
			return fmt.Errorf("tls.client-auth=%s needs -tls.client-ca-file", ca)
		}
	default:
		return fmt.Errorf("tls.client-auth is %q: want none, optional or required", c.ClientAuth)
	}
	return nil
}
