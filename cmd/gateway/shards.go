package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"net/url"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/api"
	promv1 "github.com/prometheus/client_golang/api/prometheus/v1"
	"github.com/prometheus/common/model"

	"github.com/tributary-io/tributary/internal/atomicfile"
	"github.com/tributary-io/tributary/pkg/flagenv"
	"github.com/tributary-io/tributary/pkg/shard"
)

// `gateway shards suggest` derives the shard table (-shards.file) from the
// load the gateways counted, as README "Hot clusters" describes: each
// cluster's rate of tributary_gateway_items_received_total from
// Prometheus, shard.Suggest for k, shard.Place for the first partitions.

const shardsUsage = `Usage: gateway shards suggest -prometheus.url=URL -partitions=N [flags]

Prints the shard table (-shards.file) for the load the gateways counted:
each cluster's share of a mean partition is its rate of
tributary_gateway_items_received_total over -window, summed over the
gateways, divided by the total's over -partitions; a cluster above
-threshold is spread over k = ceil(share / threshold) partitions, placed
so that no partition is much hotter than the others. With -current, the
lines of the table in force stay where the suggestion differs little, and
stderr says which clusters change and what share of their series moves.

Behind authentication (Mimir or Cortex, Thanos, a proxy): -prometheus.tenant,
-prometheus.bearer-token-file or -prometheus.basic-auth.*, -prometheus.tls.*;
secrets only from files.

Exit status: 0 table printed, 1 failed (Prometheus, files), 2 usage.

Flags:
`

// Exit codes of `gateway shards`.
const (
	exitOK    = 0
	exitError = 1
	exitUsage = 2
)

// shardsMain runs `gateway shards <args>` and returns the exit code.
func shardsMain(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] != "suggest" {
		fmt.Fprint(stderr, strings.TrimSuffix(shardsUsage, "\nFlags:\n")+"\n")
		if len(args) > 0 && (args[0] == "-help" || args[0] == "-h" || args[0] == "--help" || args[0] == "help") {
			return exitOK
		}
		return exitUsage
	}
	var cfg suggestConfig
	fs := flag.NewFlagSet("gateway shards suggest", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), shardsUsage)
		fs.PrintDefaults()
		fmt.Fprintf(fs.Output(), "\nEvery flag can also be set by environment variable, e.g. -prometheus.url as %s.\n",
			flagenv.EnvName(suggestEnvPrefix, "prometheus.url"))
	}
	cfg.RegisterFlags(fs)
	if err := fs.Parse(args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		return exitUsage // the flag package printed the error and the usage
	}
	if err := flagenv.FromEnv(fs, suggestEnvPrefix); err != nil {
		fmt.Fprintln(stderr, "gateway shards suggest:", err)
		return exitUsage
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "gateway shards suggest: unexpected argument %q (flags only; -help lists them)\n", fs.Arg(0))
		return exitUsage
	}
	if err := cfg.Validate(); err != nil {
		fmt.Fprintf(stderr, "gateway shards suggest: %v (-help lists the flags)\n", err)
		return exitUsage
	}
	ctx, cancel := context.WithTimeout(context.Background(), cfg.Timeout)
	defer cancel()
	if err := suggestTable(ctx, cfg, stdout, stderr); err != nil {
		fmt.Fprintln(stderr, "gateway shards suggest:", err)
		return exitError
	}
	return exitOK
}

const suggestEnvPrefix = "TRIBUTARY_GATEWAY_SHARDS_SUGGEST"

// suggestConfig is the flags of `gateway shards suggest`.
type suggestConfig struct {
	PrometheusURL string
	Selector      string
	Partitions    int
	Signal        string
	Window        time.Duration
	Time          string
	Threshold     float64
	Hash          string
	Current       string
	Output        string
	Timeout       time.Duration
	Client        promClientConfig

	at time.Time // Time parsed; zero: now
}

// signals are the values of the signal label the gateways count items by.
var signals = []string{"metrics", "logs", "spans"}

