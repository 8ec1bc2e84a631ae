package integration

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlplog/otlploggrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlplog/otlploghttp"
	"go.opentelemetry.io/otel/exporters/otlp/otlpmetric/otlpmetricgrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlpmetric/otlpmetrichttp"
	otellog "go.opentelemetry.io/otel/log"
	"go.opentelemetry.io/otel/sdk/instrumentation"
	sdklog "go.opentelemetry.io/otel/sdk/log"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	"go.opentelemetry.io/otel/sdk/resource"
	"go.opentelemetry.io/otel/trace"

	"github.com/tributary-io/tributary/internal/testenv"
)

// otlpCluster is the agent's cluster; the SDK's resources name it too, so
// that what Prometheus's and Loki's own OTLP endpoints receive has the
// same resource as what the agent relays.
const otlpCluster = "otlpclust"

// otlpMetricData is one service's metrics of every kind the SDK exports:
// a counter, an up-down counter, a gauge and an explicit-bucket histogram,
// with data point attributes and units that the naming rules turn into
// suffixes.
func otlpMetricData(service string, at time.Time) *metricdata.ResourceMetrics {
	start := at.Add(-time.Minute)
	route := attribute.NewSet(attribute.String("http.route", "/checkout"), attribute.Int("http.response.status_code", 200))
	return &metricdata.ResourceMetrics{
		Resource: resource.NewSchemaless(attribute.String("service.name", service), attribute.String("service.namespace", "shop"),
			attribute.String("service.instance.id", service+"-0"), attribute.String("k8s.cluster.name", otlpCluster),
			attribute.String("host.name", "node-a"), attribute.String("deployment.environment.name", "prod")),
		ScopeMetrics: []metricdata.ScopeMetrics{{
			Scope: instrumentation.Scope{Name: "otlp-signals-test", Version: "1.0"},
			Metrics: []metricdata.Metrics{{
				Name: "http.server.request.count", Unit: "{request}", Description: "Requests served.",
				Data: metricdata.Sum[int64]{Temporality: metricdata.CumulativeTemporality, IsMonotonic: true,
					DataPoints: []metricdata.DataPoint[int64]{{Attributes: route, StartTime: start, Time: at, Value: 42}}},
			}, {
				Name: "queue.items", Unit: "{item}",
				Data: metricdata.Sum[int64]{Temporality: metricdata.CumulativeTemporality,
					DataPoints: []metricdata.DataPoint[int64]{{StartTime: start, Time: at, Value: -3}}},
			}, {
				Name: "process.memory.usage", Unit: "By",
				Data: metricdata.Gauge[float64]{DataPoints: []metricdata.DataPoint[float64]{{Time: at, Value: 1.5e6}}},
			}, {
				Name: "http.server.request.duration", Unit: "s",
				Data: metricdata.Histogram[float64]{Temporality: metricdata.CumulativeTemporality, DataPoints: []metricdata.HistogramDataPoint[float64]{{
					Attributes: route, StartTime: start, Time: at, Count: 6, Sum: 1.25,
					Bounds: []float64{0.1, 0.5, 1}, BucketCounts: []uint64{2, 2, 1, 1},
				}}},
			}},
		}},
	}
}

// promSeries is every float series of job at t, as name{labels} -> value,
// split by whether it has a cluster label (removed from the key).
func promSeries(t *testing.T, prom *testenv.PrometheusServer, job string, at time.Time) (withCluster, without map[string]float64) {
	t.Helper()
	res, err := prom.Query(fmt.Sprintf(`{job=%q}`, job), at)
	require.NoError(t, err)
	withCluster, without = map[string]float64{}, map[string]float64{}
	for _, s := range res {
		c, has := s.Metric["cluster"]
		delete(s.Metric, "cluster")
		key := metricKey(s.Metric)
		if has {
			require.Equal(t, otlpCluster, c, key)
			withCluster[key] = s.Value
		} else {
			without[key] = s.Value
		}
	}
	return withCluster, without
}

func metricKey(m map[string]string) string {
	var parts []string
	for k, v := range m {
		if k != "__name__" {
			parts = append(parts, fmt.Sprintf("%s=%q", k, v))
		}
	}
	sort.Strings(parts)
	return m["__name__"] + "{" + strings.Join(parts, ",") + "}"
}

