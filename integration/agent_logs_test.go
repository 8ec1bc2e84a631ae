package integration

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/golang/snappy"
	"github.com/grafana/loki/pkg/push"
	"github.com/stretchr/testify/require"

	"github.com/tributary-io/tributary/internal/testenv"
	"github.com/tributary-io/tributary/pkg/agent/logs/logstest"
)

// logsAgentConfig is an agent configuration with no scrape jobs and the
// given logs section (a YAML document fragment starting with "logs:").
func logsAgentConfig(cluster, gwURL, dir, logs string) string {
	return fmt.Sprintf("cluster: %s\ngateway:\n  url: %s\nmetrics:\n  wal:\n    dir: %s\n%s",
		cluster, gwURL, filepath.Join(dir, "wal"), logs)
}

// podsLogs is a logs section tailing pods (a directory laid out like
// /var/log/pods) with the positions under dir, polled fast for tests.
func podsLogs(pods, dir string, extra ...string) string {
	return fmt.Sprintf("logs:\n  pods_dir: %s\n  positions_file: %s\n  poll_interval: 100ms\n  batch_max_wait: 100ms\n%s",
		pods, filepath.Join(dir, "positions", "logs.json"), strings.Join(extra, ""))
}

// logsPipeline is gateway → Kafka → ingester → Loki.
type logsPipeline struct {
	kafka  *testenv.KafkaCluster
	loki   *testenv.LokiServer
	gw     *gatewayProc
	gwPort int
}

func startLogsPipeline(t *testing.T, gatewayArgs ...string) *logsPipeline {
	t.Helper()
	k := testenv.Kafka(t, 2)
	loki := testenv.Loki(t)
	port := testenv.FreePort(t)
	gw := startGateway(t, k.Addr, append([]string{"-http.listen-addr=" + testenv.Addr(port)}, gatewayArgs...)...)
	startLogIngester(t, k.Addr, loki, nil)
	return &logsPipeline{kafka: k, loki: loki, gw: gw, gwPort: port}
}

// lokiLines is every line of the stream selected by sel in the last two
// hours, in time order, and the stream's labels; it fails if sel selects
// more than one stream.
func lokiLines(t *testing.T, loki *testenv.LokiServer, sel string, from time.Time) ([]string, map[string]string, error) {
	t.Helper()
	streams, err := loki.QueryRange(t, sel, from, time.Now().Add(time.Minute), 5000)
	if err != nil {
		return nil, nil, err
	}
	if len(streams) == 0 {
		return nil, nil, nil
	}
	if len(streams) > 1 {
		return nil, nil, fmt.Errorf("%s selects %d streams", sel, len(streams))
	}
	var lines []string
	for _, e := range streams[0].Entries {
		lines = append(lines, e.Line)
	}
	return lines, streams[0].Labels, nil
}

// waitLokiLines waits until the stream sel holds exactly want, in order.
func waitLokiLines(t *testing.T, loki *testenv.LokiServer, sel string, from time.Time, want []string, timeout time.Duration) map[string]string {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var got []string
	var labels map[string]string
	var err error
	for time.Now().Before(deadline) {
		got, labels, err = lokiLines(t, loki, sel, from)
		if err == nil && len(got) >= len(want) {
			break
		}
		time.Sleep(300 * time.Millisecond)
	}
	require.NoError(t, err)
	logstest.SameLines(t, want, got, "Loki "+sel)
	return labels
}

// lokiCount is the number of entries of sel over the last window.
func lokiCount(loki *testenv.LokiServer, sel string, window time.Duration) (int, error) {
	q := url.Values{}
	q.Set("query", fmt.Sprintf("sum(count_over_time(%s[%ds]))", sel, int(window.Seconds())))
	q.Set("time", strconv.FormatInt(time.Now().Add(time.Minute).UnixNano(), 10))
	resp, err := http.Get(loki.URL + "/loki/api/v1/query?" + q.Encode())
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("loki query: HTTP %d: %s", resp.StatusCode, body)
	}
	var r struct {
		Data struct {
			Result []struct {
				Value [2]any `json:"value"`
			} `json:"result"`
		} `json:"data"`
	}
	if err := json.Unmarshal(body, &r); err != nil {
		return 0, err
	}
	if len(r.Data.Result) == 0 {
		return 0, nil
	}
	s, _ := r.Data.Result[0].Value[1].(string)
	return strconv.Atoi(s)
}

