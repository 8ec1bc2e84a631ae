package bench

import (
	"bytes"
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// agentPoints are the series keys ("10k", "100k") the agent phase
// measured, smallest first.
func agentPoints(r results) []string {
	type pt struct {
		key    string
		series float64
	}
	var pts []pt
	for k := range r {
		if key, ok := strings.CutPrefix(k, "agent_window_seconds_"); ok {
			n, _ := strconv.ParseFloat(strings.TrimSuffix(key, "k"), 64)
			if strings.HasSuffix(key, "k") {
				n *= 1000
			}
			pts = append(pts, pt{key, n})
		}
	}
	slices.SortFunc(pts, func(a, b pt) int { return int(a.series - b.series) })
	var out []string
	for _, p := range pts {
		out = append(out, p.key)
	}
	return out
}

// agentRSSLimitMB is issue 19's bound on the agent's RSS at 10k series.
const agentRSSLimitMB = 60

// writeAgentTable prints the agent phase side by side: the agent,
// Prometheus in agent mode, vmagent, and the agent's ratios; then issue
// 19's targets.
func writeAgentTable(b *bytes.Buffer, r results) {
	pts := agentPoints(r)
	if len(pts) == 0 {
		return
	}
	cols := []struct{ prefix, title string }{{scraperAgent, "agent"}, {scraperProm, "prom agent"}, {scraperVMAgent, "vmagent"}}
	metrics := []struct{ key, label string }{
		{"rss_steady_mb", "RSS steady, median (MiB)"},
		{"rss_peak_mb", "RSS peak, VmHWM (MiB)"},
		{"rss_anon_mb", "  of steady: anonymous (MiB)"},
		{"rss_file_mb", "  of steady: binary's pages (MiB)"},
		{"cpu_seconds", "CPU in the window (s)"},
		{"samples_per_sec", "samples/s acked by the gateway"},
	}
	for _, key := range pts {
		win, _ := r.get("agent_window_seconds_" + key)
		fmt.Fprintf(b, "\n%-34s %11s %11s %11s %11s %11s\n", fmt.Sprintf("agent side by side, %s series, %.0fs", key, win),
			"agent", "prom agent", "vmagent", "agent/prom", "agent/vm")
		b.WriteString(strings.Repeat("-", 94) + "\n")
		for _, m := range metrics {
			fmt.Fprintf(b, "%-34s", m.label)
			for _, c := range cols {
				v, ok := r.get(c.prefix + "_" + m.key + "_" + key)
				fmt.Fprintf(b, " %11s", formatValue(v, ok))
			}
			for _, other := range []string{"promagent", "vmagent"} {
				v, ok := r.get("agent_vs_" + other + "_" + m.key + "_" + key)
				s := "-"
				if ok {
					s = strconv.FormatFloat(v, 'f', 2, 64)
				}
				fmt.Fprintf(b, " %11s", s)
			}
			b.WriteString("\n")
		}
	}
	b.WriteString("\n")
	line := func(label, value, rest string) { fmt.Fprintf(b, "%-50s %16s  %s\n", label, value, rest) }
	line("agent target (issue 19)", "measured", "wanted")
	b.WriteString(strings.Repeat("-", 78) + "\n")
	verdict := func(ok bool) string {
		if ok {
			return "ok"
		}
		return "MISSED"
	}
	for _, key := range pts {
		for _, m := range []struct{ key, label string }{
			{"rss_steady_mb", "RSS steady"}, {"rss_peak_mb", "RSS peak"}, {"cpu_seconds", "CPU"},
		} {
			v, ok := r.get("agent_vs_promagent_" + m.key + "_" + key)
			shown, verd := "-", ""
			if ok {
				shown, verd = strconv.FormatFloat(v, 'f', 2, 64), verdict(v <= 1)
			}
			line(fmt.Sprintf("agent %s / Prometheus agent, %s", m.label, key), shown, "<= 1.0  "+verd)
		}
	}
	if slices.Contains(pts, "10k") {
		for _, m := range []struct{ key, label string }{{"rss_steady_mb", "steady"}, {"rss_peak_mb", "peak"}} {
			v, ok := r.get("agent_" + m.key + "_10k")
			verd := ""
			if ok {
				verd = verdict(v < agentRSSLimitMB)
			}
			line("agent RSS "+m.label+" at 10k series (MiB)", formatValue(v, ok), fmt.Sprintf("< %d  %s", agentRSSLimitMB, verd))
		}
	}
}
