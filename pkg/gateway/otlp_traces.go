package gateway

import (
	"context"
	"log/slog"

	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/protobuf/proto"

	"github.com/tributary-io/tributary/pkg/otlp"
	"github.com/tributary-io/tributary/pkg/record"
	recordpb "github.com/tributary-io/tributary/proto/record/v1"
)

// exportSpans writes an OTLP ExportTraceServiceRequest, from POST
// /v1/traces or TraceService/Export: one record per cluster (more when a
// cluster's spans exceed a record) to the spans topic. Invalid spans are
// refused and the rest written, with partial_success saying how many and
// why; a request with nothing valid is refused whole (400 /
// INVALID_ARGUMENT).
func (g *Gateway) exportSpans(ctx context.Context, req *otlpRequest) (proto.Message, error) {
	p, ok := g.spans.get()
	if !ok {
		p = new(otlp.Parser)
	}
	lim := g.spanLimits(req.cluster)
	lim.OverrideCluster = req.override
	rt := g.route(g.cfg.SpansTopic)
	lim.Sharder = rt.sharder() // hot clusters' spans cut into one record per shard by trace id
	var (
		batches []otlp.Batch
		err     error
	)
	if req.json {
		if err := req.reserve(otlp.JSONCost(len(req.body))); err != nil {
			g.spans.put(p)
			return nil, err
		}
		batches, err = p.ParseJSON(req.body, req.cluster, lim)
	} else {
		batches, err = p.Parse(req.body, req.cluster, lim)
	}
	rf := p.Refused()
	if rf != nil {
		rf.ByReason(func(reason string, n int) {
			g.metrics.refusedSpans.WithLabelValues(reason).Add(float64(n))
		})
	}
	if err != nil {
		g.spans.put(p)
		return nil, err
	}
	resp := &coltracepb.ExportTraceServiceResponse{}
	if rf != nil {
		resp.PartialSuccess = &coltracepb.ExportTracePartialSuccess{RejectedSpans: int64(rf.Spans), ErrorMessage: rf.Message()}
	}
	recs := make([]outRecord, len(batches))
	size, forwarded := 0, false
	for i, b := range batches {
		recs[i] = outRecord{cluster: b.Cluster, shard: b.Shard, value: b.Value, items: b.Spans, units: b.Spans}
		size += len(b.Value)
		forwarded = forwarded || b.Forwarded
	}
	g.spans.put(p) // the records are fresh allocations, not the parser's
	if len(recs) == 0 {
		return resp, nil
	}
	if err := req.reserve(size); err != nil {
		return nil, err
	}
	if err := g.produce(ctx, rt, recordpb.Signal_SIGNAL_SPANS, g.cfg.SpansTopic, record.ContentTypeTraces, req.tenant, recs); err != nil {
		return nil, err
	}
	if ps := resp.PartialSuccess; ps != nil {
		// Answered 200, so instrument does not log it: say it here, like a
		// refusal (rate limited).
		g.limited.Log(ctx, slog.LevelInfo, "spans partial", "write partly refused", "signal", "spans", "refused_spans", ps.RejectedSpans, "tenant", req.tenant, "err", ps.ErrorMessage)
	}
	path := "reencoded"
	if forwarded {
		path = "forwarded"
	}
	g.metrics.records.WithLabelValues("spans", path).Add(float64(len(recs)))
	for _, rec := range recs {
		g.metrics.items.WithLabelValues("spans", rec.cluster).Add(float64(rec.items))
	}
	return resp, nil
}
