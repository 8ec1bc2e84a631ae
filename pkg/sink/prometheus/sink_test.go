package prometheus

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/golang/snappy"
	"github.com/prometheus/prometheus/prompb"
	"github.com/stretchr/testify/require"

	"github.com/tributary-io/tributary/pkg/ingester"
	"github.com/tributary-io/tributary/pkg/sink/snappypush"
	recordpb "github.com/tributary-io/tributary/proto/record/v1"
)

func testRecord(t testing.TB, offset int64, tenant string, series ...string) ingester.Record {
	req := &prompb.WriteRequest{}
	for _, s := range series {
		req.Timeseries = append(req.Timeseries, prompb.TimeSeries{
			Labels:  []prompb.Label{{Name: "__name__", Value: "m"}, {Name: "cluster", Value: "c"}, {Name: "s", Value: s}},
			Samples: []prompb.Sample{{Value: float64(offset), Timestamp: 1000 + offset}},
		})
	}
	raw, err := req.Marshal()
	require.NoError(t, err)
	return ingester.Record{Offset: offset, Value: snappy.Encode(nil, raw),
		Envelope: &recordpb.Envelope{Tenant: tenant, Items: uint64(len(series))}}
}

type captured struct {
	header http.Header
	req    prompb.WriteRequest
}

func server(t *testing.T, status int, got *captured) *httptest.Server {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		raw, err := snappy.Decode(nil, body)
		require.NoError(t, err)
		got.header = r.Header.Clone()
		require.NoError(t, got.req.Unmarshal(raw))
		w.WriteHeader(status)
		fmt.Fprint(w, "answer")
	}))
	t.Cleanup(srv.Close)
	return srv
}

// A batch becomes one remote-write request: the records' series in record
// order, with the tenant and auth headers.
func TestWriteConcatenatesRecords(t *testing.T) {
	var got captured
	srv := server(t, http.StatusNoContent, &got)
	s := New(Config{Config: snappypush.Config{URL: srv.URL, Timeout: 5 * time.Second, BearerToken: "tok", MaxDecodedBytes: 1 << 20, MaxRequestDecodedBytes: 16 << 20}, TenantHeader: "X-Scope-OrgID"}, nil)
	err := s.Write(context.Background(), []ingester.Record{
		testRecord(t, 1, "team", "a", "b"),
		testRecord(t, 2, "team", "a"),
		testRecord(t, 3, "team", "c"),
	})
	require.NoError(t, err)
	var order []string
	for _, ts := range got.req.Timeseries {
		order = append(order, fmt.Sprintf("%s@%d", ts.Labels[2].Value, ts.Samples[0].Timestamp))
	}
	require.Equal(t, []string{"a@1001", "b@1001", "a@1002", "c@1003"}, order)
	require.Equal(t, "team", got.header.Get("X-Scope-OrgID"))
	require.Equal(t, "Bearer tok", got.header.Get("Authorization"))
	require.Equal(t, "snappy", got.header.Get("Content-Encoding"))
	require.Equal(t, "0.1.0", got.header.Get("X-Prometheus-Remote-Write-Version"))
}

func TestWriteClassifies(t *testing.T) {
	for _, tc := range []struct {
		status    int
		permanent bool
	}{{400, true}, {500, false}, {429, false}} {
		t.Run(fmt.Sprint(tc.status), func(t *testing.T) {
			var got captured
			srv := server(t, tc.status, &got)
			s := New(Config{Config: snappypush.Config{URL: srv.URL, Timeout: 5 * time.Second, MaxDecodedBytes: 1 << 20, MaxRequestDecodedBytes: 16 << 20}}, nil)
			err := s.Write(context.Background(), []ingester.Record{testRecord(t, 1, "", "a")})
			require.Error(t, err)
			require.Equal(t, tc.permanent, ingester.IsPermanent(err))
			require.Contains(t, err.Error(), "answer")
		})
	}
	// A record that is not snappy is refused without a request.
	s := New(Config{Config: snappypush.Config{URL: "http://127.0.0.1:1", Timeout: time.Second, MaxDecodedBytes: 1 << 20, MaxRequestDecodedBytes: 16 << 20}}, nil)
	err := s.Write(context.Background(), []ingester.Record{{Value: []byte("not snappy"), Envelope: &recordpb.Envelope{}}})
	require.True(t, ingester.IsPermanent(err), "%v", err)
}

// BenchmarkWrite: 100 records of 20 series each → one request, to a server
// that discards.
func BenchmarkWrite(b *testing.B) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.WriteHeader(http.StatusNoContent)
	}))
	defer srv.Close()
	s := New(Config{Config: snappypush.Config{URL: srv.URL, Timeout: 5 * time.Second, MaxDecodedBytes: 1 << 20, MaxRequestDecodedBytes: 16 << 20}}, nil)
	var recs []ingester.Record
	names := make([]string, 20)
	for i := range names {
		names[i] = fmt.Sprint("series-", i)
	}
	for i := 0; i < 100; i++ {
		recs = append(recs, testRecord(b, int64(i), "", names...))
	}
	b.ReportAllocs()
	for b.Loop() {
		if err := s.Write(context.Background(), recs); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(2000*b.N)/b.Elapsed().Seconds(), "samples/s")
}
