package logs

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/grafana/loki/pkg/push"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/common/model"
	"github.com/stretchr/testify/require"

	"github.com/tributary-io/tributary/pkg/agent/logs/logstest"
	"github.com/tributary-io/tributary/pkg/agent/lokiclient"
)

// sink is the gateway as the tailer sees it: it records every entry per
// stream in arrival order. answer, when set, decides each push first.
type sink struct {
	mu      sync.Mutex
	streams map[string][]string
	pushes  int
	answer  func(ctx context.Context, req *push.PushRequest) error
}

func (s *sink) Push(ctx context.Context, req *push.PushRequest) error {
	s.mu.Lock()
	answer := s.answer
	s.mu.Unlock()
	if answer != nil {
		if err := answer(ctx, req); err != nil {
			return err
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.streams == nil {
		s.streams = map[string][]string{}
	}
	s.pushes++
	for _, st := range req.Streams {
		for _, e := range st.Entries {
			s.streams[st.Labels] = append(s.streams[st.Labels], e.Line)
		}
	}
	return nil
}

func (s *sink) lines(labels string) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.streams[labels]...)
}

func (s *sink) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, l := range s.streams {
		n += len(l)
	}
	return n
}

type run struct {
	tl     *Tailer
	reg    *prometheus.Registry
	cancel context.CancelFunc
	done   chan error
}

func testConfig(dir string) Config {
	return Config{
		PodsDir:       filepath.Join(dir, "pods"),
		PositionsFile: filepath.Join(dir, "state", "positions.json"),
		PollInterval:  modelDuration(50 * time.Millisecond),
		BatchMaxWait:  modelDuration(50 * time.Millisecond),
	}
}

func startTailer(t *testing.T, cfg Config, s *sink) *run {
	t.Helper()
	return startTailerWith(t, cfg, s, nil)
}

func startTailerWith(t *testing.T, cfg Config, s *sink, lookup func(string) (PodMeta, bool)) *run {
	t.Helper()
	require.NoError(t, cfg.Validate())
	reg := prometheus.NewRegistry()
	tl, err := New(Params{Config: &cfg, Cluster: "c1", Node: "n1", Pusher: s, LookupPod: lookup, Registerer: reg,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), FlushDeadline: 5 * time.Second})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	r := &run{tl: tl, reg: reg, cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- tl.Run(ctx) }()
	t.Cleanup(func() { r.stop(t) })
	return r
}

func (r *run) stop(t *testing.T) {
	if r.cancel == nil {
		return
	}
	r.cancel()
	r.cancel = nil
	select {
	case err := <-r.done:
		require.NoError(t, err)
	case <-time.After(20 * time.Second):
		t.Fatal("tailer did not stop")
	}
}

func waitLines(t *testing.T, s *sink, labels string, want []string) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		if len(s.lines(labels)) >= len(want) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	logstest.SameLines(t, want, s.lines(labels), labels)
}

func podLabels(ns, pod, container, stream string) string {
	return fmt.Sprintf(`{cluster="c1", container=%q, namespace=%q, node="n1", pod=%q, stream=%q}`, container, ns, pod, stream)
}

// Rotation by rename and by copytruncate while running, lines written
// right before each rotation, two rotations while stopped, and a clean
// restart: every line once, in order.
func TestTailerRotationExactSequence(t *testing.T) {
	dir := t.TempDir()
	cfg := testConfig(dir)
	w := logstest.NewWriter(t, filepath.Join(cfg.PodsDir, "ns_web-1_uid1", "app", "0.log"))
	out := podLabels("ns", "web-1", "app", "stdout")
	s := &sink{}
	w.Lines(0, 10)
	r := startTailer(t, cfg, s)
	waitLines(t, s, out, logstest.Seq(0, 10))

	// Rename + create, with lines the tailer has not read yet.
	w.Lines(10, 20)
	w.Rename("20261129-000001")
	w.Lines(20, 30)
	waitLines(t, s, out, logstest.Seq(0, 30))

	// copytruncate, with lines written just before the copy.
	w.Lines(30, 35)
	w.CopyTruncate("1")
	w.Lines(35, 40)
	waitLines(t, s, out, logstest.Seq(0, 40))
	require.Equal(t, 1.0, testutil.ToFloat64(r.tl.m.rotations))
	require.Equal(t, 1.0, testutil.ToFloat64(r.tl.m.truncations))

	// Two rotations while stopped.
	r.stop(t)
	w.Lines(40, 45)
	w.Rename("20261129-000002")
	w.Lines(45, 50)
	w.Rename("20261129-000003")
	w.Lines(50, 55)
	s2 := &sink{}
	r2 := startTailer(t, cfg, s2)
	waitLines(t, s2, out, logstest.Seq(40, 55))
	time.Sleep(300 * time.Millisecond) // nothing more arrives
	logstest.SameLines(t, logstest.Seq(40, 55), s2.lines(out), "a clean restart repeats nothing")
	r2.stop(t)
}

