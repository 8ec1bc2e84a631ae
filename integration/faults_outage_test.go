package integration

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tributary-io/tributary/internal/testenv"
)

// sinkOutage is how long a sink is down: the issue asks for 60 s, longer
// than every backoff cap, so the ingester's retries run at their ceiling.
const sinkOutage = 60 * time.Second

// outageRun is one harness whose sink down is stopped for sinkOutage while
// metrics and logs flow.
type outageRun struct {
	down          string
	kafka         string
	rig           *faultRig
	ing           *ingesterProc
	ml            load
	ll            logLoad
	metrics, logs *sender
	stop          func()
	restart       func(testing.TB)
	marked        [2]int                   // items acknowledged a third into the outage
	flowedAfter   map[string]time.Duration // other sink → when it held them
}

// found is how many samples, lines or documents sink holds.
func (r *outageRun) found(t *testing.T, sink string) int {
	switch sink {
	case "prometheus":
		return promFound(t, r.rig.prom, r.ml, "o")
	case "loki":
		return lokiFound(t, r.rig.loki, r.ll, "o")
	}
	return esFound(t, r.rig.zinc)
}

// Each sink down for 60 s while metrics and logs flow, one harness per sink,
// the three outages at the same time (one test drives them, so they overlap
// whatever go test's -parallel is): the two other sinks keep taking what is
// sent during the outage (they hold it before the stopped sink returns), the
// stopped one catches up, nothing is lost, nothing is dead-lettered, and the
// ingester's retry counter shows the outage met its writes.
func TestSinkOutage60s(t *testing.T) {
	t.Parallel()
	var runs []*outageRun
	var wg sync.WaitGroup
	stopSending := make(chan struct{})
	for _, down := range []string{"prometheus", "loki", "elasticsearch"} {
		k := testenv.Kafka(t, 2)
		r := &outageRun{down: down, kafka: k.Addr, rig: newFaultRig(t, k.Addr, true, false), flowedAfter: map[string]time.Duration{}}
		r.stop = map[string]func(){"prometheus": r.rig.prom.Stop, "loki": r.rig.loki.Stop, "elasticsearch": r.rig.zinc.Stop}[down]
		r.restart = map[string]func(testing.TB){"prometheus": r.rig.prom.Restart, "loki": r.rig.loki.Restart, "elasticsearch": r.rig.zinc.Restart}[down]
		gw := startGateway(t, k.Addr)
		r.ing = r.rig.ingester(t)
		r.ml = newLoad("tributary_outage60", []string{"o"}, 5, 1000)
		r.ll = newLogLoad([]string{"o"}, 2, 1000)
		r.metrics = &sender{name: down + " down: metrics", perItem: r.ml.series}
		r.metrics.start(t, &wg, r.ml.samples, 200*time.Millisecond, stopSending, func(i int) (int, string, error) {
			return post(gw.URL, r.ml.request("o", i, i+1, false))
		})
		r.logs = &sender{name: down + " down: logs", perItem: r.ll.streams}
		r.logs.start(t, &wg, r.ll.entries, 200*time.Millisecond, stopSending, func(i int) (int, string, error) {
			return r.ll.send(gw.URL, "o", i, i+1)
		})
		runs = append(runs, r)
	}
	waitFor(t, func() bool {
		for _, r := range runs {
			if r.metrics.acked.Load() < 10 || r.logs.acked.Load() < 10 {
				return false
			}
		}
		return true
	})

	for _, r := range runs {
		r.stop()
	}
	downAt := time.Now()
	time.Sleep(sinkOutage / 3)
	for _, r := range runs {
		r.marked = [2]int{int(r.metrics.acked.Load()), int(r.logs.acked.Load())}
	}
	// What was acknowledged a third into the outage must reach the other
	// sinks of each harness while its stopped sink is still down.
	want := func(r *outageRun, sink string) int {
		if sink == "prometheus" {
			return r.marked[0] * r.ml.series
		}
		return r.marked[1] * r.ll.streams
	}
	testenv.Eventually(t, time.Until(downAt.Add(sinkOutage-2*time.Second)), func() error {
		for _, r := range runs {
			for _, sink := range []string{"prometheus", "loki", "elasticsearch"} {
				if sink == r.down || r.flowedAfter[sink] != 0 {
					continue
				}
				if got := r.found(t, sink); got < want(r, sink) {
					return fmt.Errorf("%s down: %s holds %d, want at least %d", r.down, sink, got, want(r, sink))
				}
				r.flowedAfter[sink] = time.Since(downAt)
			}
		}
		return nil
	})
	time.Sleep(time.Until(downAt.Add(sinkOutage)))
	for _, r := range runs {
		r.restart(t)
	}
	time.Sleep(2 * time.Second) // a few items after the return
	close(stopSending)
	wg.Wait()

	for _, r := range runs {
		n, e := int(r.metrics.acked.Load()), int(r.logs.acked.Load())
		verify(t, r.rig.prom, r.ml, map[string]int{"o": n})
		verifyLoki(t, r.rig.loki, r.ll, e)
		verifyES(t, r.rig.zinc, r.ll, e)
		requireOutageMet(t, r.ing.URL, r.down)
		requireNoDeadLetters(t, r.kafka)
		require.Zero(t, r.metrics.refused.Load()+r.logs.refused.Load(), "%s down: the gateway refused writes", r.down)
		t.Logf("%s down for %s: ingester retries %.0f; the items acknowledged %s in (%d samples, %d lines) reached the other sinks after %v",
			r.down, sinkOutage, metricValue(t, r.ing.URL, "tributary_ingester_sink_retries_total", map[string]string{"sink": r.down}),
			sinkOutage/3, want(r, "prometheus"), want(r, "loki"), r.flowedAfter)
		r.metrics.report(t, "prometheus", r.found(t, "prometheus"), r.rig.promTap)
		r.logs.report(t, "loki", r.found(t, "loki"), r.rig.lokiTap)
		r.logs.report(t, "elasticsearch", r.found(t, "elasticsearch"), r.rig.esTap)
	}
}
