package integration

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/stretchr/testify/require"
	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	resourcepb "go.opentelemetry.io/proto/otlp/resource/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/tributary-io/tributary/internal/testenv"
	"github.com/tributary-io/tributary/pkg/agent/logs/logstest"
	"github.com/tributary-io/tributary/pkg/record"
)

// The trust domain of the tests' SPIFFE IDs.
const trustDomain = "tributary.test"

var (
	trustTokenA = "trust-token-of-cluster-a-4b1f9c0e7d"
	trustTokenB = "trust-token-of-cluster-b-90aa1c3e5f"
)

// trustPKI is a CA with the gateway's certificate, a SPIFFE client
// certificate for cluster a, one from another CA, and a tokens file.
type trustPKI struct {
	dir                   string
	ca                    *testenv.CA
	serverCert, serverKey string
	clientA, foreign      tls.Certificate
	tokens                string
}

func newTrustPKI(t *testing.T) *trustPKI {
	t.Helper()
	dir := t.TempDir()
	p := &trustPKI{dir: dir, ca: testenv.NewCA(t, dir, "ca"), tokens: filepath.Join(dir, "tokens.yaml")}
	p.serverCert, p.serverKey = p.ca.Issue(t, dir, testenv.Leaf{Name: "gateway", Server: true})
	p.clientA = loadPair(t, p.ca, dir, testenv.Leaf{Name: "client-a", URIs: []string{"spiffe://" + trustDomain + "/cluster/a"}})
	other := testenv.NewCA(t, dir, "other-ca")
	p.foreign = loadPair(t, other, dir, testenv.Leaf{Name: "intruder", URIs: []string{"spiffe://" + trustDomain + "/cluster/a"}})
	p.writeTokens(t, map[string]string{trustTokenA: "a"})
	return p
}

func loadPair(t *testing.T, ca *testenv.CA, dir string, leaf testenv.Leaf) tls.Certificate {
	certFile, keyFile := ca.Issue(t, dir, leaf)
	c, err := tls.LoadX509KeyPair(certFile, keyFile)
	require.NoError(t, err)
	return c
}

// writeTokens makes tokens.yaml as an operator does: each entry printed by
// `gateway -auth.hash-token` from the token on stdin; the file replaced by
// a rename.
func (p *trustPKI) writeTokens(t *testing.T, tokens map[string]string) {
	t.Helper()
	var b strings.Builder
	b.WriteString("tokens:\n")
	for token, cluster := range tokens {
		cmd := exec.Command(testenv.Binary(t, "gateway"), "-auth.hash-token", "-auth.hash-token.cluster="+cluster)
		cmd.Stdin = strings.NewReader(token + "\n")
		out, err := cmd.Output()
		require.NoError(t, err)
		require.NotContains(t, string(out), token, "the entry holds the hash only")
		b.Write(out)
	}
	tmp := p.tokens + ".tmp"
	require.NoError(t, os.WriteFile(tmp, []byte(b.String()), 0o600))
	require.NoError(t, os.Rename(tmp, p.tokens))
}

// client is an HTTPS client trusting the test CA, presenting cert (none if
// nil) whatever CAs the server asks for, as a hostile client would.
func (p *trustPKI) client(cert *tls.Certificate) *http.Client {
	tc := &tls.Config{RootCAs: p.ca.Pool()}
	if cert != nil {
		tc.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return cert, nil }
	}
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: tc}}
}

// grpcConn is an OTLP gRPC connection over TLS with cert (none if nil).
func (p *trustPKI) grpcConn(t *testing.T, addr string, cert *tls.Certificate) *grpc.ClientConn {
	tc := &tls.Config{RootCAs: p.ca.Pool()}
	if cert != nil {
		tc.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return cert, nil }
	}
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(tc)))
	require.NoError(t, err)
	t.Cleanup(func() { conn.Close() })
	return conn
}

type trustGateway struct {
	*testenv.Process
	URL      string // https://
	GRPCAddr string
}

