package gateway

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"runtime"
	"strconv"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/IBM/sarama"
	"github.com/golang/snappy"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"google.golang.org/grpc/health"

	"github.com/tributary-io/tributary/pkg/auth"
	"github.com/tributary-io/tributary/pkg/kafka"
	"github.com/tributary-io/tributary/pkg/limits"
	"github.com/tributary-io/tributary/pkg/otlp"
	"github.com/tributary-io/tributary/pkg/record"
	"github.com/tributary-io/tributary/pkg/reject"
	"github.com/tributary-io/tributary/pkg/remotewrite"
	"github.com/tributary-io/tributary/pkg/server"
	"github.com/tributary-io/tributary/pkg/shard"
	recordpb "github.com/tributary-io/tributary/proto/record/v1"
)

// Producer writes records and returns when Kafka acknowledged all of them.
type Producer interface {
	// Produce sends each message to its Partition field.
	Produce(ctx context.Context, msgs []*sarama.ProducerMessage) error
	Ready(topic string) error
	// Partitions is topic's partition count, from cached metadata.
	Partitions(topic string) (int32, error)
}

var (
	// errOverloaded: the in-flight memory budget is spent; the client keeps
	// its data and retries. 503 by default: a stock Prometheus retries 503
	// but drops data on 429 unless retry_on_http_429 is set.
	errOverloaded = errors.New("gateway overloaded: too many bytes in flight, retry later")
	// errRateLimited is for limits a client must slow down for (per-cluster
	// rates): 429, as Loki and Mimir answer. Nothing returns it yet.
	errRateLimited = errors.New("rate limited")
)

// Gateway serves the write endpoints.
type Gateway struct {
	cfg      Config
	producer Producer
	log      *slog.Logger
	limited  *server.RateLimitedLogger // refusals and failures, per signal and status
	metrics  *metrics
	gatherer prometheus.Gatherer

	inflight atomic.Int64
	bodies   *freeList[[]byte]
	parsers  *freeList[*remotewrite.Parser]
	spans    *freeList[*otlp.Parser]
	otlp     *otlpSignals     // OTLP metrics and logs (otlp_metrics.go)
	limits   *limits.Limiter  // per-cluster rates and per-request bounds (ratelimit.go)
	reloader *limits.Reloader // of -limits.file; nil without
	shards   *shard.Router    // the partition choice and -shards.file (shards.go)
	startErr error            // a configuration error found in New, returned by Run
	refused  *refusals

	// Readiness, kept by Run and by produce so that /-/ready never waits
	// on Kafka: the last metadata check's error (nil when it passed) and
	// the last produce failure, cleared by a later success.
	checkErr        atomic.Pointer[error]
	health          atomic.Pointer[health.Server] // the gRPC server's, once there is one
	produceErr      atomic.Pointer[error]
	produceFailedAt atomic.Int64

	auth *auth.Authenticator // identities and TLS (identity.go); nil without
}

// New builds a gateway writing through producer.
func New(cfg Config, producer Producer, reg prometheus.Registerer, gatherer prometheus.Gatherer, log *slog.Logger) *Gateway {
	g := &Gateway{
		cfg: cfg, producer: producer, log: log, limited: server.NewRateLimitedLogger(log, logInterval), metrics: newMetrics(reg, cfg.MaxMetricClusters), gatherer: gatherer,
		// Bodies are held until Kafka acknowledges, parsers only while
		// parsing: a few per core are reused, more are allocated and dropped.
		bodies:  newFreeList[[]byte](keptBodies),
		parsers: newFreeList[*remotewrite.Parser](min(2*runtime.GOMAXPROCS(0), maxKeptParsers)),
		spans:   newFreeList[*otlp.Parser](min(2*runtime.GOMAXPROCS(0), maxKeptParsers)),
		otlp:    newOTLPSignals(cfg, reg),
		limits:  limits.NewLimiter(cfg.MaxMetricClusters),
	}
	g.initLimits(reg, log)
	g.initShards(reg, log)
	notChecked := errors.New("kafka not checked yet")
	g.checkErr.Store(&notChecked)
	return g
}