func (c *suggestConfig) RegisterFlags(fs *flag.FlagSet) {
	fs.StringVar(&c.PrometheusURL, "prometheus.url", "", "Prometheus (or a Prometheus-compatible query API: Thanos, Mimir's /prometheus) that scrapes every gateway's /metrics, e.g. http://prometheus:9090. Required.")
	fs.StringVar(&c.Selector, "selector", "", `Label matchers added to the query, e.g. namespace="tributary", when one Prometheus scrapes several installations.`)
	fs.IntVar(&c.Partitions, "partitions", 0, "Partition count of the topics (the smallest, if they differ): k and first_partition fit it. Required.")
	fs.StringVar(&c.Signal, "signal", "metrics", "Load to size by: metrics, logs, spans, or all (k the largest over the signals).")
	// An hour smooths bursts and a scrape or two missed while still
	// following the day; size for the peak by -time at the peak hour.
	fs.DurationVar(&c.Window, "window", time.Hour, "Range of the rate (at least 1m, two scrapes at the usual intervals).")
	fs.StringVar(&c.Time, "time", "", "Evaluate at this time (RFC 3339, e.g. yesterday's peak: 2026-11-28T19:00:00Z) instead of now.")
	fs.Float64Var(&c.Threshold, "threshold", shard.DefaultThreshold, "Share of a mean partition above which a cluster is spread, and what each of its partitions then carries at most (shard.DefaultThreshold: a third).")
	fs.StringVar(&c.Hash, "hash", string(shard.HashXX), "The gateways' -shards.hash: xxhash or fnv1a (base partitions are placed by it).")
	fs.StringVar(&c.Current, "current", "", "The shard table in force (the gateways' -shards.file): its lines stay where the suggestion differs little, since each changed line moves that cluster's series.")
	fs.StringVar(&c.Output, "o", "", "Write the table to this file (replaced whole, never half-written) instead of stdout.")
	fs.DurationVar(&c.Timeout, "timeout", 30*time.Second, "Deadline of the whole command (the Prometheus queries).")
	c.Client.RegisterFlags(fs)
}

// Validate checks the flags; its errors are usage errors.
func (c *suggestConfig) Validate() error {
	u, err := url.Parse(c.PrometheusURL)
	switch {
	case c.PrometheusURL == "":
		return errors.New("-prometheus.url is required")
	case err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "":
		return fmt.Errorf("-prometheus.url %q is not an http(s) URL", c.PrometheusURL)
	case c.Partitions < 1:
		return fmt.Errorf("-partitions must be at least 1 (the topics' partition count), got %d", c.Partitions)
	case c.Partitions > math.MaxInt32:
		return fmt.Errorf("-partitions %d is above Kafka's limit", c.Partitions)
	case c.Signal != "all" && !slices.Contains(signals, c.Signal):
		return fmt.Errorf("-signal %q: want metrics, logs, spans or all", c.Signal)
	case c.Window < time.Minute:
		return fmt.Errorf("-window %s is shorter than 1m: the rate needs two scrapes", c.Window)
	case c.Window%time.Millisecond != 0:
		return fmt.Errorf("-window %s: Prometheus durations are whole milliseconds", c.Window)
	case !(c.Threshold > 0):
		return fmt.Errorf("-threshold must be positive, got %v", c.Threshold)
	case c.Timeout <= 0:
		return errors.New("-timeout must be positive")
	case strings.ContainsAny(c.Selector, "\r\n"):
		return errors.New("-selector must be one line (it is quoted in the table's header)")
	}
	if err := c.Client.Validate(u); err != nil {
		return err
	}
	if _, err := shard.ParseHash(c.Hash); err != nil {
		return fmt.Errorf("-hash: %w", err)
	}
	if c.Time != "" {
		if c.at, err = time.Parse(time.RFC3339, c.Time); err != nil {
			return fmt.Errorf("-time %q: want RFC 3339, e.g. 2026-11-28T19:00:00Z", c.Time)
		}
	}
	return nil
}

// otherCluster is the gateways' cluster label for the clusters beyond
// -metrics.max-clusters: not a cluster, so never a line of the table.
const otherCluster = "_other"

// signalLoad is one signal's items per second by cluster.
type signalLoad struct {
	signal string
	rate   map[string]float64
	total  float64
}

// share is cluster's load as a multiple of a mean partition's.
func (l signalLoad) share(cluster string, partitions int) float64 {
	return l.rate[cluster] / (l.total / float64(partitions))
}