// startTrustGateway runs a gateway serving TLS on both listeners, client
// certificates verified against the test CA, tokens from p.tokens (read
// again every 200 ms) and an identity required; extra flags last.
func startTrustGateway(t *testing.T, kafkaAddr string, p *trustPKI, extra ...string) *trustGateway {
	t.Helper()
	httpAddr, grpcAddr := testenv.Addr(testenv.FreePort(t)), testenv.Addr(testenv.FreePort(t))
	args := append([]string{
		"-http.listen-addr=" + httpAddr,
		"-otlp.grpc.listen-addr=" + grpcAddr,
		"-kafka.brokers=" + kafkaAddr,
		"-kafka.ack-timeout=5s",
		"-tls.cert-file=" + p.serverCert,
		"-tls.key-file=" + p.serverKey,
		"-tls.client-ca-file=" + p.ca.File,
		"-auth.tokens-file=" + p.tokens,
		"-auth.tokens-reload-interval=200ms",
		"-auth.spiffe-trust-domain=" + trustDomain,
		"-auth.required",
	}, extra...)
	proc := testenv.StartProcess(t, "gateway", testenv.Binary(t, "gateway"), args)
	gw := &trustGateway{Process: proc, URL: "https://" + httpAddr, GRPCAddr: grpcAddr}
	hc := p.client(nil)
	testenv.Eventually(t, 30*time.Second, func() error {
		if proc.Exited() {
			t.Fatalf("gateway exited:\n%s", proc.Output())
		}
		resp, err := hc.Get(gw.URL + "/-/ready")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("ready: %d", resp.StatusCode)
		}
		return nil
	})
	return gw
}

// metric sums the gateway's own metric name over the series matching
// match, read over TLS (without a client identity: /metrics needs none).
func (gw *trustGateway) metric(t *testing.T, p *trustPKI, name string, match map[string]string) float64 {
	t.Helper()
	resp, err := p.client(nil).Get(gw.URL + "/metrics")
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(resp.Body)
	require.NoError(t, err)
	return sumSamples(families[name], match)
}

// write is one write request: an endpoint, its body and content type.
type write struct {
	name, path, contentType string
	body                    []byte
	headers                 []string
}

func remoteWrite(body []byte, headers ...string) write {
	return write{name: "remote-write", path: "/api/v1/write", contentType: "application/x-protobuf", body: body,
		headers: append([]string{"Content-Encoding", "snappy"}, headers...)}
}

func lokiPush(body []byte, headers ...string) write {
	return write{name: "loki push", path: "/loki/api/v1/push", contentType: "application/x-protobuf", body: body, headers: headers}
}

func otlpHTTP(body []byte, headers ...string) write {
	return write{name: "OTLP/HTTP traces", path: "/v1/traces", contentType: "application/x-protobuf", body: body, headers: headers}
}

// send posts w with the bearer token (none if "") over hc.
func (w write) send(hc *http.Client, url, token string) (int, string, error) {
	req, err := http.NewRequest(http.MethodPost, url+w.path, bytes.NewReader(w.body))
	if err != nil {
		return 0, "", err
	}
	req.Header.Set("Content-Type", w.contentType)
	for i := 0; i+1 < len(w.headers); i += 2 {
		req.Header.Set(w.headers[i], w.headers[i+1])
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := hc.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(msg), nil
}

// traces is an OTLP trace request of n spans whose resource says cluster
// (k8s.cluster.name left out if "").
func traces(cluster string, n int) *coltracepb.ExportTraceServiceRequest {
	res := &resourcepb.Resource{Attributes: []*commonpb.KeyValue{{Key: "service.name", Value: &commonpb.AnyValue{Value: &commonpb.AnyValue_StringValue{StringValue: "trust"}}}}}
	if cluster != "" {
		res.Attributes = append(res.Attributes, &commonpb.KeyValue{Key: "k8s.cluster.name", Value: &commonpb.AnyValue{Value: &commonpb.AnyValue_StringValue{StringValue: cluster}}})
	}
	now := uint64(time.Now().UnixNano())
	ss := &tracepb.ScopeSpans{}
	for i := 0; i < n; i++ {
		ss.Spans = append(ss.Spans, &tracepb.Span{
			TraceId: bytes.Repeat([]byte{byte(i + 1)}, 16), SpanId: bytes.Repeat([]byte{byte(i + 1)}, 8),
			Name: fmt.Sprintf("span-%d", i), StartTimeUnixNano: now, EndTimeUnixNano: now + 1000,
		})
	}
	return &coltracepb.ExportTraceServiceRequest{ResourceSpans: []*tracepb.ResourceSpans{{Resource: res, ScopeSpans: []*tracepb.ScopeSpans{ss}}}}
}

func marshalTraces(t *testing.T, req *coltracepb.ExportTraceServiceRequest) []byte {
	b, err := proto.Marshal(req)
	require.NoError(t, err)
	return b
}

// exportGRPC sends req over conn with the bearer token (none if "").
func exportGRPC(conn *grpc.ClientConn, token string, req *coltracepb.ExportTraceServiceRequest) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if token != "" {
		ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+token)
	}
	_, err := coltracepb.NewTraceServiceClient(conn).Export(ctx, req)
	return err
}

