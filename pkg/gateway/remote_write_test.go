package gateway

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/golang/snappy"
	remoteapi "github.com/prometheus/client_golang/exp/api/remote"
	"github.com/prometheus/client_golang/prometheus/testutil"
	config_util "github.com/prometheus/common/config"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/prompb"
	writev2 "github.com/prometheus/prometheus/prompb/io/prometheus/write/v2"
	"github.com/prometheus/prometheus/storage/remote"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/tributary-io/tributary/internal/testenv"
	"github.com/tributary-io/tributary/pkg/record"
)

// metricsRecord is one record of the metrics topic, decoded.
type metricsRecord struct {
	cluster string
	items   uint64
	value   []byte
	req     prompb.WriteRequest
}

func readMetrics(t *testing.T, f *fixture) []metricsRecord {
	t.Helper()
	var out []metricsRecord
	for _, m := range testenv.ReadTopic(t, f.kafka.Addr, "tributary.metrics") {
		env, err := record.Parse(m.Headers)
		require.NoError(t, err)
		raw, err := snappy.Decode(nil, m.Value)
		require.NoError(t, err)
		r := metricsRecord{cluster: env.GetCluster(), items: env.GetItems(), value: m.Value}
		require.NoError(t, r.req.Unmarshal(raw))
		require.Equal(t, string(m.Key), r.cluster)
		out = append(out, r)
	}
	return out
}

func encodeWrite(t *testing.T, req *prompb.WriteRequest) []byte {
	t.Helper()
	raw, err := req.Marshal()
	require.NoError(t, err)
	return snappy.Encode(nil, raw)
}

func labelPairs(kv ...string) []prompb.Label {
	var ls []prompb.Label
	for i := 0; i < len(kv); i += 2 {
		ls = append(ls, prompb.Label{Name: kv[i], Value: kv[i+1]})
	}
	return ls
}

// A sample stamped 1970 is refused with 400 and nothing reaches Kafka: a
// Prometheus sink would refuse it for ever and stall the partition.
func TestRemoteWriteRefusesSampleFrom1970(t *testing.T) {
	f := newFixture(t, nil)
	old := encodeWrite(t, &prompb.WriteRequest{Timeseries: []prompb.TimeSeries{
		{Labels: labelPairs("__name__", "up", "cluster", "a"), Samples: []prompb.Sample{{Value: 1, Timestamp: 1000}}},
	}})
	resp, msg := f.post(t, old)
	require.Equal(t, http.StatusBadRequest, resp.StatusCode, msg)
	require.Contains(t, msg, "refused 1 sample (1 too old)")
	require.Contains(t, msg, "timestamp 1970-01-01T00:00:01Z is older than 23h0m0s (-limits.metrics.max-sample-age)")
	require.Contains(t, msg, "accepted 0 samples")

	future := encodeWrite(t, &prompb.WriteRequest{Timeseries: []prompb.TimeSeries{
		{Labels: labelPairs("__name__", "up", "cluster", "a"), Samples: []prompb.Sample{{Value: 1, Timestamp: time.Now().Add(time.Hour).UnixMilli()}}},
	}})
	resp, msg = f.post(t, future)
	require.Equal(t, http.StatusBadRequest, resp.StatusCode, msg)
	require.Contains(t, msg, "ahead of the gateway's clock (-limits.metrics.max-future)")

	require.Empty(t, readMetrics(t, f), "a refused sample must not be produced")
	require.Equal(t, 2.0, testutil.ToFloat64(f.gw.metrics.refusedSamples.WithLabelValues("too_old"))+testutil.ToFloat64(f.gw.metrics.refusedSamples.WithLabelValues("too_new")))
}

