// Command gateway receives metrics (Prometheus remote-write), logs (Loki
// push) and spans (OTLP over HTTP and gRPC) and writes them to Kafka keyed
// by cluster, answering 2xx only after Kafka acknowledged.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/oklog/run"
	"google.golang.org/grpc"

	"github.com/tributary-io/tributary/pkg/auth"
	"github.com/tributary-io/tributary/pkg/flagenv"
	"github.com/tributary-io/tributary/pkg/gateway"
	"github.com/tributary-io/tributary/pkg/kafka"
	"github.com/tributary-io/tributary/pkg/server"
)

type config struct {
	Gateway gateway.Config     `yaml:"gateway"`
	Topics  kafka.TopicsConfig `yaml:"kafka_topics"`
	Log     server.LogConfig   `yaml:"log"`
	GC      server.GCConfig    `yaml:"runtime"`
	Pprof   bool               `yaml:"pprof"`

	hashToken hashTokenConfig
}

// gcOverhead is what the gateway needs besides the bodies in flight: kept
// parsers and buffers (a few MiB, at most 96 MiB), the producer's request
// buffers, metrics and the runtime itself.
const gcOverhead = 128 << 20

func main() {
	if len(os.Args) > 1 && os.Args[1] == "shards" { // gateway shards suggest: the shard table from live load
		os.Exit(shardsMain(os.Args[2:], os.Stdout, os.Stderr))
	}
	if err := runMain(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "gateway:", err)
		os.Exit(1)
	}
}

// parseConfig reads flags, environment and -config.file; flag.ErrHelp
// after -help and -version.
func parseConfig(args []string) (config, error) {
	var cfg config
	fs := flag.NewFlagSet("gateway", flag.ContinueOnError)
	cfg.Gateway.RegisterFlags(fs)
	cfg.Topics.RegisterFlags("kafka.topics.", fs)
	cfg.Log.RegisterFlags(fs)
	// 400: the live heap is a few MiB of parsers and buffers and nearly all
	// allocation is per request; Go's default of 100 cost ~3% of the CPU
	// under load (perf), the memory limit keeps the heap bounded.
	cfg.GC.RegisterFlags(fs, 400, "limits.max-inflight-bytes + 128 MiB")
	fs.BoolVar(&cfg.Pprof, "debug.pprof", false, "Serve Go profiles under /debug/pprof/.")
	cfg.hashToken.RegisterFlags(fs)
	fs.Usage = func() {
		out := fs.Output()
		fmt.Fprintln(out, "Usage: gateway [flags]                   run the gateway")
		fmt.Fprintln(out, "       gateway shards suggest [flags]    print the shard table (-shards.file) for the load in Prometheus (-help for its flags)")
		fmt.Fprintln(out, "\nThe gateway takes remote-write, Loki push and OTLP (metrics, logs, traces) and writes")
		fmt.Fprintln(out, "them to Kafka keyed by cluster, answering 2xx only once Kafka has acknowledged. Flags:")
		fs.PrintDefaults() // flagenv adds how to set them from the environment
	}
	if err := flagenv.Parse(fs, args, "TRIBUTARY_GATEWAY", &cfg); err != nil {
		return cfg, err
	}
	if cfg.hashToken.Enabled {
		return cfg, nil // a command of its own: the gateway's configuration is not needed
	}
	if err := cfg.Gateway.Validate(); err != nil {
		return cfg, err
	}
	if err := cfg.Topics.Validate(); err != nil {
		return cfg, err
	}
	return cfg, cfg.GC.Validate()
}

