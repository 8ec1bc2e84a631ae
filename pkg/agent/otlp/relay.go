// Package otlp is the agent's OTLP relay: an OTLP receiver on the node
// (gRPC and HTTP; traces, metrics and logs) that adds the Kubernetes attributes of the
// sending pod, batches, and relays to the gateway's OTLP/HTTP endpoint with
// retry, holding at most max_queue_bytes: beyond that the senders are told
// to retry later and keep their data.
//
// What is promised: a sender's request answered with success is in the
// agent's memory and is sent until the gateway acknowledges it (it is
// then in Kafka), refuses it (4xx: dropped and counted), or the shutdown
// deadline passes (dropped and counted). Nothing is written to disk: an
// agent that crashes loses what it held.
package otlp

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"

	"github.com/tributary-io/tributary/pkg/agent/gatewayhttp"
	"github.com/tributary-io/tributary/pkg/agent/metrics"
	"github.com/tributary-io/tributary/pkg/k8s"
	"github.com/tributary-io/tributary/pkg/server"
)

// Params are the relay's dependencies.
type Params struct {
	Config  Config
	Cluster string
	Node    string
	Gateway metrics.GatewayConfig
	// Pods finds the sending pod; nil without Kubernetes (then only
	// k8s.cluster.name is added).
	Pods *k8s.Pods
	// FlushDeadline bounds the flush to the gateway at shutdown.
	FlushDeadline time.Duration
	Registerer    prometheus.Registerer
	Logger        *slog.Logger
}

// DefaultFlushDeadline applies when Params.FlushDeadline is 0.
const DefaultFlushDeadline = 30 * time.Second

// Relay is the OTLP receiver and relay, a component of the agent.
type Relay struct {
	cfg        Config
	cluster    string
	gwURL      string
	http       *http.Client
	log        *slog.Logger
	warn       *server.RateLimitedLogger
	m          *selfMetrics
	enrich     *enricher
	pods       *k8s.Pods
	budget     *budget
	pipes      map[*signal]*pipe
	retryAfter time.Duration
	flushAfter time.Duration

	grpcLn, httpLn net.Listener
	podsSynced     atomic.Bool
	running        atomic.Bool
}

// pipe is one signal's way to the gateway.
type pipe struct {
	sig     *signal
	url     string
	batcher *batcher

	mu        sync.Mutex
	lastErr   string
	lastErrAt time.Time
	lastOK    time.Time
}

// New builds the relay and binds its listeners (so a port in use fails the
// agent's start, not a later goroutine). cfg must have been validated.
func New(p Params) (*Relay, error) {
	if err := p.Gateway.Validate(); err != nil {
		return nil, fmt.Errorf("gateway: %w", err)
	}
	hc, err := gatewayhttp.Client(p.Gateway)
	if err != nil {
		return nil, err
	}
	log := p.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With("component", "otlp")
	m := newSelfMetrics(p.Registerer)
	m.queueMax.Set(float64(p.Config.MaxQueueBytes))
	r := &Relay{
		cfg:        p.Config,
		cluster:    p.Cluster,
		http:       hc,
		log:        log,
		warn:       server.NewRateLimitedLogger(log, 10*time.Second),
		m:          m,
		enrich:     &enricher{cluster: p.Cluster},
		budget:     &budget{max: p.Config.MaxQueueBytes, onChange: func(n int) { m.queueBytes.Set(float64(n)) }},
		pipes:      map[*signal]*pipe{},
		retryAfter: time.Duration(p.Config.RetryAfter),
		flushAfter: p.FlushDeadline,
	}
	if r.flushAfter <= 0 {
		r.flushAfter = DefaultFlushDeadline
	}
	if p.Pods != nil {
		// Not stored as a nil *k8s.Pods: the interface would not be nil.
		r.enrich.pods, r.pods = p.Pods, p.Pods
	} else {
		r.podsSynced.Store(true)
	}
	for _, sig := range []*signal{traces, metricsSignal, logsSignal} {
		r.pipes[sig] = &pipe{
			sig:     sig,
			url:     strings.TrimSuffix(p.Gateway.URL, "/") + sig.path,
			batcher: newBatcher(p.Config.Batch.MaxItems, p.Config.Batch.MaxBytes, time.Duration(p.Config.Batch.Timeout)),
		}
	}
	if a := p.Config.GRPCListenAddr; a != Off {
		if r.grpcLn, err = net.Listen("tcp", a); err != nil {
			return nil, fmt.Errorf("otlp.grpc_listen_addr: %w", err)
		}
	}
	if a := p.Config.HTTPListenAddr; a != Off {
		if r.httpLn, err = net.Listen("tcp", a); err != nil {
			if r.grpcLn != nil {
				r.grpcLn.Close()
			}
			return nil, fmt.Errorf("otlp.http_listen_addr: %w", err)
		}
	}
	return r, nil
}

