package gateway

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/prometheus/prompb"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/pmetric"
	"go.opentelemetry.io/collector/pdata/pmetric/pmetricotlp"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlpmetric/otlpmetricgrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlpmetric/otlpmetrichttp"
	"go.opentelemetry.io/otel/sdk/instrumentation"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	"go.opentelemetry.io/otel/sdk/resource"
	colmetricspb "go.opentelemetry.io/proto/otlp/collector/metrics/v1"
	"google.golang.org/grpc"
	grpccodes "google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	grpcstatus "google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// seriesString renders a series as name{a="1",...} with sorted labels.
func seriesString(ls []prompb.Label) string {
	name := ""
	var rest []string
	for _, l := range ls {
		if l.Name == "__name__" {
			name = l.Value
			continue
		}
		rest = append(rest, l.Name+"="+`"`+l.Value+`"`)
	}
	sort.Strings(rest)
	return name + "{" + strings.Join(rest, ",") + "}"
}

// metricSeries reads the metrics topic: series -> float sample values, and
// the record key of each series.
func metricSeries(t *testing.T, f *fixture) (values map[string][]float64, keys map[string]string) {
	t.Helper()
	values, keys = map[string][]float64{}, map[string]string{}
	for _, r := range readMetrics(t, f) {
		for _, ts := range r.req.Timeseries {
			s := seriesString(ts.Labels)
			for _, smp := range ts.Samples {
				values[s] = append(values[s], smp.Value)
			}
			keys[s] = r.cluster
		}
	}
	return values, keys
}

// sumMetric is a monotonic sum with one data point per value.
func sumMetric(sm pmetric.ScopeMetrics, name string, temporality pmetric.AggregationTemporality, attrs map[string]string, values ...float64) {
	m := sm.Metrics().AppendEmpty()
	m.SetName(name)
	s := m.SetEmptySum()
	s.SetIsMonotonic(true)
	s.SetAggregationTemporality(temporality)
	now := time.Now()
	for i, v := range values {
		dp := s.DataPoints().AppendEmpty()
		dp.SetStartTimestamp(pcommon.NewTimestampFromTime(now.Add(-time.Minute)))
		dp.SetTimestamp(pcommon.NewTimestampFromTime(now.Add(time.Duration(i-len(values)) * time.Second)))
		dp.SetDoubleValue(v)
		for k, av := range attrs {
			dp.Attributes().PutStr(k, av)
		}
	}
}

func resourceMetrics(md pmetric.Metrics, attrs ...string) pmetric.ScopeMetrics {
	rm := md.ResourceMetrics().AppendEmpty()
	for i := 0; i < len(attrs); i += 2 {
		rm.Resource().Attributes().PutStr(attrs[i], attrs[i+1])
	}
	return rm.ScopeMetrics().AppendEmpty()
}

func (f *fixture) postOTLPPath(t *testing.T, path, ct string, body []byte, headers ...string) (int, []byte) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, f.srv.URL+path, bytes.NewReader(body))
	require.NoError(t, err)
	req.Header.Set("Content-Type", ct)
	for i := 0; i < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, b
}

func metricsBody(t *testing.T, md pmetric.Metrics) []byte {
	t.Helper()
	b, err := pmetricotlp.NewExportRequestFromMetrics(md).MarshalProto()
	require.NoError(t, err)
	return b
}

// The OpenTelemetry SDK's own OTLP metric exporters, over HTTP and gRPC,
// write series named as Prometheus's OTLP receiver names them (unit and
// _total suffixes, job and instance from the service, target_info for
// the other resource attributes), with the cluster label from
// k8s.cluster.name, to the metrics topic keyed by cluster.
func TestOTLPMetricsFromSDKExporters(t *testing.T) {
	f := newFixture(t, nil)
	grpcAddr := f.serveOTLPGRPC(t)
	ctx := context.Background()
	httpExp, err := otlpmetrichttp.New(ctx, otlpmetrichttp.WithEndpointURL(f.srv.URL+"/v1/metrics"), otlpmetrichttp.WithCompression(otlpmetrichttp.GzipCompression))
	require.NoError(t, err)
	grpcExp, err := otlpmetricgrpc.New(ctx, otlpmetricgrpc.WithEndpoint(grpcAddr), otlpmetricgrpc.WithInsecure())
	require.NoError(t, err)
	now := time.Now()
	data := func(cluster, service string, v int64) *metricdata.ResourceMetrics {
		return &metricdata.ResourceMetrics{
			Resource: resource.NewSchemaless(attribute.String("service.name", service), attribute.String("service.instance.id", "i-1"),
				attribute.String("k8s.cluster.name", cluster), attribute.String("host.name", "node-1")),
			ScopeMetrics: []metricdata.ScopeMetrics{{
				Scope: instrumentation.Scope{Name: "test"},
				Metrics: []metricdata.Metrics{{
					Name: "http.server.requests", Unit: "{request}",
					Data: metricdata.Sum[int64]{Temporality: metricdata.CumulativeTemporality, IsMonotonic: true, DataPoints: []metricdata.DataPoint[int64]{{
						// A data point attribute named cluster does not
						// override the resource's.
						Attributes: attribute.NewSet(attribute.String("http.route", "/a"), attribute.String("cluster", "evil")),
						StartTime:  now.Add(-time.Minute), Time: now, Value: v,
					}}},
				}, {
					Name: "queue.length", Unit: "By",
					Data: metricdata.Gauge[float64]{DataPoints: []metricdata.DataPoint[float64]{{Time: now, Value: 2.5}}},
				}},
			}},
		}
	}
	require.NoError(t, httpExp.Export(ctx, data("east", "web", 7)))
	require.NoError(t, grpcExp.Export(ctx, data("west", "api", 9)))
	require.NoError(t, httpExp.Shutdown(ctx))
	require.NoError(t, grpcExp.Shutdown(ctx))

	values, keys := metricSeries(t, f)
	want := map[string][]float64{
		`http_server_requests_total{cluster="east",http_route="/a",instance="i-1",job="web"}`:             {7},
		`queue_length_bytes{cluster="east",instance="i-1",job="web"}`:                                     {2.5},
		`target_info{cluster="east",host_name="node-1",instance="i-1",job="web",k8s_cluster_name="east"}`: {1},
		`http_server_requests_total{cluster="west",http_route="/a",instance="i-1",job="api"}`:             {9},
		`queue_length_bytes{cluster="west",instance="i-1",job="api"}`:                                     {2.5},
		`target_info{cluster="west",host_name="node-1",instance="i-1",job="api",k8s_cluster_name="west"}`: {1},
	}
	require.Equal(t, want, values)
	for s, k := range keys {
		require.Contains(t, s, `cluster="`+k+`"`, "record key")
	}
}

