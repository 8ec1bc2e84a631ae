package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"os/signal"
	"syscall"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"

	"github.com/tributary-io/tributary/pkg/flagenv"
)

// tracegen is a small instrumented "shop" of three services (frontend →
// cart → its database) built with the OpenTelemetry Go SDK: each trace is
// a request through all three, a few percent of them failing. It is what
// `make demo` points at the agent's OTLP port, so traces show up next to
// the metrics and logs.
type tracegenConfig struct {
	endpoint string
	protocol string
	rate     float64
	duration time.Duration
	prefix   string
}

func runTracegen(args []string, stdout io.Writer) error {
	var c tracegenConfig
	fs := flag.NewFlagSet("loadgen tracegen", flag.ContinueOnError)
	fs.StringVar(&c.endpoint, "endpoint", "127.0.0.1:4317", "OTLP endpoint (host:port): an agent's or the gateway's OTLP receiver.")
	fs.StringVar(&c.protocol, "protocol", "grpc", "OTLP protocol: grpc (port 4317) or http (protobuf, port 4318).")
	fs.Float64Var(&c.rate, "rate", 2, "Traces per second (each has 4 spans over 3 services).")
	fs.DurationVar(&c.duration, "duration", 0, "How long to send; 0: until interrupted.")
	fs.StringVar(&c.prefix, "service-prefix", "demo", "Prefix of the service names: <prefix>-frontend, <prefix>-cart, <prefix>-postgres.")
	if err := fs.Parse(args); err != nil {
		if err == flag.ErrHelp {
			return nil
		}
		return err
	}
	if err := flagenv.FromEnv(fs, "TRIBUTARY_LOADGEN_TRACEGEN"); err != nil {
		return err
	}
	if c.rate <= 0 {
		return fmt.Errorf("-rate must be positive, got %v", c.rate)
	}
	if c.protocol != "grpc" && c.protocol != "http" {
		return fmt.Errorf("-protocol %q: want grpc or http", c.protocol)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if c.duration > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.duration)
		defer cancel()
	}

	// One tracer provider per service: a service is a resource.
	var providers []*sdktrace.TracerProvider
	tracer := func(service string) (trace.Tracer, error) {
		var (
			exp sdktrace.SpanExporter
			err error
		)
		if c.protocol == "grpc" {
			exp, err = otlptracegrpc.New(ctx, otlptracegrpc.WithEndpoint(c.endpoint), otlptracegrpc.WithInsecure())
		} else {
			exp, err = otlptracehttp.New(ctx, otlptracehttp.WithEndpoint(c.endpoint), otlptracehttp.WithInsecure())
		}
		if err != nil {
			return nil, fmt.Errorf("OTLP exporter to %s: %w", c.endpoint, err)
		}
		tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp, sdktrace.WithBatchTimeout(time.Second)),
			sdktrace.WithResource(resource.NewSchemaless(
				attribute.String("service.name", service), attribute.String("service.version", "1.4.2"),
				attribute.String("deployment.environment.name", "demo"))))
		providers = append(providers, tp)
		return tp.Tracer("tributary-tracegen"), nil
	}
	frontend, err := tracer(c.prefix + "-frontend")
	if err != nil {
		return err
	}
	cart, err := tracer(c.prefix + "-cart")
	if err != nil {
		return err
	}
	db, err := tracer(c.prefix + "-postgres")
	if err != nil {
		return err
	}

	tick := time.NewTicker(time.Duration(float64(time.Second) / c.rate))
	defer tick.Stop()
	sent := 0
	for done := false; !done; {
		select {
		case <-ctx.Done():
			done = true
		case <-tick.C:
			id := shopRequest(context.Background(), frontend, cart, db, sent)
			sent++
			if sent == 1 || sent%100 == 0 {
				fmt.Fprintf(stdout, "tracegen: %d traces sent to %s (%s), last trace ID %s\n", sent, c.endpoint, c.protocol, id)
			}
		}
	}
	// Flush what the batchers hold.
	flushCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, tp := range providers {
		if err := tp.Shutdown(flushCtx); err != nil {
			return fmt.Errorf("flush spans: %w", err)
		}
	}
	fmt.Fprintf(stdout, "tracegen: %d traces sent\n", sent)
	return nil
}

// shopRequest records one checkout request: frontend (server) → cart
// (client and server) → postgres (client); about one in twenty fails in
// the cart. It returns the trace ID.
func shopRequest(ctx context.Context, frontend, cart, db trace.Tracer, n int) string {
	start := time.Now()
	ms := func(d int) time.Time { return start.Add(time.Duration(d) * time.Millisecond) }
	fail := rand.IntN(20) == 0
	dbTime := 2 + rand.IntN(15)

	ctx, root := frontend.Start(ctx, "GET /checkout", trace.WithSpanKind(trace.SpanKindServer), trace.WithTimestamp(start),
		trace.WithAttributes(attribute.String("http.request.method", "GET"), attribute.String("http.route", "/checkout"),
			attribute.String("url.path", "/checkout"), attribute.Int("user.session", n%50)))
	cctx, call := frontend.Start(ctx, "cart.GetCart", trace.WithSpanKind(trace.SpanKindClient), trace.WithTimestamp(ms(1)),
		trace.WithAttributes(attribute.String("rpc.system", "grpc"), attribute.String("rpc.service", "cart.Cart"), attribute.String("rpc.method", "GetCart")))
	sctx, serve := cart.Start(cctx, "cart.Cart/GetCart", trace.WithSpanKind(trace.SpanKindServer), trace.WithTimestamp(ms(2)),
		trace.WithAttributes(attribute.String("rpc.system", "grpc"), attribute.String("rpc.service", "cart.Cart"), attribute.String("rpc.method", "GetCart")))
	_, query := db.Start(sctx, "SELECT carts", trace.WithSpanKind(trace.SpanKindClient), trace.WithTimestamp(ms(3)),
		trace.WithAttributes(attribute.String("db.system.name", "postgresql"), attribute.String("db.query.text", "SELECT * FROM carts WHERE session = $1")))
	query.End(trace.WithTimestamp(ms(3 + dbTime)))
	if fail {
		serve.AddEvent("exception", trace.WithAttributes(attribute.String("exception.type", "CartUnavailable"), attribute.String("exception.message", "cart store timed out")))
		serve.SetStatus(codes.Error, "cart store timed out")
		call.SetStatus(codes.Error, "rpc error: code = Unavailable")
		root.SetAttributes(attribute.Int("http.response.status_code", 503))
		root.SetStatus(codes.Error, "")
	} else {
		root.SetAttributes(attribute.Int("http.response.status_code", 200))
	}
	serve.End(trace.WithTimestamp(ms(4 + dbTime)))
	call.End(trace.WithTimestamp(ms(5 + dbTime)))
	root.End(trace.WithTimestamp(ms(7 + dbTime)))
	return root.SpanContext().TraceID().String()
}
