package integration

import (
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/golang/snappy"
	"github.com/stretchr/testify/require"

	"github.com/tributary-io/tributary/internal/testenv"
	"github.com/tributary-io/tributary/pkg/record"
	recordpb "github.com/tributary-io/tributary/proto/record/v1"
)

// Three clusters through gateway → Kafka → ingester → Prometheus: every
// sample arrives with the right cluster label and value. One cluster sends
// without the label and relies on the cluster header; one request mixes two
// clusters.
func TestMetricsEndToEnd(t *testing.T) {
	t.Parallel()
	k := testenv.Kafka(t, 4)
	prom := testenv.Prometheus(t, testenv.SinkConfig)
	gw := startGateway(t, k.Addr)
	startIngester(t, k.Addr, prom.URL)

	l := newLoad("tributary_e2e", []string{"alpha", "beta", "gamma"}, 40, 30)
	for from := 0; from < l.samples; from += 10 {
		code, msg, err := post(gw.URL, l.request("alpha", from, from+10, false))
		require.NoError(t, err)
		require.Equal(t, http.StatusNoContent, code, msg)
		code, msg, err = post(gw.URL, l.request("beta", from, from+10, true), "X-Tributary-Cluster", "beta")
		require.NoError(t, err)
		require.Equal(t, http.StatusNoContent, code, msg)
		code, msg, err = post(gw.URL, l.request("gamma", from, from+10, false))
		require.NoError(t, err)
		require.Equal(t, http.StatusNoContent, code, msg)
	}
	verify(t, prom, l, map[string]int{"alpha": 30, "beta": 30, "gamma": 30})
	requireNoDeadLetters(t, k.Addr)

	// Kafka records are keyed by cluster, so each cluster is on one partition.
	parts := map[string]map[int32]bool{}
	for _, m := range testenv.ReadTopic(t, k.Addr, "tributary.metrics") {
		c := string(m.Key)
		require.Equal(t, c, testenv.Header(m, record.HeaderCluster))
		if parts[c] == nil {
			parts[c] = map[int32]bool{}
		}
		parts[c][m.Partition] = true
	}
	require.Len(t, parts, 3)
	for c, ps := range parts {
		require.Len(t, ps, 1, "cluster %s spread over partitions", c)
	}
}

// A stock Prometheus with remote_write to the gateway: its own metrics arrive
// in the sink with its cluster external label.
func TestPrometheusAsClient(t *testing.T) {
	t.Parallel()
	k := testenv.Kafka(t, 2)
	sink := testenv.Prometheus(t, testenv.SinkConfig)
	gw := startGateway(t, k.Addr)
	startIngester(t, k.Addr, sink.URL)
	testenv.Prometheus(t, fmt.Sprintf(`
global:
  scrape_interval: 1s
  external_labels:
    cluster: sender-1
scrape_configs:
  - job_name: gateway
    static_configs: [{targets: [%q]}]
remote_write:
  - url: %s/api/v1/write
    queue_config: {batch_send_deadline: 1s}
`, strings.TrimPrefix(gw.URL, "http://"), gw.URL))
	deadline := time.Now().Add(60 * time.Second)
	for {
		res, err := sink.Query(`up{cluster="sender-1",job="gateway"}`, time.Now())
		require.NoError(t, err)
		if len(res) == 1 && res[0].Value == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("sender's metrics never arrived in the sink: %v", res)
		}
		time.Sleep(500 * time.Millisecond)
	}
	// The gateway counts the sender's samples under its cluster, and that
	// counter too makes the round trip.
	waitFor(t, func() bool {
		res, err := sink.Query(`tributary_gateway_items_received_total{cluster="sender-1",signal="metrics"} > 0`, time.Now())
		return err == nil && len(res) == 1
	})
}

