package gateway

import (
	"bytes"
	"compress/gzip"
	"context"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/golang/snappy"
	"github.com/grafana/loki/pkg/push"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/plog"
	"go.opentelemetry.io/collector/pdata/plog/plogotlp"
	collogspb "go.opentelemetry.io/proto/otlp/collector/logs/v1"
	"google.golang.org/grpc"
	grpccodes "google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	grpcstatus "google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/tributary-io/tributary/internal/testenv"
)

// loggedEntry is one entry of the logs topic.
type loggedEntry struct {
	key, labels, line string
	ts                time.Time
	meta              map[string]string
}

func readLogEntries(t *testing.T, f *fixture) []loggedEntry {
	t.Helper()
	var out []loggedEntry
	for _, r := range testenv.ReadTopic(t, f.kafka.Addr, "tributary.logs") {
		raw, err := snappy.Decode(nil, r.Value)
		require.NoError(t, err)
		var req push.PushRequest
		require.NoError(t, req.Unmarshal(raw))
		for _, s := range req.Streams {
			for _, e := range s.Entries {
				meta := map[string]string{}
				for _, m := range e.StructuredMetadata {
					meta[m.Name] = m.Value
				}
				out = append(out, loggedEntry{key: string(r.Key), labels: s.Labels, line: e.Line, ts: e.Timestamp, meta: meta})
			}
		}
	}
	return out
}

// richLogs is a request with what Loki's OTLP mapping treats apart: index
// and other resource attributes, a nested map, scope name, version and
// attributes, severity, trace context, flags, a map body, a number body,
// names to normalize, and a record with only an observed timestamp.
func richLogs(now time.Time) plog.Logs {
	ld := plog.NewLogs()
	rl := ld.ResourceLogs().AppendEmpty()
	ra := rl.Resource().Attributes()
	ra.PutStr("service.name", "probe-svc")
	ra.PutStr("k8s.cluster.name", "c1")
	ra.PutStr("k8s.namespace.name", "ns1")
	ra.PutStr("deployment.environment.name", "prod")
	ra.PutStr("host.name", "h1")
	ra.PutInt("custom.int", 42)
	ra.PutEmptyMap("nested").PutStr("a.b", "x")
	sl := rl.ScopeLogs().AppendEmpty()
	sl.Scope().SetName("my.scope")
	sl.Scope().SetVersion("1.2.3")
	sl.Scope().Attributes().PutStr("scope.attr", "sv")
	lr := sl.LogRecords().AppendEmpty()
	lr.SetTimestamp(pcommon.NewTimestampFromTime(now))
	lr.SetObservedTimestamp(pcommon.NewTimestampFromTime(now.Add(time.Millisecond)))
	lr.Body().SetStr("hello world")
	lr.SetSeverityText("WARN")
	lr.SetSeverityNumber(plog.SeverityNumberWarn)
	lr.SetTraceID([16]byte{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16})
	lr.SetSpanID([8]byte{1, 2, 3, 4, 5, 6, 7, 8})
	lr.SetFlags(1)
	lr.SetDroppedAttributesCount(3)
	la := lr.Attributes()
	la.PutStr("http.method", "GET")
	la.PutBool("ok", true)
	la.PutEmptySlice("list").AppendEmpty().SetStr("e1")
	la.PutEmptyMap("user").PutStr("id", "u1")
	la.PutEmptyBytes("raw").FromRaw([]byte{0xde, 0xad})
	lr2 := sl.LogRecords().AppendEmpty()
	lr2.SetObservedTimestamp(pcommon.NewTimestampFromTime(now.Add(2 * time.Millisecond)))
	bm := lr2.Body().SetEmptyMap()
	bm.PutStr("msg", "structured")
	bm.PutInt("n", 3)
	lr3 := sl.LogRecords().AppendEmpty()
	lr3.SetTimestamp(pcommon.NewTimestampFromTime(now.Add(3 * time.Millisecond)))
	lr3.Body().SetInt(12)
	lr3.Attributes().PutStr("1bad-name", "v")
	lr3.Attributes().PutStr("a-b/c", "v")
	return ld
}