// logInterval: at most one refusal or failure line per signal and status
// code per interval; a bad client sending thousands of requests a second
// leaves one line every 10 s with the count of the others.
const logInterval = 10 * time.Second

// Readiness timing. A check that has not answered within readyTimeout
// counts as failed (a frozen broker holds a metadata request for the read
// timeout, 30 s by default); /-/ready thus turns 503 within about
// readyInterval+readyTimeout. A failed produce keeps the gateway unready
// for at least produceFailureHold, long enough for a load balancer to
// notice, after which a passing check makes it ready again.
const (
	readyInterval      = time.Second
	readyTimeout       = time.Second
	produceFailureHold = 5 * time.Second
)

// Run checks Kafka in the background for /-/ready until ctx ends.
func (g *Gateway) Run(ctx context.Context) error {
	tick := time.NewTicker(readyInterval)
	defer tick.Stop()
	go g.healthLoop(ctx) // check may wait on Kafka; the gRPC health service must not
	if g.startErr != nil {
		return g.startErr
	}
	go g.reloadLimits(ctx)
	go g.shards.Run(ctx)
	shardsChecked := make(chan error, 1)
	shardsStarted := false
	for {
		g.check(ctx)
		if !shardsStarted && *g.checkErr.Load() == nil {
			// Once, when Kafka first answers: the topics' partition
			// counts are known. Aside: it asks Kafka for the topics not
			// yet known, which waits as long as Kafka does, and the
			// checks for /-/ready must go on meanwhile (they stopped,
			// ready 200, when Kafka froze just then).
			shardsStarted = true
			go func() { shardsChecked <- g.checkShards() }()
		}
		select {
		case <-ctx.Done():
			return nil
		case err := <-shardsChecked:
			if err != nil {
				return err
			}
		case <-tick.C:
		}
	}
}

func (g *Gateway) check(ctx context.Context) {
	res := make(chan error, 1)
	go func() { res <- g.producer.Ready(g.cfg.MetricsTopic) }()
	timeout := time.NewTimer(readyTimeout)
	defer timeout.Stop()
	select {
	case err := <-res:
		g.checkErr.Store(&err)
		return
	case <-timeout.C:
		err := fmt.Errorf("kafka did not answer a metadata request within %s", readyTimeout)
		g.checkErr.Store(&err)
	case <-ctx.Done():
		return
	}
	select {
	case err := <-res:
		g.checkErr.Store(&err)
	case <-ctx.Done():
	}
}

// observeProduce records a produce's outcome for readiness.
func (g *Gateway) observeProduce(ctx context.Context, err error) {
	switch {
	case err == nil:
		if g.produceFailedAt.Load() != 0 {
			g.produceFailedAt.Store(0)
		}
	case errors.Is(err, kafka.ErrUnavailable) && ctx.Err() == nil: // not the client hanging up
		g.produceErr.Store(&err)
		g.produceFailedAt.Store(time.Now().UnixNano())
	}
}

// readiness is nil when the gateway can produce. It never blocks.
func (g *Gateway) readiness() error {
	if err := *g.checkErr.Load(); err != nil {
		return err
	}
	if at := g.produceFailedAt.Load(); at != 0 && time.Since(time.Unix(0, at)) < produceFailureHold {
		if p := g.produceErr.Load(); p != nil {
			return fmt.Errorf("recent produce failed: %w", *p)
		}
	}
	return nil
}

// Handler is the gateway's HTTP API.
func (g *Gateway) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("POST /api/v1/write", g.remoteWriteHandler())
	mux.Handle("POST /loki/api/v1/push", g.instrument("logs", g.lokiPush))
	mux.Handle("POST /v1/traces", g.otlpHTTP("spans", g.cfg.Spans.MaxDecodedBytes, g.exportSpans))
	mux.Handle("POST /v1/metrics", g.otlpHTTP("metrics", g.cfg.RemoteWrite.MaxDecodedBytes, g.exportMetrics))
	mux.Handle("POST /v1/logs", g.otlpHTTP("logs", g.cfg.Logs.MaxDecodedBytes, g.exportLogs))
	mux.Handle("GET /metrics", promhttp.HandlerFor(g.gatherer, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /-/healthy", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintln(w, "OK")
	})
	mux.HandleFunc("GET /-/ready", g.ready)
	return g.authenticate(mux)
}

