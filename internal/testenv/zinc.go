package testenv

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"testing"
	"time"
)

// ZincBinary returns the path of the ZincSearch binary, building it with
// scripts/build-zinc.sh on first use (about 4 minutes with an empty Go build
// cache).
func ZincBinary(t testing.TB) string {
	t.Helper()
	return serverBinary(t, "build-zinc.sh")
}

// ZincServer is a ZincSearch server, an Elasticsearch-compatible search
// engine, listening on 127.0.0.1 only, with its data in a per-test temporary
// directory and basic auth (User, Password).
//
// Its Elasticsearch API lives under ESURL (URL + "/es"). Differences from
// Elasticsearch 8 that tests must live with:
//   - documents become searchable about a second after indexing, whatever
//     refresh parameter is sent and even after _refresh: poll;
//   - _bulk stops at the first failing document and answers 200 with
//     "errors": false and a top-level "error" string, without per-item
//     errors; create does not conflict on an existing _id, update replaces
//     the whole document with the action's body, delete of a missing _id
//     says "deleted"; a line that is not JSON gives a 500 with an empty body
//     (and the documents after it may be paired with the wrong action);
//   - there is no _count, no GET _doc/<id>, no GET _search (POST only), no
//     index DELETE, no _cat or _cluster API under /es;
//   - a document without "@timestamp" gets one (indexing time) in _source,
//     and dates are stored as float64 nanoseconds (sub-microsecond rounding);
//   - dynamically mapped strings are "text" (no keyword sub-field): exact
//     matching and terms aggregations need an explicit keyword mapping or
//     index template;
//   - most errors are {"error": "<string>"} (not ES error objects), and a
//     missing index is a 400, not a 404.
type ZincServer struct {
	// URL is the base URL, http://127.0.0.1:<port> (Zinc's own API is under
	// /api, health at /healthz).
	URL string
	// ESURL is the Elasticsearch-compatible base URL, URL + "/es".
	ESURL string
	// User and Password are the admin credentials for basic auth.
	User, Password string
	server
	// Dir is ZINC_DATA_PATH, kept across Restart.
	Dir string

	bin  string
	port int
}

const zincReadyTimeout = 60 * time.Second

// ZincESVersion is the version number Zinc reports at GET ESURL/ (clients
// that look at it see an Elasticsearch 8).
const ZincESVersion = "8.19.0"

// Zinc starts a ZincSearch server for t and waits for /healthz. It is killed
// when t ends.
func Zinc(t testing.TB) *ZincServer {
	t.Helper()
	s := &ZincServer{
		User:     "admin",
		Password: "tributary-Zinc-pw1",
		Dir:      t.TempDir(),
		bin:      ZincBinary(t),
	}
	s.launch = s.start
	startOnFreePorts(t, zincReadyTimeout, func() (*Process, string) {
		s.port = FreePort(t)
		s.URL = "http://" + Addr(s.port)
		s.ESURL = s.URL + "/es"
		s.Proc = StartProcess(t, "zincsearch", s.bin, nil, s.env()...)
		return s.Proc, s.URL + "/healthz"
	})
	return s
}

func (s *ZincServer) env() []string {
	return []string{
		"ZINC_SERVER_ADDRESS=127.0.0.1",
		fmt.Sprintf("ZINC_SERVER_PORT=%d", s.port),
		"ZINC_DATA_PATH=" + s.Dir,
		"ZINC_FIRST_ADMIN_USER=" + s.User,
		"ZINC_FIRST_ADMIN_PASSWORD=" + s.Password,
		// Nothing leaves the machine: no usage telemetry (segment), no
		// Sentry, no pyroscope profiler, no etcd cluster metadata.
		"ZINC_TELEMETRY=false",
		"ZINC_SENTRY=false",
		"ZINC_SENTRY_DSN=",
		"ZINC_PROFILER=false",
		"ZINC_PROFILER_SERVER=",
		"ZINC_METADATA_STORAGE=bolt",
		"ZINC_ETCD_ENDPOINTS=",
		"ZINC_SERVER_MODE=node",
		"ZINC_SERVER_TLS_CERTIFICATE_FILE=",
		"ZINC_SERVER_TLS_KEY_FILE=",
		"ZINC_PROMETHEUS_ENABLE=false",
		"ZINC_PLUGIN_ES_VERSION=" + ZincESVersion,
		"GIN_MODE=release",
	}
}

func (s *ZincServer) start(t testing.TB) {
	t.Helper()
	s.Proc = StartProcess(t, "zincsearch", s.bin, nil, s.env()...)
	WaitHTTP(t, s.Proc, s.URL+"/healthz", zincReadyTimeout)
}

// Do sends an authenticated request to Zinc: path is relative to URL (for
// example "/es/_bulk"); body may be nil. It returns the status and body.
func (s *ZincServer) Do(method, path, contentType string, body []byte) (int, []byte, error) {
	var r io.Reader
	if body != nil {
		r = bytes.NewReader(body)
	}
	req, err := http.NewRequest(method, s.URL+path, r)
	if err != nil {
		return 0, nil, err
	}
	req.SetBasicAuth(s.User, s.Password)
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	client := &http.Client{Timeout: 30 * time.Second}
	resp, err := client.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, b, err
}

// Search runs query (an Elasticsearch search body; nil means match_all) on
// index through POST ESURL/<index>/_search. It returns each hit's _source
// (decoded by encoding/json: numbers are float64) with the hit's _id added
// under "_id", in hit order, and hits.total.value.
func (s *ZincServer) Search(t testing.TB, index string, query map[string]any) ([]map[string]any, int, error) {
	t.Helper()
	if query == nil {
		query = map[string]any{"query": map[string]any{"match_all": map[string]any{}}}
	}
	body, err := json.Marshal(query)
	if err != nil {
		return nil, 0, err
	}
	status, resp, err := s.Do(http.MethodPost, "/es/"+url.PathEscape(index)+"/_search", "application/json", body)
	if err != nil {
		return nil, 0, err
	}
	if status != http.StatusOK {
		return nil, 0, fmt.Errorf("zinc search %s: HTTP %d: %s", index, status, bytes.TrimSpace(resp))
	}
	var r struct {
		Error any `json:"error"`
		Hits  struct {
			Total json.RawMessage `json:"total"`
			Hits  []struct {
				ID     string         `json:"_id"`
				Source map[string]any `json:"_source"`
			} `json:"hits"`
		} `json:"hits"`
	}
	if err := json.Unmarshal(resp, &r); err != nil {
		return nil, 0, fmt.Errorf("decode zinc search response: %w: %.500s", err, resp)
	}
	if r.Error != nil {
		return nil, 0, fmt.Errorf("zinc search %s: %v", index, r.Error)
	}
	total, err := esTotal(r.Hits.Total)
	if err != nil {
		return nil, 0, err
	}
	docs := make([]map[string]any, 0, len(r.Hits.Hits))
	for _, h := range r.Hits.Hits {
		d := make(map[string]any, len(h.Source)+1)
		for k, v := range h.Source {
			d[k] = v
		}
		d["_id"] = h.ID
		docs = append(docs, d)
	}
	return docs, total, nil
}

// esTotal reads hits.total, either {"value": n, ...} or a bare number.
func esTotal(raw json.RawMessage) (int, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return 0, nil
	}
	var obj struct {
		Value int `json:"value"`
	}
	if err := json.Unmarshal(raw, &obj); err == nil {
		return obj.Value, nil
	}
	var n int
	if err := json.Unmarshal(raw, &n); err != nil {
		return 0, fmt.Errorf("hits.total %s: %w", raw, err)
	}
	return n, nil
}
