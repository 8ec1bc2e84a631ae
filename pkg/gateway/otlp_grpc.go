package gateway

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	_ "google.golang.org/grpc/encoding/gzip" // OTLP exporters may compress with gzip
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/tap"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
)

// OTLP's trace, metrics and logs services: a ServiceDesc each, with
// grpcExport of the signal's export function.
const traceService = "opentelemetry.proto.collector.trace.v1.TraceService"

const (
	metricsService = "opentelemetry.proto.collector.metrics.v1.MetricsService"
	logsService    = "opentelemetry.proto.collector.logs.v1.LogsService"
)

// GRPCServer is the OTLP gRPC server: TraceService/Export,
// MetricsService/Export and LogsService/Export, answered like POST
// /v1/traces, /v1/metrics and /v1/logs, and grpc.health.v1
// (SERVING while /-/ready is 200). Requests reach the gateway's own decoder
// as the bytes gRPC received (decompressed), not as objects gRPC built.
func (g *Gateway) GRPCServer() *grpc.Server {
	srv := grpc.NewServer(
		grpc.ForceServerCodecV2(otlpCodec{bodies: g.bodies}),
		grpc.NumStreamWorkers(grpcStreamWorkers),
		grpc.MaxRecvMsgSize(g.cfg.OTLPGRPC.MaxRecvMsgSize),
		grpc.InTapHandle(g.tap),
		grpc.Creds(g.grpcCredentials()), // nil: plain text
	)
	srv.RegisterService(&grpc.ServiceDesc{
		ServiceName: traceService,
		HandlerType: (*any)(nil),
		Methods:     []grpc.MethodDesc{{MethodName: "Export", Handler: g.grpcExport("spans", g.exportSpans)}},
		Metadata:    "opentelemetry/proto/collector/trace/v1/trace_service.proto",
	}, g)
	srv.RegisterService(&grpc.ServiceDesc{
		ServiceName: metricsService,
		HandlerType: (*any)(nil),
		Methods:     []grpc.MethodDesc{{MethodName: "Export", Handler: g.grpcExport("metrics", g.exportMetrics)}},
		Metadata:    "opentelemetry/proto/collector/metrics/v1/metrics_service.proto",
	}, g)
	srv.RegisterService(&grpc.ServiceDesc{
		ServiceName: logsService,
		HandlerType: (*any)(nil),
		Methods:     []grpc.MethodDesc{{MethodName: "Export", Handler: g.grpcExport("logs", g.exportLogs)}},
		Metadata:    "opentelemetry/proto/collector/logs/v1/logs_service.proto",
	}, g)
	hs := health.NewServer()
	healthpb.RegisterHealthServer(srv, hs)
	g.health.Store(hs)
	g.updateHealth()
	return srv
}

