package otlp

import (
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"mime"
	"net/http"
	"net/netip"
	"strconv"
	"strings"

	collogspb "go.opentelemetry.io/proto/otlp/collector/logs/v1"
	colmetricspb "go.opentelemetry.io/proto/otlp/collector/metrics/v1"
	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	resourcepb "go.opentelemetry.io/proto/otlp/resource/v1"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	_ "google.golang.org/grpc/encoding/gzip" // senders may compress with gzip
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
)

// retryLater is a refusal the sender must retry after a while: it keeps
// its data.
type retryLater struct{ reason, msg string }

func (e *retryLater) Error() string { return e.msg }

var (
	errQueueFull = &retryLater{reasonQueueFull, "the agent's OTLP queue is full (otlp.max_queue_bytes): the gateway is slow or away; retry later"}
	errNotReady  = &retryLater{reasonNotReady, "the agent has not yet listed this node's pods (it adds their attributes); retry later"}
)

// badRequest is input the sender must not retry; status is the HTTP one.
type badRequest struct {
	status int
	msg    string
}

func (e *badRequest) Error() string { return e.msg }

// accept takes one decoded export request: drops the items the gateway
// would refuse, adds the Kubernetes attributes, and queues it for the
// relay within the byte budget. It returns how many items it refused and
// why (the partial success), or a *retryLater when it took nothing.
func (r *Relay) accept(sig *signal, req request, peer netip.Addr) (int64, string, error) {
	if !r.podsSynced.Load() {
		r.m.refused.WithLabelValues(sig.name, reasonNotReady).Add(float64(req.items()))
		return 0, "", errNotReady
	}
	bad, why := req.dropInvalid()
	n := req.items()
	if n > 0 {
		req.eachResource(func(res *resourcepb.Resource) {
			outcome, replaced := r.enrich.enrich(res, peer)
			r.m.enrichment.WithLabelValues(sig.name, outcome).Inc()
			if replaced {
				r.m.clusterSet.WithLabelValues(sig.name).Inc()
			}
		})
		body, err := proto.Marshal(req.message())
		if err != nil {
			return 0, "", fmt.Errorf("encode %s request: %w", sig.name, err)
		}
		if !r.budget.reserve(len(body)) {
			r.m.refused.WithLabelValues(sig.name, reasonQueueFull).Add(float64(n + bad))
			return 0, "", errQueueFull
		}
		r.pipes[sig].batcher.add(part{body: body, items: n})
		r.m.received.WithLabelValues(sig.name).Add(float64(n))
	}
	if bad > 0 {
		r.m.refused.WithLabelValues(sig.name, reasonInvalid).Add(float64(bad))
		why = fmt.Sprintf("%d invalid of %d: %s", bad, n+bad, why)
	}
	return int64(bad), why, nil
}

// traceServer is the gRPC TraceService.
type traceServer struct {
	coltracepb.UnimplementedTraceServiceServer
	r *Relay
}

func (s traceServer) Export(ctx context.Context, req *coltracepb.ExportTraceServiceRequest) (*coltracepb.ExportTraceServiceResponse, error) {
	var from netip.Addr
	if p, ok := peer.FromContext(ctx); ok {
		from = addrOf(p.Addr)
	}
	resp, err := s.r.exportGRPC(traces, traceRequest{req}, from)
	if err != nil {
		return nil, err
	}
	return resp.(*coltracepb.ExportTraceServiceResponse), nil
}

// metricsServer and logsServer are the gRPC MetricsService and LogsService.
type metricsServer struct {
	colmetricspb.UnimplementedMetricsServiceServer
	r *Relay
}

func (s metricsServer) Export(ctx context.Context, req *colmetricspb.ExportMetricsServiceRequest) (*colmetricspb.ExportMetricsServiceResponse, error) {
	resp, err := s.r.exportGRPC(metricsSignal, metricsRequest{req}, peerAddr(ctx))
	if err != nil {
		return nil, err
	}
	return resp.(*colmetricspb.ExportMetricsServiceResponse), nil
}

type logsServer struct {
	collogspb.UnimplementedLogsServiceServer
	r *Relay
}

func (s logsServer) Export(ctx context.Context, req *collogspb.ExportLogsServiceRequest) (*collogspb.ExportLogsServiceResponse, error) {
	resp, err := s.r.exportGRPC(logsSignal, logsRequest{req}, peerAddr(ctx))
	if err != nil {
		return nil, err
	}
	return resp.(*collogspb.ExportLogsServiceResponse), nil
}

func peerAddr(ctx context.Context) netip.Addr {
	if p, ok := peer.FromContext(ctx); ok {
		return addrOf(p.Addr)
	}
	return netip.Addr{}
}

func (r *Relay) exportGRPC(sig *signal, req request, from netip.Addr) (proto.Message, error) {
	rejected, msg, err := r.accept(sig, req, from)
	if err != nil {
		st := r.grpcStatus(err)
		r.m.requests.WithLabelValues(sig.name, "grpc", st.Code().String()).Inc()
		return nil, st.Err()
	}
	r.m.requests.WithLabelValues(sig.name, "grpc", codes.OK.String()).Inc()
	return req.response(rejected, msg), nil
}

// grpcStatus answers a refusal as the OTLP spec asks: UNAVAILABLE with a
// RetryInfo for what the sender should retry, which the SDKs honour.
func (r *Relay) grpcStatus(err error) *status.Status {
	var rl *retryLater
	if !errors.As(err, &rl) {
		return status.New(codes.Internal, err.Error())
	}
	st, derr := status.New(codes.Unavailable, rl.msg).WithDetails(&errdetails.RetryInfo{RetryDelay: durationpb.New(r.retryAfter)})
	if derr != nil {
		return status.New(codes.Unavailable, rl.msg)
	}
	return st
}

