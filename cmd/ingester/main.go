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
	"github.com/tributary-io/tributary/pkg/recordprint"
	"github.com/tributary-io/tributary/pkg/server"
	"github.com/tributary-io/tributary/pkg/sink/elasticsearch"
	"github.com/tributary-io/tributary/pkg/sink/loki"
	promsink "github.com/tributary-io/tributary/pkg/sink/prometheus"
	"github.com/tributary-io/tributary/pkg/spanmetrics"
	recordpb "github.com/tributary-io/tributary/proto/record/v1"
)

type config struct {
	ListenAddr string               `yaml:"listen_addr"`
	Kafka      kafka.Config         `yaml:"kafka"`
	Consumer   kafka.ConsumerConfig `yaml:"kafka_consumer"`
	Topics     kafka.TopicsConfig   `yaml:"kafka_topics"`
	DLQ        kafka.ProducerConfig `yaml:"dlq"`
	Prometheus struct {
		Sink     promsink.Config `yaml:"sink"`
		Consumer ingester.Config `yaml:"consumer"`
	} `yaml:"prometheus"`
	Loki struct {
		Sink     loki.Config     `yaml:"sink"`
		Consumer ingester.Config `yaml:"consumer"`
	} `yaml:"loki"`
	Elasticsearch struct {
		Sink     elasticsearch.Config `yaml:"sink"`
		Consumer ingester.Config      `yaml:"consumer"`
	} `yaml:"elasticsearch"`
	Jaeger struct {
		Sink     elasticsearch.JaegerConfig `yaml:"sink"`
		Consumer ingester.Config            `yaml:"consumer"`
	} `yaml:"jaeger"`
	Discard struct {
		Enabled  bool            `yaml:"enabled"`
		Consumer ingester.Config `yaml:"consumer"`
	} `yaml:"discard"`
	Spanmetrics spanmetrics.Config `yaml:"spanmetrics"`
	Log         server.LogConfig   `yaml:"log"`
	Pprof       bool               `yaml:"pprof"`
	// ReadyMaxLag: /-/ready fails while a partition's write has been
	// failing for a record older than this.
	ReadyMaxLag time.Duration `yaml:"ready_max_lag"`
}

func (c *config) registerFlags(fs *flag.FlagSet) {
	fs.StringVar(&c.ListenAddr, "http.listen-addr", ":8081", "Address for /metrics and health checks.")
	c.Kafka.RegisterFlags("kafka.", fs)
	c.Consumer.RegisterFlags("kafka.consumer.", fs)
	c.Topics.RegisterFlags("kafka.topics.", fs)
	fs.DurationVar(&c.DLQ.AckTimeout, "dlq.ack-timeout", 10*time.Second, "Wait for Kafka to acknowledge a dead letter.")
	fs.IntVar(&c.DLQ.MaxMessageBytes, "dlq.max-message-bytes", 1000000, "Largest dead-letter message.")
	c.Prometheus.Sink.RegisterFlags("prometheus.", fs)
	c.Prometheus.Consumer.RegisterFlags("prometheus.", "prometheus", "tributary.metrics", fs)
	c.Loki.Sink.RegisterFlags("loki.", fs)
	c.Loki.Consumer.RegisterFlags("loki.", "loki", "tributary.logs", fs)
	c.Elasticsearch.Sink.RegisterFlags("elasticsearch.", fs)
	c.Elasticsearch.Consumer.RegisterFlags("elasticsearch.", "elasticsearch", "tributary.logs", fs)
	c.Jaeger.Sink.RegisterFlags("jaeger.", fs)
	c.Jaeger.Consumer.RegisterFlags("jaeger.", "jaeger", "tributary.spans", fs)
	fs.BoolVar(&c.Discard.Enabled, "discard.enabled", false, "Run a sink that reads metrics and drops them (for benchmarks: the ingester's own ceiling).")
	c.Discard.Consumer.RegisterFlags("discard.", "discard", "tributary.metrics", fs)
	c.Spanmetrics.RegisterFlags("spanmetrics.", fs)
	c.Log.RegisterFlags(fs)
	fs.BoolVar(&c.Pprof, "debug.pprof", false, "Serve Go profiles under /debug/pprof/.")
	fs.DurationVar(&c.ReadyMaxLag, "ready.max-lag", ingester.DefaultReadyMaxLag,
		"Not ready while a partition's writes fail and its oldest unwritten record is older than this.")
}