// Partial acceptance, as Prometheus's receiver does: the valid series and
// samples are written, the client gets 400 naming what was refused.
func TestRemoteWritePartialAcceptance(t *testing.T) {
	f := newFixture(t, nil)
	now := time.Now().UnixMilli()
	req := &prompb.WriteRequest{Timeseries: []prompb.TimeSeries{
		{Labels: labelPairs("__name__", "up", "cluster", "a", "job", "1"), Samples: []prompb.Sample{{Value: 1, Timestamp: 1000}, {Value: 2, Timestamp: now}}},
		{Labels: labelPairs("__name__", "up", "bad-name", "x", "cluster", "a"), Samples: []prompb.Sample{{Value: 3, Timestamp: now}}},
		{Labels: labelPairs("__name__", "up", "cluster", "a", "job", "2"), Samples: []prompb.Sample{{Value: 4, Timestamp: now}}},
	}}
	resp, msg := f.post(t, encodeWrite(t, req))
	require.Equal(t, http.StatusBadRequest, resp.StatusCode, msg)
	require.Equal(t, `refused 2 samples, 1 series (1 too old, 1 in series with invalid labels); first: series 0 {__name__="up", cluster="a", job="1"}: timestamp 1970-01-01T00:00:01Z is older than 23h0m0s (-limits.metrics.max-sample-age); accepted 2 samples, 0 histogram samples, 0 exemplars`, msg)

	recs := readMetrics(t, f)
	require.Len(t, recs, 1)
	require.Equal(t, "a", recs[0].cluster)
	require.Equal(t, uint64(2), recs[0].items)
	require.Equal(t, []prompb.TimeSeries{
		{Labels: labelPairs("__name__", "up", "cluster", "a", "job", "1"), Samples: []prompb.Sample{{Value: 2, Timestamp: now}}},
		{Labels: labelPairs("__name__", "up", "cluster", "a", "job", "2"), Samples: []prompb.Sample{{Value: 4, Timestamp: now}}},
	}, recs[0].req.Timeseries)
}

// 128,000 series each naming its own cluster are refused whole, before
// anything is produced; 64 clusters (the default bound) are written.
func TestRemoteWriteClusterBound(t *testing.T) {
	f := newFixture(t, nil)
	build := func(n int) []byte {
		req := &prompb.WriteRequest{}
		now := time.Now().UnixMilli()
		for i := 0; i < n; i++ {
			req.Timeseries = append(req.Timeseries, prompb.TimeSeries{
				Labels:  labelPairs("__name__", "up", "cluster", fmt.Sprintf("c%06d", n-i)),
				Samples: []prompb.Sample{{Value: float64(i), Timestamp: now}},
			})
		}
		return encodeWrite(t, req)
	}
	resp, msg := f.post(t, build(128000))
	require.Equal(t, http.StatusBadRequest, resp.StatusCode, msg)
	require.Contains(t, msg, "more than 64 distinct clusters")
	require.Empty(t, readMetrics(t, f))

	resp, msg = f.post(t, build(64))
	require.Equal(t, http.StatusNoContent, resp.StatusCode, msg)
	recs := readMetrics(t, f)
	require.Len(t, recs, 64)
	var clusters []string
	for _, r := range recs {
		clusters = append(clusters, r.cluster)
		require.Len(t, r.req.Timeseries, 1)
		require.Equal(t, uint64(1), r.items)
	}
	sort.Strings(clusters)
	require.Equal(t, "c000001", clusters[0])
	require.Equal(t, "c000064", clusters[63])
	require.Len(t, compact(clusters), 64)
}

func compact(s []string) []string {
	var out []string
	for i, v := range s {
		if i == 0 || v != s[i-1] {
			out = append(out, v)
		}
	}
	return out
}

// Field numbers outside 1..2^29-1 make the request malformed as a whole.
func TestRemoteWriteRefusesIllegalFieldNumber(t *testing.T) {
	f := newFixture(t, nil)
	good := encodeWrite(t, &prompb.WriteRequest{Timeseries: []prompb.TimeSeries{
		{Labels: labelPairs("__name__", "up", "cluster", "a"), Samples: []prompb.Sample{{Value: 1, Timestamp: time.Now().UnixMilli()}}},
	}})
	raw, err := snappy.Decode(nil, good)
	require.NoError(t, err)
	for _, num := range []uint64{1 << 29, 0} {
		body := append(append([]byte(nil), raw...), protowire.AppendVarint(nil, num<<3|uint64(protowire.VarintType))...)
		body = append(body, 0x01)
		resp, msg := f.post(t, snappy.Encode(nil, body))
		require.Equal(t, http.StatusBadRequest, resp.StatusCode, msg)
		require.Equal(t, fmt.Sprintf("malformed protobuf WriteRequest at byte %d: field number %d is outside the legal range 1 to 536870911", len(raw), num), msg)
	}
	resp, msg := f.post(t, []byte("not snappy at all"))
	require.Equal(t, http.StatusBadRequest, resp.StatusCode, msg)
	require.Equal(t, "body is not a snappy block: corrupt input", msg)
	require.Empty(t, readMetrics(t, f))
}

