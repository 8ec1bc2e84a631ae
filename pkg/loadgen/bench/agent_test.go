package bench

import (
	"bytes"
	"encoding/json"
	"flag"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// Each target serves exactly the series it was asked for, in a page the
// Prometheus text parser reads, and its counters advance with each scrape.
func TestTargets(t *testing.T) {
	tg, err := startTargets(3, 100)
	require.NoError(t, err)
	defer tg.close()
	require.Len(t, tg.addrs, 3)
	seen := map[string]bool{}
	for scrape := int64(1); scrape <= 2; scrape++ {
		for _, addr := range tg.addrs {
			resp, err := http.Get("http://" + addr + "/metrics")
			require.NoError(t, err)
			body, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			require.NoError(t, err)
			f, err := parseFamilies(bytes.NewReader(body))
			require.NoError(t, err)
			n, first := 0, 0
			for name, mf := range f {
				for _, m := range mf.GetMetric() {
					n++
					require.Len(t, m.GetLabel(), 6)
					key := name
					for _, l := range m.GetLabel() {
						key += "," + l.GetName() + "=" + l.GetValue()
					}
					seen[key] = true
					if hasLabels(m, map[string]string{"id": "0"}) { // value = scrape number
						first++
						require.Equal(t, float64(scrape), m.GetCounter().GetValue())
					}
				}
			}
			require.Equal(t, 100, n, "series of target %s", addr)
			require.Equal(t, 2, first, "one id=\"0\" series per family")
		}
	}
	require.Len(t, seen, 300, "no two targets serve the same series")
	require.Equal(t, int64(6), tg.scrapes.Load())
	_, err = startTargets(1, 70)
	require.ErrorContains(t, err, "multiple of 50")
}

func TestAgentConfig(t *testing.T) {
	parse := func(args ...string) (Config, error) {
		var c Config
		fs := flag.NewFlagSet("bench", flag.ContinueOnError)
		c.RegisterFlags(fs)
		require.NoError(t, fs.Parse(args))
		return c, c.Validate()
	}
	c, err := parse()
	require.NoError(t, err)
	pts, err := c.Agent.points()
	require.NoError(t, err)
	require.Equal(t, []int{20, 200}, pts, "issue 19's 10k and 100k series at 500 per target")
	require.Equal(t, allPhases, c.phases())

	c, err = parse("-phases=agent, g")
	require.NoError(t, err)
	require.Equal(t, []string{"agent", "g"}, c.phases())
	_, err = parse("-phases=agent,x")
	require.ErrorContains(t, err, `unknown phase "x"`)
	_, err = parse("-agent.targets=20,zero")
	require.ErrorContains(t, err, "agent.targets")
	_, err = parse("-agent.series-per-target=120")
	require.ErrorContains(t, err, "agent.series-per-target")
	_, err = parse("-agent.scrape-interval=100ms")
	require.ErrorContains(t, err, "agent.scrape-interval")
}

// The Prometheus agent queues as the agent does: the agent's defaults
// over Prometheus's library defaults, in keys Prometheus 2.42 reads.
func TestPromQueue(t *testing.T) {
	q := promQueue()
	require.Equal(t, 2, q["min_shards"])
	require.Equal(t, 2, q["max_shards"])
	require.Equal(t, 2000, q["max_samples_per_send"])
	require.Equal(t, true, q["retry_on_http_429"])
	require.NotContains(t, q, "sample_age_limit", "unknown to Prometheus 2.42, which would refuse the file")
}

func TestAgentReport(t *testing.T) {
	r := results{
		"agent_window_seconds_100k": 60, "agent_window_seconds_10k": 60,
		"agent_rss_steady_mb_10k": 55, "promagent_rss_steady_mb_10k": 75, "agent_vs_promagent_rss_steady_mb_10k": 55.0 / 75,
		"agent_rss_peak_mb_10k": 61, "agent_vs_promagent_rss_peak_mb_10k": 1.02,
		"agent_vs_promagent_cpu_seconds_100k": 0.5, "agent_cpu_seconds_100k": 3, "promagent_cpu_seconds_100k": 6,
	}
	require.Equal(t, []string{"10k", "100k"}, agentPoints(r))
	var out bytes.Buffer
	require.NoError(t, writeReport(&out, r, nil, 20, 2, 8))
	text := out.String()
	require.Less(t, strings.Index(text, "agent side by side, 10k series, 60s"), strings.Index(text, "agent side by side, 100k series, 60s"))
	require.Contains(t, text, "RSS steady, median (MiB)                 55.00       75.00           -        0.73           -\n")
	require.Contains(t, text, "agent RSS steady / Prometheus agent, 10k                       0.73  <= 1.0  ok\n")
	require.Contains(t, text, "agent RSS peak / Prometheus agent, 10k                         1.02  <= 1.0  MISSED\n")
	require.Contains(t, text, "agent CPU / Prometheus agent, 100k                             0.50  <= 1.0  ok\n")
	require.Contains(t, text, "agent RSS steady at 10k series (MiB)                          55.00  < 60  ok\n")
	require.Contains(t, text, "agent RSS peak at 10k series (MiB)                            61.00  < 60  MISSED\n")

	lines := strings.Split(strings.TrimSpace(text), "\n")
	var js map[string]any
	require.NoError(t, json.Unmarshal([]byte(lines[len(lines)-1]), &js))
	require.Equal(t, 0.733, js["agent_vs_promagent_rss_steady_mb_10k"], "the agent phase's fields are in the JSON line")
	require.Equal(t, 6.0, js["promagent_cpu_seconds_100k"])
}