// kafkaLineCounts reads every log record the gateway wrote and counts each
// (stream, line) pair: what the agent delivered, before Loki drops
// identical entries.
func kafkaLineCounts(t *testing.T, addr string) map[string]int {
	t.Helper()
	counts := map[string]int{}
	for _, m := range testenv.ReadTopic(t, addr, "tributary.logs") {
		raw, err := snappy.Decode(nil, m.Value)
		require.NoError(t, err)
		var req push.PushRequest
		require.NoError(t, req.Unmarshal(raw))
		for _, st := range req.Streams {
			for _, e := range st.Entries {
				counts[st.Labels+" "+e.Line]++
			}
		}
	}
	return counts
}

func hostname(t *testing.T) string {
	h, err := os.Hostname()
	require.NoError(t, err)
	return h
}

// A directory laid out like /var/log/pods: a CRI log rotated by rename
// and by copytruncate while the agent runs (with lines it has not read
// yet), CRI partial lines, a Docker JSON log, a clean stop, two rotations
// while stopped, a restart. Loki holds exactly the lines written, in
// order per stream, with the pod's labels; Kafka holds each line once.
func TestAgentLogsRotationRestartExactSequence(t *testing.T) {
	t.Parallel()
	p := startLogsPipeline(t)
	dir := t.TempDir()
	pods := filepath.Join(dir, "pods")
	cfg := filepath.Join(dir, "agent.yml")
	writeFile(t, cfg, logsAgentConfig("rotclust", p.gw.URL, dir, podsLogs(pods, dir)))
	port := testenv.FreePort(t)

	app := logstest.NewWriter(t, filepath.Join(pods, "shop_cart-1_0a1b-uid", "app", "0.log"))
	side := logstest.NewWriter(t, filepath.Join(pods, "shop_cart-1_0a1b-uid", "sidecar", "0.log"))
	from := app.TS.Add(-time.Minute)
	sel := func(container, stream string) string {
		return fmt.Sprintf(`{cluster="rotclust", namespace="shop", pod="cart-1", container=%q, stream=%q}`, container, stream)
	}
	app.Lines(0, 50)
	first := startAgent(t, cfg, port)
	waitLokiLines(t, p.loki, sel("app", "stdout"), from, logstest.Seq(0, 50), 60*time.Second)

	// Rename + create as the kubelet does, lines on both sides.
	app.Lines(50, 100)
	app.Rename("20261129-070000")
	app.Lines(100, 150)
	app.CRI("stderr", "P", "part one, ")
	app.CRI("stdout", "F", logstest.Line(150))
	app.CRI("stderr", "P", "part two, ")
	app.CRI("stderr", "F", "end")
	side.Docker("stdout", "docker part, ", true)
	side.Docker("stdout", "joined", false)
	side.Docker("stderr", "docker stderr", false)
	waitLokiLines(t, p.loki, sel("app", "stdout"), from, logstest.Seq(0, 151), 30*time.Second)

	// copytruncate, lines written right before the copy.
	app.Lines(151, 200)
	app.CopyTruncate("1")
	app.Lines(200, 250)
	waitLokiLines(t, p.loki, sel("app", "stdout"), from, logstest.Seq(0, 250), 30*time.Second)
	require.Equal(t, 1.0, first.metric(t, "tributary_agent_logs_rotations_total"))
	require.Equal(t, 1.0, first.metric(t, "tributary_agent_logs_truncations_total"))

	// Two rotations while the agent is stopped.
	require.NoError(t, first.Stop(30*time.Second))
	app.Lines(250, 300)
	app.Rename("20261129-070100")
	app.Lines(300, 350)
	app.Rename("20261129-070200")
	app.Lines(350, 400)
	startAgent(t, cfg, port)

	labels := waitLokiLines(t, p.loki, sel("app", "stdout"), from, logstest.Seq(0, 400), 60*time.Second)
	require.Equal(t, map[string]string{"cluster": "rotclust", "namespace": "shop", "pod": "cart-1", "container": "app",
		"node": hostname(t), "stream": "stdout"}, labels)
	waitLokiLines(t, p.loki, sel("app", "stderr"), from, []string{"part one, part two, end"}, 30*time.Second)
	waitLokiLines(t, p.loki, sel("sidecar", "stdout"), from, []string{"docker part, joined"}, 30*time.Second)
	waitLokiLines(t, p.loki, sel("sidecar", "stderr"), from, []string{"docker stderr"}, 30*time.Second)

	// None repeated on the way: each line is in Kafka once.
	counts := kafkaLineCounts(t, p.kafka.Addr)
	require.Len(t, counts, 403)
	for k, n := range counts {
		require.Equal(t, 1, n, "sent %d times: %s", n, k)
	}
}

