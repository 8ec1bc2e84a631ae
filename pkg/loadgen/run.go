package loadgen

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// Run runs the configured load until the measured window ends (or ctx is
// cancelled) and returns what it measured.
func Run(ctx context.Context, cfg Config, log *slog.Logger) (*Result, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	pids, err := ParsePIDs(cfg.WatchPIDs)
	if err != nil {
		return nil, err
	}
	if cfg.Mode == ModeKafkaConsume {
		return consume(ctx, cfg, pids, log)
	}
	start := time.Now()
	bodies, err := Bodies(cfg)
	if err != nil {
		return nil, err
	}
	size := 0
	for _, b := range bodies {
		size += len(b.Data)
	}
	log.Info("bodies encoded", "payload", cfg.payload(), "bodies", len(bodies), "items_per_body", bodies[0].Items,
		"avg_body_bytes", size/len(bodies), "took", time.Since(start).Round(time.Millisecond))
	sender, err := newSender(&cfg, log)
	if err != nil {
		return nil, err
	}
	defer sender.Close()
	return runLoad(ctx, cfg, bodies, sender, pids, log), nil
}

// Bodies builds the bodies of cfg's payload.
func Bodies(cfg Config) ([]*Body, error) {
	switch cfg.payload() {
	case ModeLokiProto:
		return LokiProtoBodies(cfg.Logs)
	case ModeLokiJSON:
		return LokiJSONBodies(cfg.Logs)
	case PayloadOTLP:
		return OTLPBodies(cfg.Spans)
	}
	return RemoteWriteBodies(cfg.Metrics)
}

// workerStats is what one sender counted in the measured window; only its
// own goroutine writes it.
type workerStats struct {
	requests, ok, items, lineBytes, bodyBytes, errors int64
	outcomes                                          map[string]int64
	latencies                                         []time.Duration
	lastEnd                                           time.Time
}

// progress is shared, for the stderr progress line only.
type progress struct {
	requests, items, errors atomic.Int64
}

func runLoad(ctx context.Context, cfg Config, bodies []*Body, sender Sender, pids []int, log *slog.Logger) *Result {
	start := time.Now()
	watch := newProcWatcher(append([]int{os.Getpid()}, pids...))
	win := &window{warmupEnd: start.Add(cfg.Warmup), duration: cfg.Duration, onOpen: watch.Begin}
	if cfg.Warmup > 0 {
		win.pending = cfg.Concurrency
	}
	var pace *pacer
	if cfg.Rate > 0 {
		pace = &pacer{start: start, interval: time.Duration(float64(time.Second) / cfg.Rate)}
	}
	var prog progress
	stopProgress := reportProgress(cfg, &prog, log)
	var errLog rateLimitedLog
	stats := make([]*workerStats, cfg.Concurrency)
	var wg sync.WaitGroup
	for w := range cfg.Concurrency {
		var own []*Body
		for i := w; i < len(bodies); i += cfg.Concurrency {
			own = append(own, bodies[i])
		}
		st := &workerStats{outcomes: map[string]int64{}}
		stats[w] = st
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ctx.Err() == nil; i++ {
				if pace != nil && !pace.wait(ctx) {
					return
				}
				now := time.Now()
				measured, closed := win.at(now)
				if closed {
					return
				}
				b := own[i%len(own)]
				b.Stamp(now)
				t0 := time.Now()
				outcome, ok, err := sender.Send(ctx, b)
				end := time.Now()
				prog.requests.Add(1)
				if ok {
					prog.items.Add(int64(b.Items))
				} else {
					prog.errors.Add(1)
					errLog.warn(log, "request not acknowledged", "outcome", outcome, "err", err)
				}
				if measured {
					st.requests++
					st.lastEnd = end
					if outcome != "" {
						st.outcomes[outcome]++
					}
					if ok {
						st.ok++
						st.items += int64(b.Items)
						st.lineBytes += int64(b.LineBytes)
						st.bodyBytes += int64(len(b.Data))
						st.latencies = append(st.latencies, end.Sub(t0))
					} else {
						st.errors++
					}
				}
				if i == len(own)-1 {
					win.cycled()
				}
				if !ok {
					// The failed request may still hold the buffer.
					b.Detach()
					select {
					case <-ctx.Done():
					case <-time.After(cfg.ErrorBackoff):
					}
				}
			}
		}()
	}
	wg.Wait()
	stopProgress()

	res := &Result{
		Mode: cfg.Mode, Target: cfg.Target, Concurrency: cfg.Concurrency,
		StatusCodes: map[string]int64{}, PIDs: map[string]ProcStats{}, Complete: ctx.Err() == nil,
	}
	opened := win.opened()
	end := opened
	var items, lineBytes, bodyBytes, ok int64
	lat := make([][]time.Duration, 0, len(stats))
	for _, st := range stats {
		res.Requests += st.requests
		res.Errors += st.errors
		items += st.items
		lineBytes += st.lineBytes
		bodyBytes += st.bodyBytes
		ok += st.ok
		for k, v := range st.outcomes {
			res.StatusCodes[k] += v
		}
		lat = append(lat, st.latencies)
		if st.lastEnd.After(end) {
			end = st.lastEnd
		}
	}
	procs := watch.End()
	res.Self = procs[0]
	for i, pid := range pids {
		res.PIDs[strconv.Itoa(pid)] = procs[i+1]
	}
	// The window runs until the last request started in it was answered.
	if opened.IsZero() {
		return res
	}
	elapsed := end.Sub(opened).Seconds()
	res.DurationS = elapsed
	if elapsed <= 0 {
		return res
	}
	switch cfg.payload() {
	case ModeRemoteWrite:
		res.Samples, res.SamplesPerSec = items, float64(items)/elapsed
		res.BytesPerSec = float64(bodyBytes) / elapsed
	case PayloadOTLP:
		res.Spans, res.SpansPerSec = items, float64(items)/elapsed
		res.BytesPerSec = float64(bodyBytes) / elapsed
	default:
		res.Entries, res.EntriesPerSec = items, float64(items)/elapsed
		res.BytesPerSec = float64(lineBytes) / elapsed
	}
	if cfg.Mode == ModeKafkaProduce {
		res.Records, res.RecordsPerSec = ok, float64(ok)/elapsed
	}
	res.BodyBytesPerSec = float64(bodyBytes) / elapsed
	all := sortedDurations(lat)
	res.P50Ms, res.P99Ms = quantile(all, 0.50), quantile(all, 0.99)
	return res
}

