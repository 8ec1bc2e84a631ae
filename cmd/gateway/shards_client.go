package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/prometheus/client_golang/api"
	config_util "github.com/prometheus/common/config"
)

// promClientConfig is how `gateway shards suggest` reaches a Prometheus
// query API behind authentication: Mimir or Cortex (a tenant), Thanos or
// Prometheus behind a proxy (a bearer token or basic auth, TLS with a
// private CA or a client certificate). Secrets come only from files: a
// flag or its environment variable shows in ps and in shell history.
type promClientConfig struct {
	BearerTokenFile    string
	Username           string
	PasswordFile       string
	Tenant             string
	CAFile             string
	CertFile           string
	KeyFile            string
	InsecureSkipVerify bool
}

// tenantHeader is the header Mimir, Cortex and Loki read the tenant from.
const tenantHeader = "X-Scope-OrgID"

func (c *promClientConfig) RegisterFlags(fs *flag.FlagSet) {
	fs.StringVar(&c.BearerTokenFile, "prometheus.bearer-token-file", "", `File holding a token sent as "Authorization: Bearer <token>" (surrounding whitespace ignored): Thanos or Prometheus behind an authenticating proxy.`)
	fs.StringVar(&c.Username, "prometheus.basic-auth.username", "", "User name of HTTP basic auth; needs -prometheus.basic-auth.password-file.")
	fs.StringVar(&c.PasswordFile, "prometheus.basic-auth.password-file", "", "File holding the basic auth password (surrounding whitespace ignored). Never put the password itself in a flag or an environment variable.")
	fs.StringVar(&c.Tenant, "prometheus.tenant", "", "Tenant sent as the "+tenantHeader+" header (Mimir, Cortex; several as a|b where the server allows it).")
	fs.StringVar(&c.CAFile, "prometheus.tls.ca-file", "", "PEM file of the CAs that sign the server's certificate (https only). Empty: the system's roots.")
	fs.StringVar(&c.CertFile, "prometheus.tls.cert-file", "", "Client certificate (PEM) for servers that demand one; needs -prometheus.tls.key-file.")
	fs.StringVar(&c.KeyFile, "prometheus.tls.key-file", "", "Key (PEM) of -prometheus.tls.cert-file.")
	fs.BoolVar(&c.InsecureSkipVerify, "prometheus.tls.insecure-skip-verify", false, "Do not verify the server's certificate: anyone on the path can read the credentials and alter the load the table is made from. Tests only.")
}

// Validate checks the flags against the URL; its errors are usage errors.
func (c *promClientConfig) Validate(u *url.URL) error {
	switch {
	case u.User != nil:
		return errors.New("-prometheus.url must not carry credentials (user:password@ shows in ps): use -prometheus.basic-auth.username and -prometheus.basic-auth.password-file")
	case c.BearerTokenFile != "" && (c.Username != "" || c.PasswordFile != ""):
		return errors.New("-prometheus.bearer-token-file and -prometheus.basic-auth.* both set: a request carries one Authorization header, pick one")
	case c.Username != "" && c.PasswordFile == "":
		return errors.New("-prometheus.basic-auth.username needs -prometheus.basic-auth.password-file")
	case c.PasswordFile != "" && c.Username == "":
		return errors.New("-prometheus.basic-auth.password-file needs -prometheus.basic-auth.username")
	case (c.CertFile == "") != (c.KeyFile == ""):
		return errors.New("-prometheus.tls.cert-file and -prometheus.tls.key-file go together")
	case c.InsecureSkipVerify && c.CAFile != "":
		return errors.New("-prometheus.tls.insecure-skip-verify with -prometheus.tls.ca-file: the CA would never be used; drop one of them")
	case u.Scheme != "https" && (c.CAFile != "" || c.CertFile != "" || c.InsecureSkipVerify):
		return fmt.Errorf("-prometheus.tls.* needs an https:// -prometheus.url, got %s", u.Scheme)
	case c.Tenant != "" && (strings.TrimSpace(c.Tenant) != c.Tenant || !utf8.ValidString(c.Tenant) || strings.ContainsFunc(c.Tenant, func(r rune) bool { return r < 0x20 || r == 0x7f })):
		return fmt.Errorf("-prometheus.tenant %q is not a header value (no surrounding spaces or control characters)", c.Tenant)
	}
	return nil
}