func suggestTable(ctx context.Context, cfg suggestConfig, stdout, stderr io.Writer) error {
	h, _ := shard.ParseHash(cfg.Hash) // checked by Validate
	n := int32(cfg.Partitions)
	var current *shard.Table
	if cfg.Current != "" {
		b, err := os.ReadFile(cfg.Current)
		if err != nil {
			return fmt.Errorf("-current: %w", err)
		}
		if current, err = shard.Parse(b); err != nil {
			return fmt.Errorf("-current %s: %w", cfg.Current, err)
		}
	}
	at := cfg.at
	if at.IsZero() {
		at = time.Now()
	}
	loads, err := queryLoads(ctx, cfg, at, stderr)
	if err != nil {
		return err
	}

	// k is the largest over the signals. Place's load is the sum over the
	// signals of each cluster's fraction of that signal's items: the one
	// table serves every topic, each topic's partitions are consumed on
	// their own, so each signal weighs the same whatever its items per
	// second, and a cluster hot in several signals weighs more than one
	// hot in one. With one signal this is its load, scaled.
	ks := map[string]int{}
	load := map[string]float64{}
	for _, l := range loads {
		for name, k := range shard.Suggest(l.rate, cfg.Partitions, cfg.Threshold) {
			ks[name] = max(ks[name], k)
		}
		for name, v := range l.rate {
			load[name] += v / l.total
		}
	}
	// _other counts in the totals (it is real load) but is no cluster: it
	// is many clusters on their own base partitions, so it is left out of
	// placement, which its spread adds to evenly.
	delete(ks, otherCluster)
	delete(load, otherCluster)

	fresh := shard.Place(load, ks, n, h)
	table, kept := fresh, []keptLine(nil)
	if current != nil {
		table, kept = keepCurrent(current, fresh, load, ks, n, h, cfg.Threshold)
	}
	out := header(cfg, at, loads, table, ks, load, n, h, current, kept) + table.YAML()
	// What the gateways will read: the file must parse to the table and fit.
	back, err := shard.Parse([]byte(out))
	if err == nil {
		err = back.Check("(-partitions)", n)
	}
	if err == nil && !back.Equal(table) {
		err = errors.New("the table read back differs")
	}
	if err != nil {
		return fmt.Errorf("suggested table does not read back (a bug): %w\n%s", err, out)
	}
	if current != nil {
		reportChanges(stderr, cfg.Current, current, table, kept, n, h)
	}
	if cfg.Output == "" {
		_, err = io.WriteString(stdout, out)
		return err
	}
	// The gateways' poll and a ConfigMap sync see the old table or the
	// new, never a part.
	if err := atomicfile.Write(cfg.Output, []byte(out), 0o644); err != nil {
		return fmt.Errorf("-o %s: %w", cfg.Output, err)
	}
	return nil
}

// itemsQuery is the PromQL of one signal's load by cluster.
func itemsQuery(signal, selector string, window time.Duration) string {
	m := `signal="` + signal + `"`
	if selector != "" {
		m += "," + selector
	}
	return fmt.Sprintf("sum by (cluster) (rate(tributary_gateway_items_received_total{%s}[%s]))", m, model.Duration(window))
}

// queryLoads asks Prometheus for each signal's load. A signal with no
// series is an error when asked for alone; with -signal=all it is left
// out (a note on stderr) unless all are missing.
func queryLoads(ctx context.Context, cfg suggestConfig, at time.Time, stderr io.Writer) ([]signalLoad, error) {
	u, _ := url.Parse(cfg.PrometheusURL) // checked by Validate
	hc, err := cfg.Client.httpClient(stderr, u)
	if err != nil {
		return nil, err
	}
	client, err := api.NewClient(api.Config{Address: cfg.PrometheusURL, Client: hc})
	if err != nil {
		return nil, fmt.Errorf("-prometheus.url: %w", err)
	}
	prom := promv1.NewAPI(statusAnswers{client})
	asked := []string{cfg.Signal}
	if cfg.Signal == "all" {
		asked = signals
	}
	var out []signalLoad
	var missing []string
	for _, signal := range asked {
		q := itemsQuery(signal, cfg.Selector, cfg.Window)
		v, warnings, _, err := prom.Query(ctx, q, at)
		for _, w := range warnings {
			fmt.Fprintf(stderr, "Prometheus warns about %s: %s\n", q, w)
		}
		var apiErr *promv1.Error
		var answer *statusError
		switch {
		case errors.As(err, &answer) || isTLSError(err):
			return nil, cfg.Client.explain(cfg.PrometheusURL, err)
		case errors.As(err, &apiErr):
			return nil, fmt.Errorf("Prometheus at %s refused %s (check -selector): %w", cfg.PrometheusURL, q, err)
		case err != nil:
			return nil, fmt.Errorf("cannot query Prometheus at %s (-prometheus.url): %w", cfg.PrometheusURL, err)
		}
		vec, ok := v.(model.Vector)
		if !ok {
			return nil, fmt.Errorf("Prometheus at %s answered %s with a %s, not a vector", cfg.PrometheusURL, q, v.Type())
		}
		l := signalLoad{signal: signal, rate: map[string]float64{}}
		for _, s := range vec {
			v := float64(s.Value)
			if math.IsNaN(v) || v < 0 {
				continue
			}
			l.rate[string(s.Metric["cluster"])] += v
			l.total += v
		}
		if l.total <= 0 {
			missing = append(missing, signal)
			continue
		}
		if o := l.rate[otherCluster]; o > 0 {
			fmt.Fprintf(stderr, "note: %.0f%% of the %s items are counted under cluster=%q, the clusters beyond the gateways' -metrics.max-clusters: they cannot be judged one by one; raise -metrics.max-clusters\n",
				100*o/l.total, signal, otherCluster)
		}
		out = append(out, l)
	}
	if len(out) == 0 {
		check := "-selector, -window, -time"
		if cfg.Client.Tenant != "" {
			// Mimir answers a tenant it holds nothing for with no series,
			// not an error.
			check += fmt.Sprintf(", -prometheus.tenant %q", cfg.Client.Tenant)
		}
		return nil, fmt.Errorf("no %s items in %s at %s (%s): Prometheus must scrape every gateway's /metrics, and the gateways must have received %s in the window (check %s)",
			strings.Join(missing, ", "), cfg.Window, cfg.PrometheusURL, itemsQuery(missing[0], cfg.Selector, cfg.Window), strings.Join(missing, " or "), check)
	}
	if len(missing) > 0 {
		fmt.Fprintf(stderr, "note: no %s items in the window: that signal is left out\n", strings.Join(missing, ", "))
	}
	return out, nil
}

