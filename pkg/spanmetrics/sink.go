// Package spanmetrics derives RED metrics from span records, under the
// names the OpenTelemetry spanmetrics connector's metrics have in
// Prometheus: traces_span_metrics_calls_total and
// traces_span_metrics_duration_milliseconds_{bucket,sum,count}, labels
// service_name, span_name, span_kind, status_code, plus cluster, and the
// connector's default buckets (2 ms … 15 s).
//
// It is an ingester.Sink of its own consumer group on the spans topic. A
// batch (one partition, offset order) is aggregated into the partition's
// cumulative counters and every series of the partition is written to
// Prometheus with the write time as timestamp, in one Write; the consumer
// marks the batch's offsets only after that, and the batch joins the
// counters only if the write succeeded. So rate() stays right across
// restarts and partition moves:
//
//   - Every series carries partition and ingester labels (the writer's
//     -spanmetrics.ingester-id): the counter of one series is written by
//     one process, for one partition, in timestamp order; two ingesters
//     never write the same series.
//   - A series is first written at 0, in a request of its own, before any
//     count: a new owner of a partition, a restarted ingester or a series
//     back after expiry starts from 0, which rate() reads as a reset, and
//     increase() misses none of the first spans.
//   - A written value is never taken back: after a failed write (which
//     may have been stored) the series never go below what it sent.
//
// What a crash can add: the spans of batches whose counters were written
// but whose offsets were not committed yet (the consumer commits marked
// offsets every second) are read again by the next owner and counted a
// second time. A crash never loses a span: what was aggregated but not
// written was not marked either.
package spanmetrics

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/golang/snappy"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/tributary-io/tributary/pkg/ingester"
	"github.com/tributary-io/tributary/pkg/record"
	recordpb "github.com/tributary-io/tributary/proto/record/v1"
)

// Sink aggregates span records and writes the counters through a
// Prometheus remote-write sink.
type Sink struct {
	cfg Config
	out ingester.Sink // the Prometheus sink: records of snappy WriteRequests
	log *slog.Logger
	m   *metrics
	now func() time.Time

	// lastTS is the timestamp (ms) of the last request of any partition:
	// the next one is later, so the samples of every series are in order,
	// also when a partition's state was swept and made again.
	lastTS atomic.Int64

	mu        sync.Mutex
	parts     map[partKey]*partitionState
	lastSweep time.Time
}

type partKey struct {
	partition int32
	tenant    string
}

// New returns a sink writing through out (the Prometheus sink, which
// takes records whose values are snappy remote-write requests).
func New(cfg Config, out ingester.Sink, reg prometheus.Registerer, log *slog.Logger) *Sink {
	return &Sink{cfg: cfg, out: out, log: log, m: newMetrics(reg), now: time.Now, parts: map[partKey]*partitionState{}}
}

// Probe implements ingester.Prober with the Prometheus sink's probe.
func (s *Sink) Probe(ctx context.Context) error {
	if p, ok := s.out.(ingester.Prober); ok {
		return p.Probe(ctx)
	}
	return nil
}

// Write implements ingester.Sink: it returns nil once counters including
// every span of recs are stored in Prometheus. A record that does not
// decode is a Permanent error; errors of the Prometheus sink are returned
// as they are (retried, or dead-lettered when it refuses the write).
func (s *Sink) Write(ctx context.Context, recs []ingester.Record) error {
	if len(recs) == 0 {
		return nil
	}
	b, err := decode(recs, s.cfg.MaxDecodedBytes)
	if err != nil {
		return ingester.Permanent(fmt.Errorf("spanmetrics: %w", err))
	}
	k := partKey{partition: recs[0].Partition, tenant: recs[0].Envelope.GetTenant()}
	var ps *partitionState
	for {
		ps = s.partition(k)
		ps.mu.Lock()
		if !ps.dead {
			break
		}
		ps.mu.Unlock()
	}
	err = s.write(ctx, ps, b, recs)
	ps.mu.Unlock()
	if err != nil {
		return err
	}
	if b.noService > 0 {
		s.m.skipped.WithLabelValues("no_service_name").Add(float64(b.noService))
	}
	for c, n := range b.spans {
		s.m.spans.WithLabelValues(c).Add(float64(n))
	}
	s.sweep()
	return nil
}

func (s *Sink) partition(k partKey) *partitionState {
	s.mu.Lock()
	defer s.mu.Unlock()
	ps := s.parts[k]
	if ps == nil {
		ps = &partitionState{partition: k.partition, tenant: k.tenant, ingester: s.cfg.IngesterID, clusters: map[string]*clusterState{}}
		s.parts[k] = ps
	}
	return ps
}

