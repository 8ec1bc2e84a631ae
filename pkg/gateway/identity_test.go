package gateway

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/golang/snappy"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/prometheus/prompb"
	"github.com/stretchr/testify/require"
	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	resourcepb "go.opentelemetry.io/proto/otlp/resource/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	grpcstatus "google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/tributary-io/tributary/internal/testenv"
	"github.com/tributary-io/tributary/pkg/auth"
	"github.com/tributary-io/tributary/pkg/record"
)

const (
	idTokenA      = "identity-test-token-a-0123456789"
	idTokenTenant = "identity-test-token-t-0123456789"
)

// newAuthFixture is a gateway requiring an identity: idTokenA is cluster
// a; idTokenTenant is cluster a, tenant team-a.
func newAuthFixture(t *testing.T, mismatch string) *fixture {
	t.Helper()
	path := filepath.Join(t.TempDir(), "tokens.yaml")
	require.NoError(t, os.WriteFile(path, []byte("tokens:\n"+
		"  - {sha256: "+auth.HashToken(idTokenA)+", cluster: a}\n"+
		"  - {sha256: "+auth.HashToken(idTokenTenant)+", cluster: a, tenant: team-a}\n"), 0o600))
	f := newFixture(t, func(c *Config) {
		c.Auth.TokensFile = path
		c.Auth.Required = true
		c.Auth.ClusterMismatch = mismatch
	})
	a, err := auth.New(f.gw.cfg.Auth, f.gw.cfg.TLS, prometheus.NewRegistry(), slog.New(slog.NewTextHandler(io.Discard, nil)))
	require.NoError(t, err)
	f.gw.WithAuth(a)
	return f
}

func bearer(token string) []string { return []string{"Authorization", "Bearer " + token} }

// metricRecords reads the metrics topic: each record's cluster, tenant
// and the cluster labels of its series.
func metricRecords(t *testing.T, f *fixture) (clusters []string, tenants []string, labels [][]string) {
	t.Helper()
	for _, m := range testenv.ReadTopic(t, f.kafka.Addr, "tributary.metrics") {
		env, err := record.Parse(m.Headers)
		require.NoError(t, err)
		clusters = append(clusters, env.GetCluster())
		tenants = append(tenants, env.GetTenant())
		raw, err := snappy.Decode(nil, m.Value)
		require.NoError(t, err)
		var wr prompb.WriteRequest
		require.NoError(t, wr.Unmarshal(raw))
		var ls []string
		for _, ts := range wr.Timeseries {
			for _, l := range ts.Labels {
				if l.Name == "cluster" {
					ls = append(ls, l.Value)
				}
			}
		}
		labels = append(labels, ls)
	}
	return clusters, tenants, labels
}

func tracesOf(cluster string) []byte {
	res := &resourcepb.Resource{}
	if cluster != "" {
		res.Attributes = []*commonpb.KeyValue{{Key: "k8s.cluster.name", Value: &commonpb.AnyValue{Value: &commonpb.AnyValue_StringValue{StringValue: cluster}}}}
	}
	now := uint64(time.Now().UnixNano())
	b, _ := proto.Marshal(&coltracepb.ExportTraceServiceRequest{ResourceSpans: []*tracepb.ResourceSpans{{Resource: res, ScopeSpans: []*tracepb.ScopeSpans{{Spans: []*tracepb.Span{{
		TraceId: []byte("0123456789abcdef"), SpanId: []byte("01234567"), Name: "s", StartTimeUnixNano: now, EndTimeUnixNano: now + 1,
	}}}}}}})
	return b
}