// keptLine is a line of the table in force that the suggestion keeps.
type keptLine struct {
	cluster   string
	suggested int // k the load alone suggests
}

// keepCurrent keeps the lines of current whose cluster's suggested k is
// within one of the line's ("differs little": one shard more or less
// moves at most 1/(k+1) of the cluster's series, and each shard of it then
// carries at most (k+1)/k of the threshold), as long as the table with
// them keeps its hottest partition at most (1 + threshold) times the mean
// (one shard's worth above even) or not above the fresh suggestion's,
// whichever is higher. The largest clusters are decided first; the
// clusters whose lines change are placed around the kept ones.
func keepCurrent(current, fresh *shard.Table, load map[string]float64, ks map[string]int, n int32, h shard.Hash, threshold float64) (*shard.Table, []keptLine) {
	mean := sum(load) / float64(n)
	bound := max(slices.Max(fresh.Load(load, h, n)), (1+threshold)*mean) * (1 + 1e-9)
	names := current.Clusters()
	sort.SliceStable(names, func(i, j int) bool { return load[names[i]] > load[names[j]] })
	table := fresh
	var keep []string
	var kept []keptLine
	for _, name := range names {
		k, want := current.Shards(name), max(ks[name], 1)
		if k < want-1 || k > want+1 {
			continue
		}
		try := shard.PlaceAround(current.Only(append(keep, name)...), load, ks, n, h)
		if try.Check("", n) != nil || slices.Max(try.Load(load, h, n)) > bound {
			continue
		}
		keep = append(keep, name)
		kept = append(kept, keptLine{cluster: name, suggested: want})
		table = try
	}
	return table, kept
}

func sum(m map[string]float64) float64 {
	s := 0.0
	for _, v := range m {
		s += v
	}
	return s
}

// movedShare is the share of cluster's series that go to another
// partition when its line changes from old to new. Series pick one of k
// shards by jump consistent hash (shard.Of): of k < k' shards, a series
// whose shard among k' is j < k has shard j among k too; one whose shard
// among k' is j >= k has any of the k shards, evenly. So growing k to k'
// with the same first partition moves 1 - k/k'.
func movedShare(old, new *shard.Table, h shard.Hash, cluster string, n int32) float64 {
	part := func(t *shard.Table) (int, func(int) int32) {
		return min(t.Shards(cluster), int(n)), func(s int) int32 { return t.Partition(h, cluster, s, n) }
	}
	ka, pa := part(old)
	kb, pb := part(new)
	if ka > kb {
		ka, pa, kb, pb = kb, pb, ka, pa
	}
	stay := 0.0
	for j := range kb {
		if j < ka {
			if pa(j) == pb(j) {
				stay += 1 / float64(kb)
			}
			continue
		}
		for i := range ka {
			if pa(i) == pb(j) {
				stay += 1 / float64(kb) / float64(ka)
			}
		}
	}
	return max(0, 1-stay)
}

// lineText describes where t puts cluster: "6 partitions from 3", "partition 5".
func lineText(t *shard.Table, h shard.Hash, cluster string, n int32) string {
	k := min(t.Shards(cluster), int(n))
	first := t.Partition(h, cluster, 0, n)
	if k == 1 {
		return "partition " + strconv.Itoa(int(first))
	}
	return fmt.Sprintf("%d partitions from %d", k, first)
}

