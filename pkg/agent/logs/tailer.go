package logs

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/grafana/loki/pkg/push"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/valyala/fastjson"

	"github.com/tributary-io/tributary/pkg/agent/lokiclient"
	agentmetrics "github.com/tributary-io/tributary/pkg/agent/metrics"
	"github.com/tributary-io/tributary/pkg/k8s"
)

// Pusher sends one Loki push request to the gateway: nil once the gateway
// acknowledged it, an error wrapping lokiclient.ErrRefused if the gateway
// refused it for ever, otherwise only when ctx ends
// (lokiclient.Client.Push).
type Pusher interface {
	Push(ctx context.Context, req *push.PushRequest) error
}

// PodMeta is what the tailer needs to know of a pod.
type PodMeta struct {
	Namespace, Name     string
	Labels, Annotations map[string]string
}

// Params are the tailer's dependencies.
type Params struct {
	Config  *Config // validated
	Cluster string
	Node    string
	Gateway agentmetrics.GatewayConfig
	// Pods is the node's pod informer; nil without Kubernetes: the labels
	// come from the directory names.
	Pods *k8s.Pods
	// LookupPod, when set, replaces Pods (tests).
	LookupPod func(uid string) (PodMeta, bool)
	// FlushDeadline bounds the last push at shutdown (default 10s); what
	// is not acknowledged by then is read again after the restart.
	FlushDeadline time.Duration
	// Pusher, when set, replaces the gateway client (tests).
	Pusher     Pusher
	Registerer prometheus.Registerer
	Logger     *slog.Logger
}

const (
	// rotateWait: a file renamed away is finished (closed at its end) once
	// the new file at its path has data, or after this long: the runtime
	// may write a last line to the old file before it reopens.
	rotateWait = 5 * time.Second
	// podWait is how long a new pod's logs wait for the pod informer
	// before they are labelled from the path alone (and the opt-out
	// annotation cannot be seen).
	podWait = 10 * time.Second
	// readIdle: how often files are read again when nothing was new.
	readIdle = 200 * time.Millisecond
	// readBudget is what one file may read before the others get a turn.
	readBudget = 256 << 10
	// entryOverhead approximates the protobuf bytes of an entry beside its
	// line (timestamp, tags, lengths).
	entryOverhead = 24
)

// Tailer tails the configured log files into the gateway.
type Tailer struct {
	cfg           Config
	cluster, node string
	log           *slog.Logger
	m             *metrics
	pusher        Pusher
	lookup        func(uid string) (PodMeta, bool)
	flushDeadline time.Duration

	// Owned by the Run goroutine.
	groups     map[string]*group
	startPos   map[fileID]position // the positions file, until the first scan matched it
	posState   loadState
	firstScan  bool
	fileSeq    uint64
	buf        []byte
	jp         fastjson.Parser
	cur        *batch
	inflight   map[uint64]*batch
	nextBatch  uint64
	applyBatch uint64
	failed     bool // a batch was not acknowledged (shutdown): positions stop there
	dirty      bool // positions to write

	sem     chan struct{}
	sendCtx context.Context
	wake    chan struct{}

	mu      sync.Mutex
	results map[uint64]error
	status  string
	lastErr string

	ready atomic.Bool
}

// batch is one push request and how far it moves each file's position.
type batch struct {
	req     push.PushRequest
	index   map[string]int
	bytes   int
	lines   int
	offsets map[*fileState]int64
	opened  time.Time
}