// CRI partial lines are joined (and cut at max_line_bytes), stdout and
// stderr are separate streams, Docker JSON lines are read too, and a
// malformed line is shipped as is.
func TestTailerFormats(t *testing.T) {
	dir := t.TempDir()
	cfg := testConfig(dir)
	cfg.MaxLineBytes = 1024
	w := logstest.NewWriter(t, filepath.Join(cfg.PodsDir, "ns_p_uid2", "c", "0.log"))
	w.CRI("stdout", "P", "first ")
	w.CRI("stderr", "F", "err 1")
	w.CRI("stdout", "P", "second ")
	w.CRI("stdout", "F", "third")
	w.CRI("stdout", "P", strings.Repeat("x", 1000))
	w.CRI("stdout", "F", strings.Repeat("y", 1000))
	w.Raw("not a log line\n")
	d := logstest.NewWriter(t, filepath.Join(cfg.PodsDir, "ns_p_uid2", "d", "0.log"))
	d.Docker("stdout", "docker ", true)
	d.Docker("stdout", "joined", false)
	d.Docker("stderr", "on stderr", false)
	s := &sink{}
	r := startTailer(t, cfg, s)
	waitLines(t, s, podLabels("ns", "p", "c", "stdout"),
		[]string{"first second third", strings.Repeat("x", 1000) + strings.Repeat("y", 24), "not a log line"})
	waitLines(t, s, podLabels("ns", "p", "c", "stderr"), []string{"err 1"})
	waitLines(t, s, podLabels("ns", "p", "d", "stdout"), []string{"docker joined"})
	waitLines(t, s, podLabels("ns", "p", "d", "stderr"), []string{"on stderr"})
	require.Equal(t, 1.0, testutil.ToFloat64(r.tl.m.cutLines))
	require.Equal(t, 1.0, testutil.ToFloat64(r.tl.m.malformedLines))
}

// A pending partial line holds the position back: a restart reads it
// again and the joined line arrives whole, once.
func TestTailerPartialLineAcrossRestart(t *testing.T) {
	dir := t.TempDir()
	cfg := testConfig(dir)
	w := logstest.NewWriter(t, filepath.Join(cfg.PodsDir, "ns_p_uid3", "c", "0.log"))
	out := podLabels("ns", "p", "c", "stdout")
	w.Lines(0, 3)
	w.CRI("stdout", "P", "begin ")
	s := &sink{}
	r := startTailer(t, cfg, s)
	waitLines(t, s, out, logstest.Seq(0, 3))
	r.stop(t)
	w.CRI("stdout", "F", "end")
	s2 := &sink{}
	startTailer(t, cfg, s2)
	waitLines(t, s2, out, []string{"begin end"})
}