func (c *config) validate() error {
	if err := c.Kafka.Validate(); err != nil {
		return err
	}
	if err := c.Consumer.Validate(); err != nil {
		return err
	}
	if err := c.Topics.Validate(); err != nil {
		return err
	}
	enabled := 0
	check := func(on bool, name string, sink interface{ Validate() error }, consumer *ingester.Config) error {
		if !on {
			return nil
		}
		enabled++
		if sink != nil {
			if err := sink.Validate(); err != nil {
				return err
			}
		}
		if err := consumer.Validate(); err != nil {
			return fmt.Errorf("%s consumer: %w", name, err)
		}
		return nil
	}
	if err := check(c.Prometheus.Sink.URL != "", "prometheus", &c.Prometheus.Sink, &c.Prometheus.Consumer); err != nil {
		return err
	}
	if err := check(c.Loki.Sink.URL != "", "loki", &c.Loki.Sink, &c.Loki.Consumer); err != nil {
		return err
	}
	if err := check(c.Elasticsearch.Sink.Enabled(), "elasticsearch", &c.Elasticsearch.Sink, &c.Elasticsearch.Consumer); err != nil {
		return err
	}
	if err := check(c.Jaeger.Sink.Enabled(), "jaeger", &c.Jaeger.Sink, &c.Jaeger.Consumer); err != nil {
		return err
	}
	if err := check(c.Discard.Enabled, "discard", nil, &c.Discard.Consumer); err != nil {
		return err
	}
	if c.Spanmetrics.Enabled && c.Prometheus.Sink.URL == "" {
		return fmt.Errorf("-spanmetrics.enabled writes to -prometheus.url, which is not set")
	}
	if err := check(c.Spanmetrics.Enabled, "spanmetrics", &c.Spanmetrics, &c.Spanmetrics.Consumer); err != nil {
		return err
	}
	if enabled == 0 {
		return fmt.Errorf("no sink configured: set -prometheus.url, -loki.url, -elasticsearch.addresses or -jaeger.addresses")
	}
	return nil
}

func main() {
	if err := runMain(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "ingester:", err)
		os.Exit(1)
	}
}