// clustersIn counts the records of each topic by their cluster header.
func clustersIn(t *testing.T, kafkaAddr string) map[string]map[string]int {
	out := map[string]map[string]int{}
	for _, topic := range []string{"tributary.metrics", "tributary.logs", "tributary.spans"} {
		out[topic] = map[string]int{}
		for _, m := range testenv.ReadTopic(t, kafkaAddr, topic) {
			out[topic][testenv.Header(m, record.HeaderCluster)]++
		}
	}
	return out
}

// Spoofing, over HTTP and gRPC, with -auth.required: without a valid
// identity nothing is written (401 / UNAUTHENTICATED); a token for
// cluster a cannot write series, streams or spans of cluster b (403 /
// PERMISSION_DENIED naming both, nothing written), but writes its own; a
// client certificate of another CA fails the TLS handshake; a SPIFFE
// certificate for cluster a writes cluster a into Prometheus; a changed
// tokens file takes effect without a restart.
func TestTrustSpoofingRefused(t *testing.T) {
	t.Parallel()
	k := testenv.Kafka(t, 2)
	prom := testenv.Prometheus(t, testenv.SinkConfig)
	p := newTrustPKI(t)
	gw := startTrustGateway(t, k.Addr, p)
	startIngester(t, k.Addr, prom.URL)
	hc := p.client(nil)
	conn := p.grpcConn(t, gw.GRPCAddr, nil)

	metrics := newLoad("tributary_trust_spoof", []string{"a", "b"}, 5, 4)
	logs := newLogLoad([]string{"a", "b"}, 2, 3)
	claimsB := []write{
		remoteWrite(metrics.request("b", 0, 4, false)),
		lokiPush(logs.protobuf("b", 0, 3)),
		otlpHTTP(marshalTraces(t, traces("b", 3))),
		remoteWrite(metrics.request("b", 0, 4, true), "X-Tributary-Cluster", "b"), // the claim in the header
	}

	t.Run("no or an invalid identity: 401 / UNAUTHENTICATED", func(t *testing.T) {
		refused := 0
		for _, w := range claimsB[:3] {
			for _, token := range []string{"", "not-a-known-token-0000000000"} {
				code, msg, err := w.send(hc, gw.URL, token)
				require.NoError(t, err)
				require.Equal(t, http.StatusUnauthorized, code, "%s with token %q: %s", w.name, token, msg)
				refused++
			}
		}
		for _, token := range []string{"", "not-a-known-token-0000000000"} {
			err := exportGRPC(conn, token, traces("a", 2))
			require.Equal(t, codes.Unauthenticated, status.Code(err), "gRPC with token %q: %v", token, err)
			refused++
		}
		require.Equal(t, 4.0, gw.metric(t, p, "tributary_gateway_auth_requests_total", map[string]string{"result": "missing"}))
		require.Equal(t, 4.0, gw.metric(t, p, "tributary_gateway_auth_requests_total", map[string]string{"result": "invalid"}))
		t.Logf("sent 8 requests without a valid identity (6 HTTP, 2 gRPC): acknowledged 0, refused %d", refused)
	})

	t.Run("token of cluster a claiming cluster b: 403 / PERMISSION_DENIED", func(t *testing.T) {
		for _, w := range claimsB {
			code, msg, err := w.send(hc, gw.URL, trustTokenA)
			require.NoError(t, err)
			require.Equal(t, http.StatusForbidden, code, "%s: %s", w.name, msg)
			require.Contains(t, msg, `"a"`, w.name)
			require.Contains(t, msg, `"b"`, w.name)
		}
		err := exportGRPC(conn, trustTokenA, traces("b", 3))
		require.Equal(t, codes.PermissionDenied, status.Code(err), "%v", err)
		require.Contains(t, err.Error(), `"b"`)
		require.Equal(t, 5.0, gw.metric(t, p, "tributary_gateway_auth_requests_total", map[string]string{"result": "mismatch"}))
		t.Logf("sent 5 requests claiming cluster b with a's token (4 HTTP: series, streams, spans, header; 1 gRPC): acknowledged 0, refused 5")
	})

	t.Run("token of cluster a writes cluster a", func(t *testing.T) {
		own := []write{
			remoteWrite(metrics.request("a", 0, 4, true)), // no cluster label: the identity's
			lokiPush(logs.protobuf("a", 0, 3)),
			otlpHTTP(marshalTraces(t, traces("", 3))),
		}
		for _, w := range own {
			code, msg, err := w.send(hc, gw.URL, trustTokenA)
			require.NoError(t, err)
			require.Less(t, code, 300, "%s: %s", w.name, msg)
		}
		require.NoError(t, exportGRPC(conn, trustTokenA, traces("a", 2)))
		t.Logf("sent 4 requests of cluster a with a's token: acknowledged 4, refused 0")
	})

	t.Run("client certificate of another CA: handshake fails", func(t *testing.T) {
		_, _, err := remoteWrite(metrics.request("a", 0, 1, false)).send(p.client(&p.foreign), gw.URL, "")
		require.Error(t, err)
		require.Contains(t, err.Error(), "tls", "a TLS failure, not an HTTP answer")
		err = exportGRPC(p.grpcConn(t, gw.GRPCAddr, &p.foreign), "", traces("a", 1))
		require.Equal(t, codes.Unavailable, status.Code(err), "%v", err)
		t.Logf("sent 2 requests with a certificate of another CA (HTTP, gRPC): both failed the TLS handshake")
	})

	t.Run("SPIFFE certificate of cluster a writes cluster a into Prometheus", func(t *testing.T) {
		spiffe := newLoad("tributary_trust_spiffe", []string{"a"}, 5, 6)
		code, msg, err := remoteWrite(spiffe.request("a", 0, 6, true)).send(p.client(&p.clientA), gw.URL, "")
		require.NoError(t, err)
		require.Equal(t, http.StatusNoContent, code, msg)
		code, msg, err = remoteWrite(spiffe.request("b", 0, 6, false)).send(p.client(&p.clientA), gw.URL, "")
		require.NoError(t, err)
		require.Equal(t, http.StatusForbidden, code, msg)
		require.NoError(t, exportGRPC(p.grpcConn(t, gw.GRPCAddr, &p.clientA), "", traces("", 2)))
		verify(t, prom, spiffe, map[string]int{"a": 6})
		res, err := prom.Query(`count(tributary_trust_spiffe{cluster!="a"}) or vector(0)`, time.Now())
		require.NoError(t, err)
		require.Equal(t, 0.0, res[0].Value, "no series of another cluster")
		t.Logf("sent 2 remote-writes (30 samples each) and 1 gRPC export with a's certificate: acknowledged 2, refused 1 (claiming b); 5 series x 6 samples of cluster a found in Prometheus")
	})

	// The first four subtests wrote only cluster a; check Kafka before the
	// tokens change below adds cluster b.
	got := clustersIn(t, k.Addr)
	for topic, byCluster := range got {
		require.Zero(t, byCluster["b"], "%s holds records of cluster b: %v", topic, byCluster)
		require.NotZero(t, byCluster["a"], "%s holds no records of cluster a", topic)
	}
	t.Logf("Kafka after the spoofing attempts: %v", got)
	requireNoDeadLetters(t, k.Addr)

	t.Run("tokens file reloaded without a restart", func(t *testing.T) {
		before := gw.metric(t, p, "tributary_gateway_auth_tokens_reloads_total", map[string]string{"outcome": "success"})
		p.writeTokens(t, map[string]string{trustTokenB: "b"}) // a revoked, b issued
		w := remoteWrite(metrics.request("b", 0, 4, false))
		testenv.Eventually(t, 10*time.Second, func() error {
			code, msg, err := w.send(hc, gw.URL, trustTokenB)
			if err != nil || code != http.StatusNoContent {
				return fmt.Errorf("token b: %d %s %v", code, msg, err)
			}
			return nil
		})
		code, msg, err := remoteWrite(metrics.request("a", 0, 4, false)).send(hc, gw.URL, trustTokenA)
		require.NoError(t, err)
		require.Equal(t, http.StatusUnauthorized, code, "revoked: %s", msg)
		require.Equal(t, before+1, gw.metric(t, p, "tributary_gateway_auth_tokens_reloads_total", map[string]string{"outcome": "success"}))

		require.NoError(t, os.WriteFile(p.tokens, []byte("tokens:\n  - sha256: "+trustTokenB+"\n    cluster: b\n"), 0o600))
		testenv.Eventually(t, 10*time.Second, func() error {
			if n := gw.metric(t, p, "tributary_gateway_auth_tokens_reloads_total", map[string]string{"outcome": "error"}); n != 1 {
				return fmt.Errorf("%v reload errors", n)
			}
			return nil
		})
		code, msg, err = w.send(hc, gw.URL, trustTokenB)
		require.NoError(t, err)
		require.Equal(t, http.StatusNoContent, code, "a broken file keeps the last good one: %s", msg)
		require.Contains(t, gw.Output(), "-auth.tokens-file refused")
		require.NotContains(t, gw.Output(), trustTokenB, "tokens never logged")
		t.Logf("after the reload: token b acknowledged, token a refused (401); after a broken file: token b still acknowledged, 1 reload error counted")
	})
}