// While the gateway does not answer, the tailer reads no more than the
// batches in flight and the open batch hold; afterwards everything
// arrives once.
func TestTailerBackPressure(t *testing.T) {
	dir := t.TempDir()
	cfg := testConfig(dir)
	cfg.BatchMaxBytes = 16 << 10
	w := logstest.NewWriter(t, filepath.Join(cfg.PodsDir, "ns_p_uid4", "c", "0.log"))
	out := podLabels("ns", "p", "c", "stdout")
	release := make(chan struct{})
	s := &sink{answer: func(ctx context.Context, _ *push.PushRequest) error {
		select {
		case <-release:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}}
	const n = 40000 // ~2.4 MB
	w.Lines(0, n)
	r := startTailer(t, cfg, s)
	require.Eventually(t, func() bool { return testutil.ToFloat64(r.tl.m.batchesInFlight) >= 1 }, 10*time.Second, 10*time.Millisecond)
	time.Sleep(500 * time.Millisecond)
	require.Equal(t, 1.0, testutil.ToFloat64(r.tl.m.batchesInFlight))
	read := testutil.ToFloat64(r.tl.m.readBytes)
	// 1 in flight + 1 open batch + one read buffer beyond.
	require.LessOrEqual(t, read, float64(2*cfg.BatchMaxBytes+readBufSize), "read while the gateway held everything")
	require.Zero(t, testutil.ToFloat64(r.tl.m.sentLines))
	// The lag keeps counting what is written and cannot be read yet.
	w.Lines(n, n+10000)
	fi, err := os.Stat(w.Path)
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		return testutil.ToFloat64(r.tl.m.positionsLag) == float64(fi.Size())
	}, 5*time.Second, 10*time.Millisecond)
	close(release)
	waitLines(t, s, out, logstest.Seq(0, n+10000))
}

// A send slot is freed only once the acknowledged batch's position is on
// disk: when a batch is pushed, the positions file already covers every
// batch acknowledged before it. So a kill -9 repeats at most the batches in
// flight (max_batches_in_flight × batch_max_bytes), not one more.
func TestTailerSlotFreedAfterPositionWritten(t *testing.T) {
	dir := t.TempDir()
	cfg := testConfig(dir)
	cfg.BatchMaxBytes = 4096
	w := logstest.NewWriter(t, filepath.Join(cfg.PodsDir, "ns_p_uid9", "c", "0.log"))
	const n = 3000 // ~80 batches
	w.Lines(0, n)
	data, err := os.ReadFile(w.Path)
	require.NoError(t, err)
	var ends []int64 // ends[i]: the offset after line i
	for i, c := range data {
		if c == '\n' {
			ends = append(ends, int64(i+1))
		}
	}
	var mu sync.Mutex
	var behind []string
	s := &sink{}
	s.answer = func(context.Context, *push.PushRequest) error {
		acked := s.count() // lines of the pushes acknowledged so far
		if acked == 0 {
			return nil
		}
		ps, _, err := loadPositions(cfg.PositionsFile)
		var off int64
		if err == nil && len(ps) == 1 {
			off = ps[0].Offset
		}
		if off < ends[acked-1] {
			mu.Lock()
			behind = append(behind, fmt.Sprintf("after %d lines acknowledged: position %d, want %d", acked, off, ends[acked-1]))
			mu.Unlock()
		}
		return nil
	}
	startTailer(t, cfg, s)
	waitLines(t, s, podLabels("ns", "p", "c", "stdout"), logstest.Seq(0, n))
	mu.Lock()
	defer mu.Unlock()
	require.Empty(t, behind, "a batch was pushed before the previous one's position was written")
}

// A batch the gateway refuses for ever is dropped and counted, and its
// position moves: a restart does not send it again.
func TestTailerRefusedBatchIsDropped(t *testing.T) {
	dir := t.TempDir()
	cfg := testConfig(dir)
	w := logstest.NewWriter(t, filepath.Join(cfg.PodsDir, "ns_p_uid5", "c", "0.log"))
	out := podLabels("ns", "p", "c", "stdout")
	var once sync.Once
	s := &sink{}
	s.answer = func(context.Context, *push.PushRequest) error {
		var err error
		once.Do(func() { err = fmt.Errorf("400: bad: %w", lokiclient.ErrRefused) })
		return err
	}
	w.Lines(0, 5)
	r := startTailer(t, cfg, s)
	require.Eventually(t, func() bool {
		return testutil.ToFloat64(r.tl.m.droppedLines.WithLabelValues("refused")) == 5
	}, 10*time.Second, 10*time.Millisecond)
	w.Lines(5, 8)
	waitLines(t, s, out, logstest.Seq(5, 8))
	r.stop(t)
	s2 := &sink{}
	startTailer(t, cfg, s2)
	time.Sleep(500 * time.Millisecond)
	require.Zero(t, s2.count(), "refused lines sent again after a restart")
}