// ready is 200 while Kafka answers metadata requests for the metrics topic
// (checked every second by Run, so probes cannot load the brokers) and no
// produce has failed lately. It answers at once whatever Kafka does.
func (g *Gateway) ready(w http.ResponseWriter, _ *http.Request) {
	if err := g.readiness(); err != nil {
		http.Error(w, "not ready: "+err.Error(), http.StatusServiceUnavailable)
		return
	}
	fmt.Fprintln(w, "ready")
}

// instrument runs a write handler and maps its error to the response, in
// this one place: 4xx for input the client must not retry, 429/503 with
// Retry-After when the client should keep its data and retry.
func (g *Gateway) instrument(signal string, h func(*http.Request) (int, error)) http.Handler {
	return g.instrumentAs(signal, func(w http.ResponseWriter, r *http.Request) (int, error) {
		code, err := h(r)
		if err == nil {
			w.WriteHeader(code)
		}
		return code, err
	}, func(w http.ResponseWriter, _ *http.Request, code int, reason string) {
		http.Error(w, reason, code)
	})
}

// instrumentAs is instrument for a handler that writes its own successful
// response, and writes refusals and failures with writeError.
func (g *Gateway) instrumentAs(signal string, h func(http.ResponseWriter, *http.Request) (int, error), writeError func(w http.ResponseWriter, r *http.Request, code int, reason string)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		code, err := h(w, r)
		if err != nil {
			var reason string
			code, reason = g.failed(r.Context(), signal, err, r.Header.Get("X-Scope-OrgID"), r.RemoteAddr)
			g.refused.count(signal, g.requestCluster(r.Context(), r.Header.Get(g.cfg.ClusterHeader)), code, err)
			if code == http.StatusTooManyRequests || code == http.StatusServiceUnavailable {
				w.Header().Set("Retry-After", strconv.Itoa(int(g.retryAfter(err).Seconds()+0.5)))
			}
			writeError(w, r, code, reason)
		}
		g.count(signal, code, start)
	})
}

// failed maps a write's error to its status code and reason, and logs it
// (rate limited).
func (g *Gateway) failed(ctx context.Context, signal string, err error, tenant, remote string) (int, string) {
	code, reason := g.statusOf(err)
	class := signal + " " + strconv.Itoa(code)
	if code >= 500 {
		g.limited.Log(ctx, slog.LevelWarn, class, "write failed", "signal", signal, "code", code, "err", err)
	} else {
		g.limited.Log(ctx, slog.LevelInfo, class, "write refused", "signal", signal, "code", code, "tenant", tenant, "remote", remote, "err", err)
	}
	return code, reason
}

// count records a write request's outcome in the self-metrics.
func (g *Gateway) count(signal string, code int, start time.Time) {
	g.metrics.requests.WithLabelValues(signal, strconv.Itoa(code)).Inc()
	g.metrics.duration.WithLabelValues(signal).Observe(time.Since(start).Seconds())
}

func (g *Gateway) statusOf(err error) (int, string) {
	if status, ok := reject.Status(err); ok {
		return status, err.Error()
	}
	var tooBig *http.MaxBytesError
	switch {
	case errors.As(err, &tooBig):
		return http.StatusRequestEntityTooLarge, fmt.Sprintf("body larger than %d bytes", tooBig.Limit)
	case errors.Is(err, io.ErrUnexpectedEOF):
		// The client sent less than its Content-Length and closed its side:
		// its request, not the gateway, is at fault.
		return http.StatusBadRequest, "body shorter than its Content-Length"
	case errors.Is(err, errOverloaded):
		return g.cfg.OverloadStatus, err.Error()
	case errors.Is(err, errRateLimited):
		return http.StatusTooManyRequests, err.Error()
	case errors.Is(err, kafka.ErrTooLarge):
		return http.StatusRequestEntityTooLarge, err.Error()
	case errors.Is(err, kafka.ErrUnavailable):
		return http.StatusServiceUnavailable, "kafka unavailable, retry later"
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return http.StatusServiceUnavailable, "request cancelled: " + err.Error()
	}
	return http.StatusInternalServerError, "internal error"
}

