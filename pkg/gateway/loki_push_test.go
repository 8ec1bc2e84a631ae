package gateway

import (
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

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
	// Recent timestamps, so that no entry age limit can refuse them.
	now := time.Now().Truncate(time.Millisecond)
	ns := func(d int) string { return strconv.FormatInt(now.Add(time.Duration(d)).UnixNano(), 10) }
	// JSON, gzip, two clusters, one stream without a cluster label (header).
	js := `{"streams":[
	  {"stream":{"app":"api","cluster":"east"},"values":[["` + ns(0) + `","hello"],["` + ns(1) + `","world",{"trace_id":"abc"}]]},
	  {"stream":{"app":"db"},"values":[["` + ns(2) + `","from west"]]}]}`
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	_, _ = zw.Write([]byte(js))
	require.NoError(t, zw.Close())
	code, msg := f.push(t, gz.Bytes(), "Content-Type", "application/json", "Content-Encoding", "gzip",
		"X-Tributary-Cluster", "west", "X-Scope-OrgID", "t1")
	require.Equal(t, http.StatusNoContent, code, msg)

	// Snappy protobuf that needs no rewriting is forwarded as is. Its snappy
	// block is made of literals only, which no encoder would produce for this
	// repetitive input: a gateway that decodes and re-encodes cannot send
	// these bytes by accident.
	pr := push.PushRequest{Streams: []push.Stream{{
		Labels:  `{app="api", cluster="east", pad="` + strings.Repeat("p", 100) + `"}`,
		Entries: []push.Entry{{Timestamp: now.Add(3), Line: "third"}},
	}}}
	raw, err := pr.Marshal()
	require.NoError(t, err)
	body := snappyLiterals(raw)
	require.NotEqual(t, snappy.Encode(nil, raw), body)
	code, msg = f.push(t, body, "Content-Type", "application/x-protobuf")
	require.Equal(t, http.StatusNoContent, code, msg)

	// Refusals.
	code, msg = f.push(t, []byte(`{"streams":[{"stream":{"app":"x"},"values":[["`+ns(4)+`","l"]]}]}`), "Content-Type", "application/json")
	require.Equal(t, http.StatusBadRequest, code, msg)
	require.Contains(t, msg, "cluster")
	code, msg = f.push(t, []byte("garbage"), "Content-Type", "application/x-protobuf")
	require.Equal(t, http.StatusBadRequest, code, msg)

	recs := testenv.ReadTopic(t, f.kafka.Addr, "tributary.logs")
	require.Len(t, recs, 3)
	lines := map[string][]string{}
	forwarded := 0
	for _, r := range recs {
		env, err := record.Parse(r.Headers)
		require.NoError(t, err)
		require.Equal(t, string(r.Key), env.GetCluster())
		require.Equal(t, record.ContentTypePushRequest, env.GetContentType())
		raw, err := snappy.Decode(nil, r.Value)
		require.NoError(t, err)
		var got push.PushRequest
		require.NoError(t, got.Unmarshal(raw))
		// The protobuf push needed no rewriting: its record must be the
		// request body exactly as received.
		if got.Streams[0].Entries[0].Line == "third" {
			require.Equal(t, body, r.Value, "protobuf push with one cluster must be forwarded as received")
			require.Equal(t, "", env.GetTenant())
			forwarded++
		}
		for _, s := range got.Streams {
			require.Contains(t, s.Labels, `cluster="`+env.GetCluster()+`"`)
			for _, e := range s.Entries {
				lines[env.GetCluster()] = append(lines[env.GetCluster()], e.Line)
			}
		}
	}
	require.Equal(t, 1, forwarded, "exactly one record holds the protobuf push")
	require.Equal(t, map[string][]string{"east": {"hello", "world", "third"}, "west": {"from west"}}, lines)
}

// snappyLiterals encodes b as a valid snappy block of literal elements only,
// at most 60 bytes each.
func snappyLiterals(b []byte) []byte {
	out := binary.AppendUvarint(nil, uint64(len(b)))
	for len(b) > 0 {
		n := min(len(b), 60)
		out = append(out, byte(n-1)<<2)
		out = append(out, b[:n]...)
		b = b[n:]
	}
	return out
}
