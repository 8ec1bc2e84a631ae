package bench

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	promconfig "github.com/prometheus/prometheus/config"
	"go.yaml.in/yaml/v3"

	"github.com/tributary-io/tributary/internal/testenv"
	"github.com/tributary-io/tributary/pkg/agent/metrics"
)

// AgentConfig is the agent phase: the agent, Prometheus in agent mode and
// (if built) vmagent scrape the same loopback targets side by side, each
// sending to the same gateway, and their CPU and RSS are compared.
type AgentConfig struct {
	// Targets is the number of targets of each point, comma-separated.
	Targets string `yaml:"targets"`
	// SeriesPerTarget is the series each target serves.
	SeriesPerTarget int `yaml:"series_per_target"`
	// ScrapeInterval of all three scrapers.
	ScrapeInterval time.Duration `yaml:"scrape_interval"`
	// AgentArgs are extra flags of the agent (e.g. -runtime.gc-percent=50).
	AgentArgs string `yaml:"agent_args"`
	// VMAgent is the vmagent binary (scripts/build-vmagent.sh); empty: no
	// vmagent column.
	VMAgent string `yaml:"vmagent"`
	// HeapProfiles, if set, is a directory where the agent's heap profile
	// is saved at the end of each point's window.
	HeapProfiles string `yaml:"heap_profiles"`
}

// RegisterFlags registers the flags.
func (c *AgentConfig) RegisterFlags(fs *flag.FlagSet) {
	// Issue 19's two points: 20 × 500 = 10k and 200 × 500 = 100k active
	// series, scraped every 15 s.
	fs.StringVar(&c.Targets, "agent.targets", "20,200", "Agent phase: scrape targets of each point, comma-separated.")
	fs.IntVar(&c.SeriesPerTarget, "agent.series-per-target", 500, "Agent phase: series each target serves (a multiple of 50).")
	fs.DurationVar(&c.ScrapeInterval, "agent.scrape-interval", 15*time.Second, "Agent phase: scrape interval. The warm-up is 2 intervals, the window max(-seconds, 4 intervals) rounded up to whole intervals.")
	fs.StringVar(&c.AgentArgs, "agent.args", "", "Agent phase: extra flags of the agent, space-separated (e.g. -runtime.gc-percent=50).")
	fs.StringVar(&c.VMAgent, "vmagent", "", "vmagent binary for the agent phase's third column (make bench builds it with scripts/build-vmagent.sh); empty: left out.")
	fs.StringVar(&c.HeapProfiles, "agent.heap-profiles", "", "Agent phase: directory to save the agent's heap profile in at the end of each point; empty: none.")
}

// points parses Targets.
func (c *AgentConfig) points() ([]int, error) {
	var out []int
	for _, f := range strings.Split(c.Targets, ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		n, err := strconv.Atoi(f)
		if err != nil || n <= 0 {
			return nil, fmt.Errorf("agent.targets: %q is not a positive number", f)
		}
		out = append(out, n)
	}
	return out, nil
}

// Validate checks the configuration.
func (c *AgentConfig) Validate() error {
	if _, err := c.points(); err != nil {
		return err
	}
	switch {
	case c.SeriesPerTarget <= 0 || c.SeriesPerTarget%familySeries != 0:
		return fmt.Errorf("agent.series-per-target %d: want a positive multiple of %d", c.SeriesPerTarget, familySeries)
	case c.ScrapeInterval < time.Second:
		return errors.New("agent.scrape-interval must be at least 1s")
	}
	return nil
}

// Scrapers of the agent phase, by result key prefix, and the cluster each
// one's series carry (so the gateway counts each one's samples apart).
const (
	scraperAgent   = "agent"
	scraperProm    = "promagent"
	scraperVMAgent = "vmagent"
)

// seriesKey names a point by its active series: "10k", "100k".
func seriesKey(series int) string {
	if series%1000 == 0 {
		return strconv.Itoa(series/1000) + "k"
	}
	return strconv.Itoa(series)
}

