package gateway

import (
	"errors"
	"fmt"
	"log/slog"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tributary-io/tributary/pkg/shard"
)

// route is the partition choice for one request's records: one shard
// table, from cutting the records to choosing their partitions, even if a
// reload comes in between. err: the topic's partition count is not known
// (Kafka not connected); nothing is sharded and produce answers 503.
type route struct {
	shard.Route
	err error
}

func (g *Gateway) route(topic string) route {
	rt, err := g.shards.Route(topic)
	return route{Route: rt, err: err}
}

// sharder is what the parsers (remotewrite, lokipush, otlp) cut hot
// clusters' records by, one record per shard: each declares the same
// one-method interface, which this one satisfies.
type sharder interface {
	Shards(cluster string) int
}

// sharder is the Sharder to give a parser: nil when the route spreads no
// cluster, so the common case neither boxes the route (an allocation per
// request) nor hashes a series; the parsers take nil as one shard per
// cluster.
func (rt route) sharder() sharder {
	if !rt.Sharded() {
		return nil
	}
	return rt.Route
}

// initShards loads -shards.file. It was parsed by Validate; an error now
// (the file changed since) stops the gateway when it runs.
func (g *Gateway) initShards(reg prometheus.Registerer, log *slog.Logger) {
	topics := []string{g.cfg.MetricsTopic, g.cfg.LogsTopic, g.cfg.SpansTopic}
	r, err := shard.NewRouter(g.cfg.Shards, topics, g.partitionCount, reg, log)
	if err != nil {
		g.startErr = err
		cfg := g.cfg.Shards
		cfg.File = ""
		r, _ = shard.NewRouter(cfg, topics, g.partitionCount, prometheus.NewRegistry(), log)
	}
	g.shards = r
}

// partitionCount is topic's partition count, from the producer's metadata.
func (g *Gateway) partitionCount(topic string) (int32, error) {
	if g.producer == nil { // tests of refusals that never produce
		return 0, errors.New("no producer")
	}
	return g.producer.Partitions(topic)
}

// checkShards compares the shard table with the topics once their
// partition counts are known: a cluster spread over more partitions than a
// topic has is a configuration error that stops the gateway, as an
// invalid -shards.file does. A later reload that does not fit is refused
// instead (the table in force stays).
func (g *Gateway) checkShards() error {
	if err := g.shards.Check(); err != nil {
		return fmt.Errorf("shards.file: %w", err)
	}
	return nil
}
