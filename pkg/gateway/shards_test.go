package gateway

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/golang/snappy"
	"github.com/grafana/loki/pkg/push"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/prometheus/prompb"
	"github.com/stretchr/testify/require"
	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	resourcepb "go.opentelemetry.io/proto/otlp/resource/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/proto"

	"github.com/tributary-io/tributary/internal/testenv"
	"github.com/tributary-io/tributary/pkg/kafka"
	"github.com/tributary-io/tributary/pkg/otlp"
	"github.com/tributary-io/tributary/pkg/record"
	"github.com/tributary-io/tributary/pkg/shard"
)

func shardsFile(t *testing.T, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "shards.yaml")
	require.NoError(t, os.WriteFile(path, []byte(content), 0o600))
	return path
}

// seriesKey renders a series' labels but its cluster, sorted.
func seriesKey(ls []prompb.Label) string {
	var parts []string
	for _, l := range ls {
		if l.Name != "cluster" {
			parts = append(parts, l.Name+"="+l.Value)
		}
	}
	sort.Strings(parts)
	return strings.Join(parts, ",")
}

// TestShardedRemoteWrite: a hot cluster's series are spread over its k
// consecutive partitions, every series to one partition whichever request
// and form (cluster label sent or added, labels sorted or not) it came in,
// records keyed and enveloped by the cluster, nothing lost; an unsharded
// cluster stays on its base partition and keeps the forwarding path.
func TestShardedRemoteWrite(t *testing.T) {
	const parts, k, n = 4, 3, 300
	f := newFixture(t, func(c *Config) { c.Shards.File = shardsFile(t, fmt.Sprintf("clusters:\n  hot: %d\n", k)) })
	now := time.Now().UnixMilli()
	req := func(withCluster, unsorted bool, ts int64) *prompb.WriteRequest {
		var w prompb.WriteRequest
		for i := range n {
			ls := labelPairs("__name__", "http_requests_total", "cluster", "hot", "instance", fmt.Sprintf("10.0.0.%d:80", i))
			if !withCluster {
				ls = labelPairs("__name__", "http_requests_total", "instance", fmt.Sprintf("10.0.0.%d:80", i))
			}
			if unsorted {
				ls[0], ls[len(ls)-1] = ls[len(ls)-1], ls[0]
			}
			w.Timeseries = append(w.Timeseries, prompb.TimeSeries{Labels: ls, Samples: []prompb.Sample{{Value: float64(i), Timestamp: ts}}})
		}
		return &w
	}
	resp, msg := f.post(t, encodeWrite(t, req(true, false, now)))
	require.Equal(t, http.StatusNoContent, resp.StatusCode, msg)
	resp, msg = f.post(t, encodeWrite(t, req(false, true, now+1000)), "X-Tributary-Cluster", "hot")
	require.Equal(t, http.StatusNoContent, resp.StatusCode, msg)
	cold := writeRequest(t, []string{"__name__", "up", "cluster", "cold"})
	resp, msg = f.post(t, cold)
	require.Equal(t, http.StatusNoContent, resp.StatusCode, msg)

	base := shard.HashXX.Base("hot", parts)
	allowed := map[int32]bool{}
	for s := range k {
		allowed[(base+int32(s))%parts] = true
	}
	seriesAt := map[string]int32{}
	used := map[int32]int{}
	samples := 0
	for _, m := range testenv.ReadTopic(t, f.kafka.Addr, "tributary.metrics") {
		env, err := record.Parse(m.Headers)
		require.NoError(t, err)
		require.Equal(t, string(m.Key), env.GetCluster(), "key = cluster")
		if env.GetCluster() == "cold" {
			require.Equal(t, shard.HashXX.Base("cold", parts), m.Partition)
			require.Equal(t, cold, m.Value, "an unsharded cluster's request is forwarded as received")
			continue
		}
		require.Equal(t, "hot", env.GetCluster())
		require.True(t, allowed[m.Partition], "partition %d is not one of hot's %v", m.Partition, allowed)
		raw, err := snappy.Decode(nil, m.Value)
		require.NoError(t, err)
		var w prompb.WriteRequest
		require.NoError(t, w.Unmarshal(raw))
		require.EqualValues(t, env.GetItems(), len(w.Timeseries))
		for _, ts := range w.Timeseries {
			require.Contains(t, ts.Labels, prompb.Label{Name: "cluster", Value: "hot"})
			key := seriesKey(ts.Labels)
			if p, ok := seriesAt[key]; ok {
				require.Equal(t, p, m.Partition, "series %s in two partitions", key)
			}
			seriesAt[key] = m.Partition
			used[m.Partition]++
			samples += len(ts.Samples)
		}
	}
	require.Equal(t, 2*n, samples, "every sample of hot written once")
	require.Len(t, seriesAt, n)
	require.Len(t, used, k, "all of hot's partitions used: %v", used)
	for p, c := range used {
		require.Greater(t, c, 2*n/k/2, "partition %d got %d of %d samples", p, c, 2*n)
	}
}