// -auth.cluster-mismatch=overwrite: a token of cluster a sending series,
// streams and spans labelled b is acknowledged, and everything lands under
// cluster a (Kafka for every signal, Prometheus for the series).
func TestTrustOverwriteMode(t *testing.T) {
	t.Parallel()
	k := testenv.Kafka(t, 2)
	prom := testenv.Prometheus(t, testenv.SinkConfig)
	p := newTrustPKI(t)
	gw := startTrustGateway(t, k.Addr, p, "-auth.cluster-mismatch=overwrite")
	startIngester(t, k.Addr, prom.URL)
	hc := p.client(nil)

	metrics := newLoad("tributary_trust_overwrite", []string{"b"}, 4, 5)
	logs := newLogLoad([]string{"b"}, 2, 3)
	for _, w := range []write{
		remoteWrite(metrics.request("b", 0, 5, false)),
		lokiPush(logs.protobuf("b", 0, 3)),
		otlpHTTP(marshalTraces(t, traces("b", 3))),
	} {
		code, msg, err := w.send(hc, gw.URL, trustTokenA)
		require.NoError(t, err)
		require.Less(t, code, 300, "%s: %s", w.name, msg)
	}
	require.NoError(t, exportGRPC(p.grpcConn(t, gw.GRPCAddr, nil), trustTokenA, traces("b", 2)))

	got := clustersIn(t, k.Addr)
	require.Equal(t, map[string]map[string]int{
		"tributary.metrics": {"a": 1}, "tributary.logs": {"a": 1}, "tributary.spans": {"a": 2},
	}, got)
	for _, m := range testenv.ReadTopic(t, k.Addr, "tributary.spans") {
		require.NotContains(t, string(m.Value), `"b"`)
	}
	rewritten := metrics
	rewritten.clusters = []string{"a"}
	verify(t, prom, rewritten, map[string]int{"a": 5})
	res, err := prom.Query(`count(tributary_trust_overwrite{cluster="b"}) or vector(0)`, time.Now())
	require.NoError(t, err)
	require.Equal(t, 0.0, res[0].Value)
	t.Logf("sent 4 requests claiming cluster b with a's token (series, streams, spans over HTTP; spans over gRPC): acknowledged 4, refused 0; Kafka %v; 4 series x 5 samples under cluster a in Prometheus, none under b", got)
}

