package events

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang/snappy"
	"github.com/grafana/loki/pkg/push"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/tributary-io/tributary/internal/testenv"
	"github.com/tributary-io/tributary/pkg/agent/metrics"
)

// leader is a leader election that always leads.
type leader struct{ on atomic.Bool }

func (l *leader) IsLeader() bool { return l.on.Load() }
func (l *leader) Subscribe() <-chan bool {
	c := make(chan bool, 1)
	c <- l.on.Load()
	return c
}

// received is one log line the test gateway acknowledged.
type received struct {
	labels string
	ts     time.Time
	line
}

// lineSink is a Loki push endpoint that keeps every line it acknowledged.
type lineSink struct {
	*httptest.Server
	mu    sync.Mutex
	lines []received
}

func startSink(t *testing.T) *lineSink {
	s := &lineSink{}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		raw, err := snappy.Decode(nil, body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		var req push.PushRequest
		if err := req.Unmarshal(raw); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		for _, st := range req.Streams {
			for _, e := range st.Entries {
				var l line
				if err := json.Unmarshal([]byte(e.Line), &l); err != nil {
					http.Error(w, err.Error(), http.StatusBadRequest)
					return
				}
				s.lines = append(s.lines, received{labels: st.Labels, ts: e.Timestamp, line: l})
			}
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *lineSink) all() []received {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]received(nil), s.lines...)
}

func (s *lineSink) waitFor(t *testing.T, n int) []received {
	t.Helper()
	testenv.Eventually(t, 30*time.Second, func() error {
		if got := len(s.all()); got < n {
			return fmt.Errorf("%d lines, want %d", got, n)
		}
		return nil
	})
	return s.all()
}

// running is a Watcher running until stop.
type running struct {
	*Watcher
	cancel context.CancelFunc
	done   chan error
}

func startWatcher(t *testing.T, client kubernetes.Interface, gwURL string) *running {
	t.Helper()
	l := &leader{}
	l.on.Store(true)
	w, err := New(Params{
		Config: Config{BatchWait: 100 * 1e6}, Cluster: "c1", Gateway: metrics.GatewayConfig{URL: gwURL},
		Client: client, Leader: l, Namespace: "default", Identity: "agent-1",
		FlushDeadline: 5 * time.Second, Registerer: prometheus.NewRegistry(),
	})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{Watcher: w, cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- w.Run(ctx) }()
	t.Cleanup(cancel)
	return r
}

func (r *running) stop(t *testing.T) {
	t.Helper()
	r.cancel()
	select {
	case err := <-r.done:
		require.NoError(t, err)
	case <-time.After(20 * time.Second):
		t.Fatal("Run did not return after its context ended")
	}
}

func newEvent(name string, at time.Time) *corev1.Event {
	return &corev1.Event{
		ObjectMeta:     metav1.ObjectMeta{Name: name, Namespace: "default"},
		InvolvedObject: corev1.ObjectReference{Kind: "Pod", Namespace: "default", Name: "pod-" + name},
		Reason:         "BackOff", Message: "Back-off restarting failed container " + name, Type: corev1.EventTypeWarning,
		Count: 1, FirstTimestamp: metav1.NewTime(at), LastTimestamp: metav1.NewTime(at),
		Source: corev1.EventSource{Component: "kubelet", Host: "node-1"},
	}
}

// key names one occurrence.
func key(r received) string { return fmt.Sprintf("%s/%d", r.UID, r.Count) }