// The agent killed (SIGKILL) while lines flow, then restarted: nothing is
// lost, and the lines sent twice are at most the batch in flight
// (max_batches_in_flight 1 × batch_max_bytes 4096): a send slot is freed
// only after the acknowledged batch's position is written. A clean stop
// (SIGTERM) and restart afterwards sends nothing twice.
func TestAgentLogsKillThenCleanRestart(t *testing.T) {
	t.Parallel()
	p := startLogsPipeline(t)
	dir := t.TempDir()
	pods := filepath.Join(dir, "pods")
	cfg := filepath.Join(dir, "agent.yml")
	const batchBytes = 4096
	writeFile(t, cfg, logsAgentConfig("killclust", p.gw.URL, dir, podsLogs(pods, dir, fmt.Sprintf("  batch_max_bytes: %d\n", batchBytes))))
	port := testenv.FreePort(t)
	w := logstest.NewWriter(t, filepath.Join(pods, "ns_busy-0_77aa-uid", "app", "0.log"))
	from := w.TS.Add(-time.Minute)
	sel := `{cluster="killclust", container="app"}`
	count := func() int {
		n, _ := lokiCount(p.loki, sel, 2*time.Hour)
		return n
	}

	ag := startAgent(t, cfg, port)
	n := 0
	write := func(lines int) {
		for end := n + lines; n < end; n += 20 {
			w.Lines(n, n+20)
			time.Sleep(2 * time.Millisecond)
		}
	}
	write(1500)
	waitFor(t, func() bool { return count() > 200 })
	write(700)
	ag.Kill() // mid-file: lines are being read and sent
	killedAt := n
	write(700)
	ag = startAgent(t, cfg, port)
	write(700)
	waitFor(t, func() bool { return count() >= n })
	require.NoError(t, ag.Stop(30*time.Second))
	write(300)
	startAgent(t, cfg, port)
	write(300)
	waitLokiLines(t, p.loki, sel, from, logstest.Seq(0, n), 90*time.Second)

	// Repeats, as delivered to Kafka (Loki drops identical entries): only
	// lines from before the kill, at most one batch of them; none after,
	// the clean restart included.
	counts := kafkaLineCounts(t, p.kafka.Addr)
	labels := fmt.Sprintf(`{cluster="killclust", container="app", namespace="ns", node=%q, pod="busy-0", stream="stdout"}`, hostname(t))
	repeated := 0
	for i := 0; i < n; i++ {
		c := counts[labels+" "+logstest.Line(i)]
		require.GreaterOrEqual(t, c, 1, "line %d missing in Kafka", i)
		if i >= killedAt {
			require.Equal(t, 1, c, "line %d, written after the kill, sent %d times", i, c)
		}
		repeated += c - 1
	}
	perLine := len(logstest.Line(n)) + 24
	bound := batchBytes/perLine + 1
	t.Logf("kill -9: %d lines sent twice (bound %d: one batch of %d bytes)", repeated, bound, batchBytes)
	require.LessOrEqual(t, repeated, bound)
}

// vmRSS is the resident set size of pid in bytes (/proc/<pid>/status).
func vmRSS(t *testing.T, pid int) int64 {
	t.Helper()
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	require.NoError(t, err)
	for _, line := range strings.Split(string(data), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmRSS:" {
			kb, err := strconv.ParseInt(f[1], 10, 64)
			require.NoError(t, err)
			return kb << 10
		}
	}
	t.Fatal("no VmRSS")
	return 0
}