// write does Write's work on ps, which the caller holds.
func (s *Sink) write(ctx context.Context, ps *partitionState, b *batch, recs []ingester.Record) error {
	now := s.now()
	s.expired(ps.expire(now, s.cfg.SeriesIdleTimeout, b))
	p := ps.plan(b, s.cfg.MaxSeriesPerCluster)
	if len(p.created) > 0 {
		zeros := make([]written, len(p.created))
		for i, c := range p.created {
			zeros[i] = written{s: c}
		}
		if err := s.send(ctx, ps, zeros, recs); err != nil {
			return err
		}
		ps.adopt(p.created, now)
		for _, c := range p.created {
			s.m.active.WithLabelValues(c.key.cluster).Inc()
			if c.overflow {
				s.log.Warn("cluster has -spanmetrics.max-series-per-cluster label sets; spans of further ones are counted in its otel_metric_overflow=\"true\" series",
					"cluster", c.key.cluster, "partition", ps.partition, "limit", s.cfg.MaxSeriesPerCluster)
			}
		}
	}
	var ws []written
	for _, cs := range ps.clusters {
		for _, se := range cs.sets {
			ws = append(ws, written{s: se, v: se.values(p.deltas[se])})
		}
		if cs.overflow != nil {
			ws = append(ws, written{s: cs.overflow, v: cs.overflow.values(p.deltas[cs.overflow])})
		}
	}
	if err := s.send(ctx, ps, ws, recs); err != nil {
		return err
	}
	ps.merge(p, now)
	for c, n := range p.overflowSpans {
		s.m.overflow.WithLabelValues(c).Add(float64(n))
	}
	return nil
}

// send writes ws to Prometheus at the partition's next timestamp.
func (s *Sink) send(ctx context.Context, ps *partitionState, ws []written, recs []ingester.Record) error {
	if len(ws) == 0 {
		return nil
	}
	reqs := requests(ws, s.nextTS())
	out := make([]ingester.Record, 0, len(reqs))
	samples := 0
	last := recs[len(recs)-1]
	for _, req := range reqs {
		raw, err := req.Marshal()
		if err != nil {
			return fmt.Errorf("spanmetrics: marshal write request: %w", err)
		}
		samples += len(req.Timeseries)
		out = append(out, ingester.Record{
			Topic: last.Topic, Partition: last.Partition, Offset: last.Offset,
			Value: snappy.Encode(nil, raw),
			Envelope: &recordpb.Envelope{
				SchemaVersion: record.SchemaVersion, Signal: recordpb.Signal_SIGNAL_METRICS, Tenant: ps.tenant,
				ContentType: record.ContentTypeWriteRequest, ContentEncoding: record.EncodingSnappy,
				Items: uint64(len(req.Timeseries)),
			},
		})
	}
	start := time.Now()
	err := s.out.Write(ctx, out)
	outcome := "success"
	switch {
	case err == nil:
		s.m.samplesWritten.Add(float64(samples))
	case ingester.IsPermanent(err):
		outcome = "rejected"
	default:
		outcome = "error"
	}
	s.m.flushDuration.WithLabelValues(outcome).Observe(time.Since(start).Seconds())
	if err != nil {
		return fmt.Errorf("spanmetrics: write %d series of partition %d: %w", samples, ps.partition, err)
	}
	return nil
}

// nextTS is the timestamp (ms) of the next request: now, or just after
// the last one.
func (s *Sink) nextTS() int64 {
	now := s.now().UnixMilli()
	for {
		last := s.lastTS.Load()
		ts := max(now, last+1)
		if s.lastTS.CompareAndSwap(last, ts) {
			return ts
		}
	}
}

func (s *Sink) expired(dropped map[string]int) {
	for c, n := range dropped {
		s.m.expired.WithLabelValues(c).Add(float64(n))
		s.m.active.WithLabelValues(c).Sub(float64(n))
	}
}

// sweep expires idle series of every partition state, at most once per
// flush interval: those of partitions this process no longer holds get no
// Write that would expire them, and their memory must go too. A state
// without series is removed.
func (s *Sink) sweep() {
	now := s.now()
	s.mu.Lock()
	if now.Sub(s.lastSweep) < s.cfg.Consumer.BatchMaxDelay {
		s.mu.Unlock()
		return
	}
	s.lastSweep = now
	states := make([]*partitionState, 0, len(s.parts))
	for _, ps := range s.parts {
		states = append(states, ps)
	}
	s.mu.Unlock()
	for _, ps := range states {
		if !ps.mu.TryLock() {
			continue // being written: that Write expires it
		}
		s.expired(ps.expire(now, s.cfg.SeriesIdleTimeout, nil))
		if len(ps.clusters) == 0 {
			s.mu.Lock()
			delete(s.parts, partKey{partition: ps.partition, tenant: ps.tenant})
			ps.dead = true
			s.mu.Unlock()
		}
		ps.mu.Unlock()
	}
}
