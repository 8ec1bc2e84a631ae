package recordprint

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"sync"

	"github.com/IBM/sarama"

	"github.com/tributary-io/tributary/pkg/kafka"
)

// Config selects the records to print.
type Config struct {
	Kafka kafka.Config
	Topic string
	// From is "oldest" (print what the topic holds, then stop) or "newest"
	// (wait for new records).
	From string
	// Partition is one partition, or -1 for all.
	Partition int
	// N stops after this many records; 0 is no limit.
	N int
}

// RegisterFlags registers the command's flags.
func (c *Config) RegisterFlags(fs *flag.FlagSet) {
	c.Kafka.RegisterFlags("kafka.", fs)
	fs.StringVar(&c.Topic, "topic", "tributary.metrics", "Topic to read.")
	fs.StringVar(&c.From, "from", "oldest", "oldest: print the records the topic holds, then stop; newest: print records as they arrive.")
	fs.IntVar(&c.Partition, "partition", -1, "Partition to read; -1 reads all.")
	fs.IntVar(&c.N, "n", 10, "Stop after this many records; 0 for no limit.")
}

// Validate checks the configuration.
func (c *Config) Validate() error {
	if c.Topic == "" {
		return errors.New("-topic is empty")
	}
	if c.From != "oldest" && c.From != "newest" {
		return fmt.Errorf("-from=%q: want oldest or newest", c.From)
	}
	if c.N < 0 {
		return errors.New("-n must not be negative")
	}
	return c.Kafka.Validate()
}

// Command is "ingester records": it parses args and prints records to w
// until ctx ends, N records are printed, or (from oldest) the end of every
// partition as it was at start is reached.
func Command(ctx context.Context, args []string, w io.Writer) error {
	var cfg Config
	fs := flag.NewFlagSet("records", flag.ContinueOnError)
	cfg.RegisterFlags(fs)
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "Usage: ingester records [flags]\nPrints Tributary records of a Kafka topic as text: envelope, series and samples, streams and lines.")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	if err := cfg.Validate(); err != nil {
		return err
	}
	return Read(ctx, cfg, w)
}

// Read prints the records cfg selects to w.
func Read(ctx context.Context, cfg Config, w io.Writer) error {
	sc, err := cfg.Kafka.Sarama()
	if err != nil {
		return err
	}
	client, err := sarama.NewClient(cfg.Kafka.BrokerList(), sc)
	if err != nil {
		return fmt.Errorf("connect to kafka %s: %w", cfg.Kafka.Brokers, err)
	}
	defer client.Close()
	consumer, err := sarama.NewConsumerFromClient(client)
	if err != nil {
		return fmt.Errorf("consumer: %w", err)
	}
	defer consumer.Close()
	parts, err := client.Partitions(cfg.Topic)
	if err != nil {
		return fmt.Errorf("partitions of %s: %w", cfg.Topic, err)
	}
	if cfg.Partition >= 0 {
		parts = []int32{int32(cfg.Partition)}
	}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	msgs := make(chan *sarama.ConsumerMessage)
	errs := make(chan error, len(parts))
	var wg sync.WaitGroup
	for _, part := range parts {
		start, end := sarama.OffsetNewest, int64(-1)
		if cfg.From == "oldest" {
			start = sarama.OffsetOldest
			if end, err = client.GetOffset(cfg.Topic, part, sarama.OffsetNewest); err != nil {
				return fmt.Errorf("end of %s/%d: %w", cfg.Topic, part, err)
			}
			first, err := client.GetOffset(cfg.Topic, part, sarama.OffsetOldest)
			if err != nil {
				return fmt.Errorf("start of %s/%d: %w", cfg.Topic, part, err)
			}
			if first >= end {
				continue // empty
			}
		}
		pc, err := consumer.ConsumePartition(cfg.Topic, part, start)
		if err != nil {
			return fmt.Errorf("consume %s/%d: %w", cfg.Topic, part, err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer pc.Close()
			for {
				select {
				case <-ctx.Done():
					return
				case err := <-pc.Errors():
					errs <- err
					return
				case m := <-pc.Messages():
					select {
					case msgs <- m:
					case <-ctx.Done():
						return
					}
					if end >= 0 && m.Offset >= end-1 {
						return
					}
				}
			}
		}()
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	for printed := 0; cfg.N == 0 || printed < cfg.N; printed++ {
		select {
		case m := <-msgs:
			if err := Print(w, m); err != nil {
				return err
			}
		case err := <-errs:
			return err
		case <-done:
			return nil
		case <-ctx.Done():
			return nil
		}
	}
	return nil
}