// The gateway is down while ~23 MiB of lines are written to 20 files: the
// agent stops reading instead of buffering (RSS stays within 16 MiB of
// what it was before the outage: the tailer holds one batch in flight and
// one open, 1 MiB each, and a 64 KiB read buffer), and once the gateway is
// back every line arrives.
func TestAgentLogsGatewayDownBoundedMemory(t *testing.T) {
	t.Parallel()
	p := startLogsPipeline(t)
	dir := t.TempDir()
	pods := filepath.Join(dir, "pods")
	cfg := filepath.Join(dir, "agent.yml")
	writeFile(t, cfg, logsAgentConfig("memclust", p.gw.URL, dir, podsLogs(pods, dir)))
	const files, perFile = 20, 5010
	pad := strings.Repeat("x", 180)
	ws := make([]*logstest.Writer, files)
	for i := range ws {
		ws[i] = logstest.NewWriter(t, filepath.Join(pods, fmt.Sprintf("ns_pod-%d_uid-%d", i, i), "app", "0.log"))
		ws[i].Lines(0, 10)
	}
	ag := startAgent(t, cfg, testenv.FreePort(t))
	sel := `{cluster="memclust"}`
	waitFor(t, func() bool { n, _ := lokiCount(p.loki, sel, 2*time.Hour); return n == files*10 })
	before := vmRSS(t, ag.PID())

	require.NoError(t, p.gw.Stop(30*time.Second))
	peak := before
	for j := 10; j < perFile; j += 100 {
		for _, w := range ws {
			for k := j; k < j+100; k++ {
				w.CRI("stdout", "F", logstest.Line(k)+" "+pad)
			}
		}
		peak = max(peak, vmRSS(t, ag.PID()))
	}
	for i := 0; i < 20; i++ { // the agent catches up with what it may read
		time.Sleep(250 * time.Millisecond)
		peak = max(peak, vmRSS(t, ag.PID()))
	}
	require.Greater(t, ag.metric(t, "tributary_agent_logs_positions_lag_bytes"), float64(20<<20), "the outage did not hold the lines back")
	t.Logf("agent RSS before the outage %d MiB, peak during it %d MiB (~23 MiB written)", before>>20, peak>>20)
	require.Less(t, peak-before, int64(16<<20), "RSS grew with the lines written during the outage")

	startGateway(t, p.kafka.Addr, "-http.listen-addr="+testenv.Addr(p.gwPort))
	deadline := time.Now().Add(120 * time.Second)
	got := 0
	for time.Now().Before(deadline) {
		if got, _ = lokiCount(p.loki, sel, 2*time.Hour); got == files*perFile {
			break
		}
		time.Sleep(time.Second)
	}
	require.Equal(t, files*perFile, got, "lines in Loki after the outage")
}

// The shipped examples (k8s/agent/examples): their sample files through
// the agent, gateway, Kafka and ingester into Loki, with their labels and
// timestamps.
func TestAgentLogsExamples(t *testing.T) {
	t.Parallel()
	// The samples are dated: the gateway's age window is turned off.
	p := startLogsPipeline(t, "-limits.logs.reject-old-samples-max-age=0")
	root := testenv.RepoRoot(t)
	for _, tc := range []struct {
		example, sample, path string
		labels                map[string]string
		tsField               string
	}{
		{"audit.yaml", "audit.log", "/var/log/kubernetes/audit/audit.log",
			map[string]string{"source": "audit"}, "stageTimestamp"},
		{"ingress-nginx.yaml", "ingress-nginx-access.log", "/var/log/ingress-nginx/access.log",
			map[string]string{"source": "ingress-nginx", "log_type": "access"}, "time"},
	} {
		t.Run(tc.example, func(t *testing.T) {
			dir := t.TempDir()
			example, err := os.ReadFile(filepath.Join(root, "k8s", "agent", "examples", tc.example))
			require.NoError(t, err)
			require.Contains(t, string(example), tc.path)
			logs := strings.NewReplacer("/var/log/", dir+"/var/log/", "/var/lib/", dir+"/var/lib/").Replace(string(example))
			sample, err := os.ReadFile(filepath.Join(root, "k8s", "agent", "examples", "testdata", tc.sample))
			require.NoError(t, err)
			require.NoError(t, os.MkdirAll(filepath.Dir(dir+tc.path), 0o755))
			writeFile(t, dir+tc.path, string(sample))
			cfg := filepath.Join(dir, "agent.yml")
			cluster := "ex-" + strings.TrimSuffix(tc.example, ".yaml")
			writeFile(t, cfg, logsAgentConfig(cluster, p.gw.URL, dir, logs))
			startAgent(t, cfg, testenv.FreePort(t))

			var want []string
			var wantTS []time.Time
			for _, line := range strings.Split(strings.TrimSpace(string(sample)), "\n") {
				want = append(want, line)
				var doc map[string]any
				require.NoError(t, json.Unmarshal([]byte(line), &doc))
				ts, err := time.Parse(time.RFC3339Nano, doc[tc.tsField].(string))
				require.NoError(t, err)
				wantTS = append(wantTS, ts)
			}
			wantLabels := map[string]string{"cluster": cluster, "node": hostname(t)}
			for k, v := range tc.labels {
				wantLabels[k] = v
			}
			sel := fmt.Sprintf(`{cluster=%q, source=%q}`, cluster, tc.labels["source"])
			from := wantTS[0].Add(-time.Minute)
			labels := waitLokiLines(t, p.loki, sel, from, want, 60*time.Second)
			require.Equal(t, wantLabels, labels)
			streams, err := p.loki.QueryRange(t, sel, from, time.Now(), 100)
			require.NoError(t, err)
			for i, e := range streams[0].Entries {
				require.True(t, wantTS[i].Equal(e.TS), "entry %d at %s, want %s", i, e.TS, wantTS[i])
			}
		})
	}
}