// TestShardTableLargerThanTopicStopsGateway: k above the topic's partition
// count is found once Kafka answers, and Run returns it.
func TestShardTableLargerThanTopicStopsGateway(t *testing.T) {
	k := testenv.Kafka(t, 4)
	var cfg Config
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	cfg.RegisterFlags(fs)
	require.NoError(t, fs.Parse([]string{"-kafka.brokers", k.Addr, "-shards.file", shardsFile(t, "clusters:\n  hot: 5\n")}))
	require.NoError(t, cfg.Validate(), "the file parses; the partition count is checked once Kafka answers")
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	reg := prometheus.NewRegistry()
	prod, err := kafka.NewProducer(cfg.Kafka, cfg.Producer, "gateway", reg, log)
	require.NoError(t, err)
	t.Cleanup(func() { prod.Close() })
	gw := New(cfg, prod, reg, reg, log)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err = gw.Run(ctx)
	require.ErrorContains(t, err, "shard table spreads clusters over more partitions than topic tributary.metrics has (4): [hot: 5]")
	require.NoError(t, ctx.Err())
}

// TestShardedLokiPush: a hot cluster's streams are spread over its k
// partitions, each stream to one of them whether it came as protobuf with
// its cluster label or as JSON with the cluster from the header, entries in
// order; nothing lost.
func TestShardedLokiPush(t *testing.T) {
	const parts, k, n = 4, 3, 120
	f := newFixture(t, func(c *Config) { c.Shards.File = shardsFile(t, fmt.Sprintf("clusters:\n  hot: %d\n", k)) })
	now := time.Now().Truncate(time.Millisecond)
	var pr push.PushRequest
	var js strings.Builder
	js.WriteString(`{"streams":[`)
	for i := range n {
		pr.Streams = append(pr.Streams, push.Stream{
			Labels:  fmt.Sprintf(`{app="api", cluster="hot", pod="p-%d"}`, i),
			Entries: []push.Entry{{Timestamp: now, Line: "one"}, {Timestamp: now.Add(1), Line: "two"}},
		})
		if i > 0 {
			js.WriteString(",")
		}
		fmt.Fprintf(&js, `{"stream":{"pod":"p-%d","app":"api"},"values":[["%d","three"]]}`, i, now.Add(2).UnixNano())
	}
	js.WriteString(`]}`)
	raw, err := pr.Marshal()
	require.NoError(t, err)
	code, msg := f.push(t, snappy.Encode(nil, raw), "Content-Type", "application/x-protobuf")
	require.Equal(t, http.StatusNoContent, code, msg)
	code, msg = f.push(t, []byte(js.String()), "Content-Type", "application/json", "X-Tributary-Cluster", "hot")
	require.Equal(t, http.StatusNoContent, code, msg)

	base := shard.HashXX.Base("hot", parts)
	streamAt := map[string]int32{}
	lines := map[string][]string{}
	used := map[int32]bool{}
	for _, m := range hotRecords(t, f.kafka.Addr, "tributary.logs", base, parts) {
		used[m.Partition] = true
		raw := m.Value
		var got push.PushRequest
		require.NoError(t, got.Unmarshal(raw))
		for _, s := range got.Streams {
			require.Contains(t, s.Labels, `cluster="hot"`)
			pod := s.Labels[strings.Index(s.Labels, "pod="):]
			if p, ok := streamAt[pod]; ok {
				require.Equal(t, p, m.Partition, "stream %s in two partitions", pod)
			}
			streamAt[pod] = m.Partition
			for _, e := range s.Entries {
				lines[pod] = append(lines[pod], e.Line)
			}
		}
	}
	require.Len(t, streamAt, n)
	require.Len(t, used, k, "all of hot's partitions used")
	for pod, l := range lines {
		require.Equal(t, []string{"one", "two", "three"}, l, "stream %s", pod)
	}
}