// A corrupt positions file is renamed aside and counted; the current file
// is read from its start, the rotated one (history) is not.
func TestTailerCorruptPositions(t *testing.T) {
	dir := t.TempDir()
	cfg := testConfig(dir)
	w := logstest.NewWriter(t, filepath.Join(cfg.PodsDir, "ns_p_uid6", "c", "0.log"))
	out := podLabels("ns", "p", "c", "stdout")
	w.Lines(0, 3)
	w.Rename("20261129-000001")
	w.Lines(3, 6)
	require.NoError(t, os.MkdirAll(filepath.Dir(cfg.PositionsFile), 0o755))
	require.NoError(t, os.WriteFile(cfg.PositionsFile, []byte(`{"version":1,"files":[{"path":`), 0o644))
	s := &sink{}
	r := startTailer(t, cfg, s)
	waitLines(t, s, out, logstest.Seq(3, 6))
	require.Equal(t, 1.0, testutil.ToFloat64(r.tl.m.positionsCorrupt))
	aside, _ := filepath.Glob(cfg.PositionsFile + ".corrupt-*")
	require.Len(t, aside, 1)
	require.Eventually(t, func() bool {
		_, _, err := loadPositions(cfg.PositionsFile)
		return err == nil
	}, 5*time.Second, 10*time.Millisecond)
	ps, state, err := loadPositions(cfg.PositionsFile)
	require.NoError(t, err)
	require.Equal(t, positionsLoaded, state)
	require.Len(t, ps, 2)
}

// A positions entry whose device and inode match but whose fingerprint
// does not (the inode was reused by another file) is not applied: the file
// is read from its start.
func TestTailerReusedInodeNotMistaken(t *testing.T) {
	dir := t.TempDir()
	cfg := testConfig(dir)
	path := filepath.Join(cfg.PodsDir, "ns_p_uid7", "c", "0.log")
	w := logstest.NewWriter(t, path)
	out := podLabels("ns", "p", "c", "stdout")
	w.Lines(0, 4)
	fi, err := os.Stat(path)
	require.NoError(t, err)
	id, _ := statID(fi)
	require.NoError(t, os.MkdirAll(filepath.Dir(cfg.PositionsFile), 0o755))
	require.NoError(t, savePositions(cfg.PositionsFile, []position{{Path: path, Dev: id.Dev, Ino: id.Ino,
		FPLen: 10, FPHash: fpHash([]byte("other file")), Offset: fi.Size() - 5}}))
	s := &sink{}
	startTailer(t, cfg, s)
	waitLines(t, s, out, logstest.Seq(0, 4))
}

// A pod's log directory deleted before its last lines were read: the
// tailer finishes the file through its open descriptor, then closes it.
func TestTailerFinishesDeletedFile(t *testing.T) {
	dir := t.TempDir()
	cfg := testConfig(dir)
	podDir := filepath.Join(cfg.PodsDir, "ns_p_uid8")
	w := logstest.NewWriter(t, filepath.Join(podDir, "c", "0.log"))
	out := podLabels("ns", "p", "c", "stdout")
	w.Lines(0, 3)
	s := &sink{}
	r := startTailer(t, cfg, s)
	waitLines(t, s, out, logstest.Seq(0, 3))
	w.Lines(3, 2000)
	require.NoError(t, os.RemoveAll(podDir))
	waitLines(t, s, out, logstest.Seq(0, 2000))
	require.Eventually(t, func() bool { return testutil.ToFloat64(r.tl.m.filesTailed) == 0 }, 5*time.Second, 10*time.Millisecond)
}

