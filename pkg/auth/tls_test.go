package auth

import (
	"crypto/tls"
	"crypto/x509"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/credentials"

	"github.com/tributary-io/tributary/internal/testenv"
)

// pki is a CA with a server certificate and client certificates, and a
// client certificate from another CA.
type pki struct {
	dir                   string
	ca                    *testenv.CA
	serverCert, serverKey string
}

func newPKI(t *testing.T) *pki {
	dir := t.TempDir()
	ca := testenv.NewCA(t, dir, "ca")
	cert, key := ca.Issue(t, dir, testenv.Leaf{Name: "server", Server: true})
	return &pki{dir: dir, ca: ca, serverCert: cert, serverKey: key}
}

func (p *pki) client(t *testing.T, ca *testenv.CA, name string, uris ...string) tls.Certificate {
	certFile, keyFile := ca.Issue(t, p.dir, testenv.Leaf{Name: name, URIs: uris})
	c, err := tls.LoadX509KeyPair(certFile, keyFile)
	require.NoError(t, err)
	return c
}

// handshake runs a TLS handshake against srv with the client certificate
// cert (none if nil), and returns the server's view of it.
func handshake(t *testing.T, srv *tls.Config, roots *x509.CertPool, cert *tls.Certificate) (*tls.ConnectionState, *x509.Certificate, error) {
	t.Helper()
	// Loopback TCP, not net.Pipe: a refusing server writes its alert
	// without waiting for the client to read it.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	done := make(chan error, 1)
	var server *tls.Conn
	go func() {
		c, err := ln.Accept()
		if err != nil {
			done <- err
			return
		}
		server = tls.Server(c, srv)
		c.SetDeadline(time.Now().Add(5 * time.Second))
		done <- server.Handshake()
	}()
	b, err := net.DialTimeout("tcp", ln.Addr().String(), 5*time.Second)
	require.NoError(t, err)
	defer b.Close()
	b.SetDeadline(time.Now().Add(5 * time.Second))
	cc := &tls.Config{RootCAs: roots, ServerName: "127.0.0.1"}
	if cert != nil {
		// Sent whatever CAs the server names, as a hostile client would
		// (Go's client otherwise leaves out a certificate of another CA).
		cc.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return cert, nil }
	}
	client := tls.Client(b, cc)
	cerr := client.Handshake()
	serr := <-done
	if server != nil {
		defer server.Close()
	}
	if cerr != nil || serr != nil {
		return nil, nil, errorsJoin(cerr, serr)
	}
	cs := server.ConnectionState()
	return &cs, client.ConnectionState().PeerCertificates[0], nil
}

func errorsJoin(a, b error) error {
	if a != nil {
		return a
	}
	return b
}

func TestServerTLSClientCertificates(t *testing.T) {
	p := newPKI(t)
	other := testenv.NewCA(t, p.dir, "other-ca")
	reg := prometheus.NewRegistry()
	tc, _, err := serverTLS(TLSConfig{CertFile: p.serverCert, KeyFile: p.serverKey, ClientCAFile: p.ca.File}, reg, newMetrics(reg), discard())
	require.NoError(t, err)
	require.Equal(t, tls.VerifyClientCertIfGiven, tc.ClientAuth, "optional by default with a client CA")

	good := p.client(t, p.ca, "a", "spiffe://example.org/cluster/a")
	cs, _, err := handshake(t, tc, p.ca.Pool(), &good)
	require.NoError(t, err)
	require.Len(t, cs.VerifiedChains, 1)

	cs, _, err = handshake(t, tc, p.ca.Pool(), nil)
	require.NoError(t, err, "optional: no certificate is fine")
	require.Empty(t, cs.VerifiedChains)

	foreign := p.client(t, other, "intruder", "spiffe://example.org/cluster/a")
	_, _, err = handshake(t, tc, p.ca.Pool(), &foreign)
	require.ErrorContains(t, err, "certificate", "a certificate from another CA fails the handshake")

	reg = prometheus.NewRegistry()
	tc, _, err = serverTLS(TLSConfig{CertFile: p.serverCert, KeyFile: p.serverKey, ClientCAFile: p.ca.File, ClientAuth: ClientAuthRequired}, reg, newMetrics(reg), discard())
	require.NoError(t, err)
	_, _, err = handshake(t, tc, p.ca.Pool(), nil)
	require.Error(t, err, "required: no certificate fails the handshake")
}

