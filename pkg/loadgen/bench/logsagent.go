package bench

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/tributary-io/tributary/internal/testenv"
	"github.com/tributary-io/tributary/pkg/agent/logs/logstest"
)

// LogsAgentConfig is the logs-agent phase: the agent's log tailer and
// Promtail (if built) ship the same container log files, in the kubelet's
// layout, into the same kind of gateway, one at a time and alternated,
// and their CPU and RSS are compared (issue 20).
type LogsAgentConfig struct {
	// Files is the number of container log files (one container per pod).
	Files int `yaml:"files"`
	// Rate is the steady point's lines per second over all files.
	Rate int `yaml:"rate"`
	// Backlog is the max point's lines, written before the shipper starts.
	Backlog int `yaml:"backlog"`
	// Rounds of each shipper per point, alternated (agent, Promtail, ...).
	Rounds int `yaml:"rounds"`
	// AgentArgs are extra flags of the agent (e.g. -runtime.gc-percent=50).
	AgentArgs string `yaml:"agent_args"`
	// Promtail is the Promtail binary (scripts/build-promtail.sh); empty:
	// the agent alone.
	Promtail string `yaml:"promtail"`
}

// RegisterFlags registers the flags.
func (c *LogsAgentConfig) RegisterFlags(fs *flag.FlagSet) {
	// Issue 20's two points: 100 files at 1k lines/s (a busy node's steady
	// state) and at the shipper's maximum (a backlog of 1M lines, ~245 MB).
	fs.IntVar(&c.Files, "logs-agent.files", 100, "logs-agent phase: container log files (one per pod).")
	fs.IntVar(&c.Rate, "logs-agent.rate", 1000, "logs-agent phase: lines per second of the steady point, over all files; the window is -seconds.")
	fs.IntVar(&c.Backlog, "logs-agent.backlog", 1000000, "logs-agent phase: lines written before the shipper starts, for the max point (time to ship them all).")
	fs.IntVar(&c.Rounds, "logs-agent.rounds", 2, "logs-agent phase: runs of each shipper per point, alternated.")
	fs.StringVar(&c.AgentArgs, "logs-agent.args", "", "logs-agent phase: extra flags of the agent, space-separated.")
	fs.StringVar(&c.Promtail, "promtail", "", "Promtail binary for the logs-agent phase's baseline (make bench builds it with scripts/build-promtail.sh); empty: left out.")
}

// Validate checks the configuration.
func (c *LogsAgentConfig) Validate() error {
	switch {
	case c.Files < 1:
		return errors.New("logs-agent.files must be positive")
	case c.Rate < 100:
		return errors.New("logs-agent.rate must be at least 100 (lines per second)")
	case c.Backlog < c.Files:
		return fmt.Errorf("logs-agent.backlog %d: want at least one line per file (%d)", c.Backlog, c.Files)
	case c.Rounds < 1:
		return errors.New("logs-agent.rounds must be positive")
	}
	return nil
}

// Shippers and points of the logs-agent phase, by result key part.
const (
	shipperAgent    = "agent"
	shipperPromtail = "promtail"
	pointSteady     = "steady"
	pointMax        = "max"
)

// logsRun is one shipper's run of one point.
type logsRun struct {
	written, delivered float64
	seconds            float64 // start → last line acknowledged (max point), or the write window (steady)
	use                usage
}

// phaseLogsAgent runs the steady point, then the max point, each as
// rounds × (agent, Promtail).
func (b *bench) phaseLogsAgent(ctx context.Context, s *scope) {
	c := b.cfg.LogsAgent
	shippers := []string{shipperAgent}
	if c.Promtail != "" {
		shippers = append(shippers, shipperPromtail)
	} else {
		b.log.Warn("phase logs-agent: no -promtail binary (make bench builds it with scripts/build-promtail.sh): Promtail is left out, no ratios")
	}
	gen := newLineGen()
	runs := map[string][]logsRun{}
	for _, point := range []string{pointSteady, pointMax} {
		var backlog string
		if point == pointMax {
			backlog = s.TempDir()
			b.log.Info("phase logs-agent: writing the backlog", "files", c.Files, "lines", c.Backlog, "dir", backlog)
			ws := logWriters(s, backlog, c.Files)
			for i := range c.Backlog {
				gen.write(ws[i%len(ws)], i)
			}
		}
		for round := 1; round <= c.Rounds; round++ {
			for _, sh := range shippers {
				b.step(ctx, "logs-agent", func(ctx context.Context, s *scope) {
					r := b.logsRun(ctx, s, sh, point, backlog, gen)
					runs[sh+"_"+point] = append(runs[sh+"_"+point], r)
				})
			}
		}
		b.summariseLogs(runs, point)
	}
}