// healthLoop keeps the gRPC health service current until ctx ends.
func (g *Gateway) healthLoop(ctx context.Context) {
	tick := time.NewTicker(readyInterval / 4)
	defer tick.Stop()
	for {
		g.updateHealth()
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// updateHealth mirrors readiness in the gRPC health service, for the
// server as a whole ("") and for each OTLP service, so that load balancers
// and Kubernetes gRPC probes see what /-/ready says.
func (g *Gateway) updateHealth() {
	hs := g.health.Load()
	if hs == nil {
		return
	}
	st := healthpb.HealthCheckResponse_SERVING
	if g.readiness() != nil {
		st = healthpb.HealthCheckResponse_NOT_SERVING
	}
	hs.SetServingStatus("", st)
	hs.SetServingStatus(traceService, st)
	hs.SetServingStatus(metricsService, st)
	hs.SetServingStatus(logsService, st)
}

// grpcSignals are the OTLP export methods and their signals.
var grpcSignals = map[string]string{
	"/" + traceService + "/Export":   "spans",
	"/" + metricsService + "/Export": "metrics",
	"/" + logsService + "/Export":    "logs",
}

// admit refuses an OTLP export before gRPC reads its message when the
// in-flight budget could not take a message of the largest size
// (-otlp.grpc.max-recv-msg-size, or the whole budget if that is smaller):
// grpc-go allocates the message before the handler can reserve it, so this
// is where a spent budget must say no. Health checks are always admitted.
func (g *Gateway) admit(ctx context.Context, info *tap.Info) (context.Context, error) {
	signal, ok := grpcSignals[info.FullMethodName]
	if !ok {
		return ctx, nil
	}
	cluster := g.requestCluster(ctx, mdValue(info.Header, strings.ToLower(g.cfg.ClusterHeader)))
	err := g.admitEarly(signal, cluster)
	need := min(int64(g.cfg.OTLPGRPC.MaxRecvMsgSize), g.cfg.MaxInflightBytes)
	if err == nil && g.inflight.Load()+need <= g.cfg.MaxInflightBytes {
		return ctx, nil
	}
	if err == nil {
		err = errOverloaded
	}
	start := time.Now()
	code, reason := g.failed(ctx, signal, err, mdValue(info.Header, "x-scope-orgid"), "")
	g.refused.count(signal, cluster, code, err)
	g.count(signal, code, start)
	return nil, g.grpcStatus(code, reason, g.retryAfter(err))
}

// grpcStreamWorkers is how many goroutines serve gRPC calls one after the
// other. Without workers grpc-go starts a goroutine per call, whose stack
// grows to the decoder's depth every time (runtime.newstack was 4.5% of
// the gateway's CPU under OTLP span load); a worker keeps its grown stack.
// A call finding every worker busy (most of them wait for Kafka's
// acknowledgement) gets its own goroutine as before, so this bounds
// nothing. 64: idle workers cost a few KiB each.
const grpcStreamWorkers = 64

// rawMessage is a request as gRPC received it, for the gateway to decode.
type rawMessage struct{ b []byte }

// otlpCodec hands requests over as rawMessage, in a buffer of bodies that
// the handler returns there, and encodes responses with protobuf. It is
// the codec of the gateway's gRPC server only.
type otlpCodec struct{ bodies *freeList[[]byte] }

func (otlpCodec) Name() string { return "proto" }

func (otlpCodec) Marshal(v any) (mem.BufferSlice, error) {
	m, ok := v.(proto.Message)
	if !ok {
		return nil, errors.New("otlp codec: response is not a protobuf message")
	}
	b, err := proto.Marshal(m)
	if err != nil {
		return nil, err
	}
	return mem.BufferSlice{mem.SliceBuffer(b)}, nil
}

func (c otlpCodec) Unmarshal(data mem.BufferSlice, v any) error {
	switch m := v.(type) {
	case *rawMessage:
		// A copy (gRPC reuses its buffers), into a kept buffer: a fresh
		// one per call cost the allocation, its zeroing and the GC.
		n := data.Len()
		buf, _ := c.bodies.get()
		if cap(buf) < n {
			buf = make([]byte, n)
		}
		m.b = buf[:n]
		data.CopyTo(m.b)
		return nil
	case proto.Message:
		return proto.Unmarshal(data.Materialize(), m)
	}
	return errors.New("otlp codec: unexpected message type")
}

// grpcExport is the handler of an OTLP Export method: the same export
// function, budget, refusals and self-metrics as OTLP/HTTP, with the
// status codes and retry hints of OTLP/gRPC.
func (g *Gateway) grpcExport(signal string, export otlpExport) func(any, context.Context, func(any) error, grpc.UnaryServerInterceptor) (any, error) {
	return func(_ any, ctx context.Context, dec func(any) error, _ grpc.UnaryServerInterceptor) (any, error) {
		start := time.Now()
		var msg rawMessage
		if err := dec(&msg); err != nil {
			return nil, err // already a gRPC status
		}
		md, _ := metadata.FromIncomingContext(ctx)
		resp, err := g.serveGRPC(ctx, signal, md, msg.b, export)
		g.putBody(msg.b) // records never alias the body
		code := http.StatusOK
		if err != nil {
			remote := ""
			if p, ok := peer.FromContext(ctx); ok {
				remote = p.Addr.String()
			}
			var reason string
			code, reason = g.failed(ctx, signal, err, mdValue(md, "x-scope-orgid"), remote)
			g.refused.count(signal, g.requestCluster(ctx, mdValue(md, strings.ToLower(g.cfg.ClusterHeader))), code, err)
			err = g.grpcStatus(code, reason, g.retryAfter(err))
		}
		g.count(signal, code, start)
		return resp, err
	}
}

func (g *Gateway) serveGRPC(ctx context.Context, signal string, md metadata.MD, body []byte, export otlpExport) (proto.Message, error) {
	tenant, err := validTenant(mdValue(md, "x-scope-orgid"))
	if err != nil {
		return nil, err
	}
	cluster, err := g.clusterOrDefault(mdValue(md, strings.ToLower(g.cfg.ClusterHeader)))
	if err != nil {
		return nil, err
	}
	tenant, cluster, override, err := g.applyIdentity(ctx, tenant, mdValue(md, strings.ToLower(g.cfg.ClusterHeader)), cluster)
	if err != nil {
		return nil, err
	}
	// gRPC has allocated the body already (at most -otlp.grpc.max-recv-msg-size);
	// from here on it counts like an HTTP body.
	release, err := g.reserve(int64(len(body)))
	if err != nil {
		return nil, err
	}
	defer release()
	g.metrics.bytes.WithLabelValues(signal).Add(float64(len(body)))
	var releases []func()
	defer func() {
		for _, release := range releases {
			release()
		}
	}()
	return export(ctx, &otlpRequest{body: body, tenant: tenant, cluster: cluster, override: override, reserve: func(n int) error {
		release, err := g.reserve(int64(n))
		if err != nil {
			return err
		}
		releases = append(releases, release)
		return nil
	}})
}

func mdValue(md metadata.MD, key string) string {
	if v := md.Get(key); len(v) > 0 {
		return v[0]
	}
	return ""
}

// grpcCode is the gRPC code of an HTTP status, as the OTLP spec pairs them:
// refused input is INVALID_ARGUMENT (not retried), overload
// RESOURCE_EXHAUSTED or UNAVAILABLE (retried), a request too large
// RESOURCE_EXHAUSTED without retry information (not retried, as gRPC's own
// message size limit answers).
func grpcCode(httpStatus int) codes.Code {
	switch httpStatus {
	case http.StatusOK:
		return codes.OK
	case http.StatusUnauthorized:
		return codes.Unauthenticated
	case http.StatusForbidden:
		return codes.PermissionDenied
	case http.StatusBadRequest, http.StatusUnsupportedMediaType:
		return codes.InvalidArgument
	case http.StatusRequestEntityTooLarge, http.StatusTooManyRequests:
		return codes.ResourceExhausted
	case http.StatusServiceUnavailable:
		return codes.Unavailable
	case http.StatusInternalServerError:
		return codes.Internal
	}
	return codes.Unknown
}

// grpcStatus is the gRPC error for a refusal or failure; the retryable
// ones carry RetryInfo with retry (g.retryAfter), which OTLP exporters
// wait for (and without which they do not retry RESOURCE_EXHAUSTED).
func (g *Gateway) grpcStatus(httpStatus int, reason string, retry time.Duration) error {
	st := status.New(grpcCode(httpStatus), reason)
	if httpStatus == http.StatusTooManyRequests || httpStatus == http.StatusServiceUnavailable {
		if withInfo, err := st.WithDetails(&errdetails.RetryInfo{RetryDelay: durationpb.New(retry)}); err == nil {
			st = withInfo
		}
	}
	return st.Err()
}
