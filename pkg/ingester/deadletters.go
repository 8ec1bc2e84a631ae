package ingester

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/IBM/sarama"
)

// DeadLetterProducer is a DeadLetters that holds a connection.
type DeadLetterProducer interface {
	DeadLetters
	Close() error
}

// LazyDeadLetters is a dead-letter producer that connects in the
// background, so that the ingester starts, serves /metrics and /-/healthy,
// and says why it is not ready while Kafka is not reachable yet (common
// on Kubernetes, where nothing orders the start of pods). Until it is
// connected Produce fails, and the consumer retries the dead letter like
// any failed produce.
type LazyDeadLetters struct {
	connect func() (DeadLetterProducer, error)
	log     *slog.Logger

	mu  sync.Mutex
	p   DeadLetterProducer
	err error // why the last connection attempt failed
}

// NewLazyDeadLetters returns a producer that Run connects with connect.
func NewLazyDeadLetters(connect func() (DeadLetterProducer, error), log *slog.Logger) *LazyDeadLetters {
	return &LazyDeadLetters{connect: connect, log: log, err: fmt.Errorf("not connected yet")}
}

// Run connects, retrying with capped backoff, then waits for ctx to end.
func (l *LazyDeadLetters) Run(ctx context.Context) error {
	for attempt := 0; ; attempt++ {
		p, err := l.connect()
		if err == nil {
			l.mu.Lock()
			l.p, l.err = p, nil
			l.mu.Unlock()
			if attempt > 0 {
				l.log.Info("dead-letter producer connected to kafka", "attempts", attempt+1)
			}
			break
		}
		l.mu.Lock()
		l.err = err
		l.mu.Unlock()
		d := connectBackoff.delay(attempt)
		l.log.Warn("kafka not reachable for the dead-letter producer; not ready, retrying", "in", d, "err", err)
		t := time.NewTimer(d)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
	}
	<-ctx.Done()
	return nil
}

func (l *LazyDeadLetters) get() (DeadLetterProducer, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.p, l.err
}

// Produce sends msgs once connected.
func (l *LazyDeadLetters) Produce(ctx context.Context, msgs []*sarama.ProducerMessage) error {
	p, err := l.get()
	if p == nil {
		return fmt.Errorf("dead-letter producer: %w", err)
	}
	return p.Produce(ctx, msgs)
}

// Ready says why dead letters cannot be produced yet, or nil.
func (l *LazyDeadLetters) Ready() error {
	if p, err := l.get(); p == nil {
		return fmt.Errorf("dead-letter producer: kafka not reachable yet: %v", err)
	}
	return nil
}

// Close closes the producer if it connected.
func (l *LazyDeadLetters) Close() error {
	if p, _ := l.get(); p != nil {
		return p.Close()
	}
	return nil
}