// reserve takes n bytes of the in-flight budget; release gives them back.
// A request that needs more than the whole budget could never be served:
// 413, not a 503 its client would retry without end.
func (g *Gateway) reserve(n int64) (release func(), err error) {
	if n > g.cfg.MaxInflightBytes {
		return nil, reject.TooLarge("request needs %d bytes of memory, more than the whole in-flight budget of %d (-limits.max-inflight-bytes)", n, g.cfg.MaxInflightBytes)
	}
	if g.inflight.Add(n) > g.cfg.MaxInflightBytes {
		g.inflight.Add(-n)
		return nil, errOverloaded
	}
	g.metrics.inflight.Set(float64(g.inflight.Load()))
	return func() {
		g.metrics.inflight.Set(float64(g.inflight.Add(-n)))
	}, nil
}

// readBody reads the request body into a pooled buffer. The caller gives
// the buffer back with putBody, unless the producer may still hold it.
func (g *Gateway) readBody(r *http.Request) ([]byte, error) {
	limit := int64(g.cfg.MaxBodyBytes)
	if r.ContentLength > limit {
		return nil, reject.TooLarge("body of %d bytes exceeds the limit of %d", r.ContentLength, limit)
	}
	buf, _ := g.bodies.get()
	if r.ContentLength > 0 && cap(buf) < int(r.ContentLength) {
		buf = make([]byte, 0, r.ContentLength)
	}
	body := http.MaxBytesReader(nil, r.Body, limit)
	for {
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
		n, err := body.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if err == io.EOF {
			return buf, nil
		}
		if err != nil {
			return nil, fmt.Errorf("read body: %w", err)
		}
	}
}

// Buffers kept for reuse, outside the in-flight budget: at most keptBodies
// bodies of up to maxKeptBody bytes (32 MiB) and maxKeptParsers parsers
// (each keeps up to 8 MiB: remotewrite's maxKeptBuffer twice).
const (
	keptBodies     = 32
	maxKeptBody    = 1 << 20
	maxKeptParsers = 8
)

func (g *Gateway) putBody(b []byte) {
	if cap(b) > maxKeptBody {
		return
	}
	g.bodies.put(b[:0])
}

// clusterDefault is the cluster for data without a cluster label.
func (g *Gateway) clusterDefault(r *http.Request) (string, error) {
	return g.clusterOrDefault(r.Header.Get(g.cfg.ClusterHeader))
}

// clusterOrDefault is clusterDefault for the cluster header's value v
// (gRPC metadata carries it under the same name).
func (g *Gateway) clusterOrDefault(v string) (string, error) {
	if v != "" {
		if !utf8.ValidString(v) || len(v) > 256 {
			return "", reject.BadRequest("invalid %s header", g.cfg.ClusterHeader)
		}
		return v, nil
	}
	return g.cfg.DefaultCluster, nil
}

// tenantOf reads X-Scope-OrgID with the rules Loki and Mimir apply.
func tenantOf(r *http.Request) (string, error) {
	return validTenant(r.Header.Get("X-Scope-OrgID"))
}

// validTenant checks an X-Scope-OrgID value.
func validTenant(t string) (string, error) {
	if len(t) > 150 {
		return "", reject.BadRequest("X-Scope-OrgID longer than 150 bytes")
	}
	for i := 0; i < len(t); i++ {
		c := t[i]
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
			c == '!' || c == '-' || c == '_' || c == '.' || c == '*' || c == '\'' || c == '(' || c == ')'
		if !ok {
			return "", reject.BadRequest("X-Scope-OrgID contains %q", c)
		}
	}
	if t == "." || t == ".." {
		return "", reject.BadRequest("X-Scope-OrgID may not be %q", t)
	}
	return t, nil
}

