package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"testing"
	"time"

	"github.com/golang/snappy"
	"github.com/prometheus/prometheus/prompb"
	"github.com/stretchr/testify/require"

	"github.com/tributary-io/tributary/internal/testenv"
	"github.com/tributary-io/tributary/pkg/ingester"
	"github.com/tributary-io/tributary/pkg/shard"
	sinkprom "github.com/tributary-io/tributary/pkg/sink/prometheus"
	"github.com/tributary-io/tributary/pkg/sink/snappypush"
)

// itemsRate is one gateway's counted items per second of one cluster.
type itemsRate struct {
	gateway, signal, cluster string
	perSecond                float64
}

// pushItems writes tributary_gateway_items_received_total counters as the
// gateways would have exported them: each series rising at its rate, a
// sample every 15s over 10 minutes ending at the time returned, through
// remote write (the ingester's Prometheus sink).
func pushItems(t *testing.T, promURL string, rates []itemsRate) time.Time {
	t.Helper()
	end := time.Now().Add(-time.Minute).Truncate(time.Second)
	req := &prompb.WriteRequest{}
	for _, r := range rates {
		ts := prompb.TimeSeries{Labels: []prompb.Label{
			{Name: "__name__", Value: "tributary_gateway_items_received_total"},
			{Name: "cluster", Value: r.cluster},
			{Name: "instance", Value: r.gateway},
			{Name: "job", Value: "gateway"},
			{Name: "signal", Value: r.signal},
		}}
		for s := 0; s <= 600; s += 15 {
			ts.Samples = append(ts.Samples, prompb.Sample{
				Timestamp: end.Add(time.Duration(s-600) * time.Second).UnixMilli(),
				Value:     r.perSecond * float64(s),
			})
		}
		req.Timeseries = append(req.Timeseries, ts)
	}
	raw, err := req.Marshal()
	require.NoError(t, err)
	sink := sinkprom.New(sinkprom.Config{Config: snappypush.Config{URL: promURL + "/api/v1/write",
		Timeout: 10 * time.Second, MaxDecodedBytes: 64 << 20, MaxRequestDecodedBytes: 16 << 20}}, nil)
	require.NoError(t, sink.Write(context.Background(), []ingester.Record{{Value: snappy.Encode(nil, raw)}}))
	return end
}

// runShards runs `gateway shards` with args and returns its exit code,
// stdout and stderr.
func runShards(args ...string) (int, string, string) {
	var stdout, stderr bytes.Buffer
	code := shardsMain(args, &stdout, &stderr)
	return code, stdout.String(), stderr.String()
}

// parseTable reads the suggested table as the gateways would and checks
// that it fits n partitions.
func parseTable(t *testing.T, text string, n int32) *shard.Table {
	t.Helper()
	tb, err := shard.Parse([]byte(text))
	require.NoError(t, err, text)
	require.NoError(t, tb.Check("test", n), text)
	return tb
}

