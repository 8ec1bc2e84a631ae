package integration

import (
	"fmt"
	"net/http"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/golang/snappy"
	"github.com/grafana/loki/pkg/push"
	"github.com/stretchr/testify/require"

	"github.com/tributary-io/tributary/internal/testenv"
)

// What a stock Promtail meets (issue 18, items 3 and 4), checked in the
// real Loki behind the pipeline: a batch with one line over Loki's
// max_line_size and entries Loki refuses for their timestamps (8 days old,
// 1 h ahead) is answered 400 naming the refusals — so the client knows and
// does not retry — while every valid line of the batch is stored, and
// nothing is acknowledged and then dead-lettered.
func TestLogsPartialAcceptanceReachesLoki(t *testing.T) {
	t.Parallel()
	k := testenv.Kafka(t, 2)
	loki := testenv.Loki(t)
	gw := startGateway(t, k.Addr)
	startLogIngester(t, k.Addr, loki, nil)

	now := time.Now().Truncate(time.Millisecond)
	t0 := now.Add(-5 * time.Minute)
	var valid []string
	lines := push.Stream{Labels: `{app="lines", cluster="partial"}`}
	for j := 0; j < 10; j++ {
		line := fmt.Sprintf("valid line %d", j)
		lines.Entries = append(lines.Entries, push.Entry{Timestamp: t0.Add(time.Duration(j) * time.Millisecond), Line: line})
		valid = append(valid, line)
	}
	// Promtail's batch: the long line sits among the valid ones.
	lines.Entries = append(lines.Entries[:5:5], append([]push.Entry{{Timestamp: t0.Add(5 * time.Millisecond), Line: strings.Repeat("x", 300<<10)}}, lines.Entries[5:]...)...)
	times := push.Stream{Labels: `{app="times", cluster="partial"}`, Entries: []push.Entry{
		{Timestamp: now.Add(-8 * 24 * time.Hour), Line: "eight days old"},
		{Timestamp: t0.Add(time.Second), Line: "valid time 1"},
		{Timestamp: now.Add(time.Hour), Line: "one hour ahead"},
		{Timestamp: t0.Add(2 * time.Second), Line: "valid time 2"},
	}}
	valid = append(valid, "valid time 1", "valid time 2")
	raw, err := (&push.PushRequest{Streams: []push.Stream{lines, times}}).Marshal()
	require.NoError(t, err)

	code, msg, err := pushLogs(gw.URL, snappy.Encode(nil, raw), "Content-Type", "application/x-protobuf")
	require.NoError(t, err)
	require.Equal(t, http.StatusBadRequest, code, "the client must learn that part of its batch was refused: %s", msg)
	require.Contains(t, msg, "3 of 15 entries refused", msg)

	var got []string
	require.Eventually(t, func() bool {
		streams, err := loki.QueryRange(t, `{cluster="partial"}`, now.Add(-9*24*time.Hour), now.Add(2*time.Hour), 100)
		if err != nil {
			return false
		}
		got = got[:0]
		for _, st := range streams {
			for _, e := range st.Entries {
				got = append(got, e.Line)
			}
		}
		return len(got) >= len(valid)
	}, 60*time.Second, 500*time.Millisecond, "Loki holds %d of the %d valid lines", len(got), len(valid))
	sort.Strings(got)
	sort.Strings(valid)
	require.Equal(t, valid, got, "Loki must hold exactly the valid lines of the batch")
	requireNoDeadLetters(t, k.Addr)
}
