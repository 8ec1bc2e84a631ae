package testenv

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// JaegerBinary returns the path of the Jaeger v2 binary, building it with
// scripts/build-jaeger.sh on first use (about 3 minutes with an empty Go
// build cache).
func JaegerBinary(t testing.TB) string {
	t.Helper()
	return serverBinary(t, "build-jaeger.sh")
}

// JaegerQuery is a Jaeger v2 process serving only its query service (the
// HTTP API the UI and Grafana's Jaeger data source use) over the
// Elasticsearch storage of a ZincSearch server: what proves that the
// ingester's span and service documents are in Jaeger's schema.
type JaegerQuery struct {
	// URL is the query service's base URL, http://127.0.0.1:<port>
	// (/api/traces/<id>, /api/services, /api/services/<svc>/operations).
	URL  string
	Proc *Process
}

const jaegerReadyTimeout = 60 * time.Second

// StartJaeger starts Jaeger's query service reading the Zinc server z,
// indices with indexPrefix ("" for none, as the ingester's
// -jaeger.index-prefix), and waits until its /api/services answers 200.
// Zinc refuses a search when none of the indices exists, so start it once
// a service document is indexed. It is killed when t ends.
//
// The storage settings ZincSearch needs: create_mappings false (Zinc
// refuses Jaeger's templates: the ingester installs its own),
// http_compression false (Zinc does not read gzip request bodies) and
// send_get_body_as POST (Zinc has no GET _search). The pipeline is the
// no-op receiver and exporter, so nothing listens but the query service,
// on loopback; the Collector's own telemetry is off.
//
// Jaeger reaches Zinc through aggsProxy: Zinc reads a search's
// aggregations only under the key "aggs", while Jaeger's client sends the
// synonym "aggregations" (both are Elasticsearch's), so without it the
// terms aggregations behind /api/services and
// /api/services/<svc>/operations come back empty whatever the documents.
func StartJaeger(t testing.TB, z *ZincServer, indexPrefix string) *JaegerQuery {
	t.Helper()
	bin := JaegerBinary(t)
	httpPort, grpcPort := FreePort(t), FreePort(t)
	config := fmt.Sprintf(`service:
  extensions: [jaeger_storage, jaeger_query]
  pipelines:
    traces:
      receivers: [nop]
      exporters: [nop]
  telemetry:
    metrics:
      level: none
    logs:
      level: info
extensions:
  jaeger_query:
    storage:
      traces: zinc
    http:
      endpoint: %s
    grpc:
      endpoint: %s
  jaeger_storage:
    backends:
      zinc:
        elasticsearch:
          server_urls: [%q]
          auth:
            basic:
              username: %q
              password: %q
          create_mappings: false
          http_compression: false
          send_get_body_as: POST
          indices:
            index_prefix: %q
receivers:
  nop:
exporters:
  nop:
`, Addr(httpPort), Addr(grpcPort), aggsProxy(t, z.URL)+"/es", z.User, z.Password, indexPrefix)
	path := filepath.Join(t.TempDir(), "jaeger.yaml")
	if err := os.WriteFile(path, []byte(config), 0o600); err != nil {
		t.Fatal(err)
	}
	j := &JaegerQuery{URL: "http://" + Addr(httpPort)}
	j.Proc = StartProcess(t, "jaeger", bin, []string{"--config=" + path})
	WaitHTTP(t, j.Proc, j.URL+"/api/services", jaegerReadyTimeout)
	return j
}

// aggsProxy forwards to the Zinc server at target, renaming the top-level
// key "aggregations" of every search body (each line of a _msearch) to
// "aggs", the only one Zinc reads. Nothing else is changed. It is closed
// when t ends.
func aggsProxy(t testing.TB, target string) string {
	t.Helper()
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	proxy := httputil.NewSingleHostReverseProxy(u)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/_search") || strings.HasSuffix(r.URL.Path, "/_msearch") {
			body, err := io.ReadAll(r.Body)
			if err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			lines := bytes.Split(body, []byte("\n"))
			for i, line := range lines {
				var m map[string]json.RawMessage
				if json.Unmarshal(line, &m) != nil || m["aggregations"] == nil || m["aggs"] != nil {
					continue
				}
				m["aggs"] = m["aggregations"]
				delete(m, "aggregations")
				if lines[i], err = json.Marshal(m); err != nil {
					http.Error(w, err.Error(), http.StatusBadRequest)
					return
				}
			}
			body = bytes.Join(lines, []byte("\n"))
			r.Body = io.NopCloser(bytes.NewReader(body))
			r.ContentLength = int64(len(body))
			r.Header.Set("Content-Length", strconv.Itoa(len(body)))
		}
		proxy.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}
