package bench

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/IBM/sarama"

	"github.com/tributary-io/tributary/pkg/record"
	"github.com/tributary-io/tributary/pkg/shard"
)

// Shape of the skew phase: issue 22's miniature.
const (
	skewPartitions = 12
	skewGateways   = 3
	skewIngesters  = 3
	skewClusters   = 64
	skewLargest    = 0.25 // share of all series in the largest cluster
	// 32,000 series in requests of 100: 320 bodies, at least one per
	// cluster, each sent ~9 times per gateway in a 10 s window at
	// skewRate, so that the clusters' loads follow their sizes (at 100
	// requests/s, 3 passes, the first bodies' extra pass gave the largest
	// cluster 28% instead of 25%).
	skewSeries           = 32000
	skewSeriesPerRequest = 100
	// skewRate is requests per second per gateway: the phase measures
	// where records go, not how fast; a light load keeps it cheap.
	skewRate = 300
)

// Targets of issue 22 for the skewed load, with the shard table.
const (
	skewPartitionTarget = 2.0
	skewIngesterTarget  = 1.2
)

// skewCase is one configuration of the skew phase.
type skewCase struct {
	name     string // result key prefix
	hash     string // -shards.hash
	strategy string // ingesters' -kafka.consumer.balance-strategy
	table    bool   // with the shard table suggested from case b's load
}

var skewCases = []skewCase{
	// (a) what the gateway did before the shard table: key = cluster
	// with sarama's partitioner, and the range assignor.
	{name: "skew_a", hash: string(shard.HashFNV1a), strategy: "range"},
	// (b) the new partitioner and the sticky assignor, no table.
	{name: "skew_b", hash: string(shard.HashXX), strategy: "sticky"},
	// (c) b with the table Suggest and Place derive from b's per-cluster
	// load.
	{name: "skew_c", hash: string(shard.HashXX), strategy: "sticky", table: true},
}

// skewResult is what one case measured.
type skewResult struct {
	partRecords, partSamples []float64 // per partition
	ingRecords, ingSamples   []float64 // per ingester
	clusterLoad              map[string]float64
}

// phaseSkew: 64 clusters of Zipf-like size (the largest 25% of all
// series) → 3 gateways → 12 partitions → 3 ingesters (discard sink), in
// the three cases of skewCases. It reports, per case, the hottest
// partition's and the busiest ingester's records and samples over the
// mean.
func (b *bench) phaseSkew(ctx context.Context, s *scope) {
	var suggested *shard.Table
	for _, c := range skewCases {
		if c.table && suggested == nil {
			b.fail("skew", c.name+": no load measured to suggest a table from (case skew_b failed)")
			continue
		}
		b.step(ctx, "skew", func(ctx context.Context, s *scope) {
			r := b.skewRun(ctx, s, c, suggested)
			b.skewReport(c, r, suggested.Len())
			if !c.table {
				ks := shard.Suggest(r.clusterLoad, skewPartitions, shard.DefaultThreshold)
				suggested = shard.Place(r.clusterLoad, ks, skewPartitions, shard.HashXX)
				b.log.Info("skew: suggested shard table", "from", c.name, "threshold", shard.DefaultThreshold,
					"table", strings.TrimSpace(suggested.YAML()))
			}
		})
	}
}

func (b *bench) skewRun(ctx context.Context, s *scope, c skewCase, table *shard.Table) skewResult {
	b.log.Info("phase skew", "case", c.name, "hash", c.hash, "assignor", c.strategy, "sharded_clusters", table.Len(), "window", b.short)
	broker := b.startBroker(s, "-partitions="+strconv.Itoa(skewPartitions))
	var ings []*proc
	for range skewIngesters {
		ings = append(ings, b.startIngester(s, broker.Addr, "-discard.enabled=true", "-kafka.consumer.balance-strategy="+c.strategy))
	}
	for _, ing := range ings {
		waitReady(ctx, s, ing, 2*time.Minute)
	}
	args := []string{"-shards.hash=" + c.hash}
	if c.table {
		path := filepath.Join(s.TempDir(), "shards.yaml")
		s.fatalIf(os.WriteFile(path, []byte(table.YAML()), 0o600), "write the shard table")
		args = append(args, "-shards.file="+path)
	}
	var gws []*proc
	for range skewGateways {
		gws = append(gws, b.startGateway(s, broker.Addr, args...))
	}

	// One load tool per gateway, the same bodies: the gateways were even
	// in the run; what is measured is where records go.
	var wg sync.WaitGroup
	errs := make([]error, len(gws))
	for i, gw := range gws {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = b.load(ctx, fmt.Sprintf("%s-gw%d", c.name, i), "-mode=remote-write", "-target="+gw.URL,
				"-duration="+b.short.String(), "-concurrency="+strconv.Itoa(max(1, b.cfg.Concurrency/skewGateways)),
				"-rate="+strconv.Itoa(skewRate), "-series="+strconv.Itoa(skewSeries),
				"-series-per-request="+strconv.Itoa(skewSeriesPerRequest), "-clusters="+strconv.Itoa(skewClusters),
				"-cluster-prefix=cluster-", "-cluster-skew="+strconv.FormatFloat(skewLargest, 'f', -1, 64))
		}()
	}
	wg.Wait()
	for _, err := range errs {
		s.fatalIf(err, "loadgen remote-write")
	}

	var r skewResult
	r.clusterLoad = map[string]float64{}
	for _, gw := range gws {
		f, err := scrape(ctx, gw.URL+"/metrics")
		s.fatalIf(err, "read a gateway's metrics")
		for _, m := range f["tributary_gateway_items_received_total"].GetMetric() {
			var cluster string
			metrics := false
			for _, lp := range m.GetLabel() {
				switch lp.GetName() {
				case "cluster":
					cluster = lp.GetValue()
				case "signal":
					metrics = lp.GetValue() == "metrics"
				}
			}
			if metrics {
				r.clusterLoad[cluster] += m.GetCounter().GetValue()
			}
		}
	}
	var err error
	r.partRecords, r.partSamples, err = topicLoad(broker.Addr, "tributary.metrics")
	s.fatalIf(err, "read the topic")
	total := 0.0
	for _, v := range r.partSamples {
		total += v
	}
	// Wait until the ingesters wrote everything.
	deadline := time.Now().Add(2 * time.Minute)
	for {
		r.ingRecords, r.ingSamples = r.ingRecords[:0], r.ingSamples[:0]
		written := 0.0
		for _, ing := range ings {
			f, err := scrape(ctx, ing.URL+"/metrics")
			s.fatalIf(err, "read an ingester's metrics")
			rec := f.sum("tributary_ingester_records_consumed_total", map[string]string{"sink": "discard"})
			n := f.sum("tributary_ingester_items_written_total", map[string]string{"sink": "discard"})
			r.ingRecords, r.ingSamples = append(r.ingRecords, rec), append(r.ingSamples, n)
			written += n
		}
		if written >= total {
			break
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			s.Fatalf("the ingesters wrote %.0f of the topic's %.0f samples", written, total)
		}
		time.Sleep(500 * time.Millisecond)
	}
	stop(gws...)
	stop(ings...)
	stop(broker)
	return r
}