// Metadata-only requests carry no series, so a sender's external labels
// never reach them: without a default cluster they are acknowledged and
// dropped (counted); with one they are forwarded on it.
func TestRemoteWriteMetadataOnly(t *testing.T) {
	f := newFixture(t, nil)
	body := encodeWrite(t, &prompb.WriteRequest{Metadata: []prompb.MetricMetadata{
		{Type: prompb.MetricMetadata_COUNTER, MetricFamilyName: "http_requests_total", Help: "Requests."},
		{Type: prompb.MetricMetadata_GAUGE, MetricFamilyName: "up", Help: "Up."},
	}})
	resp, msg := f.post(t, body)
	require.Equal(t, http.StatusNoContent, resp.StatusCode, msg)
	require.Equal(t, 2.0, testutil.ToFloat64(f.gw.metrics.metadataDropped))
	require.Empty(t, readMetrics(t, f))

	resp, msg = f.post(t, body, "X-Tributary-Cluster", "eu-1")
	require.Equal(t, http.StatusNoContent, resp.StatusCode, msg)
	recs := readMetrics(t, f)
	require.Len(t, recs, 1)
	require.Equal(t, "eu-1", recs[0].cluster)
	require.Len(t, recs[0].req.Metadata, 2)
	require.Equal(t, 2.0, testutil.ToFloat64(f.gw.metrics.metadataDropped))
}

// A stock Prometheus 2.42 sends metadata every second (metadata_config)
// and series with external_labels; its log must show no remote-write
// error.
func TestRemoteWriteStockPrometheusSender(t *testing.T) {
	t.Parallel() // it waits on the sender's scrape and send intervals, not the CPU
	f := newFixture(t, nil)
	sender := testenv.Prometheus(t, `
global:
  scrape_interval: 1s
  external_labels:
    cluster: sender-1
scrape_configs:
  - job_name: gateway
    static_configs:
      - targets: ['`+strings.TrimPrefix(f.srv.URL, "http://")+`']
remote_write:
  - url: `+f.srv.URL+`/api/v1/write
    metadata_config:
      send: true
      send_interval: 1s
    queue_config:
      batch_send_deadline: 1s
`)
	// The sender scrapes the gateway's own /metrics: series (with the
	// external label) and their metadata (in metadata-only requests)
	// both come to the gateway; both must be accepted.
	testenv.Eventually(t, 30*time.Second, func() error {
		if n := testutil.ToFloat64(f.gw.metrics.metadataDropped); n == 0 {
			return fmt.Errorf("no metadata-only request seen yet")
		}
		for _, r := range readMetrics(t, f) {
			if r.cluster == "sender-1" && len(r.req.Timeseries) > 0 {
				return nil
			}
		}
		return fmt.Errorf("no series from the sender yet")
	})
	time.Sleep(3 * time.Second) // a few more metadata rounds
	for _, line := range strings.Split(sender.Proc.Output(), "\n") {
		if strings.Contains(line, "remote") && (strings.Contains(line, "level=error") || strings.Contains(line, "level=warn")) {
			t.Errorf("sender logged: %s", line)
		}
	}
}