// sameLine reports whether t and u put cluster on the same partitions.
func sameLine(t, u *shard.Table, h shard.Hash, cluster string, n int32) bool {
	k := min(t.Shards(cluster), int(n))
	if k != min(u.Shards(cluster), int(n)) {
		return false
	}
	for s := range k {
		if t.Partition(h, cluster, s, n) != u.Partition(h, cluster, s, n) {
			return false
		}
	}
	return true
}

// reportChanges tells which clusters the new table moves and what share
// of their series, and which lines it keeps though the load alone
// suggests otherwise.
func reportChanges(w io.Writer, path string, current, table *shard.Table, kept []keptLine, n int32, h shard.Hash) {
	names := slices.Concat(current.Clusters(), table.Clusters())
	slices.Sort(names)
	names = slices.Compact(names)
	changed := 0
	for _, name := range names {
		if sameLine(current, table, h, name, n) {
			continue
		}
		if changed == 0 {
			fmt.Fprintf(w, "changes against %s (each moves that share of the cluster's series to other partitions: for a moment they may reach the sinks out of order, README \"Hot clusters\"):\n", path)
		}
		changed++
		fmt.Fprintf(w, "  %s: %s -> %s: %.0f%% of its series move\n", strconv.Quote(name),
			lineText(current, h, name, n), lineText(table, h, name, n), 100*movedShare(current, table, h, name, n))
	}
	if changed == 0 {
		fmt.Fprintf(w, "no change against %s: no series moves\n", path)
	}
	for _, k := range kept {
		if current.Shards(k.cluster) != k.suggested {
			fmt.Fprintf(w, "kept %s: %s in force, the load alone suggests k %d (differs little)\n",
				strconv.Quote(k.cluster), lineText(current, h, k.cluster, n), k.suggested)
		}
	}
}

// header is the table's comment: when and from what it was suggested, each
// spread cluster's share, and the partition load it leads to.
func header(cfg suggestConfig, at time.Time, loads []signalLoad, table *shard.Table, ks map[string]int, load map[string]float64, n int32, h shard.Hash, current *shard.Table, kept []keptLine) string {
	var b strings.Builder
	fmt.Fprintf(&b, "# Shard table (-shards.file) suggested by `gateway shards suggest` at %s\n", at.UTC().Format(time.RFC3339))
	from := cfg.PrometheusURL
	if cfg.Client.Tenant != "" {
		from += fmt.Sprintf(" (tenant %s)", strconv.Quote(cfg.Client.Tenant))
	}
	fmt.Fprintf(&b, "# from %s, rate over %s:\n", from, model.Duration(cfg.Window))
	for _, l := range loads {
		fmt.Fprintf(&b, "#   %s\n", itemsQuery(l.signal, cfg.Selector, cfg.Window))
	}
	fmt.Fprintf(&b, "# %d partitions, threshold %.3g, hash %s", n, cfg.Threshold, h)
	if len(loads) > 1 {
		b.WriteString(",\n# k the largest over the signals, placed by each cluster's shares of the signals summed")
	}
	b.WriteString(".\n")
	var spread []string
	for name, k := range ks {
		if k > 1 {
			spread = append(spread, name)
		}
	}
	sort.Slice(spread, func(i, j int) bool {
		if load[spread[i]] != load[spread[j]] {
			return load[spread[i]] > load[spread[j]]
		}
		return spread[i] < spread[j]
	})
	if len(spread) > 0 {
		b.WriteString("# Share of a mean partition -> suggested k:\n")
	}
	for _, name := range spread {
		var shares []string
		for _, l := range loads {
			shares = append(shares, fmt.Sprintf("%s %.2f", l.signal, l.share(name, int(n))))
		}
		fmt.Fprintf(&b, "#   %s: %s -> %d\n", strconv.Quote(name), strings.Join(shares, ", "), ks[name])
	}
	if len(spread) == 0 {
		b.WriteString("# No cluster is above the threshold: every cluster stays on its base partition.\n")
	}
	if current != nil {
		fmt.Fprintf(&b, "# Lines of %s kept in force: %d.\n", cfg.Current, len(kept))
	}
	if mean := sum(load) / float64(n); mean > 0 {
		fmt.Fprintf(&b, "# Hottest partition: %.2fx the mean with this table, %.2fx with none.\n",
			slices.Max(table.Load(load, h, n))/mean, slices.Max((*shard.Table)(nil).Load(load, h, n))/mean)
	}
	return b.String()
}