// window is the measured part of a run. With a warmup, it opens once the
// warmup time has passed and every sender has sent each of its bodies once,
// so that every series and stream exists at the receiver before anything is
// measured (creating series is a one-off cost, not throughput); it closes
// Duration after it opened. Requests are measured if they start inside it.
type window struct {
	mu        sync.Mutex
	warmupEnd time.Time
	pending   int // senders that have not yet sent all their bodies
	duration  time.Duration
	open      time.Time
	onOpen    func()
}

// at reports whether a request starting at now is measured, and whether
// the window has closed.
func (w *window) at(now time.Time) (measured, closed bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.open.IsZero() {
		if w.pending > 0 || now.Before(w.warmupEnd) {
			return false, false
		}
		w.open = now
		w.onOpen()
	}
	if !now.Before(w.open.Add(w.duration)) {
		return false, true
	}
	return true, false
}

// cycled records that a sender has sent each of its bodies once.
func (w *window) cycled() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.pending > 0 {
		w.pending--
	}
}

func (w *window) opened() time.Time {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.open
}

// pacer hands out send times at a fixed rate shared by all senders. A sender
// that falls behind sends at once (the schedule does not slip), so the rate
// holds as long as the receiver keeps up.
type pacer struct {
	start    time.Time
	interval time.Duration
	n        atomic.Int64
}

// wait blocks until the next slot; false if ctx ended.
func (p *pacer) wait(ctx context.Context) bool {
	at := p.start.Add(time.Duration(p.n.Add(1)-1) * p.interval)
	d := time.Until(at)
	if d <= 0 {
		return true
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

func reportProgress(cfg Config, p *progress, log *slog.Logger) (stop func()) {
	if cfg.Progress <= 0 {
		return func() {}
	}
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(cfg.Progress)
		defer t.Stop()
		var lastItems int64
		last := time.Now()
		for {
			select {
			case <-done:
				return
			case now := <-t.C:
				items := p.items.Load()
				log.Info("progress", "requests", p.requests.Load(), "errors", p.errors.Load(),
					"items_per_sec", fmt.Sprintf("%.0f", float64(items-lastItems)/now.Sub(last).Seconds()))
				lastItems, last = items, now
			}
		}
	}()
	return func() { close(done); wg.Wait() }
}

// rateLimitedLog logs at most one warning per second.
type rateLimitedLog struct {
	mu   sync.Mutex
	last time.Time
	n    int
}

func (l *rateLimitedLog) warn(log *slog.Logger, msg string, args ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.n++
	if time.Since(l.last) < time.Second {
		return
	}
	l.last = time.Now()
	log.Warn(msg, append(args, "failures_so_far", l.n)...)
}