// The mapping is the one the real Loki 3.7's /otlp/v1/logs applied to
// richLogs (its stream labels and structured metadata, queried back), plus
// the cluster label.
func TestOTLPLogsLokiMapping(t *testing.T) {
	f := newFixture(t, nil)
	now := time.Now().Truncate(time.Millisecond)
	body, err := plogotlp.NewExportRequestFromLogs(richLogs(now)).MarshalProto()
	require.NoError(t, err)
	code, resp := f.postOTLPPath(t, "/v1/logs", ctProtobuf, body)
	require.Equal(t, http.StatusOK, code, string(resp))

	// The same as OTLP/JSON with gzip.
	jsonBody, err := plogotlp.NewExportRequestFromLogs(richLogs(now.Add(time.Second))).MarshalJSON()
	require.NoError(t, err)
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write(jsonBody)
	require.NoError(t, zw.Close())
	code, resp = f.postOTLPPath(t, "/v1/logs", ctJSON, gz.Bytes(), "Content-Encoding", "gzip")
	require.Equal(t, http.StatusOK, code, string(resp))
	require.JSONEq(t, `{}`, string(resp))

	entries := readLogEntries(t, f)
	require.Len(t, entries, 6)
	labels := `{cluster="c1", deployment_environment_name="prod", k8s_cluster_name="c1", k8s_namespace_name="ns1", service_name="probe-svc"}`
	resMeta := map[string]string{"custom_int": "42", "host_name": "h1", "nested_a_b": "x", "scope_attr": "sv", "scope_name": "my.scope", "scope_version": "1.2.3"}
	with := func(extra map[string]string) map[string]string {
		m := map[string]string{}
		for k, v := range resMeta {
			m[k] = v
		}
		for k, v := range extra {
			m[k] = v
		}
		return m
	}
	for i, shift := range []time.Duration{0, time.Second} {
		e := entries[3*i : 3*i+3]
		t0 := now.Add(shift)
		for _, x := range e {
			require.Equal(t, "c1", x.key)
			require.Equal(t, labels, x.labels)
		}
		require.Equal(t, "hello world", e[0].line)
		require.True(t, t0.Equal(e[0].ts))
		require.Equal(t, with(map[string]string{
			"dropped_attributes_count": "3", "flags": "1", "http_method": "GET", "list": `["e1"]`, "ok": "true", "raw": "3q0=",
			"observed_timestamp": itoa(t0.Add(time.Millisecond).UnixNano()), "severity_number": "13", "severity_text": "WARN",
			"span_id": "0102030405060708", "trace_id": "0102030405060708090a0b0c0d0e0f10", "user_id": "u1",
		}), e[0].meta)
		require.Equal(t, `{"msg":"structured","n":3}`, e[1].line)
		require.True(t, t0.Add(2*time.Millisecond).Equal(e[1].ts), "observed timestamp stands in")
		require.Equal(t, resMeta, e[1].meta)
		require.Equal(t, "12", e[2].line)
		require.Equal(t, with(map[string]string{"key_1bad_name": "v", "a_b_c": "v"}), e[2].meta)
	}
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

func metadataCtx(kv ...string) context.Context {
	return metadata.AppendToOutgoingContext(context.Background(), kv...)
}

// One request of three resources: by k8s.cluster.name, by the cluster
// header, and with neither (refused, counted in the partial success);
// one record per cluster. Over gRPC, a request with nothing valid is
// INVALID_ARGUMENT.
func TestOTLPLogsSplitByClusterPartialSuccess(t *testing.T) {
	f := newFixture(t, nil)
	ld := plog.NewLogs()
	add := func(cluster string, lines ...string) {
		rl := ld.ResourceLogs().AppendEmpty()
		if cluster != "" {
			rl.Resource().Attributes().PutStr("k8s.cluster.name", cluster)
		}
		for _, l := range lines {
			r := rl.ScopeLogs().AppendEmpty().LogRecords().AppendEmpty()
			r.SetTimestamp(pcommon.NewTimestampFromTime(time.Now()))
			r.Body().SetStr(l)
		}
	}
	add("a", "a1")
	add("b", "b1", "b2")
	add("", "x1", "x2", "x3")
	body, err := plogotlp.NewExportRequestFromLogs(ld).MarshalProto()
	require.NoError(t, err)
	code, resp := f.postOTLPPath(t, "/v1/logs", ctProtobuf, body)
	require.Equal(t, http.StatusOK, code, string(resp))
	var r collogspb.ExportLogsServiceResponse
	require.NoError(t, proto.Unmarshal(resp, &r))
	require.Equal(t, int64(3), r.GetPartialSuccess().GetRejectedLogRecords())
	require.Contains(t, r.GetPartialSuccess().GetErrorMessage(), "without k8s.cluster.name")
	byKey := map[string][]string{}
	for _, e := range readLogEntries(t, f) {
		byKey[e.key] = append(byKey[e.key], e.line)
	}
	require.Equal(t, map[string][]string{"a": {"a1"}, "b": {"b1", "b2"}}, byKey)

	conn, err := grpc.NewClient(f.serveOTLPGRPC(t), grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	defer conn.Close()
	only := plog.NewLogs()
	only.ResourceLogs().AppendEmpty().ScopeLogs().AppendEmpty().LogRecords().AppendEmpty().Body().SetStr("nobody's")
	req := &collogspb.ExportLogsServiceRequest{}
	b, err := plogotlp.NewExportRequestFromLogs(only).MarshalProto()
	require.NoError(t, err)
	require.NoError(t, proto.Unmarshal(b, req))
	_, err = collogspb.NewLogsServiceClient(conn).Export(context.Background(), req)
	require.Equal(t, grpccodes.InvalidArgument, grpcstatus.Code(err), "%v", err)
	// With the cluster header as gRPC metadata the same request is taken.
	_, err = collogspb.NewLogsServiceClient(conn).Export(metadataCtx("x-tributary-cluster", "hdr"), req)
	require.NoError(t, err)
}