// TestShardedSpans: a hot cluster's spans are spread over its k partitions
// by trace id: every span of a trace in one partition, across requests and
// resources, the resource's cluster attribute set on each.
func TestShardedSpans(t *testing.T) {
	const parts, k, traces = 4, 3, 90
	f := newFixture(t, func(c *Config) { c.Shards.File = shardsFile(t, fmt.Sprintf("clusters:\n  hot: %d\n", k)) })
	req := func(service string, span byte, withCluster bool) []byte {
		attrs := []*commonpb.KeyValue{{Key: "service.name", Value: &commonpb.AnyValue{Value: &commonpb.AnyValue_StringValue{StringValue: service}}}}
		if withCluster {
			attrs = append(attrs, &commonpb.KeyValue{Key: otlp.ClusterAttribute, Value: &commonpb.AnyValue{Value: &commonpb.AnyValue_StringValue{StringValue: "hot"}}})
		}
		var spans []*tracepb.Span
		now := uint64(time.Now().UnixNano())
		for i := range traces {
			id := make([]byte, 16)
			id[0], id[15] = byte(i), 7
			spans = append(spans, &tracepb.Span{TraceId: id, SpanId: []byte{span, byte(i), 1, 1, 1, 1, 1, 1}, Name: "op",
				StartTimeUnixNano: now, EndTimeUnixNano: now + 1000})
		}
		b, err := proto.Marshal(&coltracepb.ExportTraceServiceRequest{ResourceSpans: []*tracepb.ResourceSpans{{
			Resource:   &resourcepb.Resource{Attributes: attrs},
			ScopeSpans: []*tracepb.ScopeSpans{{Spans: spans}},
		}}})
		require.NoError(t, err)
		return b
	}
	resp, msg := f.postOTLP(t, req("api", 1, true))
	require.Equal(t, http.StatusOK, resp.StatusCode, string(msg))
	resp, msg = f.postOTLP(t, req("db", 2, false), "X-Tributary-Cluster", "hot")
	require.Equal(t, http.StatusOK, resp.StatusCode, string(msg))

	base := shard.HashXX.Base("hot", parts)
	traceAt := map[string]int32{}
	used := map[int32]bool{}
	spans := 0
	for _, m := range hotRecords(t, f.kafka.Addr, "tributary.spans", base, parts) {
		used[m.Partition] = true
		raw := m.Value
		var got coltracepb.ExportTraceServiceRequest
		require.NoError(t, proto.Unmarshal(raw, &got))
		for _, rs := range got.ResourceSpans {
			require.Contains(t, rs.Resource.String(), `string_value:"hot"`)
			for _, ss := range rs.ScopeSpans {
				for _, sp := range ss.Spans {
					id := fmt.Sprintf("%x", sp.TraceId)
					if p, ok := traceAt[id]; ok {
						require.Equal(t, p, m.Partition, "trace %s in two partitions", id)
					}
					traceAt[id] = m.Partition
					spans++
				}
			}
		}
	}
	require.Equal(t, 2*traces, spans, "every span written once")
	require.Len(t, traceAt, traces)
	require.Len(t, used, k, "all of hot's partitions used")
}

// hotRecords reads topic, every record of it cluster hot's on one of hot's
// three partitions from base, and returns them with their values decoded.
func hotRecords(t *testing.T, addr, topic string, base, parts int32) []*sarama.ConsumerMessage {
	t.Helper()
	msgs := testenv.ReadTopic(t, addr, topic)
	for _, m := range msgs {
		env, err := record.Parse(m.Headers)
		require.NoError(t, err)
		require.Equal(t, "hot", string(m.Key))
		require.Equal(t, "hot", env.GetCluster())
		require.Contains(t, []int32{base, (base + 1) % parts, (base + 2) % parts}, m.Partition)
		m.Value, err = snappy.Decode(nil, m.Value)
		require.NoError(t, err)
	}
	return msgs
}
