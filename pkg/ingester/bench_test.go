package ingester

import (
	"context"
	"io"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/tributary-io/tributary/internal/testenv"
	"github.com/tributary-io/tributary/pkg/kafka"
	"github.com/tributary-io/tributary/pkg/record"
	recordpb "github.com/tributary-io/tributary/proto/record/v1"
)

// BenchmarkConsumeDiscard is the consumer's own ceiling: records of 1 KiB
// from a kfake broker into a sink that drops them, per iteration a fresh
// group reading the whole topic (the join is part of the time).
func BenchmarkConsumeDiscard(b *testing.B) {
	const partitions, perPartition = 4, 10000
	k := testenv.Kafka(b, partitions)
	sc := sarama.NewConfig()
	sc.Version = sarama.V2_8_0_0
	sc.Producer.Return.Successes = true
	sc.Producer.Partitioner = sarama.NewManualPartitioner
	sp, err := sarama.NewSyncProducer([]string{k.Addr}, sc)
	if err != nil {
		b.Fatal(err)
	}
	value := make([]byte, 1024)
	env := &recordpb.Envelope{SchemaVersion: record.SchemaVersion, Signal: recordpb.Signal_SIGNAL_METRICS, Cluster: "c",
		ReceivedAtUnixNano: time.Now().UnixNano(), ContentType: "application/x-protobuf", ContentEncoding: record.EncodingSnappy, Items: 1}
	for p := range int32(partitions) {
		var msgs []*sarama.ProducerMessage
		for range perPartition {
			msgs = append(msgs, &sarama.ProducerMessage{Topic: "tributary.metrics", Partition: p, Value: sarama.ByteEncoder(value), Headers: record.Headers(env)})
		}
		if err := sp.SendMessages(msgs); err != nil {
			b.Fatal(err)
		}
	}
	sp.Close()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	b.ResetTimer()
	for i := range b.N {
		var n atomic.Int64
		done := make(chan struct{})
		sink := SinkFunc(func(_ context.Context, recs []Record) error {
			if n.Add(int64(len(recs))) == partitions*perPartition {
				close(done)
			}
			return nil
		})
		c, err := NewConsumer(Params{
			Config: Config{Topic: "tributary.metrics", Group: "bench" + string(rune('a'+i%26)) + time.Now().Format("150405.000000"), DLQTopic: "tributary.dlq",
				BatchMaxBytes: 1 << 20, BatchMaxRecords: 500, BatchMaxDelay: 200 * time.Millisecond,
				Backoff: Backoff{Min: 100 * time.Millisecond, Max: time.Second}, FlushTimeout: 5 * time.Second,
				FetchBytes: 1 << 20, BufferedRecords: DefaultBufferedRecords},
			Kafka: kafka.Config{Brokers: k.Addr, ClientID: "bench", Version: "2.8.0", Timeout: 5 * time.Second},
			Name:  "discard", Signal: recordpb.Signal_SIGNAL_METRICS, Sink: sink,
			Metrics: NewMetrics(prometheus.NewRegistry()), Log: log,
		})
		if err != nil {
			b.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		stopped := make(chan struct{})
		go func() { defer close(stopped); _ = c.Run(ctx) }()
		<-done
		cancel()
		<-stopped
	}
	b.ReportMetric(float64(partitions*perPartition*b.N)/b.Elapsed().Seconds(), "records/s")
}