func (r *Relay) newGRPCServer() *grpc.Server {
	srv := grpc.NewServer(grpc.MaxRecvMsgSize(r.cfg.MaxRequestBytes))
	coltracepb.RegisterTraceServiceServer(srv, traceServer{r: r})
	colmetricspb.RegisterMetricsServiceServer(srv, metricsServer{r: r})
	collogspb.RegisterLogsServiceServer(srv, logsServer{r: r})
	return srv
}

// OTLP/HTTP content types.
const (
	contentProtobuf = "application/x-protobuf"
	contentJSON     = "application/json"
)

func (r *Relay) httpHandler() http.Handler {
	mux := http.NewServeMux()
	for sig := range r.pipes {
		mux.HandleFunc(sig.path, func(w http.ResponseWriter, req *http.Request) {
			code := r.exportHTTP(sig, w, req)
			r.m.requests.WithLabelValues(sig.name, "http", strconv.Itoa(code)).Inc()
		})
	}
	return mux
}

// exportHTTP serves one OTLP/HTTP export and returns the status answered.
func (r *Relay) exportHTTP(sig *signal, w http.ResponseWriter, req *http.Request) int {
	if req.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		http.Error(w, "use POST", http.StatusMethodNotAllowed)
		return http.StatusMethodNotAllowed
	}
	ct, _, _ := mime.ParseMediaType(req.Header.Get("Content-Type"))
	if ct != contentProtobuf && ct != contentJSON {
		return writeStatus(w, contentProtobuf, http.StatusUnsupportedMediaType,
			fmt.Sprintf("Content-Type %q: want %s or %s", req.Header.Get("Content-Type"), contentProtobuf, contentJSON))
	}
	msg, err := r.decodeHTTP(sig, ct, req)
	if err != nil {
		var br *badRequest
		if errors.As(err, &br) {
			return writeStatus(w, ct, br.status, br.msg)
		}
		return writeStatus(w, ct, http.StatusBadRequest, err.Error())
	}
	rejected, why, err := r.accept(sig, msg, remoteAddr(req.RemoteAddr))
	if err != nil {
		var rl *retryLater
		if errors.As(err, &rl) {
			w.Header().Set("Retry-After", strconv.Itoa(int(math.Ceil(r.retryAfter.Seconds()))))
			return writeStatus(w, ct, http.StatusServiceUnavailable, rl.msg)
		}
		return writeStatus(w, ct, http.StatusInternalServerError, err.Error())
	}
	return writeMessage(w, ct, http.StatusOK, msg.response(rejected, why))
}

// decodeHTTP reads and decodes the body, bounded by max_request_bytes
// before and after decompression.
func (r *Relay) decodeHTTP(sig *signal, ct string, req *http.Request) (request, error) {
	limit := int64(r.cfg.MaxRequestBytes)
	tooLarge := &badRequest{http.StatusRequestEntityTooLarge, fmt.Sprintf("request larger than %d bytes (otlp.max_request_bytes)", limit)}
	if req.ContentLength > limit {
		return nil, tooLarge
	}
	var body io.Reader = http.MaxBytesReader(nil, req.Body, limit)
	switch enc := strings.ToLower(req.Header.Get("Content-Encoding")); enc {
	case "", "identity":
	case "gzip":
		zr, err := gzip.NewReader(body)
		if err != nil {
			return nil, fmt.Errorf("gzip body: %w", err)
		}
		body = zr
	default:
		return nil, &badRequest{http.StatusUnsupportedMediaType, fmt.Sprintf("Content-Encoding %q: want gzip or none", enc)}
	}
	data, err := io.ReadAll(io.LimitReader(body, limit+1))
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) || int64(len(data)) > limit {
		return nil, tooLarge
	}
	if err != nil {
		return nil, fmt.Errorf("read body: %w", err)
	}
	return decodeBody(sig, ct, data)
}

// decodeBody decodes an OTLP/HTTP body of content type ct (protobuf or
// OTLP/JSON) with the official protos (and, for JSON, the OpenTelemetry
// Collector's pdata decoder, which knows OTLP/JSON's hex IDs).
func decodeBody(sig *signal, ct string, data []byte) (request, error) {
	if ct == contentJSON {
		pb, err := sig.jsonToProto(data)
		if err != nil {
			return nil, fmt.Errorf("decode OTLP/JSON %s: %w", sig.name, err)
		}
		data = pb
	}
	req := sig.newRequest()
	if err := proto.Unmarshal(data, req.message()); err != nil {
		return nil, fmt.Errorf("decode OTLP %s: %w", sig.name, err)
	}
	return req, nil
}

// writeStatus answers an error as the OTLP spec asks: a google.rpc.Status
// in the request's encoding.
func writeStatus(w http.ResponseWriter, ct string, code int, msg string) int {
	return writeMessage(w, ct, code, status.New(httpToGRPC(code), msg).Proto())
}

func httpToGRPC(code int) codes.Code {
	switch code {
	case http.StatusServiceUnavailable:
		return codes.Unavailable
	case http.StatusRequestEntityTooLarge:
		return codes.ResourceExhausted
	case http.StatusInternalServerError:
		return codes.Internal
	}
	return codes.InvalidArgument
}

func writeMessage(w http.ResponseWriter, ct string, code int, m proto.Message) int {
	var (
		out []byte
		err error
	)
	if ct == contentJSON {
		out, err = protojson.Marshal(m)
	} else {
		out, err = proto.Marshal(m)
	}
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return http.StatusInternalServerError
	}
	w.Header().Set("Content-Type", ct)
	w.WriteHeader(code)
	_, _ = w.Write(out)
	return code
}
