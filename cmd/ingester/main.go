// Command ingester consumes Tributary's Kafka topics and writes them to the
// configured sinks, one consumer group per sink, at least once.
package main

import (
	"context"
	"flag"
	"fmt"
	"net/http"
	"os"
	"time"

	"github.com/oklog/run"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/tributary-io/tributary/pkg/flagenv"
	"github.com/tributary-io/tributary/pkg/ingester"
	"github.com/tributary-io/tributary/pkg/kafka"
	"github.com/tributary-io/tributary/pkg/server"
	promsink "github.com/tributary-io/tributary/pkg/sink/prometheus"
	recordpb "github.com/tributary-io/tributary/proto/record/v1"
)

type config struct {
	ListenAddr string               `yaml:"listen_addr"`
	Kafka      kafka.Config         `yaml:"kafka"`
	DLQ        kafka.ProducerConfig `yaml:"dlq"`
	Prometheus struct {
		Sink     promsink.Config `yaml:"sink"`
		Consumer ingester.Config `yaml:"consumer"`
	} `yaml:"prometheus"`
	Log server.LogConfig `yaml:"log"`
}

func main() {
	if err := runMain(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "ingester:", err)
		os.Exit(1)
	}
}

func runMain(args []string) error {
	var cfg config
	fs := flag.NewFlagSet("ingester", flag.ContinueOnError)
	fs.StringVar(&cfg.ListenAddr, "http.listen-addr", ":8081", "Address for /metrics and health checks.")
	cfg.Kafka.RegisterFlags("kafka.", fs)
	fs.DurationVar(&cfg.DLQ.AckTimeout, "dlq.ack-timeout", 10*time.Second, "Wait for Kafka to acknowledge a dead letter.")
	fs.IntVar(&cfg.DLQ.MaxMessageBytes, "dlq.max-message-bytes", 1000000, "Largest dead-letter message.")
	cfg.Prometheus.Sink.RegisterFlags("prometheus.", fs)
	cfg.Prometheus.Consumer.RegisterFlags("prometheus.", "prometheus", "tributary.metrics", fs)
	cfg.Log.RegisterFlags(fs)
	if err := flagenv.Parse(fs, args, "TRIBUTARY_INGESTER", &cfg); err != nil {
		if err == flag.ErrHelp {
			return nil
		}
		return err
	}
	if err := cfg.Kafka.Validate(); err != nil {
		return err
	}
	log, err := cfg.Log.Logger("ingester")
	if err != nil {
		return err
	}
	reg := server.Registry()
	metrics := ingester.NewMetrics(reg)

	if cfg.Prometheus.Sink.URL == "" {
		return fmt.Errorf("no sink configured (set -prometheus.url)")
	}
	if err := cfg.Prometheus.Sink.Validate(); err != nil {
		return err
	}
	if err := cfg.Prometheus.Consumer.Validate(); err != nil {
		return fmt.Errorf("prometheus consumer: %w", err)
	}
	dlq, err := kafka.NewProducer(cfg.Kafka, cfg.DLQ, "ingester", reg, log)
	if err != nil {
		return err
	}
	defer dlq.Close()
	var consumers []*ingester.Consumer
	if cfg.Prometheus.Sink.URL != "" {
		c, err := ingester.NewConsumer(ingester.Params{
			Config: cfg.Prometheus.Consumer, Kafka: cfg.Kafka, Name: "prometheus",
			Signal: recordpb.Signal_SIGNAL_METRICS, Sink: promsink.New(cfg.Prometheus.Sink, nil),
			DLQ: dlq, Metrics: metrics, Log: log,
		})
		if err != nil {
			return err
		}
		consumers = append(consumers, c)
	}

	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /-/healthy", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "OK") })
	mux.HandleFunc("GET /-/ready", func(w http.ResponseWriter, _ *http.Request) {
		for _, c := range consumers {
			if err := c.Ready(); err != nil {
				http.Error(w, "not ready: "+err.Error(), http.StatusServiceUnavailable)
				return
			}
		}
		fmt.Fprintln(w, "ready")
	})

	var g run.Group
	server.Signals(&g, log)
	if err := server.HTTP(&g, cfg.ListenAddr, mux, 5*time.Second, log); err != nil {
		return err
	}
	for _, c := range consumers {
		// Cancelling a consumer flushes its in-flight batches and commits
		// before it leaves the group; the dead-letter producer closes after.
		ctx, cancel := context.WithCancel(context.Background())
		g.Add(func() error { return c.Run(ctx) }, func(error) { cancel() })
	}
	err = g.Run()
	log.Info("stopped")
	return err
}
