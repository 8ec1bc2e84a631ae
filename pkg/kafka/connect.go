package kafka

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/IBM/sarama"
	"github.com/prometheus/client_golang/prometheus"
)

// Reconnect backoff: the first retry comes quickly (Kafka starting next
// to the gateway is up within seconds), later ones at most every 30 s so
// that a long outage does not flood the log.
const (
	connectMinBackoff = 500 * time.Millisecond
	connectMaxBackoff = 30 * time.Second
)

// ConnectingProducer is a Producer that may not be connected yet. Connect
// returns one at once and keeps dialling Kafka in the background, so that a
// process started before Kafka serves its health and metrics endpoints and
// answers writes with ErrUnavailable instead of exiting.
type ConnectingProducer struct {
	p       atomic.Pointer[Producer]
	lastErr atomic.Pointer[error]
	ctx     context.Context
	cancel  context.CancelFunc
	mu      sync.Mutex // orders storing the producer against Close
}

// Connect starts connecting to Kafka with capped exponential backoff,
// logging each failed attempt; see NewProducer for the arguments.
func Connect(kc Config, cfg ProducerConfig, component string, reg prometheus.Registerer, log *slog.Logger) *ConnectingProducer {
	ctx, cancel := context.WithCancel(context.Background())
	c := &ConnectingProducer{ctx: ctx, cancel: cancel}
	notYet := errors.New("first connection attempt under way")
	c.lastErr.Store(&notYet)
	go func() {
		backoff := connectMinBackoff
		for attempt := 1; ; attempt++ {
			p, err := NewProducer(kc, cfg, component, reg, log)
			if err == nil {
				c.store(p)
				log.Info("kafka connected", "brokers", kc.Brokers, "attempts", attempt)
				return
			}
			c.lastErr.Store(&err)
			log.Warn("kafka not reachable, retrying; writes answer 503 and /-/ready is 503 meanwhile",
				"brokers", kc.Brokers, "attempt", attempt, "retry_in", backoff, "err", err)
			select {
			case <-ctx.Done():
				return
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, connectMaxBackoff)
		}
	}()
	return c
}

func (c *ConnectingProducer) notConnected() error {
	return fmt.Errorf("kafka not connected: %v", *c.lastErr.Load())
}

// Produce is Producer.Produce, or ErrUnavailable while not connected.
func (c *ConnectingProducer) Produce(ctx context.Context, msgs []*sarama.ProducerMessage) error {
	p := c.p.Load()
	if p == nil {
		return fmt.Errorf("%w: %v", ErrUnavailable, c.notConnected())
	}
	return p.Produce(ctx, msgs)
}

// Ready is Producer.Ready, or an error while not connected.
func (c *ConnectingProducer) Ready(topic string) error {
	p := c.p.Load()
	if p == nil {
		return c.notConnected()
	}
	return p.Ready(topic)
}

// Partitions is Producer.Partitions, or an error while not connected.
func (c *ConnectingProducer) Partitions(topic string) (int32, error) {
	p := c.p.Load()
	if p == nil {
		return 0, c.notConnected()
	}
	return p.Partitions(topic)
}

// store publishes p, or closes it if Close came first.
func (c *ConnectingProducer) store(p *Producer) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ctx.Err() != nil {
		p.Close()
		return
	}
	c.p.Store(p)
}

// Close stops connecting and closes the producer if it was connected. It
// does not wait for a connection attempt under way: one that succeeds
// later closes its producer itself.
func (c *ConnectingProducer) Close() error {
	c.mu.Lock()
	c.cancel()
	p := c.p.Load()
	c.mu.Unlock()
	if p != nil {
		return p.Close()
	}
	return nil
}