// topicLoad counts each partition's records and samples (the envelope's
// item count) from the oldest offset to the newest.
func topicLoad(addr, topic string) (records, samples []float64, err error) {
	cfg := sarama.NewConfig()
	cfg.Version = sarama.V2_8_0_0
	client, err := sarama.NewClient([]string{addr}, cfg)
	if err != nil {
		return nil, nil, err
	}
	defer client.Close()
	consumer, err := sarama.NewConsumerFromClient(client)
	if err != nil {
		return nil, nil, err
	}
	defer consumer.Close()
	parts, err := client.Partitions(topic)
	if err != nil {
		return nil, nil, err
	}
	records, samples = make([]float64, len(parts)), make([]float64, len(parts))
	for _, p := range parts {
		end, err := client.GetOffset(topic, p, sarama.OffsetNewest)
		if err != nil {
			return nil, nil, err
		}
		if end == 0 {
			continue
		}
		pc, err := consumer.ConsumePartition(topic, p, sarama.OffsetOldest)
		if err != nil {
			return nil, nil, err
		}
		for m := range pc.Messages() {
			env, err := record.Parse(m.Headers)
			if err != nil {
				pc.Close()
				return nil, nil, fmt.Errorf("%s/%d@%d: %w", topic, p, m.Offset, err)
			}
			records[p]++
			samples[p] += float64(env.GetItems())
			if m.Offset+1 >= end {
				break
			}
		}
		pc.Close()
	}
	return records, samples, nil
}

// maxOverMean is the largest value over the mean.
func maxOverMean(vs []float64) float64 {
	total := 0.0
	for _, v := range vs {
		total += v
	}
	if total == 0 {
		return 0
	}
	return slices.Max(vs) / (total / float64(len(vs)))
}

func (b *bench) skewReport(c skewCase, r skewResult, sharded int) {
	k := c.name
	b.res[k+"_partition_samples_max_over_mean"] = maxOverMean(r.partSamples)
	b.res[k+"_partition_records_max_over_mean"] = maxOverMean(r.partRecords)
	b.res[k+"_ingester_samples_max_over_mean"] = maxOverMean(r.ingSamples)
	b.res[k+"_ingester_records_max_over_mean"] = maxOverMean(r.ingRecords)
	if c.table {
		b.res[k+"_sharded_clusters"] = float64(sharded)
	}
	total := 0.0
	for _, v := range r.clusterLoad {
		total += v
	}
	if total > 0 {
		b.res[k+"_largest_cluster_share"] = r.clusterLoad["cluster-0"] / total
	}
	b.log.Info("skew: per partition and per ingester", "case", c.name,
		"partition_samples", fmt.Sprint(r.partSamples), "ingester_samples", fmt.Sprint(r.ingSamples))
	if c.table {
		if v := b.res[k+"_partition_samples_max_over_mean"]; v > skewPartitionTarget {
			b.log.Warn("skew: partition target missed", "max_over_mean", v, "target", skewPartitionTarget)
		}
		if v := b.res[k+"_ingester_samples_max_over_mean"]; v > skewIngesterTarget {
			b.log.Warn("skew: ingester target missed", "max_over_mean", v, "target", skewIngesterTarget)
		}
	}
}

// The skew phase's rows, after the others in the table.
func init() {
	for _, c := range []struct{ key, label string }{
		{"skew_a", "skew (a): key = cluster, sarama fnv1a, range assignor"},
		{"skew_b", "skew (b): xxhash base partition, sticky assignor, no table"},
		{"skew_c", "skew (c): b + the suggested shard table"},
	} {
		rows = append(rows,
			row{c.key + "_partition_samples_max_over_mean", c.label + ": partition samples max/mean", "x"},
			row{c.key + "_partition_records_max_over_mean", "  partition records max/mean", "x"},
			row{c.key + "_ingester_samples_max_over_mean", "  ingester samples max/mean", "x"},
			row{c.key + "_ingester_records_max_over_mean", "  ingester records max/mean", "x"},
		)
	}
	rows = append(rows,
		row{"skew_c_sharded_clusters", "skew (c): clusters in the suggested table", ""},
		row{"skew_b_largest_cluster_share", "skew: largest cluster's share of the samples", ""},
	)
}
