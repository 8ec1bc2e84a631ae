package kafka

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/tributary-io/tributary/internal/testenv"
)

func writeSecret(t *testing.T, s string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "password")
	require.NoError(t, os.WriteFile(p, []byte(s), 0o600))
	return p
}

// consumeOne reads the first record of topic/0 with a consumer built from
// kc, as the ingester builds its own.
func consumeOne(t *testing.T, kc Config) *sarama.ConsumerMessage {
	t.Helper()
	sc, err := kc.Sarama()
	require.NoError(t, err)
	c, err := sarama.NewConsumer(kc.BrokerList(), sc)
	require.NoError(t, err)
	defer c.Close()
	pc, err := c.ConsumePartition(topic, 0, sarama.OffsetOldest)
	require.NoError(t, err)
	defer pc.Close()
	select {
	case m := <-pc.Messages():
		return m
	case err := <-pc.Errors():
		t.Fatalf("consume: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("no record consumed within 10 s")
	}
	return nil
}

// The producer and a consumer built from Config reach brokers that
// require SASL (each mechanism), TLS, a client certificate, or both; the
// same client without the security settings is refused.
func TestSecurityProduceConsume(t *testing.T) {
	t.Parallel()
	ca, certFile, keyFile, cert := testenv.TLSFiles(t)
	serverTLS := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	clientCertTLS := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12, ClientAuth: tls.RequireAnyClientCert}
	const user, pass = "tributary", "s3cret"
	for _, tc := range []struct {
		name   string
		broker []kfake.Opt
		tls    TLSConfig
		sasl   string
	}{
		{name: "plain", broker: []kfake.Opt{kfake.EnableSASL(), kfake.Superuser(SASLPlain, user, pass)}, sasl: SASLPlain},
		{name: "scram-sha-256", broker: []kfake.Opt{kfake.EnableSASL(), kfake.Superuser(SASLScramSHA256, user, pass)}, sasl: SASLScramSHA256},
		{name: "scram-sha-512", broker: []kfake.Opt{kfake.EnableSASL(), kfake.Superuser(SASLScramSHA512, user, pass)}, sasl: SASLScramSHA512},
		{name: "tls", broker: []kfake.Opt{kfake.TLS(serverTLS)}, tls: TLSConfig{Enabled: true, CAFile: ca}},
		{name: "tls-client-cert", broker: []kfake.Opt{kfake.TLS(clientCertTLS)},
			tls: TLSConfig{Enabled: true, CAFile: ca, CertFile: certFile, KeyFile: keyFile, ServerName: "localhost"}},
		{name: "tls-scram-sha-512", broker: []kfake.Opt{kfake.TLS(serverTLS), kfake.EnableSASL(), kfake.Superuser(SASLScramSHA512, user, pass)},
			tls: TLSConfig{Enabled: true, CAFile: ca}, sasl: SASLScramSHA512},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			k := testenv.Kafka(t, 1, tc.broker...)
			kc := Config{Brokers: k.Addr, ClientID: "test", Version: "2.8.0", Timeout: 2 * time.Second, TLS: tc.tls}
			if tc.sasl != "" {
				kc.SASL = SASLConfig{Mechanism: tc.sasl, Username: user, PasswordFile: writeSecret(t, pass+"\n")}
			}
			require.NoError(t, kc.Validate())

			// Without the security settings the broker refuses the client.
			bare := sarama.NewConfig()
			bare.Net.DialTimeout, bare.Net.ReadTimeout, bare.Net.WriteTimeout = time.Second, time.Second, time.Second
			bare.Metadata.Retry.Max = 0
			client, err := sarama.NewClient([]string{k.Addr}, bare)
			if err == nil {
				err = client.RefreshMetadata(topic)
				client.Close()
			}
			require.Error(t, err, "a client without TLS/SASL was accepted")

			p, err := NewProducer(kc, ProducerConfig{AckTimeout: 5 * time.Second, MaxMessageBytes: 1 << 20}, "test", prometheus.NewRegistry(), quietLog)
			require.NoError(t, err)
			defer p.Close()
			require.NoError(t, p.Produce(context.Background(), []*sarama.ProducerMessage{{
				Topic: topic, Key: sarama.StringEncoder("c"), Value: sarama.StringEncoder("hello " + tc.name),
			}}))
			require.NoError(t, p.Ready(topic))
			m := consumeOne(t, kc)
			require.Equal(t, "hello "+tc.name, string(m.Value))
		})
	}
}

var quietLog = slog.New(slog.NewTextHandler(io.Discard, nil))

