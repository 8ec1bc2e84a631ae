package gateway

import (
	"bytes"
	"compress/gzip"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/golang/snappy"
	"github.com/grafana/loki/pkg/push"
	"github.com/stretchr/testify/require"

	"github.com/tributary-io/tributary/internal/testenv"
	"github.com/tributary-io/tributary/pkg/record"
)

func (f *fixture) push(t *testing.T, body []byte, headers ...string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, f.srv.URL+"/loki/api/v1/push", bytes.NewReader(body))
	require.NoError(t, err)
	for i := 0; i < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	msg, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, strings.TrimSpace(string(msg))
}

func TestLokiPush(t *testing.T) {
	f := newFixture(t, nil)
	// JSON, gzip, two clusters, one stream without a cluster label (header).
	js := `{"streams":[
	  {"stream":{"app":"api","cluster":"east"},"values":[["1700000000000000000","hello"],["1700000000000000001","world",{"trace_id":"abc"}]]},
	  {"stream":{"app":"db"},"values":[["1700000000000000002","from west"]]}]}`
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	_, _ = zw.Write([]byte(js))
	require.NoError(t, zw.Close())
	code, msg := f.push(t, gz.Bytes(), "Content-Type", "application/json", "Content-Encoding", "gzip",
		"X-Tributary-Cluster", "west", "X-Scope-OrgID", "t1")
	require.Equal(t, http.StatusNoContent, code, msg)

	// Snappy protobuf that needs no rewriting is forwarded as is.
	pr := push.PushRequest{Streams: []push.Stream{{
		Labels:  `{app="api", cluster="east"}`,
		Entries: []push.Entry{{Line: "third"}},
	}}}
	raw, err := pr.Marshal()
	require.NoError(t, err)
	body := snappy.Encode(nil, raw)
	code, msg = f.push(t, body, "Content-Type", "application/x-protobuf")
	require.Equal(t, http.StatusNoContent, code, msg)

	// Refusals.
	code, msg = f.push(t, []byte(`{"streams":[{"stream":{"app":"x"},"values":[["1","l"]]}]}`), "Content-Type", "application/json")
	require.Equal(t, http.StatusBadRequest, code, msg)
	require.Contains(t, msg, "cluster")
	code, msg = f.push(t, []byte("garbage"), "Content-Type", "application/x-protobuf")
	require.Equal(t, http.StatusBadRequest, code, msg)

	recs := testenv.ReadTopic(t, f.kafka.Addr, "tributary.logs")
	require.Len(t, recs, 3)
	lines := map[string][]string{}
	for _, r := range recs {
		env, err := record.Parse(r.Headers)
		require.NoError(t, err)
		require.Equal(t, string(r.Key), env.GetCluster())
		require.Equal(t, record.ContentTypePushRequest, env.GetContentType())
		raw, err := snappy.Decode(nil, r.Value)
		require.NoError(t, err)
		var got push.PushRequest
		require.NoError(t, got.Unmarshal(raw))
		for _, s := range got.Streams {
			require.Contains(t, s.Labels, `cluster="`+env.GetCluster()+`"`)
			for _, e := range s.Entries {
				lines[env.GetCluster()] = append(lines[env.GetCluster()], e.Line)
			}
		}
		if bytes.Equal(r.Value, body) {
			require.Equal(t, "", env.GetTenant())
		}
	}
	require.Equal(t, map[string][]string{"east": {"hello", "world", "third"}, "west": {"from west"}}, lines)
}