// sendContinuously posts batches of samples for cluster c until stop is
// closed, and returns how many samples per series were acknowledged (all
// samples before that index got 204; later ones may or may not be there).
func sendContinuously(t *testing.T, url string, l load, c string, stop <-chan struct{}, sent *atomic.Int64, wg *sync.WaitGroup) {
	defer wg.Done()
	for from := 0; from < l.samples; {
		select {
		case <-stop:
			return
		default:
		}
		code, _, err := post(url, l.request(c, from, from+1, false))
		if err == nil && code == http.StatusNoContent {
			from++
			sent.Store(int64(from))
			continue
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// A record the sink refuses with 4xx and one with an unknown envelope
// version go to the dead-letter topic with their reason; the partition moves
// on and later records arrive.
func TestPoisonRecordsAreDeadLettered(t *testing.T) {
	t.Parallel()
	k := testenv.Kafka(t, 1)
	prom := testenv.Prometheus(t, testenv.SinkConfig)
	gw := startGateway(t, k.Addr)
	l := newLoad("tributary_poison", []string{"p"}, 5, 10)

	code, msg, err := post(gw.URL, l.request("p", 0, 5, false))
	require.NoError(t, err)
	require.Equal(t, http.StatusNoContent, code, msg)

	// Valid envelope, value Prometheus cannot decode → 400 from the sink.
	env := &recordpb.Envelope{SchemaVersion: record.SchemaVersion, Signal: recordpb.Signal_SIGNAL_METRICS,
		Cluster: "p", ContentType: record.ContentTypeWriteRequest, ContentEncoding: record.EncodingSnappy, Items: 1}
	poison := snappy.Encode(nil, []byte("\x0a\x05not a protobuf"))
	future := record.Headers(env)
	for i := range future {
		if string(future[i].Key) == record.HeaderSchema {
			future[i].Value = []byte("99")
		}
	}
	cfg := sarama.NewConfig()
	cfg.Version = sarama.V2_8_0_0
	cfg.Producer.Return.Successes = true
	cfg.Producer.RequiredAcks = sarama.WaitForAll
	prod, err := sarama.NewSyncProducer([]string{k.Addr}, cfg)
	require.NoError(t, err)
	defer prod.Close()
	require.NoError(t, prod.SendMessages([]*sarama.ProducerMessage{
		{Topic: "tributary.metrics", Key: sarama.StringEncoder("p"), Value: sarama.ByteEncoder(poison), Headers: record.Headers(env)},
		{Topic: "tributary.metrics", Key: sarama.StringEncoder("p"), Value: sarama.ByteEncoder(l.request("p", 0, 1, false)), Headers: future},
	}))
	code, msg, err = post(gw.URL, l.request("p", 5, 10, false))
	require.NoError(t, err)
	require.Equal(t, http.StatusNoContent, code, msg)

	startIngester(t, k.Addr, prom.URL)
	verify(t, prom, l, map[string]int{"p": 10})

	var dl []*sarama.ConsumerMessage
	waitFor(t, func() bool {
		dl = testenv.ReadTopic(t, k.Addr, "tributary.dlq")
		return len(dl) >= 2
	})
	require.Len(t, dl, 2)
	require.Equal(t, poison, dl[0].Value, "the dead letter keeps the original bytes")
	require.Equal(t, "p", string(dl[0].Key))
	require.Equal(t, "prometheus", testenv.Header(dl[0], record.HeaderDLQSink))
	require.Equal(t, "tributary.metrics", testenv.Header(dl[0], record.HeaderDLQTopic))
	require.Equal(t, "0", testenv.Header(dl[0], record.HeaderDLQPartition))
	require.Equal(t, "1", testenv.Header(dl[0], record.HeaderDLQOffset))
	require.Contains(t, testenv.Header(dl[0], record.HeaderDLQReason), "400")
	require.Equal(t, "p", testenv.Header(dl[0], record.HeaderCluster), "original envelope headers are kept")
	require.Equal(t, "2", testenv.Header(dl[1], record.HeaderDLQOffset))
	require.Contains(t, testenv.Header(dl[1], record.HeaderDLQReason), "unknown envelope schema version")
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not reached within 60s")
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Two ingesters share the partitions; one is stopped with SIGTERM while
// traffic flows (it flushes and commits before leaving, the other takes its
// partitions over). It exits cleanly, and nothing is lost.
func TestIngesterRebalanceAndGracefulStop(t *testing.T) {
	t.Parallel()
	k := testenv.Kafka(t, 4, testenv.FastGroups()...)
	prom := testenv.Prometheus(t, testenv.SinkConfig)
	gw := startGateway(t, k.Addr)
	a := startIngester(t, k.Addr, prom.URL, "-prometheus.batch.max-delay=500ms")
	startIngester(t, k.Addr, prom.URL)

	l := newLoad("tributary_rebalance", []string{"r1", "r2", "r3", "r4"}, 10, 150)
	var wg sync.WaitGroup
	sent := make([]atomic.Int64, len(l.clusters))
	for i, c := range l.clusters {
		wg.Add(1)
		go sendContinuously(t, gw.URL, l, c, make(chan struct{}), &sent[i], &wg)
	}
	waitFor(t, func() bool { return sent[0].Load() > 50 })
	require.NoError(t, a.Stop(30*time.Second), "graceful stop must exit 0")
	require.Contains(t, a.Output(), "stopped")
	wg.Wait()
	want := map[string]int{}
	for _, c := range l.clusters {
		want[c] = l.samples
	}
	verify(t, prom, l, want)
	requireNoDeadLetters(t, k.Addr)
}

// The gateway is stopped with SIGTERM while requests are in flight and a new
// one takes its port: every request answered 204 is in the sink, and the old
// gateway exits cleanly.
func TestGatewayGracefulStop(t *testing.T) {
	t.Parallel()
	k := testenv.Kafka(t, 2)
	prom := testenv.Prometheus(t, testenv.SinkConfig)
	port := testenv.FreePort(t)
	addr := "-http.listen-addr=" + testenv.Addr(port)
	gw := startGateway(t, k.Addr, addr)
	startIngester(t, k.Addr, prom.URL)

	l := newLoad("tributary_gwstop", []string{"g1", "g2"}, 20, 100)
	var wg sync.WaitGroup
	sent := make([]atomic.Int64, len(l.clusters))
	for i, c := range l.clusters {
		wg.Add(1)
		go sendContinuously(t, gw.URL, l, c, make(chan struct{}), &sent[i], &wg)
	}
	waitFor(t, func() bool { return sent[0].Load() > 30 })
	require.NoError(t, gw.Stop(30*time.Second), "graceful stop must exit 0")
	startGateway(t, k.Addr, addr)
	wg.Wait()
	verify(t, prom, l, map[string]int{"g1": l.samples, "g2": l.samples})
}
