package integration

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"testing"

	"github.com/golang/snappy"
	"github.com/grafana/loki/pkg/push"
	"github.com/prometheus/prometheus/prompb"
	"github.com/stretchr/testify/require"

	"github.com/tributary-io/tributary/internal/testenv"
)

var appLabel = regexp.MustCompile(`app="app-[0-9]+"`)

// A hot cluster spread over 3 of 6 partitions by the shard table, the same
// table on two gateways, two ingesters writing to the real Prometheus and
// Loki: every sample and line arrives exactly once, each series and stream
// kept to one partition whichever gateway and form (cluster label sent or
// from the header, protobuf or JSON) it came in, and Prometheus saw no
// sample out of order (its out-of-order counters stay 0 while its window
// would have taken them: a shard table that broke order would show there,
// not as a loss).
func TestShardedClusterEndToEnd(t *testing.T) {
	t.Parallel()
	const partitions, k = 6, 3
	kc := testenv.Kafka(t, partitions)
	prom := testenv.Prometheus(t, testenv.SinkConfig)
	loki := testenv.Loki(t)
	table := filepath.Join(t.TempDir(), "shards.yaml")
	require.NoError(t, os.WriteFile(table, []byte(fmt.Sprintf("clusters:\n  hot: %d\n", k)), 0o600))
	gws := []*gatewayProc{startGateway(t, kc.Addr, "-shards.file="+table), startGateway(t, kc.Addr, "-shards.file="+table)}
	lokiArgs := []string{"-loki.url=" + loki.URL + "/loki/api/v1/push", "-loki.batch.max-delay=50ms", "-loki.backoff.max=1s", "-loki.flush-timeout=5s"}
	startIngester(t, kc.Addr, prom.URL, lokiArgs...)
	startIngester(t, kc.Addr, prom.URL, lokiArgs...)

	// Metrics: 5 samples per request, gateways alternating, hot's series
	// with and without their cluster label in turn.
	l := newLoad("tributary_sharded", []string{"hot", "cold"}, 60, 30)
	for from, i := 0, 0; from < l.samples; from, i = from+5, i+1 {
		gw := gws[i%2]
		code, msg, err := post(gw.URL, l.request("hot", from, from+5, i%2 == 1), "X-Tributary-Cluster", "hot")
		require.NoError(t, err)
		require.Equal(t, http.StatusNoContent, code, msg)
		code, msg, err = post(gw.URL, l.request("cold", from, from+5, false))
		require.NoError(t, err)
		require.Equal(t, http.StatusNoContent, code, msg)
	}
	// Logs: hot's streams as protobuf with the label and as JSON without.
	ll := newLogLoad([]string{"hot"}, 12, 30)
	for from, i := 0, 0; from < ll.entries; from, i = from+5, i+1 {
		body, headers := ll.protobuf("hot", from, from+5), []string{"Content-Type", "application/x-protobuf"}
		if i%2 == 1 {
			body, headers = ll.json("hot", from, from+5), []string{"Content-Type", "application/json", "X-Tributary-Cluster", "hot"}
		}
		code, msg, err := pushLogs(gws[i%2].URL, body, headers...)
		require.NoError(t, err)
		require.Equal(t, http.StatusNoContent, code, msg)
	}

	verify(t, prom, l, map[string]int{"hot": l.samples, "cold": l.samples})
	verifyLoki(t, loki, ll, ll.entries)
	requireNoDeadLetters(t, kc.Addr)
	fams := scrapeMetrics(t, prom.URL)
	for _, name := range []string{"prometheus_tsdb_out_of_order_samples_total", "prometheus_tsdb_head_out_of_order_samples_appended_total"} {
		require.Contains(t, fams, name, "the sink's Prometheus counts out-of-order samples")
		require.Zero(t, sumSamples(fams[name], nil), name)
	}

	// Where the records went.
	seriesAt := map[string]int32{}
	hotParts := map[int32]bool{}
	for _, m := range testenv.ReadTopic(t, kc.Addr, "tributary.metrics") {
		raw, err := snappy.Decode(nil, m.Value)
		require.NoError(t, err)
		var w prompb.WriteRequest
		require.NoError(t, w.Unmarshal(raw))
		if string(m.Key) == "hot" {
			hotParts[m.Partition] = true
		}
		for _, ts := range w.Timeseries {
			key := string(m.Key) + "/" + ts.Labels[len(ts.Labels)-1].Value // the series label sorts last
			if p, ok := seriesAt[key]; ok {
				require.Equal(t, p, m.Partition, "series %s in two partitions", key)
			}
			seriesAt[key] = m.Partition
		}
	}
	require.Len(t, seriesAt, 2*l.series)
	require.Len(t, hotParts, k, "hot's series over its %d partitions", k)
	streamAt := map[string]int32{}
	for _, m := range testenv.ReadTopic(t, kc.Addr, "tributary.logs") {
		raw, err := snappy.Decode(nil, m.Value)
		require.NoError(t, err)
		var pr push.PushRequest
		require.NoError(t, pr.Unmarshal(raw))
		for _, s := range pr.Streams {
			// JSON streams are rendered by the gateway, protobuf ones kept
			// as sent: the app label names the stream in both.
			app := appLabel.FindString(s.Labels)
			require.NotEmpty(t, app, s.Labels)
			if p, ok := streamAt[app]; ok {
				require.Equal(t, p, m.Partition, "stream %s in two partitions", app)
			}
			streamAt[app] = m.Partition
		}
	}
	require.Len(t, streamAt, ll.streams)
	logParts := map[int32]bool{}
	for _, p := range streamAt {
		logParts[p] = true
	}
	require.Greater(t, len(logParts), 1, "hot's streams spread over its partitions: %v", streamAt)
}