// TestShardsSuggest: a real Prometheus holds the gateways' counters of
// one hot cluster, a warm one, many small ones and the _other overflow;
// the command's table spreads exactly the hot and warm ones, with the k
// README's recipe gives, and reads back through pkg/shard.
func TestShardsSuggest(t *testing.T) {
	prom := testenv.Prometheus(t, testenv.SinkConfig)
	// metrics: total 1060/s over 12 partitions, a mean partition 88.3/s.
	// hot 200 (2.26 mean partitions: k = ceil(2.26*3) = 7), only on gw-a,
	// so its share is right only when the gateways are summed; warm 40
	// (0.45: k 2); c-00..c-37 20 each (0.23: not spread); _other 60
	// (0.68, would be k 3: it is no cluster).
	rates := []itemsRate{{"gw-a", "metrics", "hot", 200}, {"gw-a", "metrics", "_other", 60}}
	for _, gw := range []string{"gw-a", "gw-b"} {
		rates = append(rates, itemsRate{gw, "metrics", "warm", 20})
		for i := range 38 {
			rates = append(rates, itemsRate{gw, "metrics", fmt.Sprintf("c-%02d", i), 10})
		}
	}
	// logs: total 1000/s, a mean partition 83.3/s: warm 300 (3.6: k 11),
	// hot 40 (0.48: k 2, below its 7 of metrics), c-00..c-09 66 each
	// (0.79: k 3).
	rates = append(rates, itemsRate{"gw-b", "logs", "warm", 300}, itemsRate{"gw-b", "logs", "hot", 40})
	for i := range 10 {
		rates = append(rates, itemsRate{"gw-a", "logs", fmt.Sprintf("c-%02d", i), 66})
	}
	pushedAt := pushItems(t, prom.URL, rates)
	at := pushedAt.Format(time.RFC3339)
	base := []string{"suggest", "-prometheus.url=" + prom.URL, "-partitions=12", "-window=5m", "-time=" + at}

	t.Run("metrics", func(t *testing.T) {
		code, out, errs := runShards(base...)
		require.Equal(t, 0, code, errs)
		tb := parseTable(t, out, 12)
		require.Equal(t, []string{"hot", "warm"}, tb.Clusters(), out)
		require.Equal(t, 7, tb.Shards("hot"), out)
		require.Equal(t, 2, tb.Shards("warm"), out)
		require.Contains(t, out, `#   "hot": metrics 2.26 -> 7`)
		require.Contains(t, out, `at `+at)
		require.Contains(t, errs, `counted under cluster="_other"`)
	})

	t.Run("all signals: k the largest", func(t *testing.T) {
		code, out, errs := runShards(append(base, "-signal=all")...)
		require.Equal(t, 0, code, errs)
		tb := parseTable(t, out, 12)
		require.Equal(t, 7, tb.Shards("hot"), out)
		require.Equal(t, 11, tb.Shards("warm"), out)
		require.Equal(t, 3, tb.Shards("c-00"), out)
		require.Contains(t, out, `#   "warm": metrics 0.45, logs 3.60 -> 11`)
		require.Contains(t, errs, "no spans items in the window")
	})

	t.Run("current", func(t *testing.T) {
		code, out, errs := runShards(base...)
		require.Equal(t, 0, code, errs)
		fresh := parseTable(t, out, 12)
		hotFirst := fresh.Partition(shard.HashXX, "hot", 0, 12)
		// hot: 8 where 7 is suggested (differs little: kept); warm: 5
		// where 2 is (changed); gone: no load left (changed).
		dir := t.TempDir()
		current := filepath.Join(dir, "shards.yaml")
		require.NoError(t, os.WriteFile(current, fmt.Appendf(nil,
			"clusters:\n  hot: {shards: 8, first_partition: %d}\n  warm: {shards: 5, first_partition: %d}\n  gone: 4\n",
			hotFirst, fresh.Partition(shard.HashXX, "warm", 0, 12)), 0o644))
		output := filepath.Join(dir, "new.yaml")
		code, out, errs = runShards(append(base, "-current="+current, "-o="+output)...)
		require.Equal(t, 0, code, errs)
		require.Empty(t, out, "-o writes the file, not stdout")
		entries, err := os.ReadDir(dir)
		require.NoError(t, err)
		require.Len(t, entries, 2, "no temporary file left next to -o")
		text, err := os.ReadFile(output)
		require.NoError(t, err)
		tb := parseTable(t, string(text), 12)
		require.Equal(t, []string{"hot", "warm"}, tb.Clusters(), string(text))
		require.Equal(t, 8, tb.Shards("hot"), "hot's line in force is kept:\n%s", text)
		require.Equal(t, hotFirst, tb.Partition(shard.HashXX, "hot", 0, 12))
		require.Equal(t, 2, tb.Shards("warm"), string(text))
		require.Contains(t, errs, fmt.Sprintf(`kept "hot": 8 partitions from %d in force, the load alone suggests k 7`, hotFirst))
		require.Contains(t, errs, fmt.Sprintf(`"warm": 5 partitions from %d -> 2 partitions from %d: 60%% of its series move`,
			tb.Partition(shard.HashXX, "warm", 0, 12), tb.Partition(shard.HashXX, "warm", 0, 12)))
		require.Contains(t, errs, fmt.Sprintf(`"gone": 4 partitions from %d -> partition %[1]d: 75%% of its series move`, shard.HashXX.Base("gone", 12)))
		require.NotContains(t, errs, `  "hot": `, "hot's line does not change")

		// The gateways' -shards.hash places the clusters without a first
		// partition: gone's base partition is another with fnv1a.
		fnvBase := shard.HashFNV1a.Base("gone", 12)
		require.NotEqual(t, shard.HashXX.Base("gone", 12), fnvBase)
		code, _, errs = runShards(append(base, "-current="+current, "-hash=fnv1a")...)
		require.Equal(t, 0, code, errs)
		require.Contains(t, errs, fmt.Sprintf(`"gone": 4 partitions from %d -> partition %[1]d`, fnvBase))
	})

	t.Run("selector", func(t *testing.T) {
		code, out, errs := runShards(append(base, `-selector=job="gateway"`)...)
		require.Equal(t, 0, code, errs)
		require.Equal(t, 7, parseTable(t, out, 12).Shards("hot"), out)
		code, _, errs = runShards(append(base, `-selector=job="elsewhere"`)...)
		require.Equal(t, 1, code, errs)
		require.Contains(t, errs, `no metrics items`)
		code, _, errs = runShards(append(base, `-selector=job=`)...)
		require.Equal(t, 1, code, errs)
		require.Contains(t, errs, `refused sum by (cluster) (rate(tributary_gateway_items_received_total{signal="metrics",job=}[5m])) (check -selector)`)
	})

	t.Run("no such metric", func(t *testing.T) {
		code, _, errs := runShards(append(base, "-signal=spans")...)
		require.Equal(t, 1, code, errs)
		require.Contains(t, errs, "no spans items")
		require.Contains(t, errs, "Prometheus must scrape every gateway's /metrics")
		hourBefore := pushedAt.Add(-time.Hour).Format(time.RFC3339)
		code, _, errs = runShards("suggest", "-prometheus.url="+prom.URL, "-partitions=12", "-window=5m", "-time="+hourBefore)
		require.Equal(t, 1, code, "-time an hour before the samples: %s", errs)
		require.Contains(t, errs, "no metrics items")
	})

	t.Run("behind auth", func(t *testing.T) { testShardsSuggestBehindAuth(t, prom.URL, at) })
}