// logsRun starts a devbroker, a gateway and the shipper on a fresh
// positions file, and ships the point's lines: the backlog's, or
// Rate lines/s written for the window (with a rotation by rename every
// second). It measures the shipper from its start until the gateway has
// acknowledged every line (or nothing arrives for 10 s).
func (b *bench) logsRun(ctx context.Context, s *scope, shipper, point, backlog string, gen *lineGen) logsRun {
	c := b.cfg.LogsAgent
	b.log.Info("phase logs-agent: "+shipper+" → gateway → devbroker", "point", point, "files", c.Files)
	broker := b.startBroker(s)
	gw := b.startGateway(s, broker.Addr)
	pods := backlog
	var ws []*logstest.Writer
	if point == pointSteady {
		pods = s.TempDir()
		ws = logWriters(s, pods, c.Files)
	}
	start := time.Now()
	var p *proc
	var smp *sampler
	if shipper == shipperAgent {
		p, smp = b.startLogsAgent(s, gw.URL, pods)
	} else {
		p, smp = b.startPromtail(s, gw.URL, pods, c.Files)
	}
	r := logsRun{written: float64(c.Backlog)}
	if point == pointSteady {
		r.written = float64(writeSteady(ctx, ws, gen, c.Rate, b.window))
	}
	r.delivered = b.waitLines(ctx, s, gw, r.written)
	r.seconds = time.Since(start).Seconds()
	if point == pointSteady {
		r.seconds = b.window.Seconds() // the rate written, not diluted by the start and the drain
	}
	r.use = smp.end()[0]
	if r.use.err != nil {
		s.Fatalf("%s: %v\n%s", shipper, r.use.err, lastLines(p.Output(), 5))
	}
	stop(p, gw, broker)
	if ctx.Err() != nil {
		s.Fatalf("interrupted")
	}
	if lost := r.written - r.delivered; lost != 0 {
		what := fmt.Sprintf("%s %s: the gateway acknowledged %.0f lines of %.0f written", shipper, point, r.delivered, r.written)
		if shipper == shipperAgent {
			b.fail("logs-agent", what)
		} else {
			b.log.Warn(what)
		}
	}
	return r
}

// logWriters creates files container logs under pods:
// <ns>_<pod>_<uid>/app/0.log.
func logWriters(s *scope, pods string, files int) []*logstest.Writer {
	ws := make([]*logstest.Writer, files)
	for i := range ws {
		ws[i] = logstest.NewWriter(s, filepath.Join(pods, fmt.Sprintf("bench_pod-%03d_uid-%03d", i, i), "app", "0.log"))
	}
	return ws
}

// writeSteady writes rate lines per second round-robin over ws for d, in
// 10 ms steps, and rotates one file by rename every second, as the
// kubelet does. It returns the lines written.
func writeSteady(ctx context.Context, ws []*logstest.Writer, gen *lineGen, rate int, d time.Duration) int {
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	start := time.Now()
	n, rotations := 0, 0
	for ctx.Err() == nil {
		el := time.Since(start)
		if el >= d {
			break
		}
		for want := int(el.Seconds() * float64(rate)); n < want; n++ {
			gen.write(ws[n%len(ws)], n)
		}
		if int(el/time.Second) > rotations {
			w := ws[rotations*7%len(ws)]
			w.Rename(time.Now().UTC().Format("20060102-150405") + "." + strconv.Itoa(rotations))
			rotations++
		}
		<-tick.C
	}
	return n
}

