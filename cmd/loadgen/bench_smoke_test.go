package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tributary-io/tributary/internal/testenv"
)

// benchFields are the fields `make bench`'s backbone phases (a to g)
// promise in its last line.
var benchFields = []string{
	"gateway_samples_per_sec", "gateway_cpu_cores", "gateway_samples_per_core_sec",
	"ceiling_validate_samples_per_core_sec", "producer_ceiling_samples_per_sec",
	"ingester_discard_samples_per_sec", "bare_consumer_samples_per_sec",
	"ingester_prometheus_samples_per_sec", "prometheus_direct_samples_per_sec",
	"e2e_p50_ms", "e2e_p99_ms", "gateway_rss_max_mb", "logs_mb_per_sec", "logs_json_mb_per_sec",
	"loadgen_ceiling_samples_per_sec",
	"gateway_per_core_vs_ceiling", "gateway_vs_producer_ceiling",
	"ingester_discard_vs_bare_consumer", "ingester_prometheus_vs_direct",
}

// TestBenchSmoke runs `loadgen bench` (make bench) for a few seconds per
// phase on freshly built binaries, so that it cannot rot. It asserts only
// that every field is present and positive, never how fast anything is.
func TestBenchSmoke(t *testing.T) {
	root := testenv.RepoRoot(t)
	testenv.PrometheusBinary(t) // installed if missing; the bench finds it on PATH
	bin := t.TempDir()
	build := exec.Command("go", "build", "-o", bin+string(filepath.Separator), "./cmd/...")
	build.Dir = root
	out, err := build.CombinedOutput()
	require.NoError(t, err, "go build: %s", out)

	// The phases run in four groups side by side (they mostly wait on
	// their windows and servers): one after another they took ~7 minutes,
	// the longest package of make test.
	for _, g := range smokeGroups {
		t.Run(g.name, func(t *testing.T) {
			t.Parallel()
			smokeBench(t, root, bin, g)
		})
	}
}

// smokeGroup is a set of phases run by one `loadgen bench` and the fields
// of its last line that those phases promise.
type smokeGroup struct {
	name, phases string
	fields       []string
}

var smokeGroups = []smokeGroup{
	{"backbone", "a,b,c,d,e,f,g", benchFields},
	{"agents", "agent,logs-agent,otlp", []string{
		// The agent phase at its smoke-run point: 2 targets × 500 series.
		"agent_rss_steady_mb_1k", "promagent_rss_steady_mb_1k", "agent_vs_promagent_rss_peak_mb_1k",
		// The logs-agent phase, agent side (Promtail is built by make bench only).
		"logsagent_agent_lines_per_cpu_sec_steady", "logsagent_agent_lines_per_cpu_sec_max", "logsagent_agent_rss_peak_mb_steady",
	}},
	{"spans", "spans,spans-sink", []string{
		// The spans phase, gateway side (the Collector is built by make bench only).
		"spans_gateway_grpc_per_sec", "spans_gateway_http_per_core_sec", "spans_gateway_grpc_per_core_sec_512",
		// The gateway's floor that bounds the gateway / Collector ratio.
		"spans_ceiling_per_core_sec", "spans_ceiling_per_core_sec_512",
	}},
	// Its own group: ~50 s of three cases, each with its own broker,
	// gateways and ingesters.
	{"skew", "skew", []string{"skew_a_partition_samples_max_over_mean", "skew_c_ingester_samples_max_over_mean"}},
}

// TestMain lets the four smoke groups run at once: go test's default
// -test.parallel (GOMAXPROCS, 2 here) ran them two at a time, and each
// mostly waits on its measured windows and servers.
func TestMain(m *testing.M) {
	flag.Parse()
	testenv.DefaultParallel(len(smokeGroups))
	os.Exit(m.Run())
}

func smokeBench(t *testing.T, root, bin string, g smokeGroup) {
	// 5 minutes were not enough on the shared 2-core machine with other
	// builds and tests running (phases a to g alone took 5m01s).
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(bin, "loadgen"), "bench", "-seconds=2", "-bin="+bin, "-root="+root,
		"-phases="+g.phases, "-agent.targets=2", "-agent.scrape-interval=2s", "-logs-agent.backlog=5000", "-logs-agent.rounds=1")
	cmd.Dir = root
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	// The bench kills what it started on exit; on a timeout it gets SIGTERM
	// to do so, and its whole process group SIGKILL if it does not.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(cmd.Process.Pid, syscall.SIGTERM) }
	cmd.WaitDelay = 30 * time.Second
	require.NoError(t, cmd.Start())
	t.Cleanup(func() { _ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) })
	err := cmd.Wait()
	require.NoError(t, err, "loadgen bench failed\nstdout:\n%s\nstderr:\n%s", stdout.String(), stderr.String())

	lines := strings.Split(strings.TrimSpace(stdout.String()), "\n")
	var res map[string]any
	require.NoError(t, json.Unmarshal([]byte(lines[len(lines)-1]), &res), "last line is not JSON:\n%s", stdout.String())
	// A phase that failed leaves its fields null and says why in a FAILED
	// line of the table and in its log (stderr): show both.
	why := func() string {
		var failed []string
		for _, l := range lines {
			if strings.HasPrefix(l, "FAILED ") {
				failed = append(failed, l)
			}
		}
		errLines := strings.Split(strings.TrimSpace(stderr.String()), "\n")
		return strings.Join(failed, "\n") + "\nstderr (last 30 lines):\n" + strings.Join(errLines[max(0, len(errLines)-30):], "\n")
	}
	for _, f := range g.fields {
		v, ok := res[f].(float64)
		require.True(t, ok, "field %s missing or not a number\n%s", f, why())
		require.Positive(t, v, "field %s", f)
	}
	t.Logf("loadgen bench -phases=%s -seconds=2:\n%s", g.phases, stdout.String())
}
