package limits

import (
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tributary-io/tributary/pkg/reject"
)

// clock is a Limiter's time, moved by the test.
type clock struct{ t time.Time }

func (c *clock) now() time.Time          { return c.t }
func (c *clock) advance(d time.Duration) { c.t = c.t.Add(d) }
func newTestLimiter(max int) (*Limiter, *clock) {
	c := &clock{t: time.Unix(1_700_000_000, 0)}
	l := NewLimiter(max)
	l.now = c.now
	return l, c
}

func TestBucketMath(t *testing.T) {
	l, clk := newTestLimiter(10)
	l.SetFile(&File{Clusters: map[string]Cluster{"a": {SamplesPerSecond: 100, SamplesBurst: 300}}})
	take := func(n int) error { return l.Take(Samples, []Cost{{Cluster: "a", N: n}}) }

	require.NoError(t, take(300), "a new bucket starts full")
	err := take(1)
	e, ok := AsError(err)
	require.True(t, ok, "%v", err)
	require.Equal(t, "samples_per_second", e.Limit)
	require.Equal(t, time.Second, e.RetryAfter, "10 ms until one token: Retry-After is at least 1 s")
	status, _ := reject.Status(err)
	require.Equal(t, http.StatusTooManyRequests, status)

	clk.advance(1500 * time.Millisecond) // +150 tokens
	require.NoError(t, take(150))
	require.Error(t, take(1), "150 tokens were in the bucket, all taken")

	// 250 needed, 0 held, 100/s: 2.5 s, rounded up to 3.
	e, _ = AsError(take(250))
	require.Equal(t, 3*time.Second, e.RetryAfter)

	clk.advance(time.Hour)
	require.NoError(t, take(300), "refilled to the burst, not beyond")
	require.Error(t, take(1))

	// Larger than the burst: 413 naming the burst, whatever the bucket holds.
	clk.advance(time.Hour)
	err = take(301)
	e, _ = AsError(err)
	require.Equal(t, "samples_burst", e.Limit)
	require.Zero(t, e.RetryAfter)
	status, _ = reject.Status(err)
	require.Equal(t, http.StatusRequestEntityTooLarge, status)
	require.Contains(t, err.Error(), "samples_burst=300")
	require.NoError(t, take(300), "the refused request took nothing")
}

func TestTakeIsAllOrNothingAcrossClusters(t *testing.T) {
	l, _ := newTestLimiter(10)
	l.SetFile(&File{Defaults: Cluster{SpansPerSecond: 1, SpansBurst: 10}})
	require.NoError(t, l.Take(Spans, []Cost{{"a", 4}, {"b", 10}}))
	for _, over := range []Cost{{"b", 1}, {"b", 11}} { // over b's rate, over its burst
		err := l.Take(Spans, []Cost{{"a", 6}, over})
		e, _ := AsError(err)
		require.Equal(t, "b", e.Cluster)
	}
	require.NoError(t, l.Take(Spans, []Cost{{"a", 6}}), "a's 6 were given back each time b refused the request")
}

func TestDefaultBurstAndUnlimited(t *testing.T) {
	l, _ := newTestLimiter(10)
	l.SetFile(&File{
		Defaults: Cluster{LogBytesPerSecond: 1000},
		Clusters: map[string]Cluster{"free": {LogBytesPerSecond: -1}},
	})
	rate, burst := l.For("x").Rate(LogBytes)
	require.Equal(t, 1000.0, rate)
	require.Equal(t, 1000*DefaultBurstSeconds, burst)
	require.NoError(t, l.Take(LogBytes, []Cost{{"x", 10000}}))
	require.Error(t, l.Take(LogBytes, []Cost{{"x", 1}}))
	for range 100 {
		require.NoError(t, l.Take(LogBytes, []Cost{{"free", 1 << 30}}), "a negative rate lifts the defaults' rate")
	}
	require.NoError(t, l.Take(Samples, []Cost{{"x", 1 << 30}}), "no samples rate set anywhere")
}

