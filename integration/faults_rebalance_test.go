package integration

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tributary-io/tributary/internal/testenv"
)

// Ingester replicas come and go every 4 s during a ~30 s burst of metrics
// and logs of eight clusters over eight partitions: 3 → 1 (one killed, one
// stopped) → 4 → 2 (one killed, one stopped) → 3 → 2 (killed) → 2 (one
// stopped, one added) → 4. Nothing acknowledged is lost; the records
// written twice (a killed member's uncommitted batches, a partition taken
// over mid-batch) are counted.
func TestRebalanceStorm(t *testing.T) {
	t.Parallel()
	k := testenv.Kafka(t, 8, testenv.FastGroups()...)
	rig := newFaultRig(t, k.Addr, false, false)
	gw := startGateway(t, k.Addr)

	var mu sync.Mutex
	var live []*ingesterProc
	add := func(n int) {
		for range n {
			p := rig.ingester(t)
			mu.Lock()
			live = append(live, p)
			mu.Unlock()
		}
	}
	take := func() *ingesterProc {
		mu.Lock()
		defer mu.Unlock()
		p := live[0]
		live = live[1:]
		return p
	}
	var stops sync.WaitGroup
	var stopErrs []error
	kill := func() { take().Kill() }
	stop := func() {
		p := take()
		stops.Add(1)
		go func() {
			defer stops.Done()
			if err := p.Stop(30 * time.Second); err != nil {
				mu.Lock()
				stopErrs = append(stopErrs, fmt.Errorf("graceful stop: %w", err))
				mu.Unlock()
			}
		}()
	}
	// Slow sinks, so that kills and hand-overs find writes in flight.
	rig.promTap.delay.Store(int64(time.Second))
	rig.lokiTap.delay.Store(int64(time.Second))
	add(3)

	clusters := []string{"s1", "s2", "s3", "s4", "s5", "s6", "s7", "s8"}
	const n = 150 // at 200 ms a step: ~30 s of sending
	ml := newLoad("tributary_storm", clusters, 5, n)
	ll := newLogLoad(clusters[:4], 2, n)
	var wg sync.WaitGroup
	var metrics, logs []*sender
	for _, c := range clusters {
		s := &sender{name: "metrics " + c, perItem: ml.series}
		s.start(t, &wg, n, 200*time.Millisecond, nil, func(i int) (int, string, error) { return post(gw.URL, ml.request(c, i, i+1, false)) })
		metrics = append(metrics, s)
	}
	for _, c := range ll.clusters {
		s := &sender{name: "logs " + c, perItem: ll.streams}
		s.start(t, &wg, n, 200*time.Millisecond, nil, func(i int) (int, string, error) { return ll.send(gw.URL, c, i, i+1) })
		logs = append(logs, s)
	}

	steps := []func(){
		func() { kill(); stop() }, // 3 → 1
		func() { add(3) },         // → 4
		func() { kill(); stop() }, // → 2
		func() { add(1) },         // → 3
		func() { kill() },         // → 2
		func() { stop(); add(1) }, // → 2
		func() { add(2) },         // → 4
	}
	for i, step := range steps {
		time.Sleep(4 * time.Second)
		step()
		mu.Lock()
		t.Logf("step %d at %s: %d ingesters", i+1, time.Now().Format("15:04:05"), len(live))
		mu.Unlock()
	}
	wg.Wait()
	stops.Wait()
	require.Empty(t, stopErrs, "an ingester did not stop gracefully")

	want := map[string]int{}
	for _, c := range clusters {
		want[c] = n
	}
	verify(t, rig.prom, ml, want)
	verifyLoki(t, rig.loki, ll, n)
	requireNoDeadLetters(t, k.Addr)
	var sent, refused, acked, found int64
	for i, s := range metrics {
		sent, refused, acked = sent+s.attempts.Load(), refused+s.refused.Load(), acked+s.acked.Load()*int64(s.perItem)
		found += int64(promFound(t, rig.prom, ml, clusters[i]))
	}
	_, dups := rig.promTap.tally()
	t.Logf("metrics (8 clusters) → prometheus: sent %d requests (%d answered 503/429), acknowledged %d samples, found %d, duplicated %d", sent, refused, acked, found, dups)
	sent, refused, acked, found = 0, 0, 0, 0
	for i, s := range logs {
		sent, refused, acked = sent+s.attempts.Load(), refused+s.refused.Load(), acked+s.acked.Load()*int64(s.perItem)
		found += int64(lokiFound(t, rig.loki, ll, ll.clusters[i]))
	}
	_, dups = rig.lokiTap.tally()
	t.Logf("logs (4 clusters) → loki: sent %d requests (%d answered 503/429), acknowledged %d lines, found %d, duplicated %d", sent, refused, acked, found, dups)
}
