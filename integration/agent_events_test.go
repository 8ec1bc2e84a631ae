package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/golang/snappy"
	"github.com/grafana/loki/pkg/push"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/tributary-io/tributary/internal/testenv"
)

// eventsBatch is the agents' events.batch_size here: the bound on the
// occurrences a hand-over may send twice (the one push a killed leader had
// acknowledged but not yet recorded in the resume ConfigMap).
const eventsBatch = 10

// eventsAgentConfig is an agent with no scrape job that campaigns on the
// Lease default/tributary-agent and ships events while it leads.
func eventsAgentConfig(k *testenv.Kube, gwURL, dir, identity string) string {
	return fmt.Sprintf(`cluster: evclust
gateway:
  url: %s
metrics:
  wal:
    dir: %s
kubernetes:
  kubeconfig: %s
  leader_election:
    namespace: default
    identity: %s
    lease_duration: %s
    renew_deadline: %s
    retry_period: %s
events:
  batch_size: %d
  batch_wait: 200ms
`, gwURL, filepath.Join(dir, "wal"), k.Kubeconfig, identity,
		promDuration(leaseDuration), promDuration(renewDeadline), promDuration(retryPeriod), eventsBatch)
}

// eventWriter creates and updates Events as a kubelet would, and knows
// every occurrence (uid/count) it made.
type eventWriter struct {
	t    *testing.T
	kube *testenv.Kube
	mu   sync.Mutex
	want map[string]bool
	evs  map[string]*corev1.Event
}

func (w *eventWriter) create(name string) {
	w.t.Helper()
	now := metav1.Now()
	e, err := w.kube.Client.CoreV1().Events("default").Create(context.Background(), &corev1.Event{
		ObjectMeta:     metav1.ObjectMeta{Name: name, Namespace: "default"},
		InvolvedObject: corev1.ObjectReference{Kind: "Pod", Namespace: "default", Name: "pod-" + name},
		Reason:         "Unhealthy", Message: "Readiness probe failed: " + name, Type: corev1.EventTypeWarning,
		Count: 1, FirstTimestamp: now, LastTimestamp: now, Source: corev1.EventSource{Component: "kubelet", Host: "node-1"},
	}, metav1.CreateOptions{})
	require.NoError(w.t, err)
	w.mu.Lock()
	defer w.mu.Unlock()
	w.evs[name] = e
	w.want[fmt.Sprintf("%s/1", e.UID)] = true
}

// recur is the event name happening again: count++.
func (w *eventWriter) recur(name string) {
	w.t.Helper()
	w.mu.Lock()
	e := w.evs[name].DeepCopy()
	w.mu.Unlock()
	e.Count++
	e.LastTimestamp = metav1.Now()
	e, err := w.kube.Client.CoreV1().Events("default").Update(context.Background(), e, metav1.UpdateOptions{})
	require.NoError(w.t, err)
	w.mu.Lock()
	defer w.mu.Unlock()
	w.evs[name] = e
	w.want[fmt.Sprintf("%s/%d", e.UID, e.Count)] = true
}

func (w *eventWriter) wanted() map[string]bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := make(map[string]bool, len(w.want))
	for k := range w.want {
		out[k] = true
	}
	return out
}

// occurrenceOf is the uid/count of an event's log line.
func occurrenceOf(t *testing.T, line string) string {
	t.Helper()
	var l struct {
		UID   string `json:"uid"`
		Count int    `json:"count"`
	}
	require.NoError(t, json.Unmarshal([]byte(line), &l), line)
	return fmt.Sprintf("%s/%d", l.UID, l.Count)
}

// eachEventLine calls f with every event log line in the gateway's log
// records and its stream's labels.
func eachEventLine(t *testing.T, addr string, f func(labels, line string)) {
	t.Helper()
	for _, m := range testenv.ReadTopic(t, addr, "tributary.logs") {
		raw, err := snappy.Decode(nil, m.Value)
		require.NoError(t, err)
		var req push.PushRequest
		require.NoError(t, req.Unmarshal(raw))
		for _, st := range req.Streams {
			for _, e := range st.Entries {
				f(st.Labels, e.Line)
			}
		}
	}
}

// eventLine is the log line of occurrence occ in Kafka, to say what an
// unexpected one was.
func eventLine(t *testing.T, addr, occ string) string {
	found := "(not found again)"
	eachEventLine(t, addr, func(labels, line string) {
		if occurrenceOf(t, line) == occ {
			found = labels + " " + line
		}
	})
	return found
}

// kafkaEvents counts each event occurrence in the gateway's log records:
// what the agents delivered, before Loki drops identical entries.
func kafkaEvents(t *testing.T, addr string) map[string]int {
	t.Helper()
	counts := map[string]int{}
	eachEventLine(t, addr, func(_, line string) { counts[occurrenceOf(t, line)]++ })
	return counts
}

// waitKafkaEvents waits until Kafka holds every wanted occurrence and
// returns the counts.
func waitKafkaEvents(t *testing.T, addr string, want map[string]bool) map[string]int {
	t.Helper()
	var got map[string]int
	testenv.Eventually(t, 60*time.Second, func() error {
		got = kafkaEvents(t, addr)
		missing := 0
		for k := range want {
			if got[k] == 0 {
				missing++
			}
		}
		if missing > 0 {
			return fmt.Errorf("%d of %d occurrences not in Kafka", missing, len(want))
		}
		return nil
	})
	for k := range got {
		if !want[k] {
			require.Failf(t, "an occurrence the test never made", "%s: %s", k, eventLine(t, addr, k))
		}
	}
	return got
}

func duplicates(counts map[string]int) int {
	n := 0
	for _, c := range counts {
		n += c - 1
	}
	return n
}

