package bench

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/http"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/tributary-io/tributary/pkg/loadgen"
)

// series is the load tool's default -series: a warmup lasts until each was
// sent once, and phase e's ingester measurement starts after as many
// samples.
const series = 100000

// seriesPerRequest is the load tool's default -series-per-request.
const seriesPerRequest = 2000

type bench struct {
	cfg     Config
	log     *slog.Logger // the bench's progress
	loadLog *slog.Logger // the load tool's runs: warnings only
	work    string       // temporary directory of the run
	res     results
	failed  []string
	ceil    *ceiling

	window, warmup, short time.Duration
}

// Run runs every phase, then writes the table and the JSON line to stdout.
// It returns an error if a phase failed (after running the others).
func Run(ctx context.Context, cfg Config, stdout io.Writer, log *slog.Logger) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	work, err := os.MkdirTemp("", "tributary-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	b := &bench{
		cfg: cfg, log: log, work: work, res: results{},
		loadLog: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})).With("component", "loadgen"),
		window:  time.Duration(cfg.Seconds) * time.Second,
		// Unmeasured load before each measured window.
		warmup: time.Duration(cfg.Seconds) * 100 * time.Millisecond,
		// The devbroker keeps every record in memory, and the producer and
		// log runs write hundreds of MB/s: they are measured for at most 10 s.
		short: time.Duration(min(cfg.Seconds, 10)) * time.Second,
	}
	if err := b.checkBinaries(); err != nil {
		return err
	}
	start := time.Now()
	b.step(ctx, "a", b.phaseA)
	b.step(ctx, "b", b.phaseB)
	// Phases c, d and e share broker m: the gateway run fills its topic,
	// which the consumers of d and e read afterwards.
	m := newScope("broker-m", work, log)
	var broker *proc
	var topicSamples float64
	b.step(ctx, "c", func(ctx context.Context, s *scope) { broker = b.phaseC(ctx, s, m) })
	b.step(ctx, "d", func(ctx context.Context, s *scope) { topicSamples = b.phaseD(ctx, s, broker) })
	b.step(ctx, "e", func(ctx context.Context, s *scope) { b.phaseE(ctx, s, broker, topicSamples) })
	m.close() // frees the broker's memory
	b.step(ctx, "f", b.phaseF)
	b.step(ctx, "g", b.phaseG)
	b.step(ctx, "agent", b.phaseAgent)
	b.step(ctx, "spans", b.phaseSpans)
	b.step(ctx, "spans-sink", b.phaseSpansSink)
	b.step(ctx, "otlp", b.phaseOTLP)
	b.step(ctx, "logs-agent", b.phaseLogsAgent)
	b.step(ctx, "skew", b.phaseSkew)
	log.Info("done", "took", time.Since(start).Round(time.Second))
	if err := writeReport(stdout, b.res, b.failed, cfg.Seconds, runtime.NumCPU(), cfg.Concurrency); err != nil {
		return err
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if len(b.failed) > 0 {
		return fmt.Errorf("%d phase(s) failed", len(b.failed))
	}
	return nil
}

// step runs fn in a scope of its own and records a failure (a Fatal of
// any scope in fn, or fn's own) under name; it reports success.
func (b *bench) step(ctx context.Context, name string, fn func(ctx context.Context, s *scope)) (ok bool) {
	if ctx.Err() != nil || !slices.Contains(b.cfg.phases(), name) {
		return false
	}
	s := newScope(name, b.work, b.log)
	defer s.close()
	defer func() {
		if r := recover(); r != nil {
			pe, isPhase := r.(phaseError)
			if !isPhase {
				panic(r)
			}
			b.fail(name, pe.msg)
			ok = false
		}
	}()
	fn(ctx, s)
	return true
}

func (b *bench) fail(phase, msg string) {
	b.failed = append(b.failed, phase+": "+msg)
	b.log.Error("FAILED phase "+phase, "err", msg)
}

