package testenv

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// builtBinary is the result of one scripts/build-*.sh run, shared by every
// test of the test binary.
type builtBinary struct {
	once sync.Once
	path string
	out  string
	err  error
}

var (
	builtMu sync.Mutex
	built   = map[string]*builtBinary{}
)

// serverBinary runs scripts/<script> (once per test process) and returns the
// path it prints on its last line. The scripts build into CacheDir() and
// return at once when the binary is already there.
func serverBinary(t testing.TB, script string) string {
	t.Helper()
	builtMu.Lock()
	b := built[script]
	if b == nil {
		b = &builtBinary{}
		built[script] = b
	}
	builtMu.Unlock()

	root := RepoRoot(t)
	b.once.Do(func() {
		start := time.Now()
		// exec copies stdout and stderr in two goroutines: the shared
		// buffer must be safe for concurrent writes.
		var stdout bytes.Buffer
		combined := &syncBuffer{}
		cmd := exec.Command("bash", filepath.Join(root, "scripts", script))
		cmd.Dir = root
		cmd.Stdout = io.MultiWriter(&stdout, combined)
		cmd.Stderr = combined
		b.err = cmd.Run()
		b.out = string(combined.Bytes())
		if b.err != nil {
			return
		}
		lines := strings.Split(strings.TrimSpace(stdout.String()), "\n")
		b.path = strings.TrimSpace(lines[len(lines)-1])
		if fi, err := os.Stat(b.path); err != nil || fi.IsDir() || fi.Mode()&0o111 == 0 {
			b.err = fmt.Errorf("%s printed %q, which is not an executable file", script, b.path)
			return
		}
		if d := time.Since(start); d > 5*time.Second {
			t.Logf("scripts/%s built %s in %s", script, b.path, d.Round(time.Second))
		}
	})
	if b.err != nil {
		t.Fatalf("scripts/%s failed: %v\n%s", script, b.err, b.out)
	}
	return b.path
}

// LokiBinary returns the path of the Loki binary, building it with
// scripts/build-loki.sh on first use (about 9 minutes with an empty Go build
// cache, longer than go test's default 10m timeout allows with tests on top:
// run the script before go test in CI).
func LokiBinary(t testing.TB) string {
	t.Helper()
	return serverBinary(t, "build-loki.sh")
}

// LokiServer is a single-binary Loki (-target=all) listening on loopback
// only, with filesystem storage in a per-test temporary directory.
//
// Its configuration is tuned for tests: no authentication (tenant
// "fake"), structured metadata allowed, no rejection of old samples (a
// stream still only accepts entries up to 1h older than its newest one),
// ingesters always queried (so freshly pushed data, however old its
// timestamps, is visible at once), no results cache, no automatic
// service_name label and no detected_level metadata (what is pushed is what
// is queried back), usage reporting and tracing off.
type LokiServer struct {
	// URL is the HTTP base URL, http://127.0.0.1:<port>.
	URL string
	server
	// Dir holds the data (chunks, index, WAL) and the config file; it is
	// kept across Restart.
	Dir string
	// ConfigFile is the path of the generated config.
	ConfigFile string

	bin string
}

// lokiReadyTimeout bounds the wait for /ready (a few seconds normally).
const lokiReadyTimeout = 90 * time.Second