// TestShardsSuggestUsage: usage errors exit 2 naming the flag; Prometheus
// unreachable exits 1 saying so.
func TestShardsSuggestUsage(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		code int
		say  string
	}{
		{"no subcommand", nil, 2, "Usage: gateway shards suggest"},
		{"help", []string{"suggest", "-help"}, 0, "-partitions int"},
		{"unknown flag", []string{"suggest", "-partition=3"}, 2, "flag provided but not defined: -partition"},
		{"no url", []string{"suggest", "-partitions=12"}, 2, "-prometheus.url is required"},
		{"partitions", []string{"suggest", "-prometheus.url=http://127.0.0.1:9", "-partitions=0"}, 2, "-partitions must be at least 1"},
		{"signal", []string{"suggest", "-prometheus.url=http://127.0.0.1:9", "-partitions=3", "-signal=traces"}, 2, `-signal "traces"`},
		{"hash", []string{"suggest", "-prometheus.url=http://127.0.0.1:9", "-partitions=3", "-hash=md5"}, 2, `-hash: unknown hash "md5"`},
		{"window", []string{"suggest", "-prometheus.url=http://127.0.0.1:9", "-partitions=3", "-window=10s"}, 2, "-window 10s is shorter than 1m"},
		{"unreachable", []string{"suggest", "-prometheus.url=http://" + testenv.Addr(testenv.FreePort(t)), "-partitions=3"}, 1, "cannot query Prometheus at http://127.0.0.1:"},
		{"password in url", []string{"suggest", "-prometheus.url=https://alice:pw@127.0.0.1:9", "-partitions=3"}, 2, "-prometheus.url must not carry credentials"},
		{"token and basic auth", []string{"suggest", "-prometheus.url=https://127.0.0.1:9", "-partitions=3", "-prometheus.bearer-token-file=t", "-prometheus.basic-auth.username=alice", "-prometheus.basic-auth.password-file=p"}, 2, "-prometheus.bearer-token-file and -prometheus.basic-auth.* both set"},
		{"user without password", []string{"suggest", "-prometheus.url=https://127.0.0.1:9", "-partitions=3", "-prometheus.basic-auth.username=alice"}, 2, "-prometheus.basic-auth.username needs -prometheus.basic-auth.password-file"},
		{"password without user", []string{"suggest", "-prometheus.url=https://127.0.0.1:9", "-partitions=3", "-prometheus.basic-auth.password-file=p"}, 2, "-prometheus.basic-auth.password-file needs -prometheus.basic-auth.username"},
		{"cert without key", []string{"suggest", "-prometheus.url=https://127.0.0.1:9", "-partitions=3", "-prometheus.tls.cert-file=c"}, 2, "-prometheus.tls.cert-file and -prometheus.tls.key-file go together"},
		{"tls over http", []string{"suggest", "-prometheus.url=http://127.0.0.1:9", "-partitions=3", "-prometheus.tls.ca-file=ca"}, 2, "-prometheus.tls.* needs an https:// -prometheus.url"},
		{"insecure and ca", []string{"suggest", "-prometheus.url=https://127.0.0.1:9", "-partitions=3", "-prometheus.tls.ca-file=ca", "-prometheus.tls.insecure-skip-verify"}, 2, "the CA would never be used"},
		{"tenant", []string{"suggest", "-prometheus.url=http://127.0.0.1:9", "-partitions=3", "-prometheus.tenant=a\nb"}, 2, `-prometheus.tenant "a\nb" is not a header value`},
		{"ca file missing", []string{"suggest", "-prometheus.url=https://127.0.0.1:9", "-partitions=3", "-prometheus.tls.ca-file=/nonexistent/ca.crt"}, 1, "-prometheus.tls.*: unable to read CA cert: unable to read file /nonexistent/ca.crt"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, out, errs := runShards(tc.args...)
			require.Equal(t, tc.code, code, errs)
			require.Empty(t, out)
			require.Contains(t, errs, tc.say)
		})
	}
}