func TestPrecedenceTokensOverFileOverDefaults(t *testing.T) {
	l, _ := newTestLimiter(10)
	l.SetFile(&File{
		Defaults: Cluster{SamplesPerSecond: 10, MaxSeriesPerRequest: 100, MaxLineBytes: 1000},
		Clusters: map[string]Cluster{"a": {SamplesPerSecond: 20, MaxSeriesPerRequest: 200}},
	})
	l.SetTokens(map[string]Cluster{"a": {SamplesPerSecond: 30}, "b": {MaxLineBytes: 5}})
	require.Equal(t, Cluster{SamplesPerSecond: 30, MaxSeriesPerRequest: 200, MaxLineBytes: 1000}, l.For("a"))
	require.Equal(t, Cluster{SamplesPerSecond: 10, MaxSeriesPerRequest: 100, MaxLineBytes: 5}, l.For("b"))
	require.Equal(t, Cluster{SamplesPerSecond: 10, MaxSeriesPerRequest: 100, MaxLineBytes: 1000}, l.For("other"))
	l.SetTokens(nil)
	require.Equal(t, 20.0, l.For("a").SamplesPerSecond, "tokens reloaded without a's limits")
}

func TestAdmitRefusesAnEmptyBucketBeforeTheBody(t *testing.T) {
	l, clk := newTestLimiter(10)
	l.SetFile(&File{Defaults: Cluster{SamplesPerSecond: 100, SamplesBurst: 1000}})
	require.NoError(t, l.Admit(Samples, "a"))
	require.NoError(t, l.Take(Samples, []Cost{{"a", 900}}))
	require.NoError(t, l.Admit(Samples, "a"), "100 tokens left")
	require.Error(t, l.Take(Samples, []Cost{{"a", 500}}))
	// The last refused request needed 500: until the bucket holds that
	// much, the next is refused before its body is read.
	err := l.Admit(Samples, "a")
	e, ok := AsError(err)
	require.True(t, ok, "%v", err)
	require.Equal(t, 4*time.Second, e.RetryAfter, "400 tokens short at 100/s")
	clk.advance(4 * time.Second)
	require.NoError(t, l.Admit(Samples, "a"))
	require.NoError(t, l.Admit(Samples, "b"), "another cluster's bucket is its own")
}

func TestBucketsBounded(t *testing.T) {
	l, clk := newTestLimiter(5)
	l.SetFile(&File{Defaults: Cluster{SpansPerSecond: 1, SpansBurst: 2}, Clusters: map[string]Cluster{"named": {SpansPerSecond: 1, SpansBurst: 2}}})
	limit := 5 * int(numSignals)
	for i := range limit {
		require.NoError(t, l.Take(Spans, []Cost{{Cluster: string(rune('A' + i)), N: 1}}), "cluster %d", i)
	}
	require.Equal(t, limit, l.Buckets())
	// Every bucket is in use (none refilled): further clusters share the
	// overflow bucket.
	require.NoError(t, l.Take(Spans, []Cost{{"new1", 2}}))
	require.Error(t, l.Take(Spans, []Cost{{"new2", 1}}), "clusters beyond the bound share one bucket")
	require.Equal(t, limit, l.Buckets())
	require.NoError(t, l.Take(Spans, []Cost{{"named", 2}}), "a named cluster always has its own bucket")
	require.Equal(t, limit+1, l.Buckets())
	// Once the buckets have refilled they are dropped for new clusters.
	clk.advance(10 * time.Second)
	require.NoError(t, l.Take(Spans, []Cost{{"new3", 2}}))
	require.NoError(t, l.Take(Spans, []Cost{{"new4", 2}}), "new4 has a bucket of its own again")
	require.LessOrEqual(t, l.Buckets(), limit)
}

func TestReloadChangesBucketParameters(t *testing.T) {
	l, clk := newTestLimiter(10)
	l.SetFile(&File{Defaults: Cluster{SamplesPerSecond: 10, SamplesBurst: 100}})
	require.NoError(t, l.Take(Samples, []Cost{{"a", 100}}))
	l.SetFile(&File{Defaults: Cluster{SamplesPerSecond: 1000, SamplesBurst: 50}})
	clk.advance(time.Second) // 10/s until now: the old rate applies to the time before
	require.NoError(t, l.Take(Samples, []Cost{{"a", 10}}))
	require.Error(t, l.Take(Samples, []Cost{{"a", 1}}))
	clk.advance(time.Second)
	require.NoError(t, l.Take(Samples, []Cost{{"a", 50}}), "1000/s, capped at the new burst of 50")
	e, _ := AsError(l.Take(Samples, []Cost{{"a", 51}}))
	require.Equal(t, "samples_burst", e.Limit)
}