// Loki starts a Loki server for t and waits until it is ready. It is killed
// when t ends.
func Loki(t testing.TB) *LokiServer {
	t.Helper()
	bin := LokiBinary(t)
	dir := t.TempDir()
	httpPort, grpcPort, memberlistPort := FreePort(t), FreePort(t), FreePort(t)
	cfg := fmt.Sprintf(lokiConfigTemplate, httpPort, grpcPort, dir, memberlistPort, memberlistPort)
	cfgFile := filepath.Join(dir, "loki.yaml")
	if err := os.WriteFile(cfgFile, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	s := &LokiServer{
		URL:        "http://" + Addr(httpPort),
		Dir:        dir,
		ConfigFile: cfgFile,
		bin:        bin,
	}
	s.launch = s.start
	s.start(t)
	return s
}

func (s *LokiServer) start(t testing.TB) {
	t.Helper()
	s.Proc = StartProcess(t, "loki", s.bin, []string{"-config.file=" + s.ConfigFile, "-target=all"})
	WaitHTTP(t, s.Proc, s.URL+"/ready", lokiReadyTimeout)
}

// LokiStream is one stream of a query result.
type LokiStream struct {
	Labels  map[string]string
	Entries []LokiEntry
}

// LokiEntry is one log line. Metadata is its structured metadata (nil when
// it has none).
type LokiEntry struct {
	TS       time.Time
	Line     string
	Metadata map[string]string
}

// QueryRange runs a LogQL log query over [start, end) with direction=forward
// through /loki/api/v1/query_range. Streams are sorted by their labels;
// entries are in time order. Structured metadata is returned separately from
// the stream labels (the categorize-labels encoding). limit <= 0 means 1000.
func (s *LokiServer) QueryRange(t testing.TB, query string, start, end time.Time, limit int) ([]LokiStream, error) {
	t.Helper()
	if limit <= 0 {
		limit = 1000
	}
	q := url.Values{}
	q.Set("query", query)
	q.Set("start", strconv.FormatInt(start.UnixNano(), 10))
	q.Set("end", strconv.FormatInt(end.UnixNano(), 10))
	q.Set("limit", strconv.Itoa(limit))
	q.Set("direction", "forward")
	req, err := http.NewRequest(http.MethodGet, s.URL+"/loki/api/v1/query_range?"+q.Encode(), nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("X-Loki-Response-Encoding-Flags", "categorize-labels")
	client := &http.Client{Timeout: 30 * time.Second}
	resp, err := client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("loki query_range %q: HTTP %d: %s", query, resp.StatusCode, bytes.TrimSpace(body))
	}
	return parseLokiStreams(body)
}

func parseLokiStreams(body []byte) ([]LokiStream, error) {
	var r struct {
		Status string `json:"status"`
		Data   struct {
			ResultType string `json:"resultType"`
			Result     []struct {
				Stream map[string]string   `json:"stream"`
				Values [][]json.RawMessage `json:"values"`
			} `json:"result"`
		} `json:"data"`
	}
	if err := json.Unmarshal(body, &r); err != nil {
		return nil, fmt.Errorf("decode loki response: %w: %.500s", err, body)
	}
	if r.Status != "success" {
		return nil, fmt.Errorf("loki query status %q: %.500s", r.Status, body)
	}
	if r.Data.ResultType != "streams" {
		return nil, fmt.Errorf("loki result type %q, want streams (log query)", r.Data.ResultType)
	}
	streams := make([]LokiStream, 0, len(r.Data.Result))
	for _, res := range r.Data.Result {
		st := LokiStream{Labels: res.Stream}
		if st.Labels == nil {
			st.Labels = map[string]string{}
		}
		for _, v := range res.Values {
			if len(v) < 2 {
				return nil, fmt.Errorf("loki value with %d elements", len(v))
			}
			var tsStr, line string
			if err := json.Unmarshal(v[0], &tsStr); err != nil {
				return nil, fmt.Errorf("loki timestamp %s: %w", v[0], err)
			}
			ns, err := strconv.ParseInt(tsStr, 10, 64)
			if err != nil {
				return nil, fmt.Errorf("loki timestamp %q: %w", tsStr, err)
			}
			if err := json.Unmarshal(v[1], &line); err != nil {
				return nil, fmt.Errorf("loki line %s: %w", v[1], err)
			}
			e := LokiEntry{TS: time.Unix(0, ns).UTC(), Line: line}
			if len(v) > 2 {
				var cat struct {
					StructuredMetadata map[string]string `json:"structuredMetadata"`
				}
				if err := json.Unmarshal(v[2], &cat); err != nil {
					return nil, fmt.Errorf("loki entry metadata %s: %w", v[2], err)
				}
				if len(cat.StructuredMetadata) > 0 {
					e.Metadata = cat.StructuredMetadata
				}
			}
			st.Entries = append(st.Entries, e)
		}
		sort.SliceStable(st.Entries, func(i, j int) bool { return st.Entries[i].TS.Before(st.Entries[j].TS) })
		streams = append(streams, st)
	}
	sort.SliceStable(streams, func(i, j int) bool { return labelString(streams[i].Labels) < labelString(streams[j].Labels) })
	return streams, nil
}

// labelString renders labels as {a="1", b="2"} with sorted names.
func labelString(l map[string]string) string {
	names := make([]string, 0, len(l))
	for k := range l {
		names = append(names, k)
	}
	sort.Strings(names)
	var b strings.Builder
	b.WriteByte('{')
	for i, k := range names {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%s=%q", k, l[k])
	}
	b.WriteByte('}')
	return b.String()
}

// lokiConfigTemplate: http port, grpc port, data dir (double-quoted in the
// YAML), memberlist bind and advertise port. Everything listens on and advertises 127.0.0.1; the ring
// lives in memory (no memberlist cluster is joined); nothing is sent outside
// the machine (usage reporting, tracing, alertmanager, pattern ingester off).
const lokiConfigTemplate = `target: all
auth_enabled: false

server:
  http_listen_address: 127.0.0.1
  http_listen_port: %[1]d
  grpc_listen_address: 127.0.0.1
  grpc_listen_port: %[2]d
  grpc_server_max_concurrent_streams: 1000
  log_level: warn

common:
  instance_addr: 127.0.0.1
  path_prefix: "%[3]s"
  storage:
    filesystem:
      chunks_directory: "%[3]s/chunks"
      rules_directory: "%[3]s/rules"
  replication_factor: 1
  ring:
    instance_addr: 127.0.0.1
    kvstore:
      store: inmemory

memberlist:
  bind_addr: [127.0.0.1]
  bind_port: %[4]d
  advertise_addr: 127.0.0.1
  advertise_port: %[5]d

# With target=all and filesystem storage, Loki by default queries ingesters
# only for the last ~2h41m (query_store_max_look_back_period), so samples
# with older timestamps are invisible until their chunks are flushed. -1ns
# (exactly -1, "infinite") makes queriers ask the ingester for every range,
# and the ingester serves both its memory and the store.
ingester:
  query_store_max_look_back_period: -1ns
  lifecycler:
    min_ready_duration: 1s
    final_sleep: 0s
  wal:
    enabled: true
    dir: "%[3]s/wal"

querier:
  query_ingesters_within: 0

query_range:
  cache_results: false

limits_config:
  allow_structured_metadata: true
  reject_old_samples: false
  discover_service_name: []
  discover_log_levels: false
  ingestion_rate_mb: 64
  ingestion_burst_size_mb: 128
  per_stream_rate_limit: 64MB
  per_stream_rate_limit_burst: 128MB
  volume_enabled: true

schema_config:
  configs:
    - from: 2020-10-24
      store: tsdb
      object_store: filesystem
      schema: v13
      index:
        prefix: index_
        period: 24h

storage_config:
  tsdb_shipper:
    active_index_directory: "%[3]s/tsdb-index"
    cache_location: "%[3]s/tsdb-cache"

compactor:
  working_directory: "%[3]s/compactor"

ruler:
  rule_path: "%[3]s/rules-temp"
  storage:
    type: local
    local:
      directory: "%[3]s/rules"

pattern_ingester:
  enabled: false

# Find the in-process query scheduler in 1 s, not 10 s (ready sooner).
frontend:
  encoding: protobuf
  scheduler_dns_lookup_period: 1s

frontend_worker:
  dns_lookup_duration: 1s

analytics:
  reporting_enabled: false

tracing:
  enabled: false
`
