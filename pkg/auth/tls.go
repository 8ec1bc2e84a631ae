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

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tributary-io/tributary/pkg/filewatch"
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

// clientCAs is the client CA bundle in force: -tls.client-ca-file, read
// again when it changes (pkg/filewatch, so a bundle written in place is not
// applied with its last CAs cut off). Each handshake is verified against
// the bundle in force when it starts; Go's server also refuses to resume a
// session whose client certificate the current bundle does not verify.
type clientCAs struct {
	base  *tls.Config // the listeners' configuration, without ClientCAs
	cur   atomic.Pointer[tls.Config]
	watch *filewatch.Watcher
}

// clientCACheckInterval: a CA added or removed takes effect within two
// checks (the file must read the same twice); reading a PEM bundle of a
// few KiB every second costs nothing.
const clientCACheckInterval = time.Second

func newClientCAs(path string, base *tls.Config, reg prometheus.Registerer, log *slog.Logger) (*clientCAs, error) {
	c := &clientCAs{base: base}
	c.watch = filewatch.New(filewatch.Config{
		Path: path, Interval: clientCACheckInterval, Flag: "-tls.client-ca-file",
		MetricPrefix: "tributary_gateway_tls_client_ca",
	}, c.apply, reg, log)
	if err := c.watch.Load(); err != nil {
		return nil, fmt.Errorf("tls.client-ca-file: %w", err)
	}
	return c, nil
}

func (c *clientCAs) apply(pem []byte) error {
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return errors.New("no PEM certificate found")
	}
	tc := c.base.Clone()
	tc.ClientCAs = pool
	c.cur.Store(tc)
	return nil
}

// getConfigForClient is tls.Config.GetConfigForClient: the configuration
// with the bundle in force.
func (c *clientCAs) getConfigForClient(*tls.ClientHelloInfo) (*tls.Config, error) {
	return c.cur.Load(), nil
}

// serverTLS builds the listeners' TLS configuration, or nil without a
// certificate, and the client CA bundle's watcher (nil without a client
// CA), which Run must poll.
func serverTLS(cfg TLSConfig, reg prometheus.Registerer, m *metrics, log *slog.Logger) (*tls.Config, *clientCAs, error) {
	if !cfg.Enabled() {
		return nil, nil, nil
	}
	certs, err := newCertReloader(cfg.CertFile, cfg.KeyFile, m, log)
	if err != nil {
		return nil, nil, err
	}
	tc := &tls.Config{
		MinVersion:     tls.VersionTLS12,
		GetCertificate: certs.getCertificate,
		// What net/http's ServeTLS offers, and grpc-go adds h2 if missing:
		// the configuration getConfigForClient returns is used as it is,
		// so it must carry them itself.
		NextProtos: []string{"h2", "http/1.1"},
	}
	switch cfg.clientAuth() {
	case ClientAuthOptional:
		tc.ClientAuth = tls.VerifyClientCertIfGiven
	case ClientAuthRequired:
		tc.ClientAuth = tls.RequireAndVerifyClientCert
	}
	if cfg.ClientCAFile == "" {
		return tc, nil, nil
	}
	cas, err := newClientCAs(cfg.ClientCAFile, tc.Clone(), reg, log)
	if err != nil {
		return nil, nil, err
	}
	tc.ClientCAs = cas.cur.Load().ClientCAs // the bundle at start, for whoever reads it
	tc.GetConfigForClient = cas.getConfigForClient
	return tc, cas, nil
}