// A renewed certificate is served after the next check; a broken renewal
// keeps the old one and is counted.
func TestServerCertificateReload(t *testing.T) {
	t.Parallel()
	p := newPKI(t)
	reg := prometheus.NewRegistry()
	m := newMetrics(reg)
	tc, _, err := serverTLS(TLSConfig{CertFile: p.serverCert, KeyFile: p.serverKey}, reg, m, discard())
	require.NoError(t, err)
	_, first, err := handshake(t, tc, p.ca.Pool(), nil)
	require.NoError(t, err)

	// Renew in place (same paths), as cert-manager does.
	renewed := testenv.NewCA(t, t.TempDir(), "renewing-ca")
	cert, key := renewed.Issue(t, t.TempDir(), testenv.Leaf{Name: "server", Server: true})
	copyFile(t, key, p.serverKey)
	copyFile(t, cert, p.serverCert)
	future := time.Now().Add(time.Minute) // a new mtime, whatever the clock granularity
	require.NoError(t, os.Chtimes(p.serverCert, future, future))
	require.NoError(t, os.Chtimes(p.serverKey, future, future))

	_, _, err = handshake(t, tc, renewed.Pool(), nil)
	require.Error(t, err, "not checked again within a second: the old certificate")
	reloadedBy := time.Now().Add(3 * time.Second)
	var served *x509.Certificate
	for time.Now().Before(reloadedBy) {
		if _, served, err = handshake(t, tc, renewed.Pool(), nil); err == nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	require.NoError(t, err, "the renewed certificate is served")
	require.NotEqual(t, first.SerialNumber.String()+first.Issuer.String(), served.SerialNumber.String()+served.Issuer.String())
	require.Equal(t, 1.0, testutil.ToFloat64(m.certReloads.WithLabelValues("success")))

	require.NoError(t, os.WriteFile(p.serverCert, []byte("garbage"), 0o600))
	later := future.Add(time.Minute)
	require.NoError(t, os.Chtimes(p.serverCert, later, later))
	time.Sleep(1100 * time.Millisecond)
	_, _, err = handshake(t, tc, renewed.Pool(), nil)
	require.NoError(t, err, "a broken renewal keeps the last good certificate")
	require.Equal(t, 1.0, testutil.ToFloat64(m.certReloads.WithLabelValues("error")))
}

func copyFile(t *testing.T, from, to string) {
	b, err := os.ReadFile(from)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(to, b, 0o600))
}

// httpsClient is a client presenting cert (whatever CAs the server names)
// over fresh connections that resume sessions from one cache.
func httpsClient(roots *x509.CertPool, cert tls.Certificate, h2 bool) *http.Client {
	return &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{
			RootCAs:              roots,
			GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &cert, nil },
			ClientSessionCache:   tls.NewLRUClientSessionCache(4),
		},
		DisableKeepAlives: !h2, // a handshake per request
		ForceAttemptHTTP2: h2,
	}}
}