// secretFiles are the flags naming a secret file, with their paths.
func (c *promClientConfig) secretFiles() [][2]string {
	return [][2]string{
		{"-prometheus.bearer-token-file", c.BearerTokenFile},
		{"-prometheus.basic-auth.password-file", c.PasswordFile},
	}
}

// httpClient builds the client from Prometheus's own HTTP client
// configuration, the one the agent's remote write uses: the token and
// password files are read on every request, the CA and client
// certificate again when they change. The secret files are read once
// here too, so that a missing or empty one fails now, naming its flag,
// instead of as a refusal by the server.
func (c *promClientConfig) httpClient(stderr io.Writer, u *url.URL) (*http.Client, error) {
	for _, f := range c.secretFiles() {
		if f[1] == "" {
			continue
		}
		b, err := os.ReadFile(f[1])
		if err != nil {
			return nil, fmt.Errorf("%s: %w", f[0], err)
		}
		if strings.TrimSpace(string(b)) == "" {
			return nil, fmt.Errorf("%s %s is empty (a secret mounted without its key?)", f[0], f[1])
		}
	}
	cfg := config_util.HTTPClientConfig{
		TLSConfig: config_util.TLSConfig{
			CAFile:             c.CAFile,
			CertFile:           c.CertFile,
			KeyFile:            c.KeyFile,
			InsecureSkipVerify: c.InsecureSkipVerify,
		},
		// Proxies in front of Thanos or Mimir redirect to a login page or
		// another path; credentials are not sent to another host.
		FollowRedirects: true,
		EnableHTTP2:     true,
		// HTTPS_PROXY, HTTP_PROXY and NO_PROXY apply, as they did with the
		// query API client's own transport.
		ProxyConfig: config_util.ProxyConfig{ProxyFromEnvironment: true},
	}
	if c.BearerTokenFile != "" {
		cfg.Authorization = &config_util.Authorization{Type: "Bearer", CredentialsFile: c.BearerTokenFile}
	}
	if c.Username != "" {
		cfg.BasicAuth = &config_util.BasicAuth{Username: c.Username, PasswordFile: c.PasswordFile}
	}
	if c.Tenant != "" {
		cfg.HTTPHeaders = &config_util.Headers{Headers: map[string]config_util.Header{tenantHeader: {Values: []string{c.Tenant}}}}
	}
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("prometheus client: %w", err)
	}
	client, err := config_util.NewClientFromConfig(cfg, "gateway-shards-suggest")
	if err != nil {
		return nil, fmt.Errorf("-prometheus.tls.*: %w", err)
	}
	if c.InsecureSkipVerify {
		fmt.Fprintf(stderr, "WARNING: -prometheus.tls.insecure-skip-verify: the certificate of %s is NOT verified; anyone on the path can read the credentials sent and alter the load the table is made from\n", u.Host)
	}
	if u.Scheme == "http" && (c.BearerTokenFile != "" || c.Username != "") && !isLoopback(u.Hostname()) {
		fmt.Fprintf(stderr, "WARNING: %s is sent over plain http:// to %s: anyone on the path can read it; use https://\n", c.credential(), u.Host)
	}
	return client, nil
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// credential says what the requests carry, for an error: which flags and
// files, never the secrets; "" for nothing.
func (c *promClientConfig) credential() string {
	var parts []string
	switch {
	case c.BearerTokenFile != "":
		parts = append(parts, "the bearer token of -prometheus.bearer-token-file "+c.BearerTokenFile)
	case c.Username != "":
		parts = append(parts, fmt.Sprintf("basic auth as %q with the password of -prometheus.basic-auth.password-file %s", c.Username, c.PasswordFile))
	}
	if c.CertFile != "" {
		parts = append(parts, "the client certificate -prometheus.tls.cert-file "+c.CertFile)
	}
	if c.Tenant != "" {
		parts = append(parts, fmt.Sprintf("tenant %q (-prometheus.tenant)", c.Tenant))
	}
	return strings.Join(parts, ", ")
}

// statusError is an answer that is not the query API's own: a refusal
// of the credential (401, 403), or a page of a proxy or of another server
// (not JSON), such as the sign-in page an authenticating proxy redirects
// to.
type statusError struct {
	status int
	body   string // its first line, bounded: proxies and Mimir say why there
}