// TestMovedShare: the share of a cluster's series that a line change
// moves, with the jump hash's property (growing k to k' keeps the series
// of the first k shards) checked against shard.Of itself.
func TestMovedShare(t *testing.T) {
	const n = 12
	table := func(yaml string) *shard.Table {
		tb, err := shard.Parse([]byte(yaml))
		require.NoError(t, err)
		return tb
	}
	// simulated is the share of 100k series whose partition differs.
	simulated := func(old, new *shard.Table) float64 {
		moved := 0
		for i := range 100000 {
			var l shard.Labels
			l.AddString("series", fmt.Sprint(i))
			h := l.Sum()
			if old.Partition(shard.HashXX, "c", shard.Of(h, old.Shards("c")), n) != new.Partition(shard.HashXX, "c", shard.Of(h, new.Shards("c")), n) {
				moved++
			}
		}
		return float64(moved) / 100000
	}
	for _, tc := range []struct {
		old, new string
		want     float64
	}{
		{"clusters: {c: {shards: 4, first_partition: 2}}", "clusters: {c: {shards: 5, first_partition: 2}}", 0.2},
		{"clusters: {c: {shards: 5, first_partition: 2}}", "clusters: {c: {shards: 2, first_partition: 2}}", 0.6},
		{"clusters: {c: {shards: 3, first_partition: 2}}", "clusters: {c: {shards: 3, first_partition: 2}}", 0},
		{"clusters: {c: {shards: 3, first_partition: 2}}", "clusters: {c: {shards: 3, first_partition: 3}}", 1},
		{"clusters: {c: {shards: 2, first_partition: 11}}", "clusters: {}", 1 - 0.5*oneIfBase("c", 11, n)},
		// k 2 from 4 to k 4 from 3: a series of new shard 0 or 1 keeps its
		// shard index, now one partition lower; only those of new shard 2
		// (partition 5) that were on old shard 1 (partition 5) stay.
		{"clusters: {c: {shards: 2, first_partition: 4}}", "clusters: {c: {shards: 4, first_partition: 3}}", 1 - 0.25*0.5},
	} {
		old, new := table(tc.old), table(tc.new)
		got := movedShare(old, new, shard.HashXX, "c", n)
		require.InDelta(t, tc.want, got, 1e-9, "%s -> %s", tc.old, tc.new)
		require.InDelta(t, simulated(old, new), got, 0.01, "%s -> %s: against the hash itself", tc.old, tc.new)
	}
}

