package integration

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang/snappy"
	"github.com/grafana/loki/pkg/push"
	"github.com/stretchr/testify/require"

	"github.com/tributary-io/tributary/internal/testenv"
)

// logLoad is a deterministic set of log lines: cluster c, stream s ("app"
// label), entry j at t0+j ms with line "c/s/j"; every third entry carries
// structured metadata trace_id=<j>.
type logLoad struct {
	clusters []string
	streams  int
	entries  int
	t0       time.Time
}

func newLogLoad(clusters []string, streams, entries int) logLoad {
	return logLoad{clusters: clusters, streams: streams, entries: entries, t0: time.Now().Add(-10 * time.Minute).Truncate(time.Millisecond)}
}

func (l logLoad) line(c string, s, j int) string { return fmt.Sprintf("%s/app-%d/%d", c, s, j) }

// protobuf builds a snappy PushRequest for entries [from, to) of cluster c.
func (l logLoad) protobuf(c string, from, to int) []byte {
	req := push.PushRequest{}
	for s := 0; s < l.streams; s++ {
		st := push.Stream{Labels: fmt.Sprintf(`{app="app-%d", app_kubernetes_io_name="n", cluster=%q}`, s, c)}
		for j := from; j < to; j++ {
			e := push.Entry{Timestamp: l.t0.Add(time.Duration(j) * time.Millisecond), Line: l.line(c, s, j)}
			if j%3 == 0 {
				e.StructuredMetadata = push.LabelsAdapter{{Name: "trace_id", Value: fmt.Sprint(j)}}
			}
			st.Entries = append(st.Entries, e)
		}
		req.Streams = append(req.Streams, st)
	}
	raw, err := req.Marshal()
	if err != nil {
		panic(err)
	}
	return snappy.Encode(nil, raw)
}

// json builds the same as Loki JSON, without the cluster label (the
// X-Tributary-Cluster header supplies it).
func (l logLoad) json(c string, from, to int) []byte {
	type stream struct {
		Stream map[string]string `json:"stream"`
		Values [][]any           `json:"values"`
	}
	var body struct {
		Streams []stream `json:"streams"`
	}
	for s := 0; s < l.streams; s++ {
		st := stream{Stream: map[string]string{"app": fmt.Sprintf("app-%d", s), "app_kubernetes_io_name": "n"}}
		for j := from; j < to; j++ {
			v := []any{fmt.Sprint(l.t0.Add(time.Duration(j) * time.Millisecond).UnixNano()), l.line(c, s, j)}
			if j%3 == 0 {
				v = append(v, map[string]string{"trace_id": fmt.Sprint(j)})
			}
			st.Values = append(st.Values, v)
		}
		body.Streams = append(body.Streams, st)
	}
	out, err := json.Marshal(body)
	if err != nil {
		panic(err)
	}
	return out
}

func pushLogs(url string, body []byte, headers ...string) (int, string, error) {
	req, err := http.NewRequest(http.MethodPost, url+"/loki/api/v1/push", bytes.NewReader(body))
	if err != nil {
		return 0, "", err
	}
	for i := 0; i < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	var msg bytes.Buffer
	_, _ = msg.ReadFrom(resp.Body)
	return resp.StatusCode, msg.String(), nil
}

// send pushes entries [from, to) of cluster c: JSON for the first cluster,
// protobuf for the others.
func (l logLoad) send(gwURL, c string, from, to int) (int, string, error) {
	if c == l.clusters[0] {
		return pushLogs(gwURL, l.json(c, from, to), "Content-Type", "application/json", "X-Tributary-Cluster", c)
	}
	return pushLogs(gwURL, l.protobuf(c, from, to), "Content-Type", "application/x-protobuf")
}

