package main

import (
	"crypto/tls"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tributary-io/tributary/internal/testenv"
)

// authProxy is what stands in front of Thanos, Mimir or a shared
// Prometheus: a loopback HTTPS reverse proxy to the real Prometheus that
// refuses a request without its credential, as such proxies answer.
type authProxy struct {
	token          string // bearer token demanded: 401 without one, 403 for another
	user, password string // basic auth demanded: 401 otherwise
	tenant         string // X-Scope-OrgID demanded: 401 "no org id" without one
	clientCA       *testenv.CA
	getOnly        bool // 403 to a POST, as read-only proxies answer
	signIn         bool // without a token, a redirect to a sign-in page (oauth2-proxy)
}

// start serves the proxy to target with a certificate of ca and returns
// its URL; the test's end closes it.
func (p authProxy) start(t *testing.T, target string, ca *testenv.CA) string {
	t.Helper()
	u, err := url.Parse(target)
	require.NoError(t, err)
	forward := httputil.NewSingleHostReverseProxy(u)
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if p.getOnly && r.Method != http.MethodGet {
			http.Error(w, "read-only: GET only", http.StatusForbidden)
			return
		}
		if r.URL.Path == "/sign_in" {
			io.WriteString(w, "<!DOCTYPE html>\n<html><body>Sign in</body></html>\n")
			return
		}
		if p.token != "" {
			switch r.Header.Get("Authorization") {
			case "Bearer " + p.token:
			case "":
				if p.signIn {
					http.Redirect(w, r, "/sign_in", http.StatusFound)
					return
				}
				http.Error(w, "missing bearer token", http.StatusUnauthorized)
				return
			default:
				http.Error(w, "invalid bearer token", http.StatusForbidden)
				return
			}
		}
		if p.user != "" {
			if user, password, ok := r.BasicAuth(); !ok || user != p.user || password != p.password {
				w.Header().Set("WWW-Authenticate", `Basic realm="prometheus"`)
				http.Error(w, "invalid user name or password", http.StatusUnauthorized)
				return
			}
		}
		if p.tenant != "" {
			switch r.Header.Get(tenantHeader) {
			case p.tenant:
			case "":
				http.Error(w, "no org id", http.StatusUnauthorized)
				return
			default:
				// Mimir's answer for a tenant that holds no such series.
				w.Header().Set("Content-Type", "application/json")
				io.WriteString(w, `{"status":"success","data":{"resultType":"vector","result":[]}}`)
				return
			}
		}
		forward.ServeHTTP(w, r)
	}))
	dir := t.TempDir()
	cert, err := tls.LoadX509KeyPair(ca.Issue(t, dir, testenv.Leaf{Name: "proxy", Server: true, DNSNames: []string{"prometheus.test"}}))
	require.NoError(t, err)
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
	if p.clientCA != nil {
		srv.TLS.ClientCAs = p.clientCA.Pool()
		srv.TLS.ClientAuth = tls.RequireAndVerifyClientCert
	}
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // the refused handshakes are the test
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return srv.URL
}

// writeSecret writes text into a file of dir readable by its owner only.
func writeSecret(t *testing.T, dir, name, text string) string {
	t.Helper()
	path := filepath.Join(dir, name)
	require.NoError(t, os.WriteFile(path, []byte(text), 0o600))
	return path
}