// New builds the tailer and loads the positions file (a corrupt one is
// renamed aside and reported, not fatal).
func New(p Params) (*Tailer, error) {
	t := &Tailer{
		cfg: *p.Config, cluster: p.Cluster, node: p.Node, log: p.Logger,
		m: newMetrics(p.Registerer), pusher: p.Pusher, lookup: p.LookupPod,
		flushDeadline: p.FlushDeadline,
		groups:        map[string]*group{},
		buf:           make([]byte, readBufSize),
		inflight:      map[uint64]*batch{},
		sem:           make(chan struct{}, p.Config.MaxBatchesInFlight),
		wake:          make(chan struct{}, 1),
		results:       map[uint64]error{},
	}
	if t.lookup == nil && p.Pods != nil {
		t.lookup = func(uid string) (PodMeta, bool) {
			info, ok := p.Pods.ByUID(uid)
			return PodMeta{Namespace: info.Namespace, Name: info.Name, Labels: info.Labels, Annotations: info.Annotations}, ok
		}
	}
	if t.node == "" {
		// Without kubernetes.node_name (outside Kubernetes): the host.
		h, err := os.Hostname()
		if err != nil {
			return nil, fmt.Errorf("node name: %w", err)
		}
		t.node = h
	}
	if t.flushDeadline <= 0 {
		t.flushDeadline = 10 * time.Second
	}
	if t.pusher == nil {
		c, err := lokiclient.New(p.Gateway, "logs", p.Registerer, p.Logger)
		if err != nil {
			return nil, err
		}
		t.pusher = c
	}
	if err := os.MkdirAll(filepath.Dir(t.cfg.PositionsFile), 0o755); err != nil {
		return nil, fmt.Errorf("logs.positions_file: %w", err)
	}
	ps, state, err := loadPositions(t.cfg.PositionsFile)
	switch state {
	case positionsCorrupt:
		t.m.positionsCorrupt.Inc()
		t.log.Error("positions file corrupt: reading every current file from its start (lines may repeat; none is lost)", "err", err)
		t.lastErr = err.Error()
	case positionsMissing:
		if err != nil {
			return nil, err
		}
	}
	t.posState = state
	t.startPos = map[fileID]position{}
	for _, p := range ps {
		t.startPos[fileID{Dev: p.Dev, Ino: p.Ino}] = p
	}
	return t, nil
}

// Ready is true once the first scan of the log files is done.
func (t *Tailer) Ready() bool { return t.ready.Load() }

// Run tails until ctx ends, then sends what it read within the flush
// deadline, writes the positions and returns.
func (t *Tailer) Run(ctx context.Context) error {
	sendCtx, cancelSend := context.WithCancel(context.Background())
	defer cancelSend()
	t.sendCtx = sendCtx
	t.scan(time.Now())
	t.ready.Store(true)
	lastScan := time.Now()
	for ctx.Err() == nil {
		t.applyAcks()
		if time.Since(lastScan) >= time.Duration(t.cfg.PollInterval) {
			t.scan(time.Now())
			lastScan = time.Now()
		}
		progressed := t.readAll(ctx)
		if b := t.cur; b != nil && time.Since(b.opened) >= time.Duration(t.cfg.BatchMaxWait) {
			_ = t.flush(ctx)
		}
		if progressed {
			continue
		}
		wait := readIdle
		if b := t.cur; b != nil {
			wait = min(wait, time.Until(b.opened.Add(time.Duration(t.cfg.BatchMaxWait))))
		}
		timer := time.NewTimer(max(wait, time.Millisecond))
		select {
		case <-ctx.Done():
		case <-t.wake:
		case <-timer.C:
		}
		timer.Stop()
	}
	return t.shutdown(cancelSend)
}

// shutdown sends the open batch, waits for what is in flight (until the
// flush deadline) and writes the positions of what was acknowledged.
func (t *Tailer) shutdown(cancelSend context.CancelFunc) error {
	stop := time.AfterFunc(t.flushDeadline, cancelSend)
	defer stop.Stop()
	_ = t.flush(t.sendCtx)
	for {
		t.applyAcks()
		if len(t.inflight) == 0 {
			break
		}
		select {
		case <-t.wake:
		case <-time.After(100 * time.Millisecond):
		}
	}
	if t.cur != nil && t.cur.lines > 0 {
		t.log.Warn("shutdown: lines not sent within the flush deadline are read again after the restart", "lines", t.cur.lines)
	}
	t.savePositions()
	for _, g := range t.groups {
		for _, fs := range g.files {
			fs.close()
		}
	}
	t.m.filesTailed.Set(0)
	return nil
}