// phaseAgent runs one point per entry of -agent.targets.
func (b *bench) phaseAgent(ctx context.Context, _ *scope) {
	pts, _ := b.cfg.Agent.points()
	for _, n := range pts {
		b.step(ctx, "agent", func(ctx context.Context, s *scope) { b.agentPoint(ctx, s, n) })
	}
}

// agentPoint starts n targets, a gateway and the scrapers, lets them warm
// up for two scrape intervals (the first scrape creates every series),
// then measures them over the same window.
func (b *bench) agentPoint(ctx context.Context, s *scope, n int) {
	ac := b.cfg.Agent
	series := n * ac.SeriesPerTarget
	key := seriesKey(series)
	warmup := 2 * ac.ScrapeInterval
	// Whole scrape intervals, so that each target is scraped the same
	// number of times in every window.
	window := max(b.window, 4*ac.ScrapeInterval)
	window = (window + ac.ScrapeInterval - 1) / ac.ScrapeInterval * ac.ScrapeInterval
	b.log.Info("phase agent: agent vs. Prometheus agent mode (vs. vmagent), same targets → same gateway",
		"targets", n, "series", series, "scrape_interval", ac.ScrapeInterval, "warmup", warmup, "window", window)

	tg, err := startTargets(n, ac.SeriesPerTarget)
	s.fatalIf(err, "scrape targets")
	s.Cleanup(tg.close)
	broker := b.startBroker(s)
	gw := b.startGateway(s, broker.Addr)

	scrapers := map[string]*proc{
		scraperAgent: b.startAgent(s, gw.URL, tg.addrs),
		scraperProm:  b.startPromAgent(s, gw.URL, tg.addrs),
	}
	if ac.VMAgent != "" {
		scrapers[scraperVMAgent] = b.startVMAgent(s, gw.URL, tg.addrs)
	}
	names := []string{scraperAgent, scraperProm, scraperVMAgent}
	var pids []int
	var running []string
	for _, name := range names {
		if p := scrapers[name]; p != nil {
			pids = append(pids, p.PID())
			running = append(running, name)
		}
	}
	sleep(ctx, warmup)
	before := b.gatewaySamples(ctx, s, gw)
	smp := startSampler(pids...)
	sleep(ctx, window)
	us := smp.end()
	after := b.gatewaySamples(ctx, s, gw)
	if ctx.Err() != nil {
		s.Fatalf("interrupted")
	}
	if ac.HeapProfiles != "" {
		b.saveHeapProfile(ctx, scrapers[scraperAgent], filepath.Join(ac.HeapProfiles, "agent-heap-"+key+".pb.gz"))
	}
	// A scraper that did not deliver would look cheap: each must have
	// delivered what it scraped in the window. Queues send a batch when it
	// is full or after its deadline (5 s), so a short window may end before
	// a batch: wait a little past it for the check, not the rate.
	want := float64(series) * window.Seconds() / ac.ScrapeInterval.Seconds()
	late := after
	for deadline := time.Now().Add(ac.ScrapeInterval + 10*time.Second); ctx.Err() == nil && time.Now().Before(deadline); {
		short := false
		for _, name := range running {
			short = short || late[name]-before[name] < want*0.9
		}
		if !short {
			break
		}
		sleep(ctx, 500*time.Millisecond)
		late = b.gatewaySamples(ctx, s, gw)
	}
	for i, name := range running {
		u := us[i]
		if u.err != nil {
			s.Fatalf("%s: %v\n%s", name, u.err, lastLines(scrapers[name].Output(), 5))
		}
		if got := late[name] - before[name]; got < want*0.9 {
			s.Fatalf("%s delivered %.0f samples to the gateway for the window, want about %.0f:\n%s",
				name, got, want, lastLines(scrapers[name].Output(), 5))
		}
		sent := after[name] - before[name]
		b.res[name+"_rss_steady_mb_"+key] = u.rssSteadyMB
		b.res[name+"_rss_peak_mb_"+key] = u.rssPeakMB
		b.res[name+"_rss_anon_mb_"+key] = u.anonMB
		b.res[name+"_rss_file_mb_"+key] = u.fileMB
		b.res[name+"_cpu_seconds_"+key] = u.cpuSeconds
		b.res[name+"_samples_per_sec_"+key] = sent / window.Seconds()
	}
	b.res["agent_window_seconds_"+key] = window.Seconds()
	for _, m := range []string{"rss_steady_mb", "rss_peak_mb", "rss_anon_mb", "rss_file_mb", "cpu_seconds"} {
		a, okA := b.res.get(scraperAgent + "_" + m + "_" + key)
		p, okP := b.res.get(scraperProm + "_" + m + "_" + key)
		if okA && okP && p > 0 {
			b.res["agent_vs_promagent_"+m+"_"+key] = a / p
		}
		v, okV := b.res.get(scraperVMAgent + "_" + m + "_" + key)
		if okA && okV && v > 0 {
			b.res["agent_vs_vmagent_"+m+"_"+key] = a / v
		}
	}
	stop(scrapers[scraperAgent], scrapers[scraperProm], scrapers[scraperVMAgent], gw, broker)
}