func runMain(args []string) error {
	if len(args) > 0 && args[0] == "records" { // ingester records: print a topic's records as text
		return recordprint.Command(context.Background(), args[1:], os.Stdout)
	}
	if len(args) > 0 && args[0] == "dlq" { // ingester dlq list|replay: the dead letters
		return ingester.DLQCommand(context.Background(), args[1:], os.Stdout)
	}
	var cfg config
	fs := flag.NewFlagSet("ingester", flag.ContinueOnError)
	cfg.registerFlags(fs)
	if err := flagenv.Parse(fs, args, "TRIBUTARY_INGESTER", &cfg); err != nil {
		if err == flag.ErrHelp {
			return nil
		}
		return err
	}
	if err := cfg.validate(); err != nil {
		return err
	}
	log, err := cfg.Log.Logger("ingester")
	if err != nil {
		return err
	}
	log.Info("starting", "version", server.Version(), "listen_addr", cfg.ListenAddr, "kafka_brokers", cfg.Kafka.Brokers)
	reg := server.Registry()
	metrics := ingester.NewMetrics(reg)
	// Kafka may not answer yet (pods start in any order): the producer and
	// the consumers connect in the background, retrying, and /-/ready
	// says what they wait for.
	dlq := ingester.NewLazyDeadLetters(func() (ingester.DeadLetterProducer, error) {
		p, err := kafka.NewProducer(cfg.Kafka, cfg.DLQ, "ingester", reg, log)
		if err != nil {
			return nil, err
		}
		return p, nil
	}, log)
	defer dlq.Close()

	var consumers []*ingester.Consumer
	var topics []string // consumed and dead-lettered to, for the topic check
	add := func(name string, signal recordpb.Signal, c ingester.Config, sink ingester.Sink) error {
		topics = append(topics, c.Topic, c.DLQTopic)
		consumer, err := ingester.NewConsumer(ingester.Params{
			Config: c, Kafka: cfg.Kafka, Group: cfg.Consumer, Name: name, Signal: signal, Sink: sink,
			DLQ: dlq, Metrics: metrics, Log: log, ReadyMaxLag: cfg.ReadyMaxLag,
		})
		if err != nil {
			return err
		}
		consumers = append(consumers, consumer)
		if p, ok := sink.(ingester.Prober); ok { // say at start-up what a misconfigured sink is; writes retry anyway
			go func() {
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				defer cancel()
				if err := p.Probe(ctx); err != nil {
					log.Error("sink check at start-up failed; writes wait and retry", "sink", name, "err", err)
				}
			}()
		}
		return nil
	}
	if cfg.Prometheus.Sink.URL != "" {
		if err := add("prometheus", recordpb.Signal_SIGNAL_METRICS, cfg.Prometheus.Consumer, promsink.New(cfg.Prometheus.Sink, nil)); err != nil {
			return err
		}
	}
	if cfg.Loki.Sink.URL != "" {
		if err := add("loki", recordpb.Signal_SIGNAL_LOGS, cfg.Loki.Consumer, loki.New(cfg.Loki.Sink, nil)); err != nil {
			return err
		}
	}
	if cfg.Elasticsearch.Sink.Enabled() {
		ctx, cancel := context.WithTimeout(context.Background(), cfg.Elasticsearch.Sink.Timeout)
		es, err := elasticsearch.New(ctx, cfg.Elasticsearch.Sink, log.With("sink", "elasticsearch"))
		cancel()
		if err != nil {
			return err
		}
		defer func() {
			ctx, cancel := context.WithTimeout(context.Background(), cfg.Elasticsearch.Sink.Timeout)
			defer cancel()
			if err := es.Close(ctx); err != nil {
				log.Warn("elasticsearch close", "err", err)
			}
		}()
		if err := add("elasticsearch", recordpb.Signal_SIGNAL_LOGS, cfg.Elasticsearch.Consumer, es); err != nil {
			return err
		}
	}
	if cfg.Jaeger.Sink.Enabled() {
		ctx, cancel := context.WithTimeout(context.Background(), cfg.Jaeger.Sink.Timeout)
		jaeger, err := elasticsearch.NewJaeger(ctx, cfg.Jaeger.Sink, log)
		cancel()
		if err != nil {
			return err
		}
		defer func() {
			ctx, cancel := context.WithTimeout(context.Background(), cfg.Jaeger.Sink.Timeout)
			defer cancel()
			if err := jaeger.Close(ctx); err != nil {
				log.Warn("jaeger sink close", "err", err)
			}
		}()
		if err := add("jaeger", recordpb.Signal_SIGNAL_SPANS, cfg.Jaeger.Consumer, jaeger); err != nil {
			return err
		}
	}
	if cfg.Discard.Enabled {
		drop := ingester.SinkFunc(func(context.Context, []ingester.Record) error { return nil })
		if err := add("discard", recordpb.Signal_SIGNAL_METRICS, cfg.Discard.Consumer, drop); err != nil {
			return err
		}
	}
	if cfg.Spanmetrics.Enabled {
		sm := spanmetrics.New(cfg.Spanmetrics, promsink.New(cfg.Prometheus.Sink, nil), reg, log.With("sink", "spanmetrics"))
		if err := add("spanmetrics", recordpb.Signal_SIGNAL_SPANS, cfg.Spanmetrics.Consumer, sm); err != nil {
			return err
		}
	}

	mux := http.NewServeMux()
	if cfg.Pprof {
		server.Pprof(mux)
	}
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /-/healthy", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "OK") })
	// Readiness reads state the consumers keep and never waits on Kafka or
	// a sink (ingester.Consumer.Ready documents the rule).
	mux.HandleFunc("GET /-/ready", func(w http.ResponseWriter, _ *http.Request) {
		if err := dlq.Ready(); err != nil {
			http.Error(w, "not ready: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
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
	{
		ctx, cancel := context.WithCancel(context.Background())
		g.Add(func() error { return dlq.Run(ctx) }, func(error) { cancel() })
	}
	{
		// Creates missing topics (-kafka.topics.create) and checks them once
		// Kafka answers; with -kafka.topics.strict a problem stops the ingester.
		check := kafka.TopicCheck{Kafka: cfg.Kafka, Topics: cfg.Topics, Names: topics, Log: log}
		ctx, cancel := context.WithCancel(context.Background())
		g.Add(func() error { return check.Run(ctx) }, func(error) { cancel() })
	}
	for _, c := range consumers {
		// Cancelling a consumer flushes its in-flight batches and commits
		// before it leaves the group; the sinks and the dead-letter
		// producer close after (deferred above).
		ctx, cancel := context.WithCancel(context.Background())
		g.Add(func() error { return c.Run(ctx) }, func(error) { cancel() })
	}
	err = g.Run()
	log.Info("stopped")
	return err
}