func TestIdentityRefuse(t *testing.T) {
	f := newAuthFixture(t, auth.MismatchRefuse)
	own := writeRequest(t, []string{"__name__", "up"}, []string{"__name__", "up", "cluster", "a", "job", "j"})
	mixed := writeRequest(t, []string{"__name__", "up", "cluster", "a"}, []string{"__name__", "up", "cluster", "b"})

	resp, msg := f.post(t, own)
	require.Equal(t, http.StatusUnauthorized, resp.StatusCode, msg)
	require.Equal(t, `Bearer realm="tributary"`, resp.Header.Get("WWW-Authenticate"))
	require.Contains(t, msg, "no identity")
	resp, msg = f.post(t, own, bearer("unknown-token-0123456789")...)
	require.Equal(t, http.StatusUnauthorized, resp.StatusCode, msg)
	require.NotContains(t, msg, "unknown-token")
	for _, path := range []string{"/metrics", "/-/healthy"} {
		r, err := http.Get(f.srv.URL + path)
		require.NoError(t, err)
		r.Body.Close()
		require.Equal(t, http.StatusOK, r.StatusCode, "%s needs no identity", path)
	}

	resp, msg = f.post(t, mixed, bearer(idTokenA)...)
	require.Equal(t, http.StatusForbidden, resp.StatusCode, msg)
	require.Equal(t, `identity of cluster "a" may not write series of cluster "b" (-auth.cluster-mismatch=refuse); nothing was written`, msg)
	resp, msg = f.post(t, own, append(bearer(idTokenA), "X-Tributary-Cluster", "b")...)
	require.Equal(t, http.StatusForbidden, resp.StatusCode, msg)
	require.Contains(t, msg, `may not write cluster "b" (X-Tributary-Cluster header`)
	resp, msg = f.post(t, own, append(bearer(idTokenTenant), "X-Scope-OrgID", "team-b")...)
	require.Equal(t, http.StatusForbidden, resp.StatusCode, msg)
	require.Contains(t, msg, `tenant "team-a" may not write tenant "team-b"`)
	code, msg := f.push(t, []byte(`{"streams":[{"stream":{"cluster":"b","app":"x"},"values":[["`+strconv.FormatInt(time.Now().UnixNano(), 10)+`","l"]]}]}`), append(bearer(idTokenA), "Content-Type", "application/json")...)
	require.Equal(t, http.StatusForbidden, code, msg)
	require.Contains(t, msg, `may not write streams of cluster "b"`)

	// OTLP/HTTP refusals are google.rpc.Status bodies like every other.
	r, body := f.postOTLP(t, tracesOf("a"))
	require.Equal(t, http.StatusUnauthorized, r.StatusCode)
	var st rpcstatus.Status
	require.NoError(t, proto.Unmarshal(body, &st))
	require.Equal(t, int32(codes.Unauthenticated), st.Code)
	r, body = f.postOTLP(t, tracesOf("b"), bearer(idTokenA)...)
	require.Equal(t, http.StatusForbidden, r.StatusCode, string(body))

	resp, msg = f.post(t, own, bearer(idTokenA)...)
	require.Equal(t, http.StatusNoContent, resp.StatusCode, msg)
	resp, msg = f.post(t, own, bearer(idTokenTenant)...)
	require.Equal(t, http.StatusNoContent, resp.StatusCode, msg)
	clusters, tenants, labels := metricRecords(t, f)
	require.Equal(t, []string{"a", "a"}, clusters, "only the identity's writes reached Kafka")
	require.Equal(t, []string{"", "team-a"}, tenants, "the identity's tenant when it names one")
	require.Equal(t, [][]string{{"a", "a"}, {"a", "a"}}, labels, "the identity's cluster on series without a label")
	spans, _ := readSpans0(t, f)
	require.Zero(t, spans)
}

// readSpans0 counts the records of the spans topic.
func readSpans0(t *testing.T, f *fixture) (int, []string) {
	var clusters []string
	msgs := testenv.ReadTopic(t, f.kafka.Addr, "tributary.spans")
	for _, m := range msgs {
		clusters = append(clusters, string(m.Key))
	}
	return len(msgs), clusters
}

func TestIdentityOverwrite(t *testing.T) {
	f := newAuthFixture(t, auth.MismatchOverwrite)
	mixed := writeRequest(t, []string{"__name__", "up", "cluster", "b"}, []string{"__name__", "up", "cluster", "a", "job", "j"}, []string{"__name__", "up", "job", "k"})
	resp, msg := f.post(t, mixed, append(bearer(idTokenTenant), "X-Tributary-Cluster", "c", "X-Scope-OrgID", "team-b")...)
	require.Equal(t, http.StatusNoContent, resp.StatusCode, msg)
	clusters, tenants, labels := metricRecords(t, f)
	require.Equal(t, []string{"a"}, clusters)
	require.Equal(t, []string{"team-a"}, tenants)
	require.Equal(t, [][]string{{"a", "a", "a"}}, labels, "every series relabelled, none doubled")

	r, body := f.postOTLP(t, tracesOf("b"), bearer(idTokenA)...)
	require.Equal(t, http.StatusOK, r.StatusCode, string(body))
	n, spanClusters := readSpans0(t, f)
	require.Equal(t, 1, n)
	require.Equal(t, []string{"a"}, spanClusters)
}

// Over gRPC: UNAUTHENTICATED before the message is read, PERMISSION_DENIED
// for another cluster, the identity's cluster for spans without one.
func TestIdentityGRPC(t *testing.T) {
	f := newAuthFixture(t, auth.MismatchRefuse)
	conn, err := grpc.NewClient(f.serveOTLPGRPC(t), grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	defer conn.Close()
	export := func(token string, body []byte) error {
		var req coltracepb.ExportTraceServiceRequest
		require.NoError(t, proto.Unmarshal(body, &req))
		ctx := context.Background()
		if token != "" {
			ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+token)
		}
		_, err := coltracepb.NewTraceServiceClient(conn).Export(ctx, &req)
		return err
	}
	require.Equal(t, codes.Unauthenticated, grpcstatus.Code(export("", tracesOf("a"))))
	require.Equal(t, codes.Unauthenticated, grpcstatus.Code(export("nope-0123456789abcdef", tracesOf("a"))))
	err = export(idTokenA, tracesOf("b"))
	require.Equal(t, codes.PermissionDenied, grpcstatus.Code(err), "%v", err)
	require.Contains(t, grpcstatus.Convert(err).Message(), `spans of cluster "b"`)
	require.NoError(t, export(idTokenA, tracesOf("")))
	n, clusters := readSpans0(t, f)
	require.Equal(t, 1, n)
	require.Equal(t, []string{"a"}, clusters)
}