// verifyLoki waits until Loki returns, for every cluster and stream, exactly
// the lines [0, n) in order, with their structured metadata.
func verifyLoki(t *testing.T, loki *testenv.LokiServer, l logLoad, n int) {
	t.Helper()
	var last string
	deadline := time.Now().Add(90 * time.Second)
	for time.Now().Before(deadline) {
		last = ""
		for _, c := range l.clusters {
			streams, err := loki.QueryRange(t, fmt.Sprintf(`{cluster=%q}`, c), l.t0.Add(-time.Minute), l.t0.Add(time.Hour), 5000)
			if err != nil {
				last = err.Error()
				break
			}
			if len(streams) != l.streams {
				last = fmt.Sprintf("cluster %s: %d streams, want %d", c, len(streams), l.streams)
				break
			}
			for _, st := range streams {
				s := 0
				fmt.Sscanf(st.Labels["app"], "app-%d", &s)
				var got []string
				meta := 0
				for _, e := range st.Entries {
					got = append(got, e.Line)
					if e.Metadata["trace_id"] != "" {
						meta++
					}
				}
				var want []string
				wantMeta := 0
				for j := 0; j < n; j++ {
					want = append(want, l.line(c, s, j))
					if j%3 == 0 {
						wantMeta++
					}
				}
				if fmt.Sprint(got) != fmt.Sprint(want) || meta != wantMeta {
					last = fmt.Sprintf("cluster %s stream %v: %d lines (%d with metadata), want %d (%d)", c, st.Labels, len(got), meta, len(want), wantMeta)
					break
				}
			}
			if last != "" {
				break
			}
		}
		if last == "" {
			return
		}
		time.Sleep(time.Second)
	}
	t.Fatalf("Loki never held exactly the lines sent: %s", last)
}

// verifyES waits until the indices hold every line exactly once, with
// cluster, @timestamp and labels set.
func verifyES(t *testing.T, zinc *testenv.ZincServer, l logLoad, n int) {
	t.Helper()
	want := len(l.clusters) * l.streams * n
	var last string
	deadline := time.Now().Add(90 * time.Second)
	for time.Now().Before(deadline) {
		docs, total, err := zinc.Search(t, "tributary-logs-*", map[string]any{
			"query": map[string]any{"match_all": map[string]any{}},
			"size":  want + 100,
		})
		if err != nil {
			last = err.Error()
			time.Sleep(time.Second)
			continue
		}
		seen := map[string]int{}
		bad := ""
		for _, d := range docs {
			msg, _ := d["message"].(string)
			seen[msg]++
			if d["cluster"] == nil || d["@timestamp"] == nil || d["labels"] == nil {
				bad = fmt.Sprintf("document %v lacks fields", d)
			}
		}
		dups := 0
		for _, k := range seen {
			if k > 1 {
				dups++
			}
		}
		if total == want && len(seen) == want && dups == 0 && bad == "" {
			for _, c := range l.clusters {
				for s := 0; s < l.streams; s++ {
					for j := 0; j < n; j++ {
						require.Equal(t, 1, seen[l.line(c, s, j)], "line %s", l.line(c, s, j))
					}
				}
			}
			return
		}
		last = fmt.Sprintf("total %d, distinct %d, duplicated %d, want %d once each %s", total, len(seen), dups, want, bad)
		time.Sleep(time.Second)
	}
	t.Fatalf("Elasticsearch never held every line exactly once: %s", last)
}