// The agent with bearer_token_file and tls.ca_file writes to a TLS gateway
// that requires an identity: its scraped metrics reach Prometheus, its
// tailed logs and relayed spans reach Kafka, all under its cluster.
func TestTrustAgentTokenAndCA(t *testing.T) {
	t.Parallel()
	k := testenv.Kafka(t, 2)
	prom := testenv.Prometheus(t, testenv.SinkConfig)
	p := newTrustPKI(t)
	gw := startTrustGateway(t, k.Addr, p)
	startIngester(t, k.Addr, prom.URL)

	dir := t.TempDir()
	tokenFile := filepath.Join(dir, "token")
	writeFile(t, tokenFile, trustTokenA+"\n")
	tg := startTarget(t, "tributary_trust_agent 1\n")
	pods := filepath.Join(dir, "pods")
	grpcPort, httpPort := testenv.FreePort(t), testenv.FreePort(t)
	cfg := otlpAgentConfig(t, "a", gw.URL, dir, grpcPort, httpPort, "", "")
	body, err := os.ReadFile(cfg)
	require.NoError(t, err)
	gateway := "gateway:\n  url: " + gw.URL + "\n"
	require.Contains(t, string(body), gateway)
	withAuth := strings.Replace(string(body), gateway, gateway+"  bearer_token_file: "+tokenFile+"\n  tls:\n    ca_file: "+p.ca.File+"\n", 1)
	withAuth = strings.Replace(withAuth, "  scrape_configs:\n", "  scrape_configs:\n"+staticJob("trust", tg.addr), 1)
	withAuth += podsLogs(pods, dir)
	writeFile(t, cfg, withAuth)
	app := logstest.NewWriter(t, filepath.Join(pods, "shop_cart-1_0a1b-uid", "app", "0.log"))
	startAgent(t, cfg, testenv.FreePort(t))

	app.Lines(0, 20)
	resp, err := http.Post("http://"+testenv.Addr(httpPort)+"/v1/traces", "application/x-protobuf", bytes.NewReader(marshalTraces(t, traces("", 3))))
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)

	waitFor(t, func() bool {
		res, err := prom.Query(`count_over_time(tributary_trust_agent{cluster="a"}[1m])`, time.Now())
		return err == nil && len(res) == 1 && res[0].Value >= 3
	})
	var got map[string]map[string]int
	testenv.Eventually(t, 30*time.Second, func() error {
		got = clustersIn(t, k.Addr)
		if got["tributary.logs"]["a"] == 0 || got["tributary.spans"]["a"] == 0 {
			return fmt.Errorf("not yet: %v", got)
		}
		return nil
	})
	for topic, byCluster := range got {
		require.Len(t, byCluster, 1, "%s: only cluster a: %v", topic, byCluster)
	}
	require.Zero(t, gw.metric(t, p, "tributary_gateway_auth_requests_total", map[string]string{"result": "missing"}), "the agent sent its token every time")
	require.Zero(t, gw.metric(t, p, "tributary_gateway_auth_requests_total", map[string]string{"result": "invalid"}))
	ok := gw.metric(t, p, "tributary_gateway_auth_requests_total", map[string]string{"result": "ok"})
	require.NotZero(t, ok)
	t.Logf("agent with token + CA: %v authenticated requests, 0 refused; ≥3 scrapes of cluster a in Prometheus; Kafka records by cluster: %v", ok, got)
}