// A lone leader ships each occurrence once, with its fields and labels;
// after a clean restart it resumes by watch from the resume point: nothing
// shipped before is sent again, and every occurrence that happened while
// it was stopped (two of one event among them) is shipped.
func TestWatcherShipsAndResumes(t *testing.T) {
	t.Parallel()
	kube := testenv.StartKube(t)
	ctx := context.Background()
	evs := kube.Client.CoreV1().Events("default")
	sink := startSink(t)
	base := time.Now().Add(-time.Minute).Truncate(time.Second)

	var created []*corev1.Event
	for i := range 5 {
		e, err := evs.Create(ctx, newEvent(fmt.Sprintf("e%d", i), base.Add(time.Duration(i)*time.Second)), metav1.CreateOptions{})
		require.NoError(t, err)
		created = append(created, e)
	}
	w1 := startWatcher(t, kube.Client, sink.URL)
	got := sink.waitFor(t, 5)
	first := got[0]
	require.Equal(t, `{cluster="c1", kind="Pod", namespace="default", reason="BackOff", source="kubernetes-events", type="Warning"}`, first.labels)
	require.Equal(t, line{
		Type: "Warning", Reason: "BackOff", Message: "Back-off restarting failed container e0", Kind: "Pod", Namespace: "default",
		Name: "pod-e0", Count: 1, FirstTimestamp: base.UTC().Format(time.RFC3339Nano), LastTimestamp: base.UTC().Format(time.RFC3339Nano),
		ReportingComponent: "kubelet", ReportingInstance: "node-1", UID: string(created[0].UID),
	}, first.line)
	require.True(t, base.Equal(first.ts), "stamped with lastTimestamp")

	// count++ is a new occurrence: a new line. A label change is not.
	e0 := created[0]
	e0.Count, e0.LastTimestamp = 2, metav1.NewTime(base.Add(30*time.Second))
	_, err := evs.Update(ctx, e0, metav1.UpdateOptions{})
	require.NoError(t, err)
	e1 := created[1]
	e1.Labels = map[string]string{"touched": "yes"}
	_, err = evs.Update(ctx, e1, metav1.UpdateOptions{})
	require.NoError(t, err)
	testenv.Eventually(t, 10*time.Second, func() error {
		if v := testutil.ToFloat64(w1.m.skipped.WithLabelValues("same_occurrence")); v != 1 {
			return fmt.Errorf("same_occurrence skipped %v, want 1", v)
		}
		return nil
	})
	got = sink.waitFor(t, 6)
	require.Equal(t, 2, int(got[5].Count))
	require.Equal(t, string(e0.UID), got[5].UID)
	require.Equal(t, 6.0, testutil.ToFloat64(w1.m.shipped))
	w1.stop(t)
	cm, err := kube.Client.CoreV1().ConfigMaps("default").Get(ctx, DefaultResumeConfigMap, metav1.GetOptions{})
	require.NoError(t, err)
	require.NotEmpty(t, cm.Data[keyResourceVersion])
	require.Equal(t, "agent-1", cm.Data[keyUpdatedBy])

	// While no agent leads: three new events, and e2 recurs twice.
	for i := 5; i < 8; i++ {
		_, err := evs.Create(ctx, newEvent(fmt.Sprintf("e%d", i), base.Add(time.Duration(i)*time.Second)), metav1.CreateOptions{})
		require.NoError(t, err)
	}
	e2 := created[2]
	for c := int32(2); c <= 3; c++ {
		e2.Count, e2.LastTimestamp = c, metav1.NewTime(base.Add(time.Duration(40+c)*time.Second))
		e2, err = evs.Update(ctx, e2, metav1.UpdateOptions{})
		require.NoError(t, err)
	}

	w2 := startWatcher(t, kube.Client, sink.URL)
	got = sink.waitFor(t, 11)
	// Give a re-sending watcher the time to show itself.
	time.Sleep(time.Second)
	got = sink.all()
	require.Len(t, got, 11)
	require.Equal(t, 5.0, testutil.ToFloat64(w2.m.shipped), "the restarted leader sends only what happened after the resume point")
	require.Equal(t, 0.0, testutil.ToFloat64(w2.m.relists), "resumed by watch, not by list")
	seen := map[string]bool{}
	for _, r := range got {
		require.False(t, seen[key(r)], "occurrence %s shipped twice", key(r))
		seen[key(r)] = true
	}
	require.True(t, seen[string(e2.UID)+"/2"], "the occurrence between stop and restart")
	require.True(t, seen[string(e2.UID)+"/3"])
	w2.stop(t)
}

// compact drops etcd's history up to rv, as the apiserver's own
// compaction (every 5 minutes by default) does.
func compact(t *testing.T, kube *testenv.Kube, rv string) {
	t.Helper()
	resp, err := http.Post(kube.EtcdURL+"/v3/kv/compaction", "application/json",
		strings.NewReader(fmt.Sprintf(`{"revision": %q, "physical": true}`, rv)))
	require.NoError(t, err)
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode, string(body))
}

// A resume point the apiserver no longer has history for (etcd compacted
// past it; events bypass the apiserver's watch cache): the watch answers
// 410 Gone, the watcher lists, ships what changed after the point (an
// event's latest occurrence) and skips what the point says was shipped.
func TestWatcherResumesAfterGone(t *testing.T) {
	t.Parallel()
	kube := testenv.StartKube(t)
	ctx := context.Background()
	evs := kube.Client.CoreV1().Events("default")
	sink := startSink(t)
	base := time.Now().Truncate(time.Second)

	var created []*corev1.Event
	for i := range 5 {
		e, err := evs.Create(ctx, newEvent(fmt.Sprintf("old-%d", i), base), metav1.CreateOptions{})
		require.NoError(t, err)
		created = append(created, e)
	}
	w1 := startWatcher(t, kube.Client, sink.URL)
	sink.waitFor(t, 5)
	w1.stop(t)

	// After the resume point old-0 recurs twice; then etcd forgets.
	e0 := created[0]
	for c := int32(2); c <= 3; c++ {
		e0.Count, e0.LastTimestamp = c, metav1.NewTime(base.Add(time.Duration(c)*time.Second))
		var err error
		e0, err = evs.Update(ctx, e0, metav1.UpdateOptions{})
		require.NoError(t, err)
	}
	compact(t, kube, e0.ResourceVersion)

	w2 := startWatcher(t, kube.Client, sink.URL)
	sink.waitFor(t, 6)
	time.Sleep(time.Second)
	got := sink.all()
	require.Equal(t, 1.0, testutil.ToFloat64(w2.m.relists), "the watch from the resume point got 410 and the watcher listed")
	require.Equal(t, 1.0, testutil.ToFloat64(w2.m.shipped), "old-0's latest occurrence only")
	require.Equal(t, 4.0, testutil.ToFloat64(w2.m.skipped.WithLabelValues("already_shipped")), "old-1..4 skipped")
	seen := map[string]bool{}
	for _, r := range got {
		require.False(t, seen[key(r)], "occurrence %s shipped twice", key(r))
		seen[key(r)] = true
	}
	// The intermediate occurrence (count 2) is what a 410 loses: the list
	// holds each event's latest state only.
	require.True(t, seen[string(e0.UID)+"/3"])
	require.False(t, seen[string(e0.UID)+"/2"])
	w2.stop(t)
}
