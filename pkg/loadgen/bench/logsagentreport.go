package bench

import (
	"bytes"
	"fmt"
	"strconv"
	"strings"
)

// Issue 20's targets for the agent's log tailing, against Promtail on the
// same files and the same kind of gateway.
const (
	logsAgentLinesPerCPUVsPromtail = 2  // agent lines per CPU-second / Promtail's, at least
	logsAgentSteadyRSSLimitMB      = 40 // agent RSS at 1k lines/s, below
)

// writeLogsAgentTable prints the logs-agent phase side by side (agent,
// Promtail, agent/Promtail) per point, then issue 20's targets.
func writeLogsAgentTable(b *bytes.Buffer, r results) {
	var pts []string
	for _, p := range []string{pointSteady, pointMax} {
		if _, ok := r.get("logsagent_rounds_" + p); ok {
			pts = append(pts, p)
		}
	}
	if len(pts) == 0 {
		return
	}
	titles := map[string]string{pointSteady: "steady (rate lines/s)", pointMax: "max (backlog)"}
	metrics := []struct{ key, label string }{
		{"lines_per_cpu_sec", "lines per CPU-second"},
		{"lines_per_sec", "lines/s acked by the gateway"},
		{"cpu_seconds", "CPU (s)"},
		{"rss_steady_mb", "RSS steady, median (MiB)"},
		{"rss_peak_mb", "RSS peak, VmHWM (MiB)"},
		{"rss_anon_mb", "  of steady: anonymous (MiB)"},
		{"rss_file_mb", "  of steady: binary's pages (MiB)"},
		{"lines_not_acked", "lines written, not acked (max)"},
	}
	for _, p := range pts {
		rounds, _ := r.get("logsagent_rounds_" + p)
		fmt.Fprintf(b, "\n%-40s %11s %11s %11s\n", fmt.Sprintf("logs-agent, %s, %.0f rounds", titles[p], rounds), "agent", "promtail", "agent/pt")
		b.WriteString(strings.Repeat("-", 76) + "\n")
		for _, m := range metrics {
			fmt.Fprintf(b, "%-40s", m.label)
			for _, sh := range []string{shipperAgent, shipperPromtail} {
				v, ok := r.get("logsagent_" + sh + "_" + m.key + "_" + p)
				fmt.Fprintf(b, " %11s", formatValue(v, ok))
			}
			v, ok := r.get("logsagent_agent_vs_promtail_" + m.key + "_" + p)
			s := "-"
			if ok {
				s = strconv.FormatFloat(v, 'f', 2, 64)
			}
			fmt.Fprintf(b, " %11s\n", s)
		}
	}
	b.WriteString("\n")
	line := func(label, value, rest string) { fmt.Fprintf(b, "%-50s %16s  %s\n", label, value, rest) }
	line("logs-agent target (issue 20)", "measured", "wanted")
	b.WriteString(strings.Repeat("-", 78) + "\n")
	verdict := func(ok, good bool) string {
		switch {
		case !ok:
			return ""
		case good:
			return "ok"
		}
		return "MISSED"
	}
	ratio := func(k string) (string, float64, bool) {
		v, ok := r.get(k)
		if !ok {
			return "-", 0, false
		}
		return strconv.FormatFloat(v, 'f', 2, 64), v, true
	}
	for _, p := range pts {
		s, v, ok := ratio("logsagent_agent_vs_promtail_lines_per_cpu_sec_" + p)
		line("agent / Promtail lines per CPU-second, "+p, s, fmt.Sprintf(">= %d  %s", logsAgentLinesPerCPUVsPromtail, verdict(ok, v >= logsAgentLinesPerCPUVsPromtail)))
		s, v, ok = ratio("logsagent_agent_vs_promtail_rss_peak_mb_" + p)
		line("agent / Promtail RSS peak, "+p, s, "<= 1.0  "+verdict(ok, v <= 1))
	}
	if v, ok := r.get("logsagent_agent_rss_peak_mb_" + pointSteady); ok {
		line("agent RSS peak at the steady point (MiB)", formatValue(v, ok), fmt.Sprintf("< %d  %s", logsAgentSteadyRSSLimitMB, verdict(ok, v < logsAgentSteadyRSSLimitMB)))
	}
}
