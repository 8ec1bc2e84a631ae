package loki

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"testing"
	"time"

	"github.com/golang/snappy"
	"github.com/grafana/loki/pkg/push"
	"github.com/stretchr/testify/require"

	"github.com/tributary-io/tributary/internal/testenv"
	"github.com/tributary-io/tributary/pkg/ingester"
)

// countEntries asks Loki how many entries match selector in the last 2h.
func countEntries(loki *testenv.LokiServer, selector string) (int, error) {
	q := url.Values{"query": {fmt.Sprintf("sum(count_over_time(%s[2h]))", selector)}, "time": {strconv.FormatInt(time.Now().UnixNano(), 10)}}
	resp, err := http.Get(loki.URL + "/loki/api/v1/query?" + q.Encode())
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	var body struct {
		Status string `json:"status"`
		Data   struct {
			Result []struct {
				Value [2]any `json:"value"`
			} `json:"result"`
		} `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		return 0, fmt.Errorf("query %s: HTTP %d: %w", selector, resp.StatusCode, err)
	}
	if body.Status != "success" || len(body.Data.Result) != 1 {
		return 0, fmt.Errorf("query %s: status %q, %d results", selector, body.Status, len(body.Data.Result))
	}
	s, _ := body.Data.Result[0].Value[1].(string)
	return strconv.Atoi(s)
}

// bigRecord holds streams streams of entries entries each, with lines of
// about 60 bytes; name keeps its streams apart from other records'.
func bigRecord(t *testing.T, offset int64, name string, streams, entries int, base time.Time) ingester.Record {
	var ss []push.Stream
	for s := range streams {
		st := stream(fmt.Sprintf(`{test="big", record=%q, stream="s%04d"}`, name, s))
		for e := range entries {
			st.Entries = append(st.Entries, entry(base.Add(time.Duration(e)*time.Millisecond),
				fmt.Sprintf("level=info msg=\"request served\" record=%s stream=%d entry=%d", name, s, e)))
		}
		ss = append(ss, st)
	}
	return rec(t, offset, "", ss...)
}

// TestWriteOverLokiMessageLimit: a batch that decodes to far more than
// Loki's 4 MiB gRPC message limit, and a single record that does, are
// stored completely. Sent as one push, Loki answers 500 ("grpc: received
// message larger than max"), which is retried for ever.
func TestWriteOverLokiMessageLimit(t *testing.T) {
	loki := testenv.Loki(t)
	sink := New(testConfig(loki.URL+"/loki/api/v1/push"), nil)
	base := time.Now().Add(-10 * time.Minute).Truncate(time.Millisecond)

	// 20 records of 100 streams x 50 entries: 100,000 entries in 2000
	// streams (under Loki's default 5000 streams per tenant), ~8 MiB
	// decoded.
	var batch []ingester.Record
	decoded := 0
	for r := range 20 {
		rc := bigRecord(t, int64(r), fmt.Sprintf("r%02d", r), 100, 50, base)
		n, err := snappy.DecodedLen(rc.Value)
		require.NoError(t, err)
		decoded += n
		batch = append(batch, rc)
	}
	require.Greater(t, decoded, 6<<20)
	require.NoError(t, sink.Write(context.Background(), batch))

	// One record of 1000 streams x 60 entries, ~5 MiB decoded: cut at its
	// streams.
	single := bigRecord(t, 100, "single", 1000, 60, base)
	n, err := snappy.DecodedLen(single.Value)
	require.NoError(t, err)
	require.Greater(t, n, 4<<20)
	require.NoError(t, sink.Write(context.Background(), []ingester.Record{single}))

	for selector, want := range map[string]int{
		`{test="big", record=~"r.*"}`:   100_000,
		`{test="big", record="single"}`: 60_000,
	} {
		testenv.Eventually(t, 20*time.Second, func() error {
			got, err := countEntries(loki, selector)
			if err == nil && got != want {
				err = fmt.Errorf("%s: %d entries, want %d", selector, got, want)
			}
			return err
		})
	}
}

// TestMisconfiguredURL: a Loki URL without the push path is answered 404.
// That is the sink misconfigured, not the record bad: retried (never
// dead-lettered), with the flag to check; Probe tells the same without
// writing. With the right URL, Probe succeeds and stores nothing.
func TestMisconfiguredURL(t *testing.T) {
	loki := testenv.Loki(t)
	ctx := context.Background()
	r := rec(t, 1, "", stream(`{cluster="probe"}`, entry(time.Now().Add(-time.Minute), "line")))

	wrong := New(testConfig(loki.URL), nil)
	err := wrong.Write(ctx, []ingester.Record{r})
	require.Error(t, err)
	require.False(t, ingester.IsPermanent(err), "a wrong URL must not dead-letter: %v", err)
	require.True(t, errors.Is(err, ingester.ErrMisconfigured), "%v", err)
	require.ErrorContains(t, err, "check -loki.url")
	require.ErrorContains(t, err, "404")
	t.Logf("write to %s: %v", loki.URL, err)

	err = wrong.Probe(ctx)
	require.True(t, errors.Is(err, ingester.ErrMisconfigured), "%v", err)

	var _ ingester.Prober = wrong
	right := New(testConfig(loki.URL+"/loki/api/v1/push"), nil)
	require.NoError(t, right.Probe(ctx))
	require.NoError(t, right.Write(ctx, []ingester.Record{r}))

	// Loki down: Probe fails, but not as misconfigured.
	loki.Stop()
	err = right.Probe(ctx)
	require.Error(t, err)
	require.False(t, errors.Is(err, ingester.ErrMisconfigured), "%v", err)
}
