package events

import (
	"context"
	"log/slog"
	"strconv"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
)

func storeEvent(uid string, rv, count int) *corev1.Event {
	e := newEvent(uid, time.Unix(1700000000, 0))
	e.UID, e.ResourceVersion, e.Count = types.UID(uid), strconv.Itoa(rv), int32(count)
	return e
}

func drain(q chan item) (shipped []string, rvs []string) {
	for {
		select {
		case it := <-q:
			rvs = append(rvs, it.rv)
			if it.ship {
				shipped = append(shipped, it.occ.UID+"/"+strconv.Itoa(int(it.occ.Count)))
			}
		default:
			return shipped, rvs
		}
	}
}

// A relist (the watch could not resume: 410 Gone) skips what the resume
// point says was shipped and queues the rest in resource-version order,
// then the list's own version; a list older than the resume point (another
// etcd) ships everything.
func TestStoreRelist(t *testing.T) {
	q := make(chan item, 100)
	m := newSelfMetrics(prometheus.NewRegistry())
	s := newStore(context.Background(), q, resumePoint{ResourceVersion: "100"}, "c1", m, slog.New(slog.DiscardHandler))

	// Unordered, as a list comes.
	require.NoError(t, s.Replace([]any{
		storeEvent("c", 150, 2), storeEvent("a", 90, 1), storeEvent("d", 120, 1), storeEvent("b", 100, 3),
	}, "160"))
	shipped, rvs := drain(q)
	require.Equal(t, []string{"d/1", "c/2"}, shipped)
	require.Equal(t, []string{"120", "150", "160"}, rvs)
	require.Equal(t, 2.0, testutil.ToFloat64(m.skipped.WithLabelValues("already_shipped")))
	require.Equal(t, 1.0, testutil.ToFloat64(m.relists))

	// The same list again (a relist after a dropped watch) ships nothing.
	require.NoError(t, s.Replace([]any{storeEvent("c", 150, 2), storeEvent("d", 120, 1)}, "160"))
	shipped, _ = drain(q)
	require.Empty(t, shipped)

	// The watch goes on: a new occurrence ships, an update that is not
	// one only moves the mark, a bookmark moves the mark.
	require.NoError(t, s.Update(storeEvent("c", 170, 3)))
	e := storeEvent("c", 180, 3)
	e.Labels = map[string]string{"x": "y"}
	require.NoError(t, s.Update(e))
	require.NoError(t, s.Bookmark("190"))
	shipped, rvs = drain(q)
	require.Equal(t, []string{"c/3"}, shipped)
	require.Equal(t, []string{"170", "180", "190"}, rvs)

	// A list older than the resume point: the point is from another etcd.
	require.NoError(t, s.Replace([]any{storeEvent("x", 5, 1)}, "10"))
	shipped, _ = drain(q)
	require.Equal(t, []string{"x/1"}, shipped)
}
