package integration

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tributary-io/tributary/internal/testenv"
)

// Per-cluster rates in the noisy-neighbour test: every cluster may write
// 2000 samples/s with a burst of 4000. The quiet clusters send a quarter
// of that, the noisy one ten times it.
const (
	nnRate        = 2000
	nnBurst       = 4000
	nnQuietSeries = 50 // per request, one sample each
	nnQuietEvery  = 100 * time.Millisecond
	nnNoisySeries = 500 // 40 requests/s: 20000 samples/s, 10x the rate
	nnNoisyEvery  = 25 * time.Millisecond
	nnPhase       = 4 * time.Second
)

// rateSender counts what one cluster sent and what came back.
type rateSender struct {
	cluster                        string
	sent, acked, refused, failures atomic.Int64
	mu                             sync.Mutex
	latencies                      []time.Duration
	codes                          map[int]int
}

func newRateSender(cluster string) *rateSender {
	return &rateSender{cluster: cluster, codes: map[int]int{}}
}

// send posts request k (sample k of every series of l) and records the
// outcome. The noisy sender names itself in the cluster header too, as the
// agent does, so the gateway can refuse it before reading the body.
func (s *rateSender) send(url string, l load, k int) {
	s.sent.Add(1)
	start := time.Now()
	code, _, err := post(url, l.request(s.cluster, k, k+1, false), "X-Tributary-Cluster", s.cluster)
	took := time.Since(start)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.latencies = append(s.latencies, took)
	switch {
	case err != nil:
		s.failures.Add(1)
		s.codes[0]++
	case code == http.StatusNoContent:
		s.acked.Add(1)
	case code == http.StatusTooManyRequests:
		s.refused.Add(1)
	default:
		s.failures.Add(1)
	}
	s.codes[code]++
}

func (s *rateSender) p99() time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	l := slices.Clone(s.latencies)
	slices.Sort(l)
	if len(l) == 0 {
		return 0
	}
	return l[(len(l)*99+99)/100-1]
}