// load runs the load tool in this process with the bench's common settings
// followed by args (loadgen's flags; later ones win).
func (b *bench) load(ctx context.Context, name string, args ...string) (*loadgen.Result, error) {
	var cfg loadgen.Config
	fs := flag.NewFlagSet("loadgen "+name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	cfg.RegisterFlags(fs)
	common := []string{"-progress=0", "-duration=" + b.window.String(), "-concurrency=" + strconv.Itoa(b.cfg.Concurrency)}
	if err := fs.Parse(append(common, args...)); err != nil {
		return nil, fmt.Errorf("loadgen %s: %w", name, err)
	}
	res, err := loadgen.Run(ctx, cfg, b.loadLog.With("run", name))
	if err != nil {
		return nil, fmt.Errorf("loadgen %s: %w", name, err)
	}
	if !res.Complete {
		return res, fmt.Errorf("loadgen %s: interrupted", name)
	}
	return res, nil
}

// overload counts the answers that mean "retry later": 503 (the gateway's
// default) and 429 (its -limits.overload-status=429, and rate limits).
func overload(res *loadgen.Result) int64 {
	return res.StatusCodes["429"] + res.StatusCodes["503"]
}

// warnNotAcked logs what the receiver did not acknowledge.
func (b *bench) warnNotAcked(res *loadgen.Result, who string) {
	if res.Errors == 0 {
		return
	}
	b.log.Warn(who+" did not acknowledge every request", "not_acked", res.Errors, "overload_429_503", overload(res),
		"status_codes", fmt.Sprint(res.StatusCodes))
}

func pidKey(p *proc) string { return strconv.Itoa(p.PID()) }

func pidsArg(ps ...*proc) string {
	var s []string
	for _, p := range ps {
		s = append(s, pidKey(p))
	}
	return "-watch-pids=" + strings.Join(s, ",")
}

func warmupArg(d time.Duration) string { return "-warmup=" + d.String() }

// phaseA measures the ceilings of the decode path: the median of three
// runs, as single runs are noisy on a shared machine. Phase c measures the
// validate ceiling again between its rounds.
func (b *bench) phaseA(ctx context.Context, s *scope) {
	b.log.Info("phase a: ceiling benchmarks (go test -bench Ceiling, -cpu 1, 3 runs)", "each", b.warmup)
	c, err := buildCeiling(ctx, b.cfg.Root, b.work, "./pkg/remotewrite/")
	s.fatalIf(err, "build the ceiling benchmarks")
	b.ceil = c
	out, err := c.run(ctx, "Ceiling", b.warmup, 3)
	s.fatalIf(err, "run the ceiling benchmarks")
	vs := benchValues(out, "BenchmarkCeilingValidate")
	v, ok := upperMedian(vs)
	if !ok {
		s.Fatalf("no samples/s from BenchmarkCeilingValidate")
	}
	c.validate = append(c.validate, vs...)
	b.res["ceiling_validate_samples_per_core_sec"] = v
	if v, ok := upperMedian(benchValues(out, "BenchmarkCeilingSnappyDecode")); ok {
		b.res["ceiling_snappy_samples_per_core_sec"] = v
	}
}

// phaseB measures the load tool's own ceiling (the same bodies, stamped
// and dropped) and the producer ceiling (the bodies as records straight to
// the broker, with the gateway's producer settings).
func (b *bench) phaseB(ctx context.Context, s *scope) {
	toolWindow := time.Duration((b.cfg.Seconds+3)/4) * time.Second
	b.log.Info("phase b: the load tool's ceiling (loadgen -mode discard)", "window", toolWindow)
	res, err := b.load(ctx, "discard", "-mode=discard", "-duration="+toolWindow.String())
	s.fatalIf(err, "loadgen -mode discard")
	b.res["loadgen_ceiling_samples_per_sec"] = res.SamplesPerSec
	b.res["loadgen_ceiling_cpu_cores"] = res.Self.CPUCores

	b.log.Info("phase b: producer ceiling (loadgen kafka-produce → devbroker)", "window", b.short)
	broker := b.startBroker(s)
	res, err = b.load(ctx, "producer", "-mode=kafka-produce", "-target="+broker.Addr, warmupArg(b.warmup), pidsArg(broker),
		"-duration="+b.short.String())
	s.fatalIf(err, "loadgen kafka-produce")
	b.warnNotAcked(res, "devbroker")
	b.res["producer_ceiling_samples_per_sec"] = res.SamplesPerSec
	b.res["producer_broker_cpu_cores"] = res.PIDs[pidKey(broker)].CPUCores
	b.res["producer_broker_rss_max_mb"] = res.PIDs[pidKey(broker)].RSSMaxMB
	b.res["producer_loadgen_cpu_cores"] = res.Self.CPUCores
	stop(broker)
}

// gatewayRound is one measured gateway window and the validate ceilings
// run right before and after it.
type gatewayRound struct {
	res           *loadgen.Result
	before, after float64
	hasB, hasA    bool
}

// phaseC measures the gateway. The machine's speed drifts by tens of
// percent within seconds (shared host), so target 1 compares each gateway
// window with ceiling runs right before and after it: rounds × (ceiling,
// gateway window), then a last ceiling. Rates are medians over the rounds;
// the ratio is the median of the per-round ratios. Many short rounds: the
// closer a ceiling run is to its window, the less the drift between them.
// The total load stays about 6/5 × the window: the devbroker keeps every
// record in memory, and the kernel's zeroing of its new pages (perf: 60% of
// its CPU) takes more of the two cores the longer it grows. It returns the
// broker, which m keeps running for phases d and e.
func (b *bench) phaseC(ctx context.Context, s, m *scope) *proc {
	rounds, rs, warm := 1, b.window, b.warmup
	switch {
	case b.cfg.Seconds >= 18:
		rounds, rs, warm = 6, time.Duration(b.cfg.Seconds/6)*time.Second, time.Second
	case b.cfg.Seconds >= 6:
		rounds, rs = 3, time.Duration(b.cfg.Seconds/3)*time.Second
	}
	b.log.Info("phase c: gateway (loadgen remote-write → gateway → devbroker, validate ceiling between rounds)",
		"rounds", rounds, "window", rs)
	broker := b.startBroker(m)
	gw := b.startGateway(s, broker.Addr)
	ceilingOnce := func() (float64, bool) {
		if b.ceil == nil {
			return 0, false
		}
		return b.ceil.once(ctx, warm)
	}
	var all []gatewayRound
	c, hasC := ceilingOnce()
	for i := 1; i <= rounds; i++ {
		res, err := b.load(ctx, fmt.Sprintf("gateway-%d", i), "-mode=remote-write", "-target="+gw.URL, warmupArg(warm),
			pidsArg(gw, broker), "-duration="+rs.String())
		s.fatalIf(err, "loadgen remote-write")
		b.warnNotAcked(res, "gateway")
		r := gatewayRound{res: res, before: c, hasB: hasC}
		c, hasC = ceilingOnce()
		r.after, r.hasA = c, hasC
		all = append(all, r)
	}
	b.summariseGateway(all, pidKey(gw), pidKey(broker))
	stop(gw)
	return broker
}

// summariseGateway sets phase c's results from its rounds.
func (b *bench) summariseGateway(rounds []gatewayRound, gw, broker string) {
	var rate, cores, perCore, p99, brokerCores, loadCores, body, ratio []float64
	rss := 0.0
	var over int64
	for _, r := range rounds {
		g := r.res.PIDs[gw]
		rate = append(rate, r.res.SamplesPerSec)
		cores = append(cores, g.CPUCores)
		rss = max(rss, g.RSSMaxMB)
		p99 = append(p99, r.res.P99Ms)
		brokerCores = append(brokerCores, r.res.PIDs[broker].CPUCores)
		loadCores = append(loadCores, r.res.Self.CPUCores)
		body = append(body, r.res.BodyBytesPerSec)
		over += overload(r.res)
		if g.CPUCores <= 0 {
			continue
		}
		perCore = append(perCore, r.res.SamplesPerSec/g.CPUCores)
		var ceil []float64
		if r.hasB {
			ceil = append(ceil, r.before)
		}
		if r.hasA {
			ceil = append(ceil, r.after)
		}
		if len(ceil) > 0 {
			mean := 0.0
			for _, v := range ceil {
				mean += v
			}
			mean /= float64(len(ceil))
			ratio = append(ratio, r.res.SamplesPerSec/g.CPUCores/mean)
		}
	}
	b.res.setMedian("gateway_samples_per_sec", rate)
	b.res.setMedian("gateway_cpu_cores", cores)
	b.res.setMedian("gateway_samples_per_core_sec", perCore)
	b.res["gateway_rss_max_mb"] = rss
	b.res.setMedian("gateway_p99_ms", p99)
	b.res.setMedian("gateway_broker_cpu_cores", brokerCores)
	b.res.setMedian("gateway_loadgen_cpu_cores", loadCores)
	b.res["gateway_overload_answers"] = float64(over)
	if r, ok := median(rate); ok && r > 0 {
		if bb, ok := median(body); ok {
			b.res["body_bytes_per_sample"] = bb / r
		}
	}
	if b.ceil != nil {
		// Every validate ceiling of the run: phase a's and the rounds'.
		b.res.setMedian("ceiling_validate_samples_per_core_sec", b.ceil.validate)
	}
	b.res.setMedian("gateway_per_core_vs_ceiling", ratio)
	b.res["gateway_rounds"] = float64(len(rounds))
}

// phaseD reads the gateway's topic with a bare consumer, then with the
// ingester's discard sink. It returns the samples in the topic.
func (b *bench) phaseD(ctx context.Context, s *scope, broker *proc) float64 {
	if broker == nil {
		s.Fatalf("no topic: phase c failed")
	}
	b.log.Info("phase d: bare consumer vs. ingester -discard.enabled on the gateway's topic")
	wait := 3*b.window + time.Minute
	// The devbroker serves the first read of a record more slowly than
	// later ones (measured: ~13M vs ~19M samples/s): one unmeasured read
	// first, so that both consumers get the same broker.
	_, _ = b.load(ctx, "bare-warmup", "-mode=kafka-consume", "-target="+broker.Addr, "-duration="+wait.String())
	res, err := b.load(ctx, "bare", "-mode=kafka-consume", "-target="+broker.Addr, "-duration="+wait.String())
	if err != nil || !res.Complete {
		s.Fatalf("loadgen kafka-consume did not read the topic to its end: %v", err)
	}
	b.res["bare_consumer_samples_per_sec"] = res.SamplesPerSec
	total := float64(res.Samples)

	ing := b.startIngester(s, broker.Addr, "-discard.enabled=true")
	w := watch(ctx, watchSpec{url: ing.URL + "/metrics", sink: "discard", total: total, timeout: wait})
	if !w.caughtUp {
		s.Fatalf("ingester -discard.enabled wrote %.0f of %.0f samples", w.count, total)
	}
	b.res["ingester_discard_samples_per_sec"] = w.rate
	stop(ing)
	return total
}

// prometheusRound is one round of phase e; a zero value was not measured.
type prometheusRound struct{ direct, cores, ingester float64 }

// phaseE compares the load tool straight into a fresh Prometheus with the
// ingester into another fresh one. Both are Prometheus-bound: Prometheus
// takes both cores, and its rate swings with the shared machine (one run
// measured 0.78, the six before it 0.99-1.33). So, as in phase c, rounds ×
// (direct, then ingester), 3 rounds from 9 s windows on. Rates are medians
// over the rounds; the ratio is the median of the per-round ratios. The
// ingester keeps its consumer group between rounds: each round reads on
// where the last stopped, new data for its new Prometheus.
func (b *bench) phaseE(ctx context.Context, s *scope, broker *proc, topicSamples float64) {
	rounds, rs := 1, b.window
	if b.cfg.Seconds >= 9 {
		rounds, rs = 3, time.Duration(b.cfg.Seconds/3)*time.Second
	}
	b.log.Info("phase e: Prometheus direct vs. ingester → Prometheus", "rounds", rounds, "window", rs)
	if broker == nil {
		b.fail("e", "no topic for the ingester: phase c failed (Prometheus direct still measured)")
	}
	var all []prometheusRound
	for i := 1; i <= rounds && ctx.Err() == nil; i++ {
		var r prometheusRound
		b.step(ctx, "e", func(ctx context.Context, s *scope) {
			prom := startPrometheus(s)
			res, err := b.load(ctx, fmt.Sprintf("direct-%d", i), "-mode=remote-write", "-target="+prom.URL, warmupArg(b.warmup),
				pidsArg(prom), "-duration="+rs.String())
			s.fatalIf(err, "loadgen → Prometheus")
			b.warnNotAcked(res, "Prometheus")
			r.direct, r.cores = res.SamplesPerSec, res.PIDs[pidKey(prom)].CPUCores
		})
		if broker != nil {
			b.step(ctx, "e", func(ctx context.Context, s *scope) {
				prom := startPrometheus(s)
				ing := b.startIngester(s, broker.Addr, "-prometheus.url="+prom.URL+"/api/v1/write")
				w := watch(ctx, watchSpec{url: ing.URL + "/metrics", sink: "prometheus", total: topicSamples,
					window: rs, skip: b.warmup, skipItems: series, timeout: rs + 90*time.Second})
				if w.count == 0 {
					s.Fatalf("the ingester wrote nothing to Prometheus:\n%s", lastLines(ing.Output(), 3))
				}
				r.ingester = w.rate
				if f, err := scrape(ctx, ing.URL+"/metrics"); err == nil {
					if n := f.sum("tributary_ingester_dlq_records_total", nil); n > 0 {
						b.log.Warn("the ingester dead-lettered records", "records", n, "output", lastLines(ing.Output(), 3))
					}
				}
				stop(ing, prom)
			})
		}
		all = append(all, r)
	}
	var direct, cores, ing, ratio []float64
	for _, r := range all {
		if r.direct > 0 {
			direct = append(direct, r.direct)
			cores = append(cores, r.cores)
		}
		if r.ingester > 0 {
			ing = append(ing, r.ingester)
		}
		if r.direct > 0 && r.ingester > 0 {
			ratio = append(ratio, r.ingester/r.direct)
		}
	}
	b.res.setMedian("prometheus_direct_samples_per_sec", direct)
	b.res.setMedian("prometheus_direct_cpu_cores", cores)
	b.res.setMedian("ingester_prometheus_samples_per_sec", ing)
	b.res.setMedian("ingester_prometheus_vs_direct", ratio)
	b.res["prometheus_rounds"] = float64(len(all))
}

// phaseF measures the end-to-end delay at half the pipeline's sustained
// maximum: the slower of gateway and ingester → Prometheus (the latter is
// Prometheus-bound on small machines).
func (b *bench) phaseF(ctx context.Context, s *scope) {
	var sustained []float64
	for _, k := range []string{"gateway_samples_per_sec", "ingester_prometheus_samples_per_sec"} {
		if v, ok := b.res.get(k); ok && v > 0 {
			sustained = append(sustained, v)
		}
	}
	if len(sustained) == 0 {
		s.Fatalf("no sustained rate measured (phases c and e failed)")
	}
	rate := slices.Min(sustained) / 2
	b.res["e2e_rate_samples_per_sec"] = rate
	rps := max(math.Round(rate/seriesPerRequest*100)/100, 0.01)
	b.log.Info("phase f: latency, gateway → ingester → Prometheus", "samples_per_sec", rate, "requests_per_sec", rps, "window", b.window)
	broker := b.startBroker(s)
	prom := startPrometheus(s)
	ing := b.startIngester(s, broker.Addr, "-prometheus.url="+prom.URL+"/api/v1/write")
	waitReady(ctx, s, ing, time.Minute)
	gw := b.startGateway(s, broker.Addr)
	res, err := b.load(ctx, "latency", "-mode=remote-write", "-target="+gw.URL, "-rate="+strconv.FormatFloat(rps, 'f', -1, 64))
	s.fatalIf(err, "loadgen")
	w := watch(ctx, watchSpec{url: ing.URL + "/metrics", sink: "prometheus", total: float64(res.Samples), timeout: time.Minute})
	if !w.caughtUp {
		b.log.Warn("the ingester did not write everything within 60 s", "written", w.count, "sent", res.Samples)
	}
	f, err := scrape(ctx, ing.URL+"/metrics")
	s.fatalIf(err, "read the ingester's metrics")
	bs := f.buckets("tributary_ingester_end_to_end_delay_seconds", map[string]string{"sink": "prometheus"})
	p50, ok50 := histogramQuantile(0.5, bs)
	p99, ok99 := histogramQuantile(0.99, bs)
	if !ok50 || !ok99 {
		s.Fatalf("no end-to-end delay observed by the ingester")
	}
	b.res["e2e_p50_ms"] = p50 * 1000
	b.res["e2e_p99_ms"] = p99 * 1000
	stop(gw, ing, prom, broker)
}

// waitReady waits until p's /-/ready answers 200.
func waitReady(ctx context.Context, s *scope, p *proc, timeout time.Duration) {
	deadline := time.Now().Add(timeout)
	for ctx.Err() == nil && time.Now().Before(deadline) {
		if p.Exited() {
			s.Fatalf("%s exited:\n%s", p.Name, lastLines(p.Output(), 5))
		}
		if code, err := httpStatus(ctx, p.URL+"/-/ready"); err == nil && code == http.StatusOK {
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
	s.Fatalf("%s not ready within %s", p.Name, timeout)
}

// phaseG measures the logs path: protobuf and JSON pushes → gateway →
// devbroker, line bytes per second.
func (b *bench) phaseG(ctx context.Context, s *scope) {
	for _, mode := range []string{"loki-proto", "loki-json"} {
		key := "logs"
		if mode == "loki-json" {
			key = "logs_json"
		}
		b.step(ctx, "g", func(ctx context.Context, s *scope) {
			b.log.Info("phase g: logs → gateway → devbroker", "mode", mode, "window", b.short)
			broker := b.startBroker(s)
			gw := b.startGateway(s, broker.Addr)
			res, err := b.load(ctx, mode, "-mode="+mode, "-target="+gw.URL, warmupArg(b.warmup), pidsArg(gw), "-duration="+b.short.String())
			s.fatalIf(err, "loadgen %s", mode)
			b.warnNotAcked(res, "gateway")
			b.res[key+"_mb_per_sec"] = res.BytesPerSec / 1e6
			b.res[key+"_gateway_cpu_cores"] = res.PIDs[pidKey(gw)].CPUCores
			stop(gw, broker)
		})
	}
}
