package gatewayhttp

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/common/model"
	"github.com/stretchr/testify/require"

	"github.com/tributary-io/tributary/pkg/agent/metrics"
)

// writePEM writes a PEM block to dir/name.
func writePEM(t *testing.T, dir, name, typ string, der []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	require.NoError(t, os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600))
	return p
}

// clientCert writes a client certificate and key signed by a new CA and
// returns their paths and the CA pool the server checks them with.
func clientCert(t *testing.T, dir string) (certFile, keyFile string, pool *x509.CertPool) {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test client ca"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageCertSign, BasicConstraintsValid: true, IsCA: true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	require.NoError(t, err)
	ca, err := x509.ParseCertificate(caDER)
	require.NoError(t, err)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "agent"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	require.NoError(t, err)
	keyDER, err := x509.MarshalECPrivateKey(key)
	require.NoError(t, err)
	pool = x509.NewCertPool()
	pool.AddCert(ca)
	return writePEM(t, dir, "client.crt", "CERTIFICATE", der), writePEM(t, dir, "client.key", "EC PRIVATE KEY", keyDER), pool
}

// A TLS gateway that requires a client certificate: the client trusts the
// gateway through ca_file, presents cert_file/key_file, and sends the
// token file's current content on every request.
func TestClientTLSAndTokenRotation(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile, clientCAs := clientCert(t, dir)
	var got []string
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got = append(got, r.Header.Get("Authorization"))
		w.WriteHeader(http.StatusNoContent)
	}))
	srv.TLS = &tls.Config{ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: clientCAs}
	srv.StartTLS()
	defer srv.Close()
	caFile := writePEM(t, dir, "gateway-ca.crt", "CERTIFICATE", srv.Certificate().Raw)
	tokenFile := filepath.Join(dir, "token")
	require.NoError(t, os.WriteFile(tokenFile, []byte("first\n"), 0o600))

	gw := metrics.GatewayConfig{
		URL: srv.URL, BearerTokenFile: tokenFile,
		TLS:     metrics.TLSConfig{CAFile: caFile, CertFile: certFile, KeyFile: keyFile},
		Timeout: model.Duration(5 * time.Second),
	}
	c, err := Client(gw)
	require.NoError(t, err)
	require.Equal(t, 5*time.Second, c.Timeout)
	post := func() {
		t.Helper()
		resp, err := c.Post(srv.URL+"/loki/api/v1/push", "application/x-protobuf", nil)
		require.NoError(t, err)
		resp.Body.Close()
		require.Equal(t, http.StatusNoContent, resp.StatusCode)
	}
	post()
	require.NoError(t, os.WriteFile(tokenFile, []byte("second\n"), 0o600))
	post()
	require.Equal(t, []string{"Bearer first", "Bearer second"}, got, "the token file is read on every request")

	// Without the CA the gateway's certificate is refused; without the
	// client certificate the gateway refuses the handshake.
	noCA := gw
	noCA.TLS.CAFile = ""
	c, err = Client(noCA)
	require.NoError(t, err)
	_, err = c.Post(srv.URL, "text/plain", nil)
	require.ErrorContains(t, err, "certificate")
	noCert := gw
	noCert.TLS.CertFile, noCert.TLS.KeyFile = "", ""
	c, err = Client(noCert)
	require.NoError(t, err)
	_, err = c.Post(srv.URL, "text/plain", nil)
	require.Error(t, err)
	// insecure_skip_verify: no CA needed.
	insecure := noCA
	insecure.TLS.InsecureSkipVerify = true
	c, err = Client(insecure)
	require.NoError(t, err)
	post()
	insecure.Timeout = 0
	c, err = Client(insecure)
	require.NoError(t, err)
	require.Equal(t, DefaultTimeout, c.Timeout)
}

func TestRetryable(t *testing.T) {
	for code, want := range map[int]bool{
		200: false, 204: false, 400: false, 401: false, 403: false, 404: false, 413: false,
		408: true, 429: true, 500: true, 502: true, 503: true, 504: true,
	} {
		require.Equal(t, want, Retryable(code), "status %d", code)
	}
}

func TestBackoff(t *testing.T) {
	b := &Backoff{Min: 100 * time.Millisecond, Max: time.Second}
	// Exponential steps with jitter in [step/2, step], capped at Max.
	for _, step := range []time.Duration{100, 200, 400, 800, 1000, 1000} {
		step *= time.Millisecond
		if step > 1000*time.Millisecond {
			step = time.Second
		}
		d := b.Next(nil)
		require.GreaterOrEqual(t, d, step/2)
		require.LessOrEqual(t, d, step)
	}
	b.Reset()
	require.LessOrEqual(t, b.Next(nil), 100*time.Millisecond, "Reset starts from Min again")

	resp := func(v string) *http.Response {
		return &http.Response{StatusCode: 503, Header: http.Header{"Retry-After": []string{v}}}
	}
	for _, tc := range []struct {
		name, header string
		lo, hi       time.Duration
	}{
		{"seconds", "3", 3 * time.Second, 3 * time.Second},
		{"seconds capped at Max", "3600", time.Minute, time.Minute},
		{"HTTP date", time.Now().Add(10 * time.Second).UTC().Format(http.TimeFormat), 8 * time.Second, 10 * time.Second},
		{"date in the past", time.Now().Add(-time.Hour).UTC().Format(http.TimeFormat), 0, 0},
		{"unreadable: the exponential step", "soon", 50 * time.Millisecond, 100 * time.Millisecond},
		{"negative: the exponential step", "-5", 50 * time.Millisecond, 100 * time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := &Backoff{Min: 100 * time.Millisecond, Max: time.Minute}
			d := b.Next(resp(tc.header))
			require.GreaterOrEqual(t, d, tc.lo)
			require.LessOrEqual(t, d, tc.hi)
		})
	}
	// The zero value has sane bounds.
	var z Backoff
	require.LessOrEqual(t, z.Next(nil), DefaultMinBackoff)
	require.Equal(t, DefaultMaxBackoff, z.Next(resp("100000")))
}