// sleep waits d or until ctx ends.
func sleep(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}

// gatewaySamples is the gateway's count of acknowledged samples per
// scraper.
func (b *bench) gatewaySamples(ctx context.Context, s *scope, gw *proc) map[string]float64 {
	f, err := scrape(ctx, gw.URL+"/metrics")
	s.fatalIf(err, "read the gateway's metrics")
	out := map[string]float64{}
	for _, name := range []string{scraperAgent, scraperProm, scraperVMAgent} {
		out[name] = f.sum("tributary_gateway_items_received_total", map[string]string{"signal": "metrics", "cluster": "bench-" + name})
	}
	return out
}

// staticTargets is a static_configs entry with addrs.
func staticTargets(addrs []string) []map[string]any {
	return []map[string]any{{"targets": addrs}}
}

func writeYAML(s *scope, path string, v any) {
	data, err := yaml.Marshal(v)
	s.fatalIf(err, "encode %s", path)
	s.fatalIf(os.WriteFile(path, data, 0o644), "write %s", path)
}

// startAgent runs cmd/agent with its defaults (queue, WAL, GC) on the
// targets.
func (b *bench) startAgent(s *scope, gateway string, addrs []string) *proc {
	dir := s.TempDir()
	cfg := filepath.Join(dir, "agent.yml")
	writeYAML(s, cfg, map[string]any{
		"cluster": "bench-" + scraperAgent,
		"gateway": map[string]any{"url": gateway},
		"metrics": map[string]any{
			"scrape_interval": b.cfg.Agent.ScrapeInterval.String(),
			"wal":             map[string]any{"dir": filepath.Join(dir, "wal")},
			"scrape_configs":  []map[string]any{{"job_name": "bench", "static_configs": staticTargets(addrs)}},
		},
	})
	port := testenv.FreePort(s)
	addr := testenv.Addr(port)
	args := []string{"-config.file=" + cfg, "-http.listen-addr=" + addr, "-log.level=warn", "-debug.pprof"}
	args = append(args, strings.Fields(b.cfg.Agent.AgentArgs)...)
	p := testenv.StartProcess(s, "agent", b.bin("agent"), args)
	url := "http://" + addr
	testenv.WaitHTTP(s, p, url+"/-/ready", 60*time.Second)
	return &proc{Process: p, Addr: addr, URL: url}
}

// promQueue is the agent's effective remote-write queue (Prometheus's
// library defaults under metrics.DefaultQueue) in the keys Prometheus 2.42
// knows, so that both queue the same way. Prometheus 2.42's own defaults
// differ (capacity 2500, 500 samples per send, up to 200 shards).
func promQueue() map[string]any {
	d := promconfig.DefaultQueueConfig
	q := map[string]any{
		"capacity": d.Capacity, "max_samples_per_send": d.MaxSamplesPerSend, "batch_send_deadline": d.BatchSendDeadline.String(),
		"min_backoff": d.MinBackoff.String(), "max_backoff": d.MaxBackoff.String(), "min_shards": d.MinShards, "max_shards": d.MaxShards,
	}
	for k, v := range metrics.DefaultQueue {
		if k == "sample_age_limit" {
			continue // not in 2.42; 0 (no limit) is its behaviour anyway
		}
		q[k] = v
	}
	return q
}

