// Package kafka holds the Kafka client configuration shared by gateway and
// ingester, and the acknowledged producer both use (records, dead letters).
package kafka

import (
	"errors"
	"flag"
	"fmt"
	"strings"
	"time"

	"github.com/IBM/sarama"
	"github.com/rcrowley/go-metrics"
)

// Config is the connection to the Kafka cluster.
type Config struct {
	Brokers  string        `yaml:"brokers"`
	ClientID string        `yaml:"client_id"`
	Version  string        `yaml:"version"`
	Timeout  time.Duration `yaml:"timeout"`
	TLS      TLSConfig     `yaml:"tls"`
	SASL     SASLConfig    `yaml:"sasl"`
}

// RegisterFlags registers the flags under prefix (e.g. "kafka.").
func (c *Config) RegisterFlags(prefix string, fs *flag.FlagSet) {
	fs.StringVar(&c.Brokers, prefix+"brokers", "127.0.0.1:9092", "Comma-separated Kafka bootstrap brokers.")
	fs.StringVar(&c.ClientID, prefix+"client-id", "tributary", "Kafka client ID.")
	// 2.8 is the oldest version with every request we use in its modern form;
	// brokers newer than the client work with it.
	fs.StringVar(&c.Version, prefix+"version", "2.8.0", "Kafka protocol version to speak (the broker's or older).")
	fs.DurationVar(&c.Timeout, prefix+"timeout", 10*time.Second, "Dial, read and write timeout for broker connections.")
	c.TLS.registerFlags(prefix+"tls.", fs)
	c.SASL.registerFlags(prefix+"sasl.", fs)
}

// Validate checks the configuration.
func (c *Config) Validate() error {
	if len(c.BrokerList()) == 0 {
		return errors.New("kafka: no brokers configured")
	}
	if _, err := sarama.ParseKafkaVersion(c.Version); err != nil {
		return fmt.Errorf("kafka: version %q: %w", c.Version, err)
	}
	if c.Timeout <= 0 {
		return errors.New("kafka: timeout must be positive")
	}
	if err := c.TLS.validate(); err != nil {
		return err
	}
	return c.SASL.validate()
}

// BrokerList is Brokers split on commas.
func (c *Config) BrokerList() []string {
	var out []string
	for _, b := range strings.Split(c.Brokers, ",") {
		if b = strings.TrimSpace(b); b != "" {
			out = append(out, b)
		}
	}
	return out
}

func init() {
	// Sarama records its own go-metrics (exponentially decaying histograms
	// per request and broker) that Tributary never exports: its self-metrics
	// are Prometheus ones. Stubs save their cost on every produce and fetch
	// (perf, gateway at 2.3M samples/s: 0.5% of its CPU).
	metrics.UseNilMetrics = true
}

// Sarama is the base sarama configuration for this cluster, with TLS and
// SASL set up; it reads the CA, certificate and password files each time,
// so that a reconnection picks up rotated ones.
func (c *Config) Sarama() (*sarama.Config, error) {
	sc := sarama.NewConfig()
	sc.ClientID = c.ClientID
	sc.Version, _ = sarama.ParseKafkaVersion(c.Version)
	sc.Net.DialTimeout = c.Timeout
	sc.Net.ReadTimeout = 3 * c.Timeout // a produce with acks=all may take the broker's own timeout
	sc.Net.WriteTimeout = c.Timeout
	sc.Metadata.Retry.Max = 3
	sc.Metadata.Retry.Backoff = 250 * time.Millisecond
	sc.Metadata.Full = false
	// Topics are created by -kafka.topics.create with the configured
	// partitions and replication factor, or by the operator; never as a
	// side effect of a metadata request (a readiness probe would create a
	// missing topic with the broker's defaults, often one partition).
	sc.Metadata.AllowAutoTopicCreation = false
	if err := c.applySecurity(sc); err != nil {
		return nil, err
	}
	return sc, nil
}
