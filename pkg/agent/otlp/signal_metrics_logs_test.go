package otlp

import (
	"compress/gzip"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlplog/otlploggrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlplog/otlploghttp"
	"go.opentelemetry.io/otel/exporters/otlp/otlpmetric/otlpmetricgrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlpmetric/otlpmetrichttp"
	otellog "go.opentelemetry.io/otel/log"
	sdklog "go.opentelemetry.io/otel/sdk/log"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	"go.opentelemetry.io/otel/sdk/resource"
	collogspb "go.opentelemetry.io/proto/otlp/collector/logs/v1"
	colmetricspb "go.opentelemetry.io/proto/otlp/collector/metrics/v1"
	resourcepb "go.opentelemetry.io/proto/otlp/resource/v1"
	"google.golang.org/protobuf/proto"

	"github.com/tributary-io/tributary/pkg/k8s"
)

// signalGateway records the resources of what reaches /v1/metrics and
// /v1/logs, with what each resource holds (data points, log bodies).
type signalGateway struct {
	*httptest.Server
	mu      sync.Mutex
	metrics map[string]map[string]string // metric name -> resource
	logs    map[string]map[string]string // log body -> resource
}

func resourceMap(r *resourcepb.Resource) map[string]string {
	m := map[string]string{}
	for _, kv := range r.GetAttributes() {
		m[kv.Key] = kv.GetValue().GetStringValue()
	}
	return m
}

func startSignalGateway(t *testing.T) *signalGateway {
	g := &signalGateway{metrics: map[string]map[string]string{}, logs: map[string]map[string]string{}}
	g.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var body io.Reader = r.Body
		if r.Header.Get("Content-Encoding") == "gzip" {
			zr, err := gzip.NewReader(r.Body)
			require.NoError(t, err)
			body = zr
		}
		raw, err := io.ReadAll(body)
		require.NoError(t, err)
		g.mu.Lock()
		defer g.mu.Unlock()
		var resp proto.Message
		switch r.URL.Path {
		case "/v1/metrics":
			var req colmetricspb.ExportMetricsServiceRequest
			require.NoError(t, proto.Unmarshal(raw, &req))
			for _, rm := range req.ResourceMetrics {
				for _, sm := range rm.ScopeMetrics {
					for _, m := range sm.Metrics {
						g.metrics[m.Name] = resourceMap(rm.Resource)
					}
				}
			}
			resp = &colmetricspb.ExportMetricsServiceResponse{}
		case "/v1/logs":
			var req collogspb.ExportLogsServiceRequest
			require.NoError(t, proto.Unmarshal(raw, &req))
			for _, rl := range req.ResourceLogs {
				for _, sl := range rl.ScopeLogs {
					for _, l := range sl.LogRecords {
						g.logs[l.Body.GetStringValue()] = resourceMap(rl.Resource)
					}
				}
			}
			resp = &collogspb.ExportLogsServiceResponse{}
		default:
			http.NotFound(w, r)
			return
		}
		b, _ := proto.Marshal(resp)
		w.Header().Set("Content-Type", contentProtobuf)
		w.Write(b)
	}))
	t.Cleanup(g.Close)
	return g
}

func (g *signalGateway) counts() (int, int) {
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.metrics), len(g.logs)
}

// The SDK's OTLP metric and log exporters, gRPC and HTTP, send through
// the relay: every metric and log record reaches the gateway's
// /v1/metrics and /v1/logs with the agent's cluster (replacing the
// sender's) and the sending pod's attributes.
func TestRelayMetricsAndLogsFromSDK(t *testing.T) {
	gw := startSignalGateway(t)
	r := startRelay(t, gw.URL, Config{Batch: BatchConfig{Timeout: modelMillis(50)}}, fakePods{[]k8s.PodInfo{testPod}}, 0)
	ctx := context.Background()
	res := resource.NewSchemaless(attribute.String("service.name", "cart"), attribute.String("k8s.cluster.name", "someone-else"))

	metric := func(name string) *metricdata.ResourceMetrics {
		return &metricdata.ResourceMetrics{Resource: res, ScopeMetrics: []metricdata.ScopeMetrics{{Metrics: []metricdata.Metrics{{
			Name: name, Data: metricdata.Gauge[int64]{DataPoints: []metricdata.DataPoint[int64]{{Time: time.Now(), Value: 1}}},
		}}}}}
	}
	mg, err := otlpmetricgrpc.New(ctx, otlpmetricgrpc.WithEndpoint(r.GRPCAddr()), otlpmetricgrpc.WithInsecure())
	require.NoError(t, err)
	require.NoError(t, mg.Export(ctx, metric("grpc.metric")))
	mh, err := otlpmetrichttp.New(ctx, otlpmetrichttp.WithEndpoint(r.HTTPAddr()), otlpmetrichttp.WithInsecure())
	require.NoError(t, err)
	require.NoError(t, mh.Export(ctx, metric("http.metric")))

	emit := func(exp sdklog.Exporter, body string) {
		lp := sdklog.NewLoggerProvider(sdklog.WithProcessor(sdklog.NewSimpleProcessor(exp)), sdklog.WithResource(res))
		var rec otellog.Record
		rec.SetTimestamp(time.Now())
		rec.SetBody(attribute.StringValue(body))
		lp.Logger("relay-test").Emit(ctx, rec)
		require.NoError(t, lp.Shutdown(ctx))
	}
	lg, err := otlploggrpc.New(ctx, otlploggrpc.WithEndpoint(r.GRPCAddr()), otlploggrpc.WithInsecure())
	require.NoError(t, err)
	emit(lg, "grpc line")
	lh, err := otlploghttp.New(ctx, otlploghttp.WithEndpoint(r.HTTPAddr()), otlploghttp.WithInsecure())
	require.NoError(t, err)
	emit(lh, "http line")

	require.Eventually(t, func() bool { m, l := gw.counts(); return m == 2 && l == 2 }, 10*time.Second, 20*time.Millisecond)
	want := map[string]string{
		"service.name": "cart", "k8s.cluster.name": "agentclust", "k8s.pod.name": "cart-7d9f",
		"k8s.namespace.name": "shop", "k8s.pod.uid": "uid-cart", "k8s.node.name": "node-a",
	}
	for _, n := range []string{"grpc.metric", "http.metric"} {
		require.Equal(t, want, gw.metrics[n], n)
	}
	for _, n := range []string{"grpc line", "http line"} {
		require.Equal(t, want, gw.logs[n], n)
	}
	require.Equal(t, 2.0, r.counter(t, "tributary_agent_otlp_relayed_items_total", "signal", "metrics"))
	require.Equal(t, 2.0, r.counter(t, "tributary_agent_otlp_relayed_items_total", "signal", "logs"))
}