func startLogIngester(t *testing.T, kafkaAddr string, loki *testenv.LokiServer, zinc *testenv.ZincServer, extra ...string) *ingesterProc {
	t.Helper()
	port := testenv.FreePort(t)
	args := []string{
		"-http.listen-addr=" + testenv.Addr(port),
		"-kafka.brokers=" + kafkaAddr,
	}
	if loki != nil {
		args = append(args, "-loki.url="+loki.URL+"/loki/api/v1/push", "-loki.batch.max-delay=50ms", "-loki.backoff.max=1s", "-loki.flush-timeout=5s")
	}
	if zinc != nil {
		args = append(args, "-elasticsearch.addresses="+zinc.ESURL, "-elasticsearch.username="+zinc.User, "-elasticsearch.password="+zinc.Password,
			// ZincSearch has no composable index templates.
			"-elasticsearch.template.skip",
			"-elasticsearch.batch.max-delay=50ms", "-elasticsearch.backoff.max=1s", "-elasticsearch.flush-timeout=5s")
	}
	p := testenv.StartProcess(t, "ingester", testenv.Binary(t, "ingester"), append(args, extra...))
	url := "http://" + testenv.Addr(port)
	testenv.WaitHTTP(t, p, url+"/-/healthy", 30*time.Second)
	return &ingesterProc{Process: p, URL: url}
}

// Logs of three clusters (JSON without cluster label, protobuf with it)
// through gateway → Kafka → ingester → Loki and Elasticsearch(-compatible):
// both return exactly the lines sent, Loki in order per stream with metadata.
func TestLogsEndToEnd(t *testing.T) {
	t.Parallel()
	k := testenv.Kafka(t, 4)
	loki := testenv.Loki(t)
	zinc := testenv.Zinc(t)
	gw := startGateway(t, k.Addr)
	startLogIngester(t, k.Addr, loki, zinc)

	l := newLogLoad([]string{"east", "west", "north"}, 3, 40)
	for from := 0; from < l.entries; from += 10 {
		for _, c := range l.clusters {
			code, msg, err := l.send(gw.URL, c, from, from+10)
			require.NoError(t, err)
			require.Equal(t, http.StatusNoContent, code, msg)
		}
	}
	verifyLoki(t, loki, l, l.entries)
	verifyES(t, zinc, l, l.entries)
	requireNoDeadLetters(t, k.Addr)
}

// sendLogsContinuously pushes one entry per stream at a time for cluster c
// and counts how many were acknowledged.
func sendLogsContinuously(l logLoad, gwURL, c string, sent *atomic.Int64, wg *sync.WaitGroup) {
	defer wg.Done()
	for j := 0; j < l.entries; {
		code, _, err := l.send(gwURL, c, j, j+1)
		if err == nil && code == http.StatusNoContent {
			j++
			sent.Store(int64(j))
			continue
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// An ingester killed mid-stream, a replacement, and finally a full replay of
// the topic by a new consumer group: Elasticsearch holds every line exactly
// once (deterministic document IDs), Loki every line.
func TestLogsCrashAndReplayNoDuplicates(t *testing.T) {
	t.Parallel()
	k := testenv.Kafka(t, 2, testenv.FastGroups()...)
	loki := testenv.Loki(t)
	zinc := testenv.Zinc(t)
	gw := startGateway(t, k.Addr)
	first := startLogIngester(t, k.Addr, loki, zinc, "-elasticsearch.batch.max-delay=1s", "-loki.batch.max-delay=1s")

	l := newLogLoad([]string{"a", "b"}, 2, 120)
	var wg sync.WaitGroup
	var sent [2]atomic.Int64
	for i, c := range l.clusters {
		wg.Add(1)
		go sendLogsContinuously(l, gw.URL, c, &sent[i], &wg)
	}
	waitFor(t, func() bool { return sent[0].Load() > 40 && sent[1].Load() > 40 })
	first.Kill()
	startLogIngester(t, k.Addr, loki, zinc)
	wg.Wait()
	verifyES(t, zinc, l, l.entries)
	verifyLoki(t, loki, l, l.entries)

	// Replay everything from the oldest offset into the same index, and
	// look only once the replaying group has written the whole topic.
	startLogIngester(t, k.Addr, nil, zinc, "-elasticsearch.group=tributary-elasticsearch-replay")
	waitGroupAtEnd(t, k.Addr, "tributary-elasticsearch-replay", "tributary.logs", 90*time.Second)
	verifyES(t, zinc, l, l.entries)
	requireNoDeadLetters(t, k.Addr)
}
