package kafka

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/IBM/sarama"
	"github.com/xdg-go/scram"
)

// TLSConfig is TLS towards the brokers. With CertFile and KeyFile the
// client also presents a certificate (brokers with ssl.client.auth).
type TLSConfig struct {
	Enabled            bool   `yaml:"enabled"`
	CAFile             string `yaml:"ca_file"`
	CertFile           string `yaml:"cert_file"`
	KeyFile            string `yaml:"key_file"`
	ServerName         string `yaml:"server_name"`
	InsecureSkipVerify bool   `yaml:"insecure_skip_verify"`
}

// SASL mechanisms of -kafka.sasl.mechanism.
const (
	SASLNone        = "none"
	SASLPlain       = sarama.SASLTypePlaintext
	SASLScramSHA256 = sarama.SASLTypeSCRAMSHA256
	SASLScramSHA512 = sarama.SASLTypeSCRAMSHA512
)

// SASLConfig is SASL authentication towards the brokers. The password is
// read from a file, never from a flag or the environment, and never logged.
type SASLConfig struct {
	Mechanism    string `yaml:"mechanism"`
	Username     string `yaml:"username"`
	PasswordFile string `yaml:"password_file"`
}

func (c *TLSConfig) registerFlags(prefix string, fs *flag.FlagSet) {
	fs.BoolVar(&c.Enabled, prefix+"enabled", false, "Connect to the brokers with TLS.")
	fs.StringVar(&c.CAFile, prefix+"ca-file", "", "PEM file of the CAs that sign the brokers' certificates. Empty: the system's roots.")
	fs.StringVar(&c.CertFile, prefix+"cert-file", "", "PEM client certificate, for brokers that require one (with -kafka.tls.key-file).")
	fs.StringVar(&c.KeyFile, prefix+"key-file", "", "PEM private key of -kafka.tls.cert-file.")
	fs.StringVar(&c.ServerName, prefix+"server-name", "", "Name to verify the brokers' certificates against. Empty: the host of each broker address.")
	fs.BoolVar(&c.InsecureSkipVerify, prefix+"insecure-skip-verify", false, "Do not verify the brokers' certificates (encryption without authentication; tests only).")
}

func (c *SASLConfig) registerFlags(prefix string, fs *flag.FlagSet) {
	fs.StringVar(&c.Mechanism, prefix+"mechanism", SASLNone, "SASL mechanism: none, PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512. Use PLAIN only with -kafka.tls.enabled: it sends the password as is.")
	fs.StringVar(&c.Username, prefix+"username", "", "SASL user name.")
	fs.StringVar(&c.PasswordFile, prefix+"password-file", "", "File holding the SASL password (one trailing newline is ignored), read at start. Never put the password itself in a flag or an environment variable.")
}

func (c *TLSConfig) validate() error {
	if !c.Enabled {
		if c.CAFile != "" || c.CertFile != "" || c.KeyFile != "" || c.ServerName != "" || c.InsecureSkipVerify {
			return errors.New("kafka.tls.* is set but -kafka.tls.enabled is false")
		}
		return nil
	}
	if (c.CertFile == "") != (c.KeyFile == "") {
		return errors.New("kafka.tls.cert-file and kafka.tls.key-file go together")
	}
	_, err := c.load()
	return err
}