// oneIfBase is 1 when p is c's base partition among n.
func oneIfBase(c string, p int32, n int32) float64 {
	if shard.HashXX.Base(c, n) == p {
		return 1
	}
	return 0
}

// TestKeepCurrent: a line in force stays when its k is within one of the
// suggestion and the table with it keeps the hottest partition within
// bounds; otherwise the cluster takes the suggested line.
func TestKeepCurrent(t *testing.T) {
	const n = 6
	// Total 600, a mean partition 100: a 150 (k ceil(1.5*3) = 5),
	// b 90 (k 3), 120 small ones of 3 on their base partitions (45-78
	// on each partition).
	load := map[string]float64{"a": 150, "b": 90}
	for i := range 120 {
		load[fmt.Sprintf("s-%d", i)] = 3
	}
	ks := shard.Suggest(load, n, shard.DefaultThreshold)
	require.Equal(t, map[string]int{"a": 5, "b": 3}, ks)
	fresh := shard.Place(load, ks, n, shard.HashXX)
	first := func(c string) int32 { return fresh.Partition(shard.HashXX, c, 0, n) }
	for _, tc := range []struct {
		name    string
		current string
		keep    []string
	}{
		{"same k elsewhere", fmt.Sprintf("clusters: {b: {shards: 3, first_partition: %d}}", (first("b")+1)%n), []string{"b"}},
		{"one more", "clusters: {a: 6}", []string{"a"}},
		{"two fewer", "clusters: {a: 3}", nil},
		// b's halves on partitions 0 and 1 (78 and 63 of small ones): a's
		// five shards of 30 cannot avoid both, one of them gets 138 or more,
		// above a third over the mean.
		{"one fewer but hot", "clusters: {b: {shards: 2, first_partition: 0}}", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			current, err := shard.Parse([]byte(tc.current))
			require.NoError(t, err)
			table, kept := keepCurrent(current, fresh, load, ks, n, shard.HashXX, shard.DefaultThreshold)
			var names []string
			for _, k := range kept {
				names = append(names, k.cluster)
			}
			sort.Strings(names)
			require.Equal(t, tc.keep, names)
			for _, c := range current.Clusters() {
				require.Equal(t, len(tc.keep) > 0, sameLine(current, table, shard.HashXX, c, n), "%s: %s", c, table.YAML())
			}
			if tc.keep == nil {
				require.True(t, table.Equal(fresh), "nothing kept: the fresh suggestion\n%s", table.YAML())
			}
		})
	}
}
