package integration

import (
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tributary-io/tributary/internal/testenv"
)

// sinkTopics is the consumer group and topic of every sink.
var sinkTopics = map[string]string{
	"prometheus": "tributary.metrics", "loki": "tributary.logs", "elasticsearch": "tributary.logs", "jaeger": "tributary.spans",
}

// One burst of metrics, logs and spans meets two crashes: the ingester that
// writes all four sinks (Prometheus, Loki, Elasticsearch logs, Jaeger
// spans) is killed with SIGKILL while every sink's group holds records it
// has not committed, and a new one takes over; later the gateway is killed
// with SIGKILL mid-request and restarted on its port, and the senders
// retry what got no answer. Every acknowledged item is in every sink; the
// duplicates (records the dead ingester wrote but had not committed) are
// counted.
func TestProcessKillsDuringBurst(t *testing.T) {
	t.Parallel()
	k := testenv.Kafka(t, 2, testenv.FastGroups()...)
	rig := newFaultRig(t, k.Addr, true, true)
	port := testenv.FreePort(t)
	listen := "-http.listen-addr=" + testenv.Addr(port)
	gw := startGateway(t, k.Addr, listen)
	// Batches wait up to 1 s, so a kill always finds some written and
	// not yet committed.
	first := rig.ingester(t, "-prometheus.batch.max-delay=1s", "-loki.batch.max-delay=1s",
		"-elasticsearch.batch.max-delay=1s", "-jaeger.batch.max-delay=1s")

	const n = 200
	ml := newLoad("tributary_kill", []string{"k1"}, 10, n)
	ll := newLogLoad([]string{"k1", "k2"}, 2, n) // JSON and protobuf
	sl := spanLoad{t0: time.Now().Add(-time.Minute).Truncate(time.Millisecond)}
	var wg sync.WaitGroup
	metrics := &sender{name: "metrics k1", perItem: ml.series}
	metrics.start(t, &wg, n, 20*time.Millisecond, nil, func(i int) (int, string, error) {
		return post(gw.URL, ml.request("k1", i, i+1, false))
	})
	var logs []*sender
	for _, c := range ll.clusters {
		s := &sender{name: "logs " + c, perItem: ll.streams}
		s.start(t, &wg, n, 20*time.Millisecond, nil, func(i int) (int, string, error) { return ll.send(gw.URL, c, i, i+1) })
		logs = append(logs, s)
	}
	spans := &sender{name: "spans k1", perItem: 1}
	spans.start(t, &wg, n, 20*time.Millisecond, nil, func(i int) (int, string, error) { return postSpans(gw.URL, sl.body("k1", i)) })
	all := append([]*sender{metrics, spans}, logs...)
	progress := func(min int64) func() bool {
		return func() bool {
			for _, s := range all {
				if s.acked.Load() < min {
					return false
				}
			}
			return true
		}
	}

	waitFor(t, progress(60))
	// Slow sinks: the kill finds every sink's writes in flight.
	taps := []*sinkTap{rig.promTap, rig.lokiTap, rig.esTap, rig.jaegerTap}
	for _, tap := range taps {
		tap.delay.Store(int64(500 * time.Millisecond))
	}
	time.Sleep(1500 * time.Millisecond)
	first.Kill()
	for _, tap := range taps {
		tap.delay.Store(0)
	}
	// The kill met data in flight: every sink's group had records past
	// its committed offset, which only the next ingester can write.
	for sink, topic := range sinkTopics {
		committed, hwm, err := groupOffsets(t, k.Addr, "tributary-"+sink, topic)
		require.NoError(t, err)
		behind := int64(0)
		for p := range hwm {
			behind += hwm[p] - max(committed[p], 0)
		}
		t.Logf("ingester killed: group of %s %d records behind", sink, behind)
		require.Positive(t, behind, "the kill met no uncommitted record of %s", sink)
	}
	rig.ingester(t)

	waitFor(t, progress(120))
	transport := func() (sum int64) {
		for _, s := range all {
			sum += s.transport.Load()
		}
		return sum
	}
	before := transport()
	gw.Kill()
	time.Sleep(time.Second)
	startGateway(t, k.Addr, listen)
	wg.Wait()
	require.Greater(t, transport(), before, "the gateway's kill met no request")

	verify(t, rig.prom, ml, map[string]int{"k1": n})
	verifyLoki(t, rig.loki, ll, n)
	verifyES(t, rig.zinc, ll, n)
	found := verifySpans(t, rig.zinc, map[string]int{"k1": n})
	metrics.report(t, "prometheus", promFound(t, rig.prom, ml, "k1"), rig.promTap)
	for i, c := range ll.clusters {
		logs[i].report(t, "loki", lokiFound(t, rig.loki, ll, c), rig.lokiTap)
	}
	total := int64(0)
	for _, s := range logs {
		total += s.acked.Load() * int64(s.perItem)
	}
	distinct, dups := rig.esTap.tally()
	t.Logf("logs (both clusters) → elasticsearch: acknowledged %d lines, found %d documents (%d distinct written), duplicated %d", total, esFound(t, rig.zinc), distinct, dups)
	spans.report(t, "jaeger spans", found, rig.jaegerTap)
	requireNoDeadLetters(t, k.Addr)
}