func (e *statusError) Error() string {
	s := strconv.Itoa(e.status) + " " + http.StatusText(e.status)
	if e.body != "" {
		s += ": " + strconv.Quote(e.body)
	}
	return s
}

func (e *statusError) refused() bool {
	return e.status == http.StatusUnauthorized || e.status == http.StatusForbidden
}

// statusAnswers turns such answers into a statusError: the query API
// client reports them as a client or server error like any other, which
// the command would blame on the query. The response stays returned, so
// the client's GET fallback after a 403 to its POST still runs.
type statusAnswers struct{ api.Client }

// statusBodyMax bounds the body quoted in the error: enough for a
// proxy's or Mimir's one-line reason, not a login page.
const statusBodyMax = 200

func (c statusAnswers) Do(ctx context.Context, req *http.Request) (*http.Response, []byte, error) {
	resp, body, err := c.Client.Do(ctx, req)
	if err != nil {
		return resp, body, err
	}
	if resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden || !json.Valid(body) {
		line, _, _ := strings.Cut(strings.TrimSpace(string(body)), "\n")
		if len(line) > statusBodyMax {
			line = strings.ToValidUTF8(line[:statusBodyMax], "") + "..."
		}
		err = &statusError{status: resp.StatusCode, body: line}
	}
	return resp, body, err
}

// explain says what a failed query means for the flags: a refused
// credential, an answer not from the query API, or a TLS failure and the
// CA it was checked against. Other errors come back unchanged.
func (c *promClientConfig) explain(promURL string, err error) error {
	var refused *statusError
	if errors.As(err, &refused) && !refused.refused() {
		hint := "check -prometheus.url: https or http, the host, the path prefix such as Mimir's /prometheus; or the proxy in front"
		if refused.status/100 == 2 && c.credential() == "" {
			hint = "a proxy's sign-in page? it needs -prometheus.bearer-token-file or -prometheus.basic-auth.*; else " + hint
		}
		return fmt.Errorf("Prometheus at %s answered %v, which is not the query API's answer (%s)", promURL, refused, hint)
	}
	if refused != nil {
		if c.credential() == "" {
			return fmt.Errorf("Prometheus at %s answered %v to a request without credentials: it needs -prometheus.bearer-token-file, -prometheus.basic-auth.*, or for Mimir and Cortex -prometheus.tenant", promURL, refused)
		}
		hint := ""
		if c.Tenant == "" && refused.status == http.StatusUnauthorized {
			hint = "; Mimir and Cortex also answer 401 without -prometheus.tenant"
		}
		return fmt.Errorf("Prometheus at %s answered %v: it refused %s (check the credential%s)", promURL, refused, c.credential(), hint)
	}
	if isTLSError(err) {
		roots := "the system's roots"
		switch {
		case c.InsecureSkipVerify:
			roots = "not verified (-prometheus.tls.insecure-skip-verify)"
		case c.CAFile != "":
			roots = "the CA of -prometheus.tls.ca-file " + c.CAFile
		}
		cert := "no client certificate"
		if c.CertFile != "" {
			cert = "client certificate -prometheus.tls.cert-file " + c.CertFile
		} else if isRemoteAlert(err) {
			cert += ": if the server demands one, -prometheus.tls.cert-file and -prometheus.tls.key-file"
		}
		return fmt.Errorf("TLS with Prometheus at %s failed (server certificate checked against %s; %s): %w", promURL, roots, cert, err)
	}
	return err
}

// isTLSError reports whether err is the TLS handshake's: the server's
// certificate refused, or the server refusing ours (an alert, which
// crypto/tls reports as a net.OpError of Op "remote error").
func isTLSError(err error) bool {
	var (
		verify   *tls.CertificateVerificationError
		alert    tls.AlertError
		record   tls.RecordHeaderError
		unknown  x509.UnknownAuthorityError
		hostname x509.HostnameError
		invalid  x509.CertificateInvalidError
	)
	return errors.As(err, &verify) || errors.As(err, &alert) || errors.As(err, &record) ||
		errors.As(err, &unknown) || errors.As(err, &hostname) || errors.As(err, &invalid) ||
		isRemoteAlert(err)
}

// isRemoteAlert reports whether err is the server refusing the handshake.
func isRemoteAlert(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "remote error"
}