// A wrong password is not a crash: the connecting producer keeps trying,
// writes fail with ErrUnavailable, and the error says why.
func TestSecurityWrongPassword(t *testing.T) {
	t.Parallel()
	k := testenv.Kafka(t, 1, kfake.EnableSASL(), kfake.Superuser(SASLScramSHA256, "tributary", "right"))
	kc := Config{Brokers: k.Addr, ClientID: "test", Version: "2.8.0", Timeout: 2 * time.Second,
		SASL: SASLConfig{Mechanism: SASLScramSHA256, Username: "tributary", PasswordFile: writeSecret(t, "wrong")}}
	require.NoError(t, kc.Validate())
	c := Connect(kc, ProducerConfig{AckTimeout: time.Second, MaxMessageBytes: 1 << 20}, "test", prometheus.NewRegistry(), quietLog)
	defer c.Close()
	testenv.Eventually(t, 10*time.Second, func() error {
		err := c.Produce(context.Background(), []*sarama.ProducerMessage{{Topic: topic, Value: sarama.StringEncoder("x")}})
		if !errors.Is(err, ErrUnavailable) {
			return errors.New("produce with a wrong password did not fail with ErrUnavailable")
		}
		if !strings.Contains(strings.ToLower(err.Error()), "sasl authentication failed") {
			return errors.New("error does not say authentication failed: " + err.Error())
		}
		return nil
	})
	require.Error(t, c.Ready(topic))
}

// Misconfigurations are start-up errors that name the flag.
func TestSecurityValidate(t *testing.T) {
	ca, certFile, keyFile, _ := testenv.TLSFiles(t)
	notPEM := writeSecret(t, "not a certificate")
	pw := writeSecret(t, "pw")
	base := func() Config {
		return Config{Brokers: "127.0.0.1:1", ClientID: "t", Version: "2.8.0", Timeout: time.Second}
	}
	for _, tc := range []struct {
		name string
		mod  func(*Config)
		want string // "" for valid
	}{
		{"tls with ca", func(c *Config) { c.TLS = TLSConfig{Enabled: true, CAFile: ca} }, ""},
		{"tls with client cert", func(c *Config) { c.TLS = TLSConfig{Enabled: true, CertFile: certFile, KeyFile: keyFile} }, ""},
		{"missing ca file", func(c *Config) { c.TLS = TLSConfig{Enabled: true, CAFile: "/nonexistent/ca.pem"} }, "kafka.tls.ca-file"},
		{"ca file without certificates", func(c *Config) { c.TLS = TLSConfig{Enabled: true, CAFile: notPEM} }, "no PEM certificate"},
		{"cert without key", func(c *Config) { c.TLS = TLSConfig{Enabled: true, CertFile: certFile} }, "go together"},
		{"bad key pair", func(c *Config) { c.TLS = TLSConfig{Enabled: true, CertFile: certFile, KeyFile: notPEM} }, "kafka.tls.cert-file/key-file"},
		{"tls options while off", func(c *Config) { c.TLS = TLSConfig{CAFile: ca} }, "-kafka.tls.enabled is false"},
		{"unknown mechanism", func(c *Config) { c.SASL = SASLConfig{Mechanism: "GSSAPI", Username: "u", PasswordFile: pw} }, `kafka.sasl.mechanism "GSSAPI"`},
		{"no user", func(c *Config) { c.SASL = SASLConfig{Mechanism: SASLPlain, PasswordFile: pw} }, "kafka.sasl.username"},
		{"no password file", func(c *Config) { c.SASL = SASLConfig{Mechanism: SASLPlain, Username: "u"} }, "kafka.sasl.password-file"},
		{"missing password file", func(c *Config) {
			c.SASL = SASLConfig{Mechanism: SASLScramSHA512, Username: "u", PasswordFile: "/nonexistent/pw"}
		}, "kafka.sasl.password-file"},
		{"empty password file", func(c *Config) {
			c.SASL = SASLConfig{Mechanism: SASLScramSHA512, Username: "u", PasswordFile: writeSecret(t, "\n")}
		}, "is empty"},
		{"user without mechanism", func(c *Config) { c.SASL = SASLConfig{Mechanism: SASLNone, Username: "u"} }, "mechanism is none"},
		{"scram", func(c *Config) { c.SASL = SASLConfig{Mechanism: SASLScramSHA256, Username: "u", PasswordFile: pw} }, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := base()
			tc.mod(&c)
			err := c.Validate()
			if tc.want == "" {
				require.NoError(t, err)
				_, err = c.Sarama()
				require.NoError(t, err)
				return
			}
			require.ErrorContains(t, err, tc.want)
		})
	}
}
