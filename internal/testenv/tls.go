package testenv

import (
	"crypto/tls"
	"testing"
)

// TLSFiles writes a CA and a serving certificate for 127.0.0.1 and
// localhost signed by it into a test directory, and returns their paths
// and the loaded key pair (for a server's tls.Config).
func TLSFiles(t testing.TB) (caFile, certFile, keyFile string, cert tls.Certificate) {
	t.Helper()
	caFile, certFile, keyFile = writeServingCert(t, t.TempDir())
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	return caFile, certFile, keyFile, cert
}