// Delta temporality is refused metric by metric, named in the partial
// success; the cumulative rest is written. A request of delta metrics
// only is refused whole: 400 over HTTP, INVALID_ARGUMENT over gRPC.
func TestOTLPMetricsRefusesDelta(t *testing.T) {
	f := newFixture(t, nil)
	md := pmetric.NewMetrics()
	sm := resourceMetrics(md, "k8s.cluster.name", "c1", "service.name", "svc")
	sumMetric(sm, "jobs.done", pmetric.AggregationTemporalityCumulative, nil, 5)
	sumMetric(sm, "bytes.sent", pmetric.AggregationTemporalityDelta, nil, 1, 2, 3)
	code, body := f.postOTLPPath(t, "/v1/metrics", ctProtobuf, metricsBody(t, md))
	require.Equal(t, http.StatusOK, code, string(body))
	var resp colmetricspb.ExportMetricsServiceResponse
	require.NoError(t, proto.Unmarshal(body, &resp))
	require.Equal(t, int64(3), resp.GetPartialSuccess().GetRejectedDataPoints())
	require.Contains(t, resp.GetPartialSuccess().GetErrorMessage(), `metric "bytes.sent" has delta temporality`)
	values, _ := metricSeries(t, f)
	require.Equal(t, []float64{5}, values[`jobs_done_total{cluster="c1",job="svc"}`], "%v", values)
	for s := range values {
		require.NotContains(t, s, "bytes_sent")
	}

	only := pmetric.NewMetrics()
	sumMetric(resourceMetrics(only, "k8s.cluster.name", "c1"), "bytes.sent", pmetric.AggregationTemporalityDelta, nil, 1)
	code, body = f.postOTLPPath(t, "/v1/metrics", ctProtobuf, metricsBody(t, only))
	require.Equal(t, http.StatusBadRequest, code)
	require.Contains(t, string(body), `bytes.sent`)

	conn, err := grpc.NewClient(f.serveOTLPGRPC(t), grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	defer conn.Close()
	req := &colmetricspb.ExportMetricsServiceRequest{}
	require.NoError(t, proto.Unmarshal(metricsBody(t, only), req))
	_, err = colmetricspb.NewMetricsServiceClient(conn).Export(context.Background(), req)
	require.Equal(t, grpccodes.InvalidArgument, grpcstatus.Code(err), "%v", err)
	require.Contains(t, err.Error(), "delta temporality")
}

// One request of three resources: two clusters by k8s.cluster.name, one
// by the cluster header, one with neither (refused, counted): one record
// per cluster, the rest in the partial success.
func TestOTLPMetricsSplitByClusterPartialSuccess(t *testing.T) {
	f := newFixture(t, nil)
	md := pmetric.NewMetrics()
	sumMetric(resourceMetrics(md, "k8s.cluster.name", "a"), "reqs", pmetric.AggregationTemporalityCumulative, map[string]string{"cluster": "evil"}, 1)
	sumMetric(resourceMetrics(md, "k8s.cluster.name", "b"), "reqs", pmetric.AggregationTemporalityCumulative, nil, 2)
	sumMetric(resourceMetrics(md), "reqs", pmetric.AggregationTemporalityCumulative, nil, 3, 4)
	code, body := f.postOTLPPath(t, "/v1/metrics", ctProtobuf, metricsBody(t, md), "X-Tributary-Cluster", "hdr")
	require.Equal(t, http.StatusOK, code, string(body))
	var resp colmetricspb.ExportMetricsServiceResponse
	require.NoError(t, proto.Unmarshal(body, &resp))
	require.Nil(t, resp.PartialSuccess)
	recs := readMetrics(t, f)
	require.Len(t, recs, 3)
	values, keys := metricSeries(t, f)
	require.Equal(t, []float64{1}, values[`reqs_total{cluster="a"}`], "%v", values)
	require.Equal(t, "a", keys[`reqs_total{cluster="a"}`])
	require.Equal(t, []float64{3, 4}, values[`reqs_total{cluster="hdr"}`])

	// Without the header the third resource has no cluster.
	code, body = f.postOTLPPath(t, "/v1/metrics", ctProtobuf, metricsBody(t, md))
	require.Equal(t, http.StatusOK, code, string(body))
	require.NoError(t, proto.Unmarshal(body, &resp))
	require.Equal(t, int64(2), resp.GetPartialSuccess().GetRejectedDataPoints())
	require.Contains(t, resp.GetPartialSuccess().GetErrorMessage(), "without k8s.cluster.name")
	require.Len(t, readMetrics(t, f), 5)
}
