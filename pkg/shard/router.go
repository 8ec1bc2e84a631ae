package shard

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"

	"github.com/tributary-io/tributary/pkg/filewatch"
)

// Config is the gateway's partition choice.
type Config struct {
	File         string        `yaml:"file"`
	PollInterval time.Duration `yaml:"poll_interval"`
	Hash         string        `yaml:"hash"`
}

// RegisterFlags registers -shards.*.
func (c *Config) RegisterFlags(fs *flag.FlagSet) {
	fs.StringVar(&c.File, "shards.file", "", "YAML shard table, the same on every gateway: clusters: {<cluster>: <k>} spreads each named cluster over k partitions (its base partition and the k-1 after it) by a hash of the series labels, stream labels or trace id. k must not exceed any topic's partition count. Reloaded on change; a change that does not parse or does not fit the topics is refused and the last good table stays. Empty: every cluster on one partition.")
	// 10 s, as -limits.file: a changed ConfigMap takes about a minute to
	// reach the pod anyway.
	fs.DurationVar(&c.PollInterval, "shards.file.poll-interval", 10*time.Second, "How often -shards.file is read for changes; a change applies when two reads in a row agree.")
	fs.StringVar(&c.Hash, "shards.hash", string(HashXX), "How a cluster's base partition is chosen: xxhash (spreads names like cluster-0..63 evenly) or fnv1a (sarama's default partitioner, the placement before -shards.file existed: keep it during a rolling upgrade from such a gateway, so that no cluster changes partition while old and new gateways both write).")
}

// Validate checks the flags and that the table parses.
func (c *Config) Validate() error {
	if _, err := ParseHash(c.Hash); err != nil {
		return fmt.Errorf("shards.hash: %w", err)
	}
	if c.File == "" {
		return nil
	}
	if c.PollInterval <= 0 {
		return errors.New("shards.file.poll-interval must be positive")
	}
	if _, err := readTable(c.File); err != nil {
		return fmt.Errorf("shards.file: %w", err)
	}
	return nil
}

func readTable(path string) (*Table, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return Parse(b)
}

// PartitionCount answers how many partitions topic has (the producer's
// metadata).
type PartitionCount func(topic string) (int32, error)

// Router holds the table in force and hands out Routes.
type Router struct {
	cfg        Config
	hash       Hash
	table      atomic.Pointer[Table]
	topics     []string
	partitions PartitionCount
	log        *slog.Logger

	watcher  *filewatch.Watcher // of -shards.file; nil without
	ok       prometheus.Gauge
	clusters prometheus.Gauge
}

// NewRouter loads the table (an error if it does not parse) for the
// records of topics, whose partition counts partitions answers.
func NewRouter(cfg Config, topics []string, partitions PartitionCount, reg prometheus.Registerer, log *slog.Logger) (*Router, error) {
	h, err := ParseHash(cfg.Hash)
	if err != nil {
		return nil, err
	}
	f := promauto.With(reg)
	r := &Router{
		cfg: cfg, hash: h, topics: topics, partitions: partitions, log: log.With("file", cfg.File),
		ok: f.NewGauge(prometheus.GaugeOpts{
			Name: "tributary_gateway_shards_table_ok",
			Help: "1 when the content of -shards.file last read is in force; 0 when it was refused (invalid, or k above a topic's partition count) and an older table is kept.",
		}),
		clusters: f.NewGauge(prometheus.GaugeOpts{
			Name: "tributary_gateway_shards_clusters",
			Help: "Clusters the shard table in force spreads over more than one partition.",
		}),
	}
	r.table.Store(&Table{})
	r.ok.Set(1)
	if cfg.File == "" {
		return r, nil
	}
	// Polled like -limits.file: a change applies once two polls read the
	// same bytes, since a prefix of a table often parses (an empty one
	// unshards every cluster).
	r.watcher = filewatch.New(filewatch.Config{Path: cfg.File, Interval: cfg.PollInterval, Flag: "-shards.file",
		MetricPrefix: "tributary_gateway_shards", MaxBytes: maxFileBytes}, r.apply, reg, log)
	if err := r.watcher.Load(); err != nil {
		return nil, fmt.Errorf("shards.file %w", err)
	}
	return r, nil
}

// Table is the table in force.
func (r *Router) Table() *Table { return r.table.Load() }

// Route is the partition choice for one request's records of one topic:
// one table, even if a reload comes while the request is served.
type Route struct {
	t *Table
	h Hash
	n int32
}

// Route answers the partition choice for topic. Without the partition
// count (Kafka not connected) it is a route that shards nothing, and the
// error says why: the records cannot be produced anyway.
func (r *Router) Route(topic string) (Route, error) {
	n, err := r.partitions(topic)
	if err == nil && n <= 0 {
		err = fmt.Errorf("topic %s has no partitions", topic)
	}
	if err != nil {
		return Route{t: r.table.Load(), h: r.hash}, err
	}
	return Route{t: r.table.Load(), h: r.hash, n: n}, nil
}

// Sharded reports whether the route spreads any cluster: when not, every
// record goes to its cluster's base partition and nothing needs a series
// hash.
func (rt Route) Sharded() bool { return rt.n > 1 && rt.t.Len() > 0 }

// Shards is cluster's k, at most the topic's partition count (a table
// checked at load never needs the bound; a topic recreated smaller might).
func (rt Route) Shards(cluster string) int {
	if rt.n <= 1 {
		return 1
	}
	return min(rt.t.Shards(cluster), int(rt.n))
}

// Partition is the partition of cluster's shard.
func (rt Route) Partition(cluster string, shard int) int32 {
	return rt.t.Partition(rt.h, cluster, shard, rt.n)
}

// Check compares the table with the topics' partition counts; topics
// whose count is not known yet are skipped. The gateway calls it once
// Kafka first answers, and stops when it fails: k above the partition
// count is a configuration error.
func (r *Router) Check() error {
	return r.check(r.table.Load())
}

func (r *Router) check(t *Table) error {
	for _, topic := range r.topics {
		n, err := r.partitions(topic)
		if err != nil {
			continue
		}
		if err := t.Check(topic, n); err != nil {
			return err
		}
	}
	return nil
}

func (r *Router) apply(b []byte) error {
	t, err := Parse(b)
	if err == nil {
		err = r.check(t)
	}
	if err != nil {
		r.ok.Set(0)
		return err
	}
	old := r.table.Swap(t)
	r.ok.Set(1)
	r.clusters.Set(float64(t.Len()))
	if !old.Equal(t) && old.Len()+t.Len() > 0 {
		// Series of a cluster whose line changed move partition: for a
		// moment they may reach the sinks out of order (README, Hot
		// clusters).
		r.log.Info("shard table in force", "clusters", t.Len())
	}
	return nil
}

// Run polls the file until ctx ends.
func (r *Router) Run(ctx context.Context) {
	if r.watcher != nil {
		r.watcher.Run(ctx)
	}
}
