package loadgen

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/IBM/sarama"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/tributary-io/tributary/pkg/kafka"
	"github.com/tributary-io/tributary/pkg/record"
	recordpb "github.com/tributary-io/tributary/proto/record/v1"
)

// Sender delivers one body and says how it went: outcome is the HTTP status
// code ("204"), "acked" or "failed" for Kafka, "discarded", or "" when there
// was no answer at all (connection refused, timeout); ok means the receiver
// took the data; err says why not, when known. Send returns only when the
// body's buffer is no longer used, unless it failed (then the caller
// Detaches the body).
type Sender interface {
	Send(ctx context.Context, b *Body) (outcome string, ok bool, err error)
	Close() error
}

// httpSender posts bodies to an endpoint, as Prometheus remote_write,
// Promtail or Alloy would.
type httpSender struct {
	client *http.Client
	url    string
	header http.Header
}

func newHTTPSender(url string, concurrency int, timeout time.Duration, header http.Header) *httpSender {
	tr := &http.Transport{
		MaxIdleConns:        2 * concurrency,
		MaxIdleConnsPerHost: 2 * concurrency,
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true,
	}
	return &httpSender{client: &http.Client{Transport: tr, Timeout: timeout}, url: url, header: header}
}

func (s *httpSender) Send(ctx context.Context, b *Body) (string, bool, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.url, bytes.NewReader(b.Data))
	if err != nil {
		return "", false, err
	}
	for k, v := range s.header {
		req.Header[k] = v
	}
	req.Header.Set("Content-Type", b.ContentType)
	if b.Encoding != "" {
		req.Header.Set("Content-Encoding", b.Encoding)
	}
	resp, err := s.client.Do(req)
	if err != nil {
		return "", false, err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return strconv.Itoa(resp.StatusCode), resp.StatusCode/100 == 2, nil
}

func (s *httpSender) Close() error {
	s.client.CloseIdleConnections()
	return nil
}

// kafkaSender produces each body as one record straight to the broker, with
// the project's own producer (acks=all, idempotent) and the envelope the
// gateway writes, keyed by cluster: what the gateway does minus the HTTP
// server and the validation. Its rate is the producer ceiling.
type kafkaSender struct {
	producer *kafka.Producer
	topic    string
	tenant   string
}

func newKafkaSender(brokers, topic, tenant string, maxMessageBytes int, linger time.Duration, log *slog.Logger) (*kafkaSender, error) {
	kc := kafka.Config{Brokers: brokers, ClientID: "tributary-loadgen", Version: "2.8.0", Timeout: 10 * time.Second}
	if err := kc.Validate(); err != nil {
		return nil, err
	}
	p, err := kafka.NewProducer(kc, kafka.ProducerConfig{AckTimeout: 10 * time.Second, MaxMessageBytes: maxMessageBytes, Linger: linger},
		"loadgen", prometheus.NewRegistry(), log)
	if err != nil {
		return nil, err
	}
	return &kafkaSender{producer: p, topic: topic, tenant: tenant}, nil
}

func (s *kafkaSender) Send(ctx context.Context, b *Body) (string, bool, error) {
	signal, ctype := recordpb.Signal_SIGNAL_METRICS, record.ContentTypeWriteRequest
	if b.LineBytes > 0 {
		signal, ctype = recordpb.Signal_SIGNAL_LOGS, record.ContentTypePushRequest
	}
	env := &recordpb.Envelope{
		SchemaVersion:      record.SchemaVersion,
		Signal:             signal,
		Cluster:            b.Cluster,
		Tenant:             s.tenant,
		ReceivedAtUnixNano: time.Now().UnixNano(),
		ContentType:        ctype,
		ContentEncoding:    record.EncodingSnappy,
		Items:              uint64(b.Items),
	}
	msg := &sarama.ProducerMessage{
		Topic:   s.topic,
		Key:     sarama.StringEncoder(b.Cluster),
		Value:   sarama.ByteEncoder(b.Data),
		Headers: record.Headers(env),
	}
	if err := s.producer.Produce(ctx, []*sarama.ProducerMessage{msg}); err != nil {
		return "failed", false, err
	}
	return "acked", true, nil
}

func (s *kafkaSender) Close() error { return s.producer.Close() }

// discardSender takes every body and does nothing with it but read it once:
// what is left is the tool's own cost per request (stamping, scheduling,
// accounting), i.e. its ceiling.
type discardSender struct{}

func (discardSender) Send(_ context.Context, b *Body) (string, bool, error) {
	var sum byte
	for _, c := range b.Data {
		sum ^= c
	}
	discarded.Add(uint64(sum))
	return "discarded", true, nil
}

func (discardSender) Close() error { return nil }

// discarded keeps the compiler from dropping discardSender's read.
var discarded atomic.Uint64

// newSender builds the sender of a mode.
func newSender(cfg *Config, log *slog.Logger) (Sender, error) {
	header := http.Header{}
	header.Set("User-Agent", "tributary-loadgen")
	if cfg.Tenant != "" {
		header.Set("X-Scope-OrgID", cfg.Tenant)
	}
	base := strings.TrimSuffix(cfg.Target, "/")
	switch cfg.Mode {
	case ModeRemoteWrite:
		header.Set("X-Prometheus-Remote-Write-Version", "0.1.0")
		return newHTTPSender(base+"/api/v1/write", cfg.Concurrency, cfg.Timeout, header), nil
	case ModeLokiProto, ModeLokiJSON:
		return newHTTPSender(base+"/loki/api/v1/push", cfg.Concurrency, cfg.Timeout, header), nil
	case ModeOTLPHTTP:
		return newHTTPSender(base+"/v1/traces", cfg.Concurrency, cfg.Timeout, header), nil
	case ModeOTLPGRPC:
		return newGRPCSender(cfg.Target, header.Get("User-Agent"), cfg.Tenant, cfg.Timeout)
	case ModeKafkaProduce:
		return newKafkaSender(cfg.Target, cfg.Topic, cfg.Tenant, cfg.MaxMessageBytes, cfg.Linger, log)
	case ModeDiscard:
		return discardSender{}, nil
	}
	return nil, fmt.Errorf("mode %q has no sender", cfg.Mode)
}