// Events through the whole pipeline (real apiserver, two agents, gateway,
// Kafka, ingester, real Loki). A lone leader stopped cleanly and restarted
// resumes from the resume ConfigMap: nothing is sent twice and what
// happened while it was down arrives. Then a second agent campaigns, the
// leader is killed (SIGKILL) while events keep coming: every occurrence
// arrives in Loki; in Kafka at most one batch is there twice (the push the
// killed leader had acknowledged without recording it yet).
func TestAgentEventsResumeAndHandOver(t *testing.T) {
	t.Parallel()
	// An apiserver of its own, not sharedKube: the agents watch the events
	// of every namespace (the watcher has no namespace filter), and this
	// test counts exactly what they ship, in Kafka, in Loki and in their
	// metrics; another test's event (TestAgentChartRBAC makes one) would
	// be shipped here too.
	kube := testenv.StartKube(t)
	k := testenv.Kafka(t, 2)
	loki := testenv.Loki(t)
	gw := startGateway(t, k.Addr)
	startLogIngester(t, k.Addr, loki, nil)
	w := &eventWriter{t: t, kube: kube, want: map[string]bool{}, evs: map[string]*corev1.Event{}}
	start := time.Now().Add(-time.Minute)

	dirA, dirB := t.TempDir(), t.TempDir()
	cfgA, cfgB := filepath.Join(dirA, "agent.yml"), filepath.Join(dirB, "agent.yml")
	writeFile(t, cfgA, eventsAgentConfig(kube, gw.URL, dirA, "agent-a"))
	writeFile(t, cfgB, eventsAgentConfig(kube, gw.URL, dirB, "agent-b"))
	portA, portB := testenv.FreePort(t), testenv.FreePort(t)

	// Phase 1: a lone leader, a clean restart.
	for i := range 10 {
		w.create(fmt.Sprintf("first-%d", i))
	}
	a := startAgent(t, cfgA, portA)
	waitKafkaEvents(t, k.Addr, w.wanted())
	require.Equal(t, 10.0, a.metric(t, "tributary_agent_events_shipped_total"))
	require.NoError(t, a.Stop(30*time.Second))
	for i := range 5 {
		w.create(fmt.Sprintf("while-stopped-%d", i))
	}
	w.recur("first-3")
	a = startAgent(t, cfgA, portA)
	counts := waitKafkaEvents(t, k.Addr, w.wanted())
	require.Len(t, counts, 16)
	require.Equal(t, 0, duplicates(counts), "a clean restart sends nothing twice")
	testenv.Eventually(t, 10*time.Second, func() error {
		if v := a.metric(t, "tributary_agent_events_shipped_total"); v != 6 {
			return fmt.Errorf("restarted leader shipped %v, want 6 (only what happened after the resume point)", v)
		}
		return nil
	})
	require.Equal(t, 0.0, a.metric(t, "tributary_agent_events_relists_total"), "resumed by watch")

	// Phase 2: two agents, the leader killed mid-stream.
	b := startAgent(t, cfgB, portB)
	holder, _ := leaseHolder(t, kube, "default")
	require.Equal(t, "agent-a", holder)
	const total = 80
	killed := make(chan struct{})
	var gen sync.WaitGroup
	gen.Go(func() {
		for i := range total {
			w.create(fmt.Sprintf("stream-%d", i))
			if j := i - 3; j >= 0 && j%4 == 0 {
				w.recur(fmt.Sprintf("stream-%d", j))
			}
			if i == 25 {
				<-killed
			}
			time.Sleep(100 * time.Millisecond)
		}
	})
	// Kill the leader once it has shipped part of the stream.
	testenv.Eventually(t, 30*time.Second, func() error {
		if v := a.metric(t, "tributary_agent_events_shipped_total"); v < 6+10 {
			return fmt.Errorf("leader shipped %v of the stream", v)
		}
		return nil
	})
	a.Kill()
	close(killed)
	gen.Wait()
	testenv.Eventually(t, 30*time.Second, func() error {
		if h, _ := leaseHolder(t, kube, "default"); h != "agent-b" {
			return fmt.Errorf("lease held by %q", h)
		}
		return nil
	})
	want := w.wanted()
	require.Len(t, want, 16+total+total/4)
	counts = waitKafkaEvents(t, k.Addr, want)
	dups := duplicates(counts)
	t.Logf("hand-over: %d occurrences, %d sent twice", len(want), dups)
	require.LessOrEqual(t, dups, eventsBatch, "more than the one unrecorded batch sent twice")
	require.Greater(t, b.metric(t, "tributary_agent_events_shipped_total"), 0.0, "the new leader shipped the rest")

	// Loki holds every occurrence, with the stream's labels.
	testenv.Eventually(t, 60*time.Second, func() error {
		streams, err := loki.QueryRange(t, `{cluster="evclust", source="kubernetes-events"}`, start, time.Now().Add(time.Minute), 5000)
		if err != nil {
			return err
		}
		seen := map[string]int{}
		for _, s := range streams {
			if s.Labels["reason"] != "Unhealthy" || s.Labels["type"] != "Warning" || s.Labels["kind"] != "Pod" || s.Labels["namespace"] != "default" {
				return fmt.Errorf("stream labels %v", s.Labels)
			}
			for _, e := range s.Entries {
				seen[occurrenceOf(t, e.Line)]++
			}
		}
		for k := range want {
			if seen[k] != 1 {
				return fmt.Errorf("occurrence %s is %d times in Loki (%d of %d occurrences there)", k, seen[k], len(seen), len(want))
			}
		}
		if len(seen) != len(want) {
			return fmt.Errorf("Loki holds %d occurrences, want %d", len(seen), len(want))
		}
		return nil
	})
}
