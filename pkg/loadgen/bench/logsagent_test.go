package bench

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tributary-io/tributary/pkg/agent/logs/logstest"
)

func TestLogsAgentConfig(t *testing.T) {
	parse := func(args ...string) (Config, error) {
		var c Config
		fs := flag.NewFlagSet("bench", flag.ContinueOnError)
		c.RegisterFlags(fs)
		require.NoError(t, fs.Parse(args))
		return c, c.Validate()
	}
	c, err := parse("-phases=logs-agent")
	require.NoError(t, err)
	require.Equal(t, LogsAgentConfig{Files: 100, Rate: 1000, Backlog: 1000000, Rounds: 2}, c.LogsAgent, "issue 20's points")
	_, err = parse("-logs-agent.backlog=50")
	require.ErrorContains(t, err, "logs-agent.backlog")
	_, err = parse("-logs-agent.rate=10")
	require.ErrorContains(t, err, "logs-agent.rate")
	_, err = parse("-logs-agent.rounds=0")
	require.ErrorContains(t, err, "logs-agent.rounds")
}

// The lines are container log lines of 100 to 300 bytes of text, a tenth
// on stderr, the same in every run.
func TestLogsAgentLines(t *testing.T) {
	g, g2 := newLineGen(), newLineGen()
	require.Equal(t, g.pool, g2.pool)
	short, long := 300, 100
	for _, l := range g.pool {
		short, long = min(short, len(l)), max(long, len(l))
	}
	require.GreaterOrEqual(t, short, 100)
	require.LessOrEqual(t, long, 300)
	require.Greater(t, long-short, 150, "lengths spread over the range")
	w := logstest.NewWriter(t, filepath.Join(t.TempDir(), "ns_p_u", "c", "0.log"))
	for i := range 20 {
		g.write(w, i)
	}
	require.Equal(t, "stderr", streamOf(t, w.Path, 9))
	require.Equal(t, "stdout", streamOf(t, w.Path, 10))
}

func streamOf(t *testing.T, path string, i int) string {
	t.Helper()
	data, err := os.ReadFile(path)
	require.NoError(t, err)
	lines := strings.Split(string(data), "\n")
	return strings.Fields(lines[i])[1]
}

func TestLogsAgentReport(t *testing.T) {
	r := results{
		"logsagent_rounds_steady": 2, "logsagent_rounds_max": 2,
		"logsagent_agent_lines_per_cpu_sec_steady": 50000, "logsagent_promtail_lines_per_cpu_sec_steady": 20000,
		"logsagent_agent_vs_promtail_lines_per_cpu_sec_steady": 2.5, "logsagent_agent_vs_promtail_rss_peak_mb_steady": 0.8,
		"logsagent_agent_rss_peak_mb_steady":                45,
		"logsagent_agent_vs_promtail_lines_per_cpu_sec_max": 1.5, "logsagent_agent_vs_promtail_rss_peak_mb_max": 1.2,
	}
	var out bytes.Buffer
	require.NoError(t, writeReport(&out, r, nil, 20, 2, 8))
	text := out.String()
	target := func(label, value, want string) string { return fmt.Sprintf("%-50s %16s  %s\n", label, value, want) }
	require.Less(t, strings.Index(text, "logs-agent, steady"), strings.Index(text, "logs-agent, max"))
	require.Contains(t, text, fmt.Sprintf("%-40s %11s %11s %11s\n", "lines per CPU-second", "50,000", "20,000", "2.50"))
	require.Contains(t, text, target("agent / Promtail lines per CPU-second, steady", "2.50", ">= 2  ok"))
	require.Contains(t, text, target("agent / Promtail RSS peak, steady", "0.80", "<= 1.0  ok"))
	require.Contains(t, text, target("agent / Promtail lines per CPU-second, max", "1.50", ">= 2  MISSED"))
	require.Contains(t, text, target("agent / Promtail RSS peak, max", "1.20", "<= 1.0  MISSED"))
	require.Contains(t, text, target("agent RSS peak at the steady point (MiB)", "45.00", "< 40  MISSED"))
}