// GRPCAddr and HTTPAddr are the bound listen addresses ("" when off).
func (r *Relay) GRPCAddr() string { return addrString(r.grpcLn) }
func (r *Relay) HTTPAddr() string { return addrString(r.httpLn) }

func addrString(ln net.Listener) string {
	if ln == nil {
		return ""
	}
	return ln.Addr().String()
}

// Ready reports whether the receivers serve and, with Kubernetes, the
// node's pods are listed (before that senders are asked to retry).
func (r *Relay) Ready() bool { return r.running.Load() && r.podsSynced.Load() }

// Run serves the receivers and relays until ctx ends. Then it stops
// receiving first, so that everything it answered with success is in the
// queue, and sends what is queued for up to the flush deadline; what is
// left after it is dropped and counted (reason shutdown).
func (r *Relay) Run(ctx context.Context) error {
	var (
		wg      sync.WaitGroup
		srvErr  = make(chan error, 2)
		grpcSrv *grpc.Server
		httpSrv *http.Server
	)
	if r.grpcLn != nil {
		grpcSrv = r.newGRPCServer()
		wg.Go(func() {
			if err := grpcSrv.Serve(r.grpcLn); err != nil && !errors.Is(err, grpc.ErrServerStopped) {
				srvErr <- fmt.Errorf("otlp gRPC server: %w", err)
			}
		})
		r.log.Info("serving OTLP gRPC", "addr", r.GRPCAddr())
	}
	if r.httpLn != nil {
		httpSrv = &http.Server{Handler: r.httpHandler(), ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute}
		wg.Go(func() {
			if err := httpSrv.Serve(r.httpLn); err != nil && !errors.Is(err, http.ErrServerClosed) {
				srvErr <- fmt.Errorf("otlp HTTP server: %w", err)
			}
		})
		r.log.Info("serving OTLP HTTP", "addr", r.HTTPAddr())
	}
	if r.pods != nil {
		wg.Go(func() {
			if r.pods.WaitSynced(ctx) {
				r.podsSynced.Store(true)
			}
		})
	}
	r.running.Store(true)

	// The senders outlive ctx: they flush after it ends.
	sendCtx, cancelSend := context.WithCancel(context.Background())
	defer cancelSend()
	var senders sync.WaitGroup
	for _, p := range r.pipes {
		for range r.cfg.MaxConcurrentSends {
			senders.Go(func() {
				for {
					b, ok := p.batcher.take(sendCtx)
					if !ok {
						return
					}
					r.send(sendCtx, p, b)
				}
			})
		}
	}

	var runErr error
	select {
	case <-ctx.Done():
	case runErr = <-srvErr:
	}
	r.running.Store(false)
	start := time.Now()
	deadline := time.AfterFunc(r.flushAfter, cancelSend)
	defer deadline.Stop()
	r.stopReceivers(grpcSrv, httpSrv)
	wg.Wait()
	for _, p := range r.pipes {
		p.batcher.flush()
	}
	senders.Wait()
	lost := 0
	for _, p := range r.pipes {
		items, bytes := p.batcher.drain()
		r.budget.release(bytes)
		if items > 0 {
			r.m.dropped.WithLabelValues(p.sig.name, reasonShutdown).Add(float64(items))
			lost += items
		}
	}
	if lost > 0 {
		r.log.Warn("shutdown deadline passed before the gateway took everything; dropped the rest", "items", lost, "deadline", r.flushAfter)
	} else {
		r.log.Info("flushed to the gateway", "took", time.Since(start).Round(time.Millisecond))
	}
	return runErr
}

// stopReceivers stops accepting and waits for the requests being served
// (bounded: a sender stuck mid-request is cut off).
func (r *Relay) stopReceivers(grpcSrv *grpc.Server, httpSrv *http.Server) {
	const grace = 5 * time.Second
	var wg sync.WaitGroup
	if grpcSrv != nil {
		wg.Go(func() {
			done := make(chan struct{})
			go func() { grpcSrv.GracefulStop(); close(done) }()
			select {
			case <-done:
			case <-time.After(grace):
				grpcSrv.Stop()
			}
		})
	}
	if httpSrv != nil {
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(context.Background(), grace)
			defer cancel()
			if err := httpSrv.Shutdown(ctx); err != nil {
				httpSrv.Close()
			}
		})
	}
	wg.Wait()
}