// testShardsSuggestBehindAuth: `gateway shards suggest` reaches the real
// Prometheus (promURL, holding TestShardsSuggest's counters at at)
// through proxies demanding a bearer token, basic auth, a tenant or a
// client certificate over TLS with a private CA: the right credential
// gives the table, a wrong or missing one fails saying which credential
// was refused, a TLS failure says so and against which CA, an answer
// that is not the query API's (a wrong scheme or path) says so; the
// secrets never show.
func testShardsSuggestBehindAuth(t *testing.T, promURL, at string) {
	dir := t.TempDir()
	ca := testenv.NewCA(t, dir, "proxy-ca")
	other := testenv.NewCA(t, dir, "other-ca")
	clientCA := testenv.NewCA(t, dir, "client-ca")
	clientCert, clientKey := clientCA.Issue(t, dir, testenv.Leaf{Name: "shards-client"})
	strangerCert, strangerKey := other.Issue(t, dir, testenv.Leaf{Name: "stranger"})

	token := writeSecret(t, dir, "token", "s3cret-token\n")
	wrongToken := writeSecret(t, dir, "wrong-token", "not-the-token")
	password := writeSecret(t, dir, "password", "pw-of-alice\n")
	wrongPassword := writeSecret(t, dir, "wrong-password", "pw-of-mallory")
	empty := writeSecret(t, dir, "empty", "\n")
	secrets := []string{"s3cret-token", "not-the-token", "pw-of-alice", "pw-of-mallory"}

	bearer := authProxy{token: "s3cret-token"}.start(t, promURL, ca)
	basic := authProxy{user: "alice", password: "pw-of-alice"}.start(t, promURL, ca)
	tenant := authProxy{tenant: "team-a"}.start(t, promURL, ca)
	mtls := authProxy{clientCA: clientCA}.start(t, promURL, ca)
	getOnly := authProxy{token: "s3cret-token", getOnly: true}.start(t, promURL, ca)
	signIn := authProxy{token: "s3cret-token", signIn: true}.start(t, promURL, ca)
	caFlag := "-prometheus.tls.ca-file=" + ca.File

	for _, tc := range []struct {
		name  string
		url   string
		flags []string
		code  int
		say   []string
	}{
		{"bearer token", bearer, []string{caFlag, "-prometheus.bearer-token-file=" + token}, 0, nil},
		{"wrong bearer token", bearer, []string{caFlag, "-prometheus.bearer-token-file=" + wrongToken}, 1, []string{
			`answered 403 Forbidden: "invalid bearer token": it refused the bearer token of -prometheus.bearer-token-file ` + wrongToken + " (check the credential)"}},
		{"no bearer token", bearer, []string{caFlag}, 1, []string{
			`answered 401 Unauthorized: "missing bearer token" to a request without credentials: it needs -prometheus.bearer-token-file, -prometheus.basic-auth.*`}},
		// The query API client sends POST and, after a 403, the same as GET.
		{"GET only", getOnly, []string{caFlag, "-prometheus.bearer-token-file=" + token}, 0, nil},
		{"GET only, wrong token", getOnly, []string{caFlag, "-prometheus.bearer-token-file=" + wrongToken}, 1, []string{
			`answered 403 Forbidden: "invalid bearer token": it refused the bearer token`}},
		// A credential over plain http to loopback (a port-forward) is not
		// warned about.
		{"http to the https port", "http" + bearer[len("https"):], []string{"-prometheus.bearer-token-file=" + token}, 1, []string{
			`answered 400 Bad Request: "Client sent an HTTP request to an HTTPS server.", which is not the query API's answer (check -prometheus.url: https or http`}},
		{"path prefix Prometheus has not", promURL + "/prometheus", nil, 1, []string{
			`Prometheus at ` + promURL + `/prometheus answered 404 Not Found: "404 page not found", which is not the query API's answer`}},
		{"sign-in page", signIn, []string{caFlag}, 1, []string{
			`answered 200 OK: "<!DOCTYPE html>", which is not the query API's answer (a proxy's sign-in page? it needs -prometheus.bearer-token-file`}},
		{"past the sign-in page", signIn, []string{caFlag, "-prometheus.bearer-token-file=" + token}, 0, nil},
		{"token file missing", bearer, []string{caFlag, "-prometheus.bearer-token-file=" + filepath.Join(dir, "nope")}, 1, []string{
			"-prometheus.bearer-token-file: open " + filepath.Join(dir, "nope")}},
		{"token file empty", bearer, []string{caFlag, "-prometheus.bearer-token-file=" + empty}, 1, []string{
			"-prometheus.bearer-token-file " + empty + " is empty"}},

		{"basic auth", basic, []string{caFlag, "-prometheus.basic-auth.username=alice", "-prometheus.basic-auth.password-file=" + password}, 0, nil},
		{"wrong password", basic, []string{caFlag, "-prometheus.basic-auth.username=alice", "-prometheus.basic-auth.password-file=" + wrongPassword}, 1, []string{
			`answered 401 Unauthorized: "invalid user name or password": it refused basic auth as "alice" with the password of -prometheus.basic-auth.password-file ` + wrongPassword +
				" (check the credential; Mimir and Cortex also answer 401 without -prometheus.tenant)"}},

		{"tenant", tenant, []string{caFlag, "-prometheus.tenant=team-a"}, 0, nil},
		{"no tenant", tenant, []string{caFlag}, 1, []string{
			`answered 401 Unauthorized: "no org id" to a request without credentials: it needs`, "or for Mimir and Cortex -prometheus.tenant"}},
		{"tenant without the series", tenant, []string{caFlag, "-prometheus.tenant=team-b"}, 1, []string{
			`no metrics items`, `(check -selector, -window, -time, -prometheus.tenant "team-b")`}},

		{"client certificate", mtls, []string{caFlag, "-prometheus.tls.cert-file=" + clientCert, "-prometheus.tls.key-file=" + clientKey}, 0, nil},
		{"no client certificate", mtls, []string{caFlag}, 1, []string{
			"TLS with Prometheus at " + mtls + " failed (server certificate checked against the CA of -prometheus.tls.ca-file " + ca.File + "; no client certificate: if the server demands one, -prometheus.tls.cert-file and -prometheus.tls.key-file)", "remote error: tls: certificate required"}},
		{"client certificate of another CA", mtls, []string{caFlag, "-prometheus.tls.cert-file=" + strangerCert, "-prometheus.tls.key-file=" + strangerKey}, 1, []string{
			"TLS with Prometheus at " + mtls + " failed", "; client certificate -prometheus.tls.cert-file " + strangerCert + "):", "remote error: tls: unknown certificate authority"}},

		{"system roots", bearer, []string{"-prometheus.bearer-token-file=" + token}, 1, []string{
			"TLS with Prometheus at " + bearer + " failed (server certificate checked against the system's roots; no client certificate)", "x509: certificate signed by unknown authority"}},
		{"another CA", bearer, []string{"-prometheus.tls.ca-file=" + other.File, "-prometheus.bearer-token-file=" + token}, 1, []string{
			"TLS with Prometheus at " + bearer + " failed (server certificate checked against the CA of -prometheus.tls.ca-file " + other.File, "x509: certificate signed by unknown authority"}},
		{"insecure skip verify", bearer, []string{"-prometheus.tls.insecure-skip-verify", "-prometheus.bearer-token-file=" + token}, 0, []string{
			"WARNING: -prometheus.tls.insecure-skip-verify: the certificate of " + bearer[len("https://"):] + " is NOT verified"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, out, errs := runShards(append([]string{"suggest", "-prometheus.url=" + tc.url, "-partitions=12", "-window=5m", "-time=" + at}, tc.flags...)...)
			require.Equal(t, tc.code, code, errs)
			for _, s := range tc.say {
				require.Contains(t, errs, s)
			}
			if !strings.Contains(strings.Join(tc.say, ""), "WARNING") {
				require.NotContains(t, errs, "WARNING")
			}
			for _, s := range secrets {
				require.NotContains(t, out+errs, s, "a secret shows")
			}
			if tc.code != 0 {
				require.Empty(t, out)
				return
			}
			require.Equal(t, 7, parseTable(t, out, 12).Shards("hot"), out)
			require.Contains(t, out, "# from "+tc.url)
		})
	}
	code, out, errs := runShards("suggest", "-prometheus.url="+tenant, "-partitions=12", "-window=5m", "-time="+at, caFlag, "-prometheus.tenant=team-a")
	require.Equal(t, 0, code, errs)
	require.Contains(t, out, "# from "+tenant+` (tenant "team-a"), rate over 5m:`)

	t.Run("HTTPS_PROXY", func(t *testing.T) {
		// The environment's proxy carries the request, with its credential
		// and TLS to the server end to end: prometheus.test (never resolved,
		// RFC 2606) is reached only through the CONNECT tunnel.
		var tunnels atomic.Int32
		t.Setenv("HTTPS_PROXY", connectProxy(t, "prometheus.test:443", bearer[len("https://"):], &tunnels))
		t.Setenv("NO_PROXY", "")
		code, out, errs := runShards("suggest", "-prometheus.url=https://prometheus.test", "-partitions=12", "-window=5m", "-time="+at,
			caFlag, "-prometheus.bearer-token-file="+token)
		require.Equal(t, 0, code, errs)
		require.Equal(t, 7, parseTable(t, out, 12).Shards("hot"), out)
		require.Positive(t, tunnels.Load())

		// Over plain http to another host the credential is warned about
		// (the proxy refuses the request: no tunnel for http).
		t.Setenv("HTTP_PROXY", os.Getenv("HTTPS_PROXY"))
		code, _, errs = runShards("suggest", "-prometheus.url=http://prometheus.test", "-partitions=12", "-window=5m", "-time="+at,
			"-prometheus.bearer-token-file="+token)
		require.Equal(t, 1, code, errs)
		require.Contains(t, errs, "WARNING: the bearer token of -prometheus.bearer-token-file "+token+" is sent over plain http:// to prometheus.test: anyone on the path can read it; use https://")
	})
}

// connectProxy is an HTTP proxy that tunnels CONNECT host to the address
// to, and refuses anything else; it counts the tunnels.
func connectProxy(t *testing.T, host, to string, tunnels *atomic.Int32) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodConnect || r.Host != host {
			http.Error(w, "only CONNECT "+host, http.StatusBadRequest)
			return
		}
		upstream, err := net.Dial("tcp", to)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		defer upstream.Close()
		conn, _, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer conn.Close()
		tunnels.Add(1)
		io.WriteString(conn, "HTTP/1.1 200 Connection established\r\n\r\n")
		go io.Copy(upstream, conn)
		io.Copy(conn, upstream)
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}