// startPromAgent runs Debian's Prometheus in agent mode on the targets.
func (b *bench) startPromAgent(s *scope, gateway string, addrs []string) *proc {
	dir := s.TempDir()
	cfg := filepath.Join(dir, "prometheus.yml")
	interval := b.cfg.Agent.ScrapeInterval.String()
	writeYAML(s, cfg, map[string]any{
		"global": map[string]any{
			"scrape_interval": interval,
			"scrape_timeout":  min(b.cfg.Agent.ScrapeInterval, 10*time.Second).String(),
			"external_labels": map[string]string{"cluster": "bench-" + scraperProm},
		},
		"scrape_configs": []map[string]any{{"job_name": "bench", "static_configs": staticTargets(addrs)}},
		"remote_write": []map[string]any{{
			"url":             strings.TrimSuffix(gateway, "/") + "/api/v1/write",
			"queue_config":    promQueue(),
			"metadata_config": map[string]any{"send": false},
		}},
	})
	port := testenv.FreePort(s)
	addr := testenv.Addr(port)
	p := testenv.StartProcess(s, "prometheus-agent", testenv.PrometheusBinary(s), []string{
		"--enable-feature=agent",
		"--config.file=" + cfg,
		"--storage.agent.path=" + filepath.Join(dir, "data-agent"),
		"--web.listen-address=" + addr,
		"--log.level=warn",
	})
	url := "http://" + addr
	testenv.WaitHTTP(s, p, url+"/-/ready", 60*time.Second)
	return &proc{Process: p, Addr: addr, URL: url}
}

// startVMAgent runs vmagent on the targets, with the same batch size and
// a fixed 4 queues as the agent.
func (b *bench) startVMAgent(s *scope, gateway string, addrs []string) *proc {
	dir := s.TempDir()
	cfg := filepath.Join(dir, "scrape.yml")
	writeYAML(s, cfg, map[string]any{
		"global":         map[string]any{"scrape_interval": b.cfg.Agent.ScrapeInterval.String()},
		"scrape_configs": []map[string]any{{"job_name": "bench", "static_configs": staticTargets(addrs)}},
	})
	port := testenv.FreePort(s)
	addr := testenv.Addr(port)
	p := testenv.StartProcess(s, "vmagent", b.cfg.Agent.VMAgent, []string{
		"-promscrape.config=" + cfg,
		"-remoteWrite.url=" + strings.TrimSuffix(gateway, "/") + "/api/v1/write",
		"-remoteWrite.tmpDataPath=" + filepath.Join(dir, "data"),
		"-remoteWrite.label=cluster=bench-" + scraperVMAgent,
		"-remoteWrite.queues=4",
		"-remoteWrite.forcePromProto",
		"-httpListenAddr=" + addr,
		"-loggerLevel=WARN",
	})
	url := "http://" + addr
	testenv.WaitHTTP(s, p, url+"/health", 60*time.Second)
	return &proc{Process: p, Addr: addr, URL: url}
}

// saveHeapProfile writes the agent's /debug/pprof/heap to path.
func (b *bench) saveHeapProfile(ctx context.Context, p *proc, path string) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, p.URL+"/debug/pprof/heap", nil)
	if err == nil {
		var resp *http.Response
		if resp, err = http.DefaultClient.Do(req); err == nil {
			defer resp.Body.Close()
			var data []byte
			if data, err = io.ReadAll(resp.Body); err == nil {
				if err = os.MkdirAll(filepath.Dir(path), 0o755); err == nil {
					err = os.WriteFile(path, data, 0o644)
				}
			}
		}
	}
	if err != nil {
		b.log.Warn("agent heap profile not saved", "err", err)
		return
	}
	b.log.Info("agent heap profile saved", "path", path)
}
