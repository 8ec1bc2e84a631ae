package auth

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// certCheckInterval: how often a handshake may stat the certificate files.
// A renewed certificate (cert-manager writes it well before the old one
// expires) is served within a second; handshakes in between cost nothing.
const certCheckInterval = time.Second

// certReloader serves the certificate in certFile/keyFile, loading it again
// when either file's modification time or size changes. A pair that does
// not load (a half-written renewal) is logged and counted, and the last
// good certificate stays.
type certReloader struct {
	certFile, keyFile string
	every             time.Duration
	cert              atomic.Pointer[tls.Certificate]
	checkedAt         atomic.Int64 // unix nanos of the last stat

	mu      sync.Mutex // one check at a time
	stamp   [2]fileStamp
	metrics *metrics
	log     *slog.Logger
}

type fileStamp struct {
	mod  time.Time
	size int64
}

func newCertReloader(certFile, keyFile string, m *metrics, log *slog.Logger) (*certReloader, error) {
	c := &certReloader{certFile: certFile, keyFile: keyFile, every: certCheckInterval, metrics: m, log: log}
	stamp, err := c.stamps()
	if err != nil {
		return nil, err
	}
	if err := c.load(stamp); err != nil {
		return nil, err
	}
	c.checkedAt.Store(time.Now().UnixNano())
	return c, nil
}

func (c *certReloader) stamps() ([2]fileStamp, error) {
	var s [2]fileStamp
	for i, path := range []string{c.certFile, c.keyFile} {
		fi, err := os.Stat(path)
		if err != nil {
			return s, fmt.Errorf("tls certificate: %w", err)
		}
		s[i] = fileStamp{mod: fi.ModTime(), size: fi.Size()}
	}
	return s, nil
}

func (c *certReloader) load(stamp [2]fileStamp) error {
	c.stamp = stamp
	cert, err := tls.LoadX509KeyPair(c.certFile, c.keyFile)
	if err != nil {
		return fmt.Errorf("tls certificate %s / %s: %w", c.certFile, c.keyFile, err)
	}
	c.cert.Store(&cert)
	return nil
}

// getCertificate is tls.Config.GetCertificate.
func (c *certReloader) getCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	now := time.Now().UnixNano()
	if last := c.checkedAt.Load(); now-last >= int64(c.every) && c.checkedAt.CompareAndSwap(last, now) {
		c.check()
	}
	return c.cert.Load(), nil
}

func (c *certReloader) check() {
	c.mu.Lock()
	defer c.mu.Unlock()
	stamp, err := c.stamps()
	if err != nil {
		if stamp != c.stamp { // log a missing file once, not every second
			c.stamp = stamp
			c.metrics.certReloads.WithLabelValues("error").Inc()
			c.log.Error("server certificate unreadable, keeping the last good one", "err", err)
		}
		return
	}
	if stamp == c.stamp {
		return
	}
	if err := c.load(stamp); err != nil {
		c.metrics.certReloads.WithLabelValues("error").Inc()
		c.log.Error("server certificate does not load, keeping the last good one", "err", err)
		return
	}
	c.metrics.certReloads.WithLabelValues("success").Inc()
	c.log.Info("server certificate reloaded", "cert_file", c.certFile)
}

// serverTLS builds the listeners' TLS configuration, or nil without a
// certificate.
func serverTLS(cfg TLSConfig, m *metrics, log *slog.Logger) (*tls.Config, error) {
	if !cfg.Enabled() {
		return nil, nil
	}
	certs, err := newCertReloader(cfg.CertFile, cfg.KeyFile, m, log)
	if err != nil {
		return nil, err
	}
	tc := &tls.Config{
		MinVersion:     tls.VersionTLS12,
		GetCertificate: certs.getCertificate,
	}
	switch cfg.clientAuth() {
	case ClientAuthOptional:
		tc.ClientAuth = tls.VerifyClientCertIfGiven
	case ClientAuthRequired:
		tc.ClientAuth = tls.RequireAndVerifyClientCert
	}
	if cfg.ClientCAFile != "" {
		pem, err := os.ReadFile(cfg.ClientCAFile)
		if err != nil {
			return nil, fmt.Errorf("tls.client-ca-file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, errors.New("tls.client-ca-file: no PEM certificate found")
		}
		tc.ClientCAs = pool
	}
	return tc, nil
}
