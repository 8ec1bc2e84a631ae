package auth

import (
	"crypto/tls"
	"crypto/x509"
	"net"
	"os"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"

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
	tc, err := serverTLS(TLSConfig{CertFile: p.serverCert, KeyFile: p.serverKey, ClientCAFile: p.ca.File}, newMetrics(prometheus.NewRegistry()), discard())
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

	tc, err = serverTLS(TLSConfig{CertFile: p.serverCert, KeyFile: p.serverKey, ClientCAFile: p.ca.File, ClientAuth: ClientAuthRequired}, newMetrics(prometheus.NewRegistry()), discard())
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
	tc, err := serverTLS(TLSConfig{CertFile: p.serverCert, KeyFile: p.serverKey}, m, discard())
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