func runMain(args []string) error {
	cfg, err := parseConfig(args)
	if err == flag.ErrHelp {
		return nil
	}
	if err != nil {
		return err
	}
	if cfg.hashToken.Enabled {
		return cfg.hashToken.Run(os.Stdin, os.Stdout)
	}
	log, err := cfg.Log.Logger("gateway")
	if err != nil {
		return err
	}
	gc := cfg.Gateway
	log.Info("starting", "version", server.Version(), "listen_addr", gc.ListenAddr,
		"otlp_grpc_listen_addr", gc.OTLPGRPC.ListenAddr,
		"kafka_brokers", gc.Kafka.Brokers, "metrics_topic", gc.MetricsTopic, "logs_topic", gc.LogsTopic, "spans_topic", gc.SpansTopic,
		"default_cluster", gc.DefaultCluster, "max_body_bytes", gc.MaxBodyBytes,
		"max_decoded_bytes", gc.RemoteWrite.MaxDecodedBytes, "max_inflight_bytes", gc.MaxInflightBytes,
		"max_record_bytes", gc.RemoteWrite.MaxRecordBytes, "kafka_max_message_bytes", gc.Producer.MaxMessageBytes,
		"kafka_ack_timeout", gc.Producer.AckTimeout, "overload_status", gc.OverloadStatus)
	cfg.GC.Apply(cfg.Gateway.MaxInflightBytes+gcOverhead, log)
	reg := server.Registry()

	// Kafka may start after the gateway: until it answers, writes get 503
	// and /-/ready says why, while /metrics and /-/healthy work.
	// Tokens, certificates and the client CA are read before anything
	// listens: a gateway that cannot check identities does not start.
	authn, err := auth.New(cfg.Gateway.Auth, cfg.Gateway.TLS, reg, log)
	if err != nil {
		return err
	}
	producer := kafka.Connect(cfg.Gateway.Kafka, cfg.Gateway.Producer, "gateway", reg, log)
	gw := gateway.New(cfg.Gateway, producer, reg, reg, log).WithAuth(authn)

	var g run.Group
	server.Signals(&g, log)
	ctx, cancel := context.WithCancel(context.Background())
	g.Add(func() error { return gw.Run(ctx) }, func(error) { cancel() })
	{
		// Creates missing topics (-kafka.topics.create) and checks them once
		// Kafka answers; with -kafka.topics.strict a problem stops the gateway.
		check := kafka.TopicCheck{Kafka: gc.Kafka, Topics: cfg.Topics, Log: log,
			Names: []string{gc.MetricsTopic, gc.LogsTopic, gc.SpansTopic}}
		ctx, cancel := context.WithCancel(context.Background())
		g.Add(func() error { return check.Run(ctx) }, func(error) { cancel() })
	}
	g.Add(func() error { return gw.RunAuth(ctx) }, func(error) { cancel() })
	// The HTTP block stops first and waits for in-flight requests (each
	// waits for its Kafka acknowledgement); only then is the producer closed.
	mux := http.NewServeMux()
	mux.Handle("/", gw.Handler())
	if cfg.Pprof {
		server.Pprof(mux)
	}
	if err := server.HTTPTLS(&g, cfg.Gateway.ListenAddr, mux, gw.TLSConfig(), cfg.Gateway.ShutdownTimeout, log); err != nil {
		producer.Close()
		return err
	}
	// The OTLP gRPC block stops like the HTTP block, before the producer.
	if addr := cfg.Gateway.OTLPGRPC.ListenAddr; addr != "" {
		if err := serveGRPC(&g, addr, gw.GRPCServer(), cfg.Gateway.ShutdownTimeout, log); err != nil {
			producer.Close()
			return err
		}
	}
	err = g.Run()
	if cerr := producer.Close(); cerr != nil {
		log.Warn("producer close", "err", cerr)
	}
	log.Info("stopped")
	return err
}

// serveGRPC adds a block serving srv on addr. On interrupt it stops
// accepting and waits up to grace for in-flight requests (each waiting for
// its Kafka acknowledgement), then cuts the rest: their clients retry.
func serveGRPC(g *run.Group, addr string, srv *grpc.Server, grace time.Duration, log *slog.Logger) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", addr, err)
	}
	g.Add(func() error {
		log.Info("serving OTLP gRPC", "addr", ln.Addr().String())
		return srv.Serve(ln)
	}, func(error) {
		stopped := make(chan struct{})
		go func() { srv.GracefulStop(); close(stopped) }()
		select {
		case <-stopped:
		case <-time.After(grace):
			log.Warn("OTLP gRPC shutdown incomplete: cutting the remaining requests", "grace", grace)
			srv.Stop()
		}
	})
	return nil
}