// load reads the files and builds the TLS client configuration.
func (c *TLSConfig) load() (*tls.Config, error) {
	tc := &tls.Config{
		MinVersion:         tls.VersionTLS12,
		ServerName:         c.ServerName,
		InsecureSkipVerify: c.InsecureSkipVerify, //nolint:gosec // an explicit flag, off by default
	}
	if c.CAFile != "" {
		pem, err := os.ReadFile(c.CAFile)
		if err != nil {
			return nil, fmt.Errorf("kafka.tls.ca-file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("kafka.tls.ca-file %s: no PEM certificate in it", c.CAFile)
		}
		tc.RootCAs = pool
	}
	if c.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(c.CertFile, c.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("kafka.tls.cert-file/key-file: %w", err)
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	return tc, nil
}

func (c *SASLConfig) validate() error {
	switch c.Mechanism {
	case SASLNone, "":
		if c.Username != "" || c.PasswordFile != "" {
			return errors.New("kafka.sasl.username or kafka.sasl.password-file is set but -kafka.sasl.mechanism is none")
		}
		return nil
	case SASLPlain, SASLScramSHA256, SASLScramSHA512:
	default:
		return fmt.Errorf("kafka.sasl.mechanism %q: want none, PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512", c.Mechanism)
	}
	if c.Username == "" {
		return fmt.Errorf("kafka.sasl.mechanism=%s needs -kafka.sasl.username", c.Mechanism)
	}
	_, err := c.password()
	return err
}

func (c *SASLConfig) password() (string, error) {
	if c.PasswordFile == "" {
		return "", fmt.Errorf("kafka.sasl.mechanism=%s needs -kafka.sasl.password-file", c.Mechanism)
	}
	b, err := os.ReadFile(c.PasswordFile)
	if err != nil {
		return "", fmt.Errorf("kafka.sasl.password-file: %w", err)
	}
	pw := strings.TrimSuffix(strings.TrimSuffix(string(b), "\n"), "\r")
	if pw == "" {
		return "", fmt.Errorf("kafka.sasl.password-file %s is empty", c.PasswordFile)
	}
	return pw, nil
}

// applySecurity sets sarama's TLS and SASL options from c, reading the files now.
func (c *Config) applySecurity(sc *sarama.Config) error {
	if c.TLS.Enabled {
		tc, err := c.TLS.load()
		if err != nil {
			return err
		}
		sc.Net.TLS.Enable, sc.Net.TLS.Config = true, tc
	}
	switch c.SASL.Mechanism {
	case SASLNone, "":
		return nil
	case SASLPlain, SASLScramSHA256, SASLScramSHA512:
	default:
		return fmt.Errorf("kafka.sasl.mechanism %q: want none, PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512", c.SASL.Mechanism)
	}
	pw, err := c.SASL.password()
	if err != nil {
		return err
	}
	sc.Net.SASL.Enable = true
	sc.Net.SASL.Handshake = true
	sc.Net.SASL.Mechanism = sarama.SASLMechanism(c.SASL.Mechanism)
	sc.Net.SASL.User = c.SASL.Username
	sc.Net.SASL.Password = pw
	switch c.SASL.Mechanism {
	case SASLScramSHA256:
		sc.Net.SASL.SCRAMClientGeneratorFunc = func() sarama.SCRAMClient { return &scramClient{hash: scram.SHA256} }
	case SASLScramSHA512:
		sc.Net.SASL.SCRAMClientGeneratorFunc = func() sarama.SCRAMClient { return &scramClient{hash: scram.SHA512} }
	}
	return nil
}

// scramClient is sarama's SCRAMClient over xdg-go/scram: one conversation
// per connection.
type scramClient struct {
	hash scram.HashGeneratorFcn
	conv *scram.ClientConversation
}

func (s *scramClient) Begin(user, password, authzID string) error {
	c, err := s.hash.NewClient(user, password, authzID)
	if err != nil {
		return fmt.Errorf("scram: %w", err)
	}
	s.conv = c.NewConversation()
	return nil
}

func (s *scramClient) Step(challenge string) (string, error) { return s.conv.Step(challenge) }

func (s *scramClient) Done() bool { return s.conv.Done() }

// Explain adds what a connection error most likely means under the
// configured security: Kafka answers refused credentials with
// SASL_AUTHENTICATION_FAILED, but some brokers (and any broker reached
// with the wrong protocol) just close the connection, which sarama
// reports as EOF.
func (c *Config) Explain(err error) error {
	if err == nil {
		return nil
	}
	sasl := c.SASL.Mechanism != "" && c.SASL.Mechanism != SASLNone
	switch {
	case errors.Is(err, sarama.ErrSASLAuthenticationFailed):
		return fmt.Errorf("%w (SASL %s as %q refused: check -kafka.sasl.username and -kafka.sasl.password-file)", err, c.SASL.Mechanism, c.SASL.Username)
	case errors.Is(err, io.EOF) && sasl:
		return fmt.Errorf("%w (the broker closed the connection: with SASL %s as %q this usually means SASL authentication failed, check -kafka.sasl.username and -kafka.sasl.password-file; or the listener expects TLS: -kafka.tls.enabled=%t)",
			err, c.SASL.Mechanism, c.SASL.Username, c.TLS.Enabled)
	case errors.Is(err, io.EOF):
		return fmt.Errorf("%w (the broker closed the connection: does the listener expect TLS (-kafka.tls.enabled=%t) or SASL (-kafka.sasl.mechanism)?)", err, c.TLS.Enabled)
	}
	return err
}
