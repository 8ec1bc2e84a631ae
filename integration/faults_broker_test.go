package integration

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/stretchr/testify/require"

	"github.com/tributary-io/tributary/internal/testenv"
)

// startDevbroker runs cmd/devbroker on port with its data in dir and waits
// until it answers metadata requests.
func startDevbroker(t *testing.T, port int, dir string, extra ...string) *testenv.Process {
	t.Helper()
	p := testenv.StartProcess(t, "devbroker", testenv.Binary(t, "devbroker"),
		append([]string{"-port", fmt.Sprint(port), "-data-dir", dir, "-partitions", "2"}, extra...))
	testenv.Eventually(t, 30*time.Second, func() error {
		if p.Exited() {
			t.Fatalf("devbroker exited: %s", p.Output())
		}
		c, err := sarama.NewClient([]string{testenv.Addr(port)}, sarama.NewConfig())
		if err != nil {
			return err
		}
		return c.Close()
	})
	return p
}

// The broker (cmd/devbroker, a real process with a data directory) is
// killed with SIGKILL while metrics, logs and spans flow, and restarted on
// the same directory 3 s later: the senders get 503 meanwhile and retry,
// and every item the gateway acknowledged is in Prometheus, Loki and the
// Jaeger span indices afterwards. The ingester is killed shortly before
// the broker and restarted after it, so the items acknowledged in between
// reach the sinks only through the broker's data directory.
//
// Why nothing acknowledged can be lost here: kfake writes each produced
// batch to its segment file (write(2), the page cache) before it answers
// the produce, so the kill of the process loses no acknowledged record;
// after a kill it rebuilds the partitions by scanning the segments. Only a
// crash of the host could lose records acknowledged but not yet fsynced:
// devbroker's -sync-writes covers that.
func TestBrokerKillLosesNothing(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	port := testenv.FreePort(t)
	addr := testenv.Addr(port)
	broker := startDevbroker(t, port, dir)
	rig := newFaultRig(t, addr, false, true)
	gw := startGateway(t, addr)
	ing := rig.ingester(t)

	clusters := []string{"bk1", "bk2"}
	ml := newLoad("tributary_brokerkill", clusters, 10, 150)
	ll := newLogLoad(clusters, 2, 150)
	sl := spanLoad{t0: time.Now().Add(-time.Minute).Truncate(time.Millisecond)}
	var wg sync.WaitGroup
	var metrics, logs, spans []*sender
	for _, c := range clusters {
		m := &sender{name: "metrics " + c, perItem: ml.series}
		m.start(t, &wg, ml.samples, 30*time.Millisecond, nil, func(i int) (int, string, error) {
			return post(gw.URL, ml.request(c, i, i+1, false))
		})
		lg := &sender{name: "logs " + c, perItem: ll.streams}
		lg.start(t, &wg, ll.entries, 30*time.Millisecond, nil, func(i int) (int, string, error) {
			return ll.send(gw.URL, c, i, i+1)
		})
		sp := &sender{name: "spans " + c, perItem: 1}
		sp.start(t, &wg, 150, 30*time.Millisecond, nil, func(i int) (int, string, error) {
			return postSpans(gw.URL, sl.body(c, i))
		})
		metrics, logs, spans = append(metrics, m), append(logs, lg), append(spans, sp)
	}
	all := append(append(append([]*sender(nil), metrics...), logs...), spans...)
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
	waitFor(t, progress(30))
	// The ingester dies first (as on a host that crashes), so what the
	// gateway acknowledges from now on exists only in the broker's data
	// directory when the broker is killed in turn.
	ing.Kill()
	waitFor(t, progress(60))
	t0 := time.Now()
	broker.Kill()
	time.Sleep(3 * time.Second)
	startDevbroker(t, port, dir)
	ing = rig.ingester(t)
	t.Logf("broker restarted after %s", time.Since(t0))
	wg.Wait()
	t.Logf("senders done after %s", time.Since(t0))

	want := map[string]int{}
	for _, c := range clusters {
		want[c] = ml.samples
	}
	verify(t, rig.prom, ml, want)
	verifyLoki(t, rig.loki, ll, ll.entries)
	found := verifySpans(t, rig.zinc, map[string]int{"bk1": 150, "bk2": 150})
	for i, c := range clusters {
		metrics[i].report(t, "prometheus", promFound(t, rig.prom, ml, c), rig.promTap)
		logs[i].report(t, "loki", lokiFound(t, rig.loki, ll, c), rig.lokiTap)
	}
	for _, s := range spans {
		s.report(t, "jaeger spans (both clusters)", found, rig.jaegerTap)
	}
	for _, group := range [][]*sender{metrics, logs, spans} {
		refused := int64(0)
		for _, s := range group {
			refused += s.refused.Load()
		}
		require.Positive(t, refused, "no %s request met the outage (no 503)", group[0].name)
	}
	requireNoDeadLetters(t, addr)
	require.Zero(t, metricValue(t, ing.URL, "tributary_ingester_dlq_records_total", nil))
}
