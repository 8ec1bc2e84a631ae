package kafka

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/tributary-io/tributary/internal/testenv"
)

const topic = "tributary.metrics"

func newTestProducer(t *testing.T, k *testenv.KafkaCluster, cfg ProducerConfig) *Producer {
	t.Helper()
	kc := Config{Brokers: k.Addr, ClientID: "test", Version: "2.8.0", Timeout: 2 * time.Second}
	require.NoError(t, kc.Validate())
	if cfg.AckTimeout == 0 {
		cfg.AckTimeout = 3 * time.Second
	}
	if cfg.MaxMessageBytes == 0 {
		cfg.MaxMessageBytes = 1 << 20
	}
	p, err := NewProducer(kc, cfg, "test", prometheus.NewRegistry(), slog.New(slog.NewTextHandler(io.Discard, nil)))
	require.NoError(t, err)
	t.Cleanup(func() { p.Close() })
	return p
}

func msgs(n, size int) []*sarama.ProducerMessage {
	out := make([]*sarama.ProducerMessage, n)
	for i := range out {
		out[i] = &sarama.ProducerMessage{
			Topic: topic,
			Key:   sarama.StringEncoder(fmt.Sprint("cluster-", i)),
			Value: sarama.ByteEncoder(make([]byte, size)),
		}
	}
	return out
}

// answerProduce makes the broker answer every produce request with code
// for each partition, until off is set.
func answerProduce(k *testenv.KafkaCluster, code sarama.KError, off *atomic.Bool) {
	k.ControlKey(int16(kmsg.Produce), func(req kmsg.Request) (kmsg.Response, error, bool) {
		k.KeepControl()
		if off.Load() {
			return nil, nil, false
		}
		return testenv.ProduceErrorResponse(req, "", int16(code)), nil, true
	})
}

func TestProduceAcknowledged(t *testing.T) {
	k := testenv.Kafka(t, 2)
	p := newTestProducer(t, k, ProducerConfig{})
	require.NoError(t, p.Produce(context.Background(), msgs(5, 100)))
	require.Len(t, testenv.ReadTopic(t, k.Addr, topic), 5)
	require.NoError(t, p.Ready(topic))
}

func TestProduceAckTimeout(t *testing.T) {
	k := testenv.Kafka(t, 1)
	p := newTestProducer(t, k, ProducerConfig{AckTimeout: time.Second})
	require.NoError(t, p.Produce(context.Background(), msgs(1, 10)), "connected before the broker freezes")
	// The broker reads produce requests and never answers them.
	var off atomic.Bool
	k.ControlKey(int16(kmsg.Produce), func(kmsg.Request) (kmsg.Response, error, bool) {
		k.KeepControl()
		return nil, nil, !off.Load()
	})
	defer off.Store(true)
	start := time.Now()
	err := p.Produce(context.Background(), msgs(1, 10))
	require.ErrorIs(t, err, ErrUnavailable)
	require.ErrorContains(t, err, "no acknowledgement within 1s")
	require.Less(t, time.Since(start), 2*time.Second, "bounded by the ack timeout")
}

func TestProduceErrorResponse(t *testing.T) {
	k := testenv.Kafka(t, 1)
	p := newTestProducer(t, k, ProducerConfig{})
	var off atomic.Bool
	answerProduce(k, sarama.ErrInvalidRecord, &off)
	err := p.Produce(context.Background(), msgs(2, 10))
	require.ErrorIs(t, err, ErrUnavailable)
	require.NotErrorIs(t, err, ErrTooLarge)
	require.ErrorContains(t, err, sarama.ErrInvalidRecord.Error())
	off.Store(true)
	require.NoError(t, p.Produce(context.Background(), msgs(2, 10)), "the next produce succeeds once the broker accepts")
}

func TestProduceTooLarge(t *testing.T) {
	t.Run("producer limit", func(t *testing.T) {
		k := testenv.Kafka(t, 1)
		p := newTestProducer(t, k, ProducerConfig{MaxMessageBytes: 10 << 10})
		err := p.Produce(context.Background(), append(msgs(1, 100), msgs(1, 20<<10)...))
		require.ErrorIs(t, err, ErrTooLarge)
		require.NotErrorIs(t, err, ErrUnavailable)
		require.ErrorContains(t, err, "kafka.max-message-bytes=10240")
	})
	t.Run("broker limit", func(t *testing.T) {
		k := testenv.Kafka(t, 1)
		p := newTestProducer(t, k, ProducerConfig{})
		var off atomic.Bool
		answerProduce(k, sarama.ErrMessageSizeTooLarge, &off)
		err := p.Produce(context.Background(), msgs(1, 100))
		require.ErrorIs(t, err, ErrTooLarge)
		require.ErrorContains(t, err, "max.message.bytes")
	})
}

// A broker that keeps refusing makes sarama open its circuit breaker on
// leader lookups; once the broker is back, produces succeed again without
// a new producer.
func TestProduceRecoversAfterCircuitBreaker(t *testing.T) {
	k := testenv.Kafka(t, 1)
	p := newTestProducer(t, k, ProducerConfig{AckTimeout: 2 * time.Second})
	require.NoError(t, p.Produce(context.Background(), msgs(1, 10)))

	var off atomic.Bool
	answerProduce(k, sarama.ErrNotLeaderForPartition, &off)
	k.ControlKey(int16(kmsg.Metadata), func(kmsg.Request) (kmsg.Response, error, bool) {
		k.KeepControl()
		if off.Load() {
			return nil, nil, false
		}
		return nil, fmt.Errorf("metadata refused"), true // closes the connection
	})
	var sawBreaker bool
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline) && !sawBreaker; {
		err := p.Produce(context.Background(), msgs(1, 10))
		require.ErrorIs(t, err, ErrUnavailable)
		sawBreaker = err != nil && strings.Contains(err.Error(), "circuit breaker is open")
	}
	require.True(t, sawBreaker, "sarama's circuit breaker opened")

	off.Store(true)
	// sarama's breaker stays open for 10 s, then lets one attempt through.
	testenv.Eventually(t, 30*time.Second, func() error {
		return p.Produce(context.Background(), msgs(1, 10))
	})
	require.NoError(t, p.Ready(topic))
}