// A client CA added to -tls.client-ca-file is trusted and a removed one no
// longer, without a restart, over a real HTTPS server; a session resumed
// from the removed CA's days is refused too; HTTP/2 is still offered.
func TestClientCAReload(t *testing.T) {
	p := newPKI(t)
	next := testenv.NewCA(t, p.dir, "next-ca")
	caFile := filepath.Join(p.dir, "client-ca.pem")
	copyFile(t, p.ca.File, caFile)
	reg := prometheus.NewRegistry()
	tc, cas, err := serverTLS(TLSConfig{CertFile: p.serverCert, KeyFile: p.serverKey, ClientCAFile: caFile, ClientAuth: ClientAuthRequired}, reg, newMetrics(reg), discard())
	require.NoError(t, err)

	type seen struct {
		proto    string
		verified int
		resumed  bool
	}
	got := make(chan seen, 1)
	srv := &http.Server{TLSConfig: tc.Clone(), Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got <- seen{r.Proto, len(r.TLS.VerifiedChains), r.TLS.DidResume}
	})}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	go srv.ServeTLS(ln, "", "")
	t.Cleanup(func() { srv.Close() })
	url := "https://" + ln.Addr().String() + "/"
	get := func(c *http.Client) (seen, error) {
		resp, err := c.Get(url)
		if err != nil {
			return seen{}, err
		}
		resp.Body.Close()
		return <-got, nil
	}

	old := httpsClient(p.ca.Pool(), p.client(t, p.ca, "old", "spiffe://example.org/cluster/a"), false)
	s, err := get(old)
	require.NoError(t, err, "signed by the CA in the file")
	require.Equal(t, seen{"HTTP/1.1", 1, false}, s)
	s, err = get(old)
	require.NoError(t, err)
	require.True(t, s.resumed, "the next connection resumes: the refusal below covers resumption")
	fresh := httpsClient(p.ca.Pool(), p.client(t, next, "fresh", "spiffe://example.org/cluster/b"), true)
	_, err = get(fresh)
	require.Error(t, err, "signed by a CA not yet in the file")

	// Rotate the bundle in place: next-ca in, the old CA out.
	copyFile(t, next.File, caFile)
	cas.watch.Poll()
	_, err = get(fresh)
	require.Error(t, err, "the new bundle read once: not in force yet")
	cas.watch.Poll()
	s, err = get(fresh)
	require.NoError(t, err, "signed by the CA now in the file")
	require.Equal(t, seen{"HTTP/2.0", 1, false}, s, "HTTP/2 still negotiated with the reloaded bundle")
	_, err = get(old)
	require.Error(t, err, "signed by the removed CA, resuming its session or not")

	// The OTLP gRPC listener takes the same configuration through grpc-go's
	// credentials, which wrap GetConfigForClient.
	grpcHandshake := func(cert tls.Certificate) (int, error) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		require.NoError(t, err)
		defer ln.Close()
		type result struct {
			verified int
			err      error
		}
		done := make(chan result, 1)
		go func() {
			c, err := ln.Accept()
			if err != nil {
				done <- result{err: err}
				return
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(5 * time.Second))
			_, info, err := credentials.NewTLS(tc.Clone()).ServerHandshake(c)
			if err != nil {
				done <- result{err: err}
				return
			}
			done <- result{verified: len(info.(credentials.TLSInfo).State.VerifiedChains)}
		}()
		conn, err := tls.Dial("tcp", ln.Addr().String(), &tls.Config{
			RootCAs: p.ca.Pool(), NextProtos: []string{"h2"},
			GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &cert, nil },
		})
		if err == nil {
			conn.Read(make([]byte, 1)) // TLS 1.3: the server's verdict on the certificate comes after the client's handshake
			conn.Close()
		}
		r := <-done
		return r.verified, r.err
	}
	verified, err := grpcHandshake(p.client(t, next, "fresh-grpc", "spiffe://example.org/cluster/b"))
	require.NoError(t, err, "gRPC: signed by the CA now in the file")
	require.Equal(t, 1, verified)
	_, err = grpcHandshake(p.client(t, p.ca, "old-grpc", "spiffe://example.org/cluster/a"))
	require.Error(t, err, "gRPC: signed by the removed CA")
	require.Equal(t, 2.0, reloads(t, reg, "tributary_gateway_tls_client_ca", "success"), "the start and the rotation")
}