// waitLines waits until the gateway has acknowledged want log lines, or
// nothing more arrived for 10 s; it returns the count.
func (b *bench) waitLines(ctx context.Context, s *scope, gw *proc, want float64) float64 {
	var got float64
	last := time.Now()
	for ctx.Err() == nil {
		f, err := scrape(ctx, gw.URL+"/metrics")
		s.fatalIf(err, "read the gateway's metrics")
		n := f.sum("tributary_gateway_items_received_total", map[string]string{"signal": "logs"})
		if n != got {
			got, last = n, time.Now()
		}
		if got >= want || time.Since(last) > 10*time.Second {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	return got
}

// startLogsAgent runs cmd/agent with a logs section on pods (no
// Kubernetes: labels from the path) and its defaults otherwise. The
// sampler starts with the process, so that the max point counts the
// reading it does before it is ready.
func (b *bench) startLogsAgent(s *scope, gateway, pods string) (*proc, *sampler) {
	dir := s.TempDir()
	cfg := filepath.Join(dir, "agent.yml")
	writeYAML(s, cfg, map[string]any{
		"cluster": "bench-" + shipperAgent,
		"gateway": map[string]any{"url": gateway},
		"metrics": map[string]any{"wal": map[string]any{"dir": filepath.Join(dir, "wal")}},
		"logs":    map[string]any{"pods_dir": pods, "positions_file": filepath.Join(dir, "positions.json")},
	})
	addr := testenv.Addr(testenv.FreePort(s))
	args := []string{"-config.file=" + cfg, "-http.listen-addr=" + addr, "-log.level=warn", "-debug.pprof"}
	args = append(args, strings.Fields(b.cfg.LogsAgent.AgentArgs)...)
	p := testenv.StartProcess(s, "agent", b.bin("agent"), args)
	smp := startSampler(p.PID())
	url := "http://" + addr
	testenv.WaitHTTP(s, p, url+"/-/ready", 60*time.Second)
	return &proc{Process: p, Addr: addr, URL: url}, smp
}

// startPromtail runs Promtail on the same files with the agent's
// settings: the CRI stage, the same labels (one static target per pod
// directory, as Kubernetes discovery gives; the filename label dropped),
// 1 MiB batches sent after at most 1 s, a positions file.
func (b *bench) startPromtail(s *scope, gateway, pods string, files int) (*proc, *sampler) {
	dir := s.TempDir()
	node, _ := os.Hostname()
	var targets []map[string]any
	for i := range files {
		targets = append(targets, map[string]any{"targets": []string{"localhost"}, "labels": map[string]string{
			"__path__":  filepath.Join(pods, fmt.Sprintf("bench_pod-%03d_uid-%03d", i, i), "app", "*.log"),
			"namespace": "bench", "pod": fmt.Sprintf("pod-%03d", i), "container": "app",
		}})
	}
	port := testenv.FreePort(s)
	httpAddr := testenv.Addr(port)
	grpcPort := testenv.FreePort(s)
	host := "127.0.0.1"
	cfg := filepath.Join(dir, "promtail.yml")
	writeYAML(s, cfg, map[string]any{
		"server": map[string]any{
			"http_listen_address": host, "http_listen_port": port,
			"grpc_listen_address": host, "grpc_listen_port": grpcPort,
			"log_level": "warn",
		},
		"positions": map[string]any{"filename": filepath.Join(dir, "positions.yaml")},
		"clients": []map[string]any{{
			"url":       strings.TrimSuffix(gateway, "/") + "/loki/api/v1/push",
			"batchsize": 1 << 20, "batchwait": "1s",
			"external_labels": map[string]string{"cluster": "bench-" + shipperPromtail, "node": node},
		}},
		"scrape_configs": []map[string]any{{
			"job_name":        "pods",
			"pipeline_stages": []map[string]any{{"cri": map[string]any{}}, {"labeldrop": []string{"filename"}}},
			"static_configs":  targets,
		}},
	})
	p := testenv.StartProcess(s, "promtail", b.cfg.LogsAgent.Promtail, []string{"-config.file=" + cfg})
	smp := startSampler(p.PID())
	url := "http://" + httpAddr
	testenv.WaitHTTP(s, p, url+"/ready", 60*time.Second)
	return &proc{Process: p, Addr: httpAddr, URL: url}, smp
}

// summariseLogs sets a point's results: medians over the rounds, and the
// agent/Promtail ratios as the median of the per-round ratios.
func (b *bench) summariseLogs(runs map[string][]logsRun, point string) {
	per := map[string][]float64{}
	for _, sh := range []string{shipperAgent, shipperPromtail} {
		rs := runs[sh+"_"+point]
		if len(rs) == 0 {
			continue
		}
		var lps, lpc, cpu, peak, steady, anon, file, lost []float64
		for _, r := range rs {
			lps = append(lps, r.delivered/r.seconds)
			if r.use.cpuSeconds > 0 {
				lpc = append(lpc, r.delivered/r.use.cpuSeconds)
			}
			cpu = append(cpu, r.use.cpuSeconds)
			peak = append(peak, r.use.rssPeakMB)
			steady = append(steady, r.use.rssSteadyMB)
			anon, file = append(anon, r.use.anonMB), append(file, r.use.fileMB)
			lost = append(lost, r.written-r.delivered)
		}
		key := func(m string) string { return "logsagent_" + sh + "_" + m + "_" + point }
		b.res.setMedian(key("lines_per_sec"), lps)
		b.res.setMedian(key("lines_per_cpu_sec"), lpc)
		b.res.setMedian(key("cpu_seconds"), cpu)
		b.res.setMedian(key("rss_steady_mb"), steady)
		b.res.setMedian(key("rss_anon_mb"), anon)
		b.res.setMedian(key("rss_file_mb"), file)
		b.res[key("rss_peak_mb")] = slices.Max(peak)
		b.res[key("lines_not_acked")] = slices.Max(lost)
		b.res["logsagent_rounds_"+point] = float64(len(rs))
		per[sh+"_lpc"], per[sh+"_peak"], per[sh+"_steady"] = lpc, peak, steady
	}
	for _, m := range []struct{ key, res string }{{"lpc", "lines_per_cpu_sec"}, {"peak", "rss_peak_mb"}, {"steady", "rss_steady_mb"}} {
		a, p := per[shipperAgent+"_"+m.key], per[shipperPromtail+"_"+m.key]
		var ratio []float64
		for i := range min(len(a), len(p)) {
			if p[i] > 0 {
				ratio = append(ratio, a[i]/p[i])
			}
		}
		b.res.setMedian("logsagent_agent_vs_promtail_"+m.res+"_"+point, ratio)
	}
}

// lineGen makes the text of log lines: a fixed pool (the same in every
// run) of logfmt request logs, 100 to 300 bytes, a tenth on stderr.
type lineGen struct{ pool []string }

func newLineGen() *lineGen {
	rnd := rand.New(rand.NewPCG(20, 26))
	methods := []string{"GET", "GET", "GET", "POST", "PUT", "DELETE"}
	g := &lineGen{}
	for range 1024 {
		s := fmt.Sprintf("level=info caller=handler.go:%d msg=\"request served\" method=%s path=/api/v1/items/%d status=%d duration_ms=%d trace_id=%016x",
			40+rnd.IntN(400), methods[rnd.IntN(len(methods))], rnd.IntN(1e6), []int{200, 200, 200, 201, 404, 500}[rnd.IntN(6)], rnd.IntN(900), rnd.Uint64())
		want := 100 + rnd.IntN(201)
		if len(s) < want {
			s += " user_agent=\"" + strings.Repeat("x", max(want-len(s)-14, 0)) + "\""
		}
		g.pool = append(g.pool, s[:min(len(s), want)])
	}
	return g
}

// write appends line i to w.
func (g *lineGen) write(w *logstest.Writer, i int) {
	stream := "stdout"
	if i%10 == 9 {
		stream = "stderr"
	}
	w.CRI(stream, "F", g.pool[i%len(g.pool)])
}