// Remote-write 2.0 from Prometheus's own write client: the records are
// 1.0 WriteRequests with the same samples, histograms, exemplars and
// metadata, and the response carries the written counts.
func TestRemoteWriteV2(t *testing.T) {
	f := newFixture(t, nil)
	u, err := url.Parse(f.srv.URL + "/api/v1/write")
	require.NoError(t, err)
	client, err := remote.NewWriteClient("v2", &remote.ClientConfig{
		URL:           &config_util.URL{URL: u},
		Timeout:       model.Duration(10 * time.Second),
		WriteProtoMsg: remoteapi.WriteV2MessageType,
	})
	require.NoError(t, err)

	now := time.Now().UnixMilli()
	st := writev2.NewSymbolTable()
	refs := func(kv ...string) []uint32 {
		var out []uint32
		for _, s := range kv {
			out = append(out, st.Symbolize(s))
		}
		return out
	}
	hist := writev2.Histogram{
		Count: &writev2.Histogram_CountInt{CountInt: 5}, Sum: 12.5, Schema: 1, ZeroThreshold: 0.001,
		ZeroCount:     &writev2.Histogram_ZeroCountInt{ZeroCountInt: 1},
		PositiveSpans: []writev2.BucketSpan{{Offset: 0, Length: 2}}, PositiveDeltas: []int64{2, 0},
		Timestamp: now, StartTimestamp: now - 60000,
	}
	req := &writev2.Request{Timeseries: []writev2.TimeSeries{
		{
			LabelsRefs: refs("__name__", "http_requests_total", "cluster", "eu-1", "code", "200"),
			Samples:    []writev2.Sample{{Value: 10, Timestamp: now - 1000, StartTimestamp: now - 60000}, {Value: 12, Timestamp: now}},
			Exemplars:  []writev2.Exemplar{{LabelsRefs: refs("trace_id", "abc"), Value: 11, Timestamp: now - 500}},
			Metadata:   writev2.Metadata{Type: writev2.Metadata_METRIC_TYPE_COUNTER, HelpRef: st.Symbolize("Requests served."), UnitRef: st.Symbolize("")},
		},
		{
			LabelsRefs: refs("__name__", "latency_seconds", "cluster", "eu-1"),
			Histograms: []writev2.Histogram{hist},
			Metadata:   writev2.Metadata{Type: writev2.Metadata_METRIC_TYPE_HISTOGRAM, HelpRef: st.Symbolize("Latency."), UnitRef: st.Symbolize("seconds")},
		},
	}}
	req.Symbols = st.Symbols()
	raw, err := req.Marshal()
	require.NoError(t, err)

	stats, err := client.Store(context.Background(), snappy.Encode(nil, raw), 0)
	require.NoError(t, err)
	require.Equal(t, remote.WriteResponseStats{Samples: 2, Histograms: 1, Exemplars: 1, Confirmed: true}, stats)

	recs := readMetrics(t, f)
	require.Len(t, recs, 1)
	require.Equal(t, "eu-1", recs[0].cluster)
	require.Equal(t, uint64(3), recs[0].items)
	got := recs[0].req
	require.Len(t, got.Timeseries, 2)
	require.Equal(t, labelPairs("__name__", "http_requests_total", "cluster", "eu-1", "code", "200"), got.Timeseries[0].Labels)
	require.Equal(t, []prompb.Sample{{Value: 10, Timestamp: now - 1000}, {Value: 12, Timestamp: now}}, got.Timeseries[0].Samples)
	require.Equal(t, []prompb.Exemplar{{Labels: labelPairs("trace_id", "abc"), Value: 11, Timestamp: now - 500}}, got.Timeseries[0].Exemplars)
	require.Equal(t, labelPairs("__name__", "latency_seconds", "cluster", "eu-1"), got.Timeseries[1].Labels)
	require.Len(t, got.Timeseries[1].Histograms, 1)
	h := got.Timeseries[1].Histograms[0]
	require.Equal(t, hist.ToIntHistogram(), h.ToIntHistogram())
	require.Equal(t, now, h.Timestamp)
	require.ElementsMatch(t, []prompb.MetricMetadata{
		{Type: prompb.MetricMetadata_COUNTER, MetricFamilyName: "http_requests_total", Help: "Requests served."},
		{Type: prompb.MetricMetadata_HISTOGRAM, MetricFamilyName: "latency_seconds", Help: "Latency.", Unit: "seconds"},
	}, got.Metadata)

	// Partial: a sample from 1970 and a series with a dangling symbol
	// reference are refused; the written counts say what was kept.
	st.Reset()
	bad := &writev2.Request{Timeseries: []writev2.TimeSeries{
		{LabelsRefs: refs("__name__", "up", "cluster", "eu-1"), Samples: []writev2.Sample{{Value: 1, Timestamp: 1000}, {Value: 2, Timestamp: now}}},
		{LabelsRefs: []uint32{1, 99}, Samples: []writev2.Sample{{Value: 3, Timestamp: now}}},
	}}
	bad.Symbols = st.Symbols()
	raw, err = bad.Marshal()
	require.NoError(t, err)
	stats, err = client.Store(context.Background(), snappy.Encode(nil, raw), 0)
	require.Error(t, err)
	require.Contains(t, err.Error(), "400")
	require.Contains(t, err.Error(), "refused 2 samples, 1 series")
	require.Equal(t, remote.WriteResponseStats{Samples: 1, Confirmed: true}, stats)
	require.Len(t, readMetrics(t, f), 2)
}

// UTF-8 names are refused unless -limits.metrics.utf8-names is set.
func TestRemoteWriteUTF8Names(t *testing.T) {
	body := encodeWrite(t, &prompb.WriteRequest{Timeseries: []prompb.TimeSeries{
		{Labels: labelPairs("__name__", "http.requests", "cluster", "a", "équipe", "x"), Samples: []prompb.Sample{{Value: 1, Timestamp: time.Now().UnixMilli()}}},
	}})
	f := newFixture(t, nil)
	resp, msg := f.post(t, body)
	require.Equal(t, http.StatusBadRequest, resp.StatusCode, msg)
	require.Contains(t, msg, "-limits.metrics.utf8-names")

	f = newFixture(t, func(c *Config) { c.RemoteWrite.UTF8Names = true })
	resp, msg = f.post(t, body)
	require.Equal(t, http.StatusNoContent, resp.StatusCode, msg)
	require.Len(t, readMetrics(t, f), 1)
}