// Files that are not container logs: their own labels, JSON timestamps.
func TestTailerStaticFiles(t *testing.T) {
	dir := t.TempDir()
	cfg := testConfig(dir)
	cfg.SkipContainerLogs = true
	cfg.Files = []FileConfig{
		{Paths: []string{filepath.Join(dir, "audit", "*.log")}, Labels: map[string]string{"source": "audit"}, Format: FormatJSON, TimestampField: "stageTimestamp"},
		{Paths: []string{filepath.Join(dir, "nginx", "access.log")}, Labels: map[string]string{"source": "ingress-nginx"}},
	}
	a := logstest.NewWriter(t, filepath.Join(dir, "audit", "audit.log"))
	a.Raw(`{"kind":"Event","stageTimestamp":"2026-11-29T06:00:00.000001Z","verb":"get"}` + "\n")
	a.Raw(`{"kind":"Event","stageTimestamp":"2026-11-29T06:00:00.000002Z","verb":"list"}` + "\n")
	n := logstest.NewWriter(t, filepath.Join(dir, "nginx", "access.log"))
	n.Raw("127.0.0.1 - - GET / 200\n")
	s := &sink{}
	startTailer(t, cfg, s)
	waitLines(t, s, `{cluster="c1", node="n1", source="audit"}`, []string{
		`{"kind":"Event","stageTimestamp":"2026-11-29T06:00:00.000001Z","verb":"get"}`,
		`{"kind":"Event","stageTimestamp":"2026-11-29T06:00:00.000002Z","verb":"list"}`,
	})
	// The kube-apiserver's own rotation (audit-<time>.log) is followed.
	require.NoError(t, os.Rename(a.Path, filepath.Join(dir, "audit", "audit-2026-11-29T06-00-01.000.log")))
	a.Reopen()
	a.Raw(`{"kind":"Event","stageTimestamp":"2026-11-29T06:00:01.000001Z","verb":"watch"}` + "\n")
	waitLines(t, s, `{cluster="c1", node="n1", source="audit"}`, []string{
		`{"kind":"Event","stageTimestamp":"2026-11-29T06:00:00.000001Z","verb":"get"}`,
		`{"kind":"Event","stageTimestamp":"2026-11-29T06:00:00.000002Z","verb":"list"}`,
		`{"kind":"Event","stageTimestamp":"2026-11-29T06:00:01.000001Z","verb":"watch"}`,
	})
	waitLines(t, s, `{cluster="c1", node="n1", source="ingress-nginx"}`, []string{"127.0.0.1 - - GET / 200"})
}

func modelDuration(d time.Duration) model.Duration { return model.Duration(d) }

// With the pod informer: namespace and pod from the pod, configured pod
// labels copied (sanitized), an opted-out pod not read at all.
func TestTailerPodMetadata(t *testing.T) {
	dir := t.TempDir()
	cfg := testConfig(dir)
	cfg.PodLabels = []string{"app.kubernetes.io/name", "absent"}
	pods := map[string]PodMeta{
		"uid-a": {Namespace: "shop", Name: "cart-1", Labels: map[string]string{"app.kubernetes.io/name": "cart", "other": "x"}},
		"uid-b": {Namespace: "shop", Name: "quiet", Annotations: map[string]string{"tributary.io/logs": "false"}},
	}
	a := logstest.NewWriter(t, filepath.Join(cfg.PodsDir, "shop_cart-1_uid-a", "c", "0.log"))
	b := logstest.NewWriter(t, filepath.Join(cfg.PodsDir, "shop_quiet_uid-b", "c", "0.log"))
	a.Lines(0, 3)
	b.Lines(0, 3)
	s := &sink{}
	startTailerWith(t, cfg, s, func(uid string) (PodMeta, bool) { m, ok := pods[uid]; return m, ok })
	waitLines(t, s, `{app_kubernetes_io_name="cart", cluster="c1", container="c", namespace="shop", node="n1", pod="cart-1", stream="stdout"}`, logstest.Seq(0, 3))
	time.Sleep(300 * time.Millisecond)
	require.Equal(t, 3, s.count(), "the opted-out pod's lines were sent")
}

// The runtime writes to a file renamed away until it reopens its path: the
// tailer keeps reading the old file until the new one has data.
func TestTailerLateLineAfterRename(t *testing.T) {
	dir := t.TempDir()
	cfg := testConfig(dir)
	w := logstest.NewWriter(t, filepath.Join(cfg.PodsDir, "ns_p_uid9", "c", "0.log"))
	out := podLabels("ns", "p", "c", "stdout")
	w.Lines(0, 3)
	s := &sink{}
	r := startTailer(t, cfg, s)
	waitLines(t, s, out, logstest.Seq(0, 3))
	require.NoError(t, os.Rename(w.Path, w.Path+".20261129-000001"))
	require.Eventually(t, func() bool { return testutil.ToFloat64(r.tl.m.rotations) == 1 }, 5*time.Second, 10*time.Millisecond)
	time.Sleep(300 * time.Millisecond)
	w.Lines(3, 5) // not reopened yet: into the renamed file
	w.Reopen()
	w.Lines(5, 8)
	waitLines(t, s, out, logstest.Seq(0, 8))
}