// readAll gives every group one turn. It reports whether anything was
// read.
func (t *Tailer) readAll(ctx context.Context) bool {
	now := time.Now()
	keys := make([]string, 0, len(t.groups))
	for k := range t.groups {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	progressed := false
	for _, k := range keys {
		if ctx.Err() != nil {
			return progressed
		}
		g := t.groups[k]
		if !g.resolved {
			t.resolve(g, now)
		}
		if !g.resolved || g.optedOut {
			continue
		}
		fs := g.next()
		if fs == nil || fs.f == nil {
			continue
		}
		final := t.finishable(g, fs, now)
		n, eof, err := readLines(fs, t.buf, readBudget, t.cfg.MaxLineBytes+readBufSize, final,
			func(fs *fileState, line []byte, start, end int64) error {
				return t.handleLine(ctx, g, fs, line, start, end)
			})
		t.m.readBytes.Add(float64(n))
		if n > 0 {
			progressed = true
		}
		if err != nil {
			if ctx.Err() == nil {
				fs.lastErr = err
				t.setErr(fmt.Sprintf("read %s: %v", fs.path, err))
			}
			continue
		}
		if eof && final {
			t.finish(ctx, g, fs)
			progressed = true
		}
	}
	return progressed
}

// finish closes a file read to its end. A partial line never completed
// (its rest went to the next file, or nowhere) is shipped as it is.
func (t *Tailer) finish(ctx context.Context, g *group, fs *fileState) {
	fs.close()
	fs.done = true
	for i, s := range []string{"stdout", "stderr"} {
		if j := &fs.joiners[i]; j.pending {
			j.pending = false
			_ = t.emit(ctx, g, fs, j.ts, s, j.buf, fs.read)
		}
	}
	t.addOffset(fs, fs.read)
}

// finishable reports whether fs, once read to its end, is finished: it is
// no longer at the group's path and nobody writes to it any more.
func (t *Tailer) finishable(g *group, fs *fileState, now time.Time) bool {
	if fs.current {
		return false
	}
	if !fs.goneAt.IsZero() {
		return true
	}
	if now.Sub(fs.rotatedAt) >= rotateWait {
		return true
	}
	cs := g.currentState()
	return cs != nil && cs != fs && cs.size > 0
}

// handleLine parses one physical line and adds its entry to the batch.
func (t *Tailer) handleLine(ctx context.Context, g *group, fs *fileState, line []byte, start, end int64) error {
	switch g.format {
	case FormatContainer:
		ph, ok := parseContainer(line, &t.jp)
		if !ok {
			// Neither CRI nor Docker: shipped as is, with the time and
			// stream of the file's last good line so it keeps its place.
			t.m.malformedLines.Inc()
			ts, stream := fs.lastTS, fs.lastStream
			if ts.IsZero() {
				ts, stream = time.Now(), "stdout"
			}
			return t.emit(ctx, g, fs, ts, stream, t.cut(line), end)
		}
		fs.lastTS, fs.lastStream = ph.ts, ph.stream
		text, ts, cut, done := fs.joiners[streamIndex(ph.stream)].add(ph, start, t.cfg.MaxLineBytes)
		if !done {
			t.addOffset(fs, fs.safeOffset(end))
			return nil
		}
		if cut {
			t.m.cutLines.Inc()
		}
		return t.emit(ctx, g, fs, ts, ph.stream, text, end)
	case FormatJSON:
		ts := time.Now()
		if f := g.static.TimestampField; f != "" {
			if v, ok := jsonTimestamp(line, strings.Split(f, "."), &t.jp); ok {
				ts = v
			} else {
				t.m.malformedLines.Inc()
			}
		}
		return t.emit(ctx, g, fs, ts, "", t.cut(line), end)
	default:
		return t.emit(ctx, g, fs, time.Now(), "", t.cut(line), end)
	}
}

func (t *Tailer) cut(line []byte) []byte {
	if len(line) > t.cfg.MaxLineBytes {
		t.m.cutLines.Inc()
		return line[:t.cfg.MaxLineBytes]
	}
	return line
}

// emit adds one entry to the open batch, and sends the batch when full.
func (t *Tailer) emit(ctx context.Context, g *group, fs *fileState, ts time.Time, stream string, line []byte, end int64) error {
	t.m.readLines.Inc()
	b := t.open()
	labels := g.labels[streamIndex(stream)]
	i, ok := b.index[labels]
	if !ok {
		i = len(b.req.Streams)
		b.index[labels] = i
		b.req.Streams = append(b.req.Streams, push.Stream{Labels: labels})
		b.bytes += len(labels)
	}
	b.req.Streams[i].Entries = append(b.req.Streams[i].Entries, push.Entry{Timestamp: ts, Line: string(line)})
	b.bytes += len(line) + entryOverhead
	b.lines++
	fs.safe = fs.safeOffset(end)
	b.offsets[fs] = fs.safe
	if b.bytes >= t.cfg.BatchMaxBytes {
		return t.flush(ctx)
	}
	return nil
}

func (t *Tailer) open() *batch {
	if t.cur == nil {
		t.cur = &batch{index: map[string]int{}, offsets: map[*fileState]int64{}, opened: time.Now()}
	}
	return t.cur
}

// addOffset moves fs's position to off with the next batch, for lines
// that produce no entry.
func (t *Tailer) addOffset(fs *fileState, off int64) {
	fs.safe = off
	t.open().offsets[fs] = off
}

// flush sends the open batch once a slot is free (back-pressure: while
// max_batches_in_flight are unacknowledged, nothing more is read). A batch
// without lines only moves positions: it is acknowledged in its turn.
func (t *Tailer) flush(ctx context.Context) error {
	b := t.cur
	if b == nil {
		return nil
	}
	if b.lines > 0 {
		tick := time.NewTicker(time.Duration(t.cfg.PollInterval))
		defer tick.Stop()
	wait:
		for {
			select {
			case t.sem <- struct{}{}:
				break wait
			case <-ctx.Done():
				return ctx.Err()
			case <-t.wake:
				// An acknowledged batch frees its slot once its
				// positions are written.
				t.applyAcks()
			case <-tick.C:
				t.observe(true)
			}
		}
	}
	t.cur = nil
	seq := t.nextBatch
	t.nextBatch++
	t.inflight[seq] = b
	if b.lines == 0 {
		t.mu.Lock()
		t.results[seq] = nil
		t.mu.Unlock()
		return nil
	}
	t.m.batchesInFlight.Inc()
	go t.send(seq, b)
	return nil
}

// send pushes one batch until the gateway acknowledged or refused it, or
// the shutdown deadline passed.
func (t *Tailer) send(seq uint64, b *batch) {
	var err error
	for {
		err = t.pusher.Push(t.sendCtx, &b.req)
		if err == nil || errors.Is(err, lokiclient.ErrRefused) || t.sendCtx.Err() != nil {
			break
		}
		// Not in the Pusher's contract: keep the lines, try again.
		t.setErr(fmt.Sprintf("push: %v", err))
		select {
		case <-t.sendCtx.Done():
		case <-time.After(time.Second):
		}
	}
	t.m.batchesInFlight.Dec()
	t.mu.Lock()
	t.results[seq] = err
	t.mu.Unlock()
	select {
	case t.wake <- struct{}{}:
	default:
	}
}

// applyAcks moves the positions of acknowledged batches, in the order the
// batches were made, writes the positions file and only then frees the
// batches' send slots: a kill -9 repeats at most the batches in flight
// (max_batches_in_flight × batch_max_bytes), never one acknowledged but not
// yet recorded on top of them.
func (t *Tailer) applyAcks() {
	t.mu.Lock()
	var done []error
	for {
		err, ok := t.results[t.applyBatch+uint64(len(done))]
		if !ok {
			break
		}
		delete(t.results, t.applyBatch+uint64(len(done)))
		done = append(done, err)
	}
	t.mu.Unlock()
	slots := 0
	for _, err := range done {
		seq := t.applyBatch
		t.applyBatch++
		b := t.inflight[seq]
		delete(t.inflight, seq)
		if b.lines > 0 {
			slots++
		}
		if t.failed {
			continue
		}
		switch {
		case err == nil:
			t.m.sentLines.Add(float64(b.lines))
		case errors.Is(err, lokiclient.ErrRefused):
			t.m.droppedLines.WithLabelValues("refused").Add(float64(b.lines))
			t.log.Warn("gateway refused log lines for ever; dropped", "lines", b.lines, "err", err)
			t.setErr(err.Error())
		default:
			// Only at shutdown: this batch and the later ones are read
			// again after the restart.
			t.failed = true
			continue
		}
		for fs, off := range b.offsets {
			if off > fs.acked {
				fs.acked = off
			}
		}
		t.dirty = true
	}
	if t.dirty {
		// A failed write is retried with the next acknowledgement; the
		// slots are freed regardless, or the tailer would stop for ever.
		t.savePositions()
	}
	for range slots {
		<-t.sem
	}
}

// savePositions writes every known file's acknowledged offset.
func (t *Tailer) savePositions() {
	var ps []position
	for _, g := range t.groups {
		for _, fs := range g.files {
			if !fs.goneAt.IsZero() {
				continue // deleted or overwritten: cannot be resumed
			}
			ps = append(ps, position{Path: fs.path, Dev: fs.id.Dev, Ino: fs.id.Ino,
				FPLen: len(fs.fp), FPHash: fpHash(fs.fp), Offset: fs.acked})
		}
	}
	if err := savePositions(t.cfg.PositionsFile, ps); err != nil {
		t.m.positionsWrites.WithLabelValues("error").Inc()
		t.log.Error("positions not written; retried with the next acknowledgement", "err", err)
		t.setErr(err.Error())
		return
	}
	t.m.positionsWrites.WithLabelValues("ok").Inc()
	t.dirty = false
}

func (t *Tailer) setErr(s string) {
	t.mu.Lock()
	t.lastErr = time.Now().UTC().Format(time.RFC3339) + " " + s
	t.mu.Unlock()
}

// Status writes the tailer's section of the status page.
func (t *Tailer) Status(w io.Writer) {
	t.mu.Lock()
	defer t.mu.Unlock()
	fmt.Fprintf(w, "logs: positions %s\n", t.cfg.PositionsFile)
	if t.lastErr != "" {
		fmt.Fprintf(w, "  last error: %s\n", t.lastErr)
	}
	io.WriteString(w, t.status)
}

// snapshotStatus renders the files for Status (called by Run's goroutine,
// which owns them).
func (t *Tailer) snapshotStatus() {
	var b strings.Builder
	keys := make([]string, 0, len(t.groups))
	for k := range t.groups {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		g := t.groups[k]
		state := ""
		switch {
		case g.optedOut:
			state = " (opted out)"
		case !g.resolved:
			state = " (waiting for pod metadata)"
		}
		fmt.Fprintf(&b, "  %s%s\n", g.key, state)
		for _, fs := range g.files {
			st := "reading"
			switch {
			case fs.done:
				st = "finished"
			case !fs.goneAt.IsZero():
				st = "deleted, finishing"
			case !fs.current:
				st = "rotated, finishing"
			}
			fmt.Fprintf(&b, "    %s size=%d read=%d acked=%d %s\n", filepath.Base(fs.path), fs.size, fs.read, fs.acked, st)
		}
	}
	t.mu.Lock()
	t.status = b.String()
	t.mu.Unlock()
}

// renderLabels writes a Loki stream selector with sorted names.
func renderLabels(l map[string]string) string {
	names := make([]string, 0, len(l))
	for k := range l {
		names = append(names, k)
	}
	slices.Sort(names)
	var b strings.Builder
	b.WriteByte('{')
	for i, k := range names {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%s=%q", k, l[k])
	}
	b.WriteByte('}')
	return b.String()
}