// request is a write request's identity and body, holding its share of the
// in-flight budget until release.
type request struct {
	body    []byte
	tenant  string
	cluster string // for data without a cluster label; "" refuses such data
	release func()
	// override: cluster replaces every other cluster the data claims (the
	// sender's identity, -auth.cluster-mismatch=overwrite).
	override bool
}

// receive reads the tenant, the default cluster and the body of r. The body
// and, when snappy's header declares it (bounded by maxDecoded), its
// decoded copy count against the in-flight budget before they are allocated.
func (g *Gateway) receive(r *http.Request, signal string, maxDecoded int, snappyBody bool) (*request, error) {
	tenant, err := tenantOf(r)
	if err != nil {
		return nil, err
	}
	cluster, err := g.clusterDefault(r)
	if err != nil {
		return nil, err
	}
	tenant, cluster, override, err := g.applyIdentity(r.Context(), tenant, r.Header.Get(g.cfg.ClusterHeader), cluster)
	if err != nil {
		return nil, err
	}
	if err := g.admitEarly(signal, cluster); err != nil {
		return nil, err
	}
	bodyBudget := int64(g.cfg.MaxBodyBytes)
	if r.ContentLength > 0 && r.ContentLength < bodyBudget {
		bodyBudget = r.ContentLength
	}
	releaseBody, err := g.reserve(bodyBudget)
	if err != nil {
		return nil, err
	}
	body, err := g.readBody(r)
	if err != nil {
		releaseBody()
		return nil, err
	}
	g.metrics.bytes.WithLabelValues(signal).Add(float64(len(body)))
	req := &request{body: body, tenant: tenant, cluster: cluster, release: releaseBody, override: override}
	if n := decodedLen(body); snappyBody && n > 0 && n <= maxDecoded {
		releaseDecoded, err := g.reserve(int64(n))
		if err != nil {
			releaseBody()
			g.putBody(body)
			return nil, err
		}
		req.release = func() { releaseBody(); releaseDecoded() }
	}
	return req, nil
}

// outRecord is one record to produce.
type outRecord struct {
	cluster   string
	shard     int // which of the cluster's partitions (pkg/shard); 0: its base partition
	value     []byte
	items     int
	units     int // series, streams or spans: what per-request bounds count
	lineBytes int // logs: decoded line bytes, what the log rate counts
}

// produce writes recs to topic, each to the partition rt gives its cluster
// and shard (the route the records were cut by), and waits for all
// acknowledgements.
func (g *Gateway) produce(ctx context.Context, rt route, signal recordpb.Signal, topic, contentType, tenant string, recs []outRecord) error {
	if err := g.admitWrite(ctx, signal, recs); err != nil {
		return err
	}
	if rt.err != nil {
		err := fmt.Errorf("%w: %v", kafka.ErrUnavailable, rt.err)
		g.observeProduce(ctx, err)
		return err
	}
	now := time.Now().UnixNano()
	msgs := make([]*sarama.ProducerMessage, len(recs))
	for i, rec := range recs {
		env := &recordpb.Envelope{
			SchemaVersion:      record.SchemaVersion,
			Signal:             signal,
			Cluster:            rec.cluster,
			Tenant:             tenant,
			ReceivedAtUnixNano: now,
			ContentType:        contentType,
			ContentEncoding:    record.EncodingSnappy,
			Items:              uint64(rec.items),
		}
		msgs[i] = &sarama.ProducerMessage{
			Topic:     topic,
			Key:       sarama.StringEncoder(rec.cluster),
			Partition: rt.Partition(rec.cluster, rec.shard),
			Value:     sarama.ByteEncoder(rec.value),
			Headers:   record.Headers(env),
		}
	}
	err := g.producer.Produce(ctx, msgs)
	g.observeProduce(ctx, err)
	if err != nil {
		g.refundRate(signal, recs)
	}
	return err
}

// decodedLen is snappy's declared decoded length, or -1. Only a hint for
// the memory budget: the decoders check it again before allocating.
func decodedLen(body []byte) int {
	n, err := snappy.DecodedLen(body)
	if err != nil {
		return -1
	}
	return n
}