// runQuiet sends one request every nnQuietEvery until ctx ends, waiting for
// each answer (a well-behaved agent).
func runQuiet(ctx context.Context, url string, l load, s *rateSender) {
	tick := time.NewTicker(nnQuietEvery)
	defer tick.Stop()
	for k := 0; ; k++ {
		s.send(url, l, k)
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// runNoisy fires a request every nnNoisyEvery (up to 8 at once) until ctx
// ends, ignoring Retry-After: a misbehaving rateSender at 10x its rate.
func runNoisy(ctx context.Context, url string, l load, s *rateSender) {
	tick := time.NewTicker(nnNoisyEvery)
	defer tick.Stop()
	slots := make(chan struct{}, 8)
	var wg sync.WaitGroup
	defer wg.Wait()
	for k := 0; ; k++ {
		select {
		case <-ctx.Done():
			return
		case slots <- struct{}{}:
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.send(url, l, k)
			<-slots
		}()
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// sinkSamples is the number of samples of l's metric and cluster in the
// sink (-1 when the query failed).
func sinkSamples(prom *testenv.PrometheusServer, l load, cluster string) int {
	at := l.t0.Add(time.Duration(l.samples) * time.Second)
	res, err := prom.Query(fmt.Sprintf(`sum(count_over_time(%s{cluster=%q}[%ds]))`, l.metric, cluster, l.samples+60), at)
	if err != nil {
		return -1
	}
	if len(res) == 0 {
		return 0
	}
	return int(res[0].Value)
}

// Noisy neighbour: one cluster sends ten times its rate limit next to four
// clusters at a quarter of theirs. The quiet clusters get every request
// acknowledged and everything into the sink, with a p99 latency compared
// to a phase without the noisy cluster; the noisy one gets 429s and no
// more than its rate and burst allow, and exactly what was acknowledged
// reaches the sink.
func TestNoisyNeighbour(t *testing.T) {
	t.Parallel()
	k := testenv.Kafka(t, 4)
	prom := testenv.Prometheus(t, testenv.SinkConfig)
	limits := filepath.Join(t.TempDir(), "limits.yaml")
	require.NoError(t, os.WriteFile(limits, fmt.Appendf(nil, "defaults:\n  samples_per_second: %d\n  samples_burst: %d\n", nnRate, nnBurst), 0o600))
	// A small in-flight budget (4 MiB): were the noisy cluster's requests
	// read and decoded while over its rate, it could crowd the others out
	// of it (503).
	gw := startGateway(t, k.Addr, "-limits.file="+limits, "-limits.max-body-bytes=1048576", "-limits.max-inflight-bytes=4194304")
	startIngester(t, k.Addr, prom.URL)
	quiet := []string{"quiet-1", "quiet-2", "quiet-3", "quiet-4"}
	maxRequests := int(nnPhase/nnNoisyEvery) + 20

	phase := func(metric string, noisy bool) (map[string]*rateSender, load) {
		l := newLoad(metric, append(slices.Clone(quiet), "noisy"), 0, maxRequests)
		senders := map[string]*rateSender{}
		ctx, cancel := context.WithTimeout(context.Background(), nnPhase)
		defer cancel()
		var wg sync.WaitGroup
		for _, c := range quiet {
			s := newRateSender(c)
			senders[c] = s
			ql := l
			ql.series = nnQuietSeries
			wg.Go(func() { runQuiet(ctx, gw.URL, ql, s) })
		}
		if noisy {
			s := newRateSender("noisy")
			senders["noisy"] = s
			nl := l
			nl.series = nnNoisySeries
			wg.Go(func() { runNoisy(ctx, gw.URL, nl, s) })
		}
		wg.Wait()
		return senders, l
	}

	base, baseLoad := phase("tributary_nn_base", false)
	withNoisy, noisyLoad := phase("tributary_nn", true)

	var baseP99, noisyP99 time.Duration
	for _, c := range quiet {
		b, n := base[c], withNoisy[c]
		t.Logf("%s: without the noisy cluster sent %d, acknowledged %d, p99 %s; with it sent %d, acknowledged %d, refused %d, p99 %s",
			c, b.sent.Load(), b.acked.Load(), b.p99(), n.sent.Load(), n.acked.Load(), n.refused.Load(), n.p99())
		for _, s := range []*rateSender{b, n} {
			require.Positive(t, s.sent.Load())
			require.Equal(t, s.sent.Load(), s.acked.Load(), "%s: every request of a cluster under its rate is acknowledged (answers %v)", c, s.codes)
		}
		baseP99, noisyP99 = max(baseP99, b.p99()), max(noisyP99, n.p99())
	}
	noisy := withNoisy["noisy"]
	noisy.mu.Lock()
	codes := fmt.Sprint(noisy.codes)
	noisy.mu.Unlock()
	t.Logf("noisy: sent %d requests (%d samples), acknowledged %d (%d samples), refused with 429 %d, other %d (answers %s), p99 %s",
		noisy.sent.Load(), noisy.sent.Load()*nnNoisySeries, noisy.acked.Load(), noisy.acked.Load()*nnNoisySeries,
		noisy.refused.Load(), noisy.failures.Load(), codes, noisy.p99())
	t.Logf("quiet clusters' p99 (worst of four): %s without the noisy cluster, %s with it", baseP99, noisyP99)

	require.Zero(t, noisy.failures.Load(), "the noisy cluster gets 204 or 429, nothing else: %s", codes)
	require.Positive(t, noisy.refused.Load())
	// The bucket admits at most its burst plus its rate over the phase
	// (plus one request's worth of slack for the phase's edges).
	admitted := noisy.acked.Load() * nnNoisySeries
	require.LessOrEqual(t, admitted, int64(nnBurst+nnRate*nnPhase.Seconds()+nnNoisySeries),
		"the noisy cluster got more than its rate and burst allow")
	require.Equal(t, noisy.refused.Load(), int64(metricValue(t, gw.URL, "tributary_gateway_refused_total",
		map[string]string{"signal": "metrics", "cluster": "noisy", "reason": "samples_per_second"})), "each 429 counted")
	// Not starved: the bound only catches queueing behind the noisy
	// cluster (many seconds), not the CPU its 40 requests/s cost the
	// gateway and this test's own load generator on a shared 2-core
	// machine: measured under the suite's load, p99 went from 56 ms to
	// 30 ms in one run and from 146 ms to 831 ms in another (and from
	// 95 ms to 504 ms with the rate check broken), so no tighter ratio
	// would be a statement about the gateway.
	require.LessOrEqual(t, noisyP99, 20*baseP99+time.Second,
		"the quiet clusters' p99 with the noisy cluster (%s) is far beyond the one without (%s)", noisyP99, baseP99)

	// Found in the sink: exactly what was acknowledged.
	want := map[string]int{"noisy": int(admitted)}
	for _, c := range quiet {
		want[c] = int(withNoisy[c].acked.Load()) * nnQuietSeries
	}
	require.Eventually(t, func() bool {
		for c, n := range want {
			if sinkSamples(prom, noisyLoad, c) != n {
				return false
			}
		}
		for _, c := range quiet {
			if sinkSamples(prom, baseLoad, c) != int(base[c].acked.Load())*nnQuietSeries {
				return false
			}
		}
		return true
	}, 90*time.Second, 500*time.Millisecond, "the sink never held exactly the acknowledged samples %v", want)
	for c, n := range want {
		t.Logf("%s: %d samples in the sink", c, n)
	}
	requireNoDeadLetters(t, k.Addr)
}