// lokiEntries is every entry of service at [from, to), keyed by line, with
// the stream's labels (cluster removed) and the structured metadata, split
// by whether the stream has a cluster label.
type lokiEntry struct {
	TS       time.Time
	Labels   map[string]string
	Metadata map[string]string
}

func lokiEntries(t *testing.T, loki *testenv.LokiServer, service string, from, to time.Time) (withCluster, without map[string]lokiEntry) {
	t.Helper()
	streams, err := loki.QueryRange(t, fmt.Sprintf(`{service_name=%q}`, service), from, to, 1000)
	require.NoError(t, err)
	withCluster, without = map[string]lokiEntry{}, map[string]lokiEntry{}
	for _, s := range streams {
		c, has := s.Labels["cluster"]
		delete(s.Labels, "cluster")
		for _, e := range s.Entries {
			le := lokiEntry{TS: e.TS, Labels: s.Labels, Metadata: e.Metadata}
			if has {
				require.Equal(t, otlpCluster, c)
				withCluster[e.Line] = le
			} else {
				without[e.Line] = le
			}
		}
	}
	return withCluster, without
}

// The OpenTelemetry SDK's OTLP metric and log exporters (gRPC and HTTP)
// send through the agent and the gateway, Kafka and the ingester, into the
// real Prometheus 3 and Loki 3; the same SDK data also goes straight to
// Prometheus's and Loki's own OTLP endpoints. Every series and every log
// line is stored both ways with the same names, labels, values,
// timestamps and structured metadata, but for the pipeline's cluster
// label.
func TestOTLPMetricsAndLogsMatchNativeOTLP(t *testing.T) {
	t.Parallel()
	k := testenv.Kafka(t, 2)
	prom := testenv.PrometheusOTLP(t, testenv.SinkConfig)
	loki := testenv.Loki(t)
	gw := startGateway(t, k.Addr)
	startIngester(t, k.Addr, prom.URL, "-loki.url="+loki.URL+"/loki/api/v1/push", "-loki.batch.max-delay=50ms", "-loki.backoff.max=1s", "-loki.flush-timeout=5s")
	dir := t.TempDir()
	grpcPort, httpPort := testenv.FreePort(t), testenv.FreePort(t)
	startAgent(t, otlpAgentConfig(t, otlpCluster, gw.URL, dir, grpcPort, httpPort, "", ""), testenv.FreePort(t))

	ctx := context.Background()
	at := time.Now().Add(-30 * time.Second).Truncate(time.Millisecond)

	// Metrics: service "checkout" over gRPC, "web" over HTTP, to the agent;
	// both to Prometheus's OTLP receiver.
	toAgentGRPC, err := otlpmetricgrpc.New(ctx, otlpmetricgrpc.WithEndpoint(testenv.Addr(grpcPort)), otlpmetricgrpc.WithInsecure())
	require.NoError(t, err)
	toAgentHTTP, err := otlpmetrichttp.New(ctx, otlpmetrichttp.WithEndpoint(testenv.Addr(httpPort)), otlpmetrichttp.WithInsecure(), otlpmetrichttp.WithCompression(otlpmetrichttp.GzipCompression))
	require.NoError(t, err)
	toProm, err := otlpmetrichttp.New(ctx, otlpmetrichttp.WithEndpointURL(prom.URL+"/api/v1/otlp/v1/metrics"))
	require.NoError(t, err)
	for _, send := range []struct {
		exp interface {
			Export(context.Context, *metricdata.ResourceMetrics) error
		}
		service string
	}{{toAgentGRPC, "checkout"}, {toAgentHTTP, "web"}, {toProm, "checkout"}, {toProm, "web"}} {
		require.NoError(t, send.exp.Export(ctx, otlpMetricData(send.service, at)), send.service)
	}

	// Logs: one LoggerProvider per path, each with a processor to the
	// agent and one to Loki's OTLP endpoint, so both get the same records.
	lokiExp, err := otlploghttp.New(ctx, otlploghttp.WithEndpointURL(loki.URL+"/otlp/v1/logs"))
	require.NoError(t, err)
	logGRPC, err := otlploggrpc.New(ctx, otlploggrpc.WithEndpoint(testenv.Addr(grpcPort)), otlploggrpc.WithInsecure())
	require.NoError(t, err)
	logHTTP, err := otlploghttp.New(ctx, otlploghttp.WithEndpoint(testenv.Addr(httpPort)), otlploghttp.WithInsecure())
	require.NoError(t, err)
	traceID := trace.TraceID{0xca, 0xfe, 1}
	spanID := trace.SpanID{0xbe, 0xef, 2}
	emit := func(exp sdklog.Exporter, service, transport string) {
		lp := sdklog.NewLoggerProvider(
			sdklog.WithProcessor(sdklog.NewSimpleProcessor(exp)),
			sdklog.WithProcessor(sdklog.NewSimpleProcessor(lokiExp)),
			sdklog.WithResource(resource.NewSchemaless(attribute.String("service.name", service), attribute.String("k8s.cluster.name", otlpCluster),
				attribute.String("k8s.namespace.name", "shop"), attribute.String("host.name", "node-a"))))
		logger := lp.Logger("otlp-signals-test", otellog.WithInstrumentationVersion("1.0"))
		for i := range 3 {
			var rec otellog.Record
			rec.SetTimestamp(at.Add(time.Duration(i) * time.Millisecond))
			rec.SetSeverity(otellog.SeverityWarn)
			rec.SetSeverityText("WARN")
			if i == 2 {
				rec.SetBody(attribute.MapValue(attribute.String("msg", "structured "+transport), attribute.Int("n", i)))
			} else {
				rec.SetBody(attribute.StringValue(fmt.Sprintf("%s line %d over %s", service, i, transport)))
			}
			rec.AddAttributes(attribute.String("user.id", "u-7"), attribute.Bool("cache.hit", i%2 == 0))
			logger.Emit(trace.ContextWithSpanContext(ctx, trace.NewSpanContext(trace.SpanContextConfig{TraceID: traceID, SpanID: spanID, TraceFlags: trace.FlagsSampled})), rec)
		}
		require.NoError(t, lp.ForceFlush(ctx))
		// Not Shutdown: it would shut the shared Loki exporter down too.
		require.NoError(t, exp.Shutdown(ctx))
	}
	emit(logGRPC, "checkout", "grpc")
	emit(logHTTP, "web", "http")

	for _, service := range []string{"checkout", "web"} {
		job := "shop/" + service
		var pipeline, native map[string]float64
		testenv.Eventually(t, 60*time.Second, func() error {
			pipeline, native = promSeries(t, prom, job, at.Add(time.Second))
			if len(native) < 10 || len(pipeline) < len(native) {
				return fmt.Errorf("%s: %d series through the pipeline, %d from Prometheus's OTLP receiver", job, len(pipeline), len(native))
			}
			return nil
		})
		require.Equal(t, native, pipeline, job)
		// What the comparison covers: suffixes, job and instance,
		// target_info, histogram series.
		require.Equal(t, 42.0, pipeline[`http_server_request_count_total{http_response_status_code="200",http_route="/checkout",instance="`+service+`-0",job="`+job+`"}`], "%v", pipeline)
		require.Contains(t, pipeline, `target_info{deployment_environment_name="prod",host_name="node-a",instance="`+service+`-0",job="`+job+`",k8s_cluster_name="otlpclust"}`)
		require.Equal(t, 6.0, pipeline[`http_server_request_duration_seconds_bucket{http_response_status_code="200",http_route="/checkout",instance="`+service+`-0",job="`+job+`",le="+Inf"}`], "%v", pipeline)
	}

	for _, service := range []string{"checkout", "web"} {
		var pipeline, native map[string]lokiEntry
		testenv.Eventually(t, 60*time.Second, func() error {
			pipeline, native = lokiEntries(t, loki, service, at.Add(-time.Minute), at.Add(time.Minute))
			if len(native) != 3 || len(pipeline) != 3 {
				return fmt.Errorf("%s: %d lines through the pipeline, %d from Loki's OTLP endpoint", service, len(pipeline), len(native))
			}
			return nil
		})
		require.Equal(t, native, pipeline, service)
		for line, e := range pipeline {
			require.Equal(t, "cafe0100000000000000000000000000", e.Metadata["trace_id"], line)
			require.Equal(t, "WARN", e.Metadata["severity_text"], line)
			require.Equal(t, "otlpclust", e.Labels["k8s_cluster_name"], line)
		}
	}
	require.NoError(t, lokiExp.Shutdown(ctx))
	requireNoDeadLetters(t, k.Addr)
}
