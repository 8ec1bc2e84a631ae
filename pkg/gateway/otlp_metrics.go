package gateway

import (
	"context"
	"log/slog"
	"runtime"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
	colmetricspb "go.opentelemetry.io/proto/otlp/collector/metrics/v1"
	"google.golang.org/protobuf/proto"

	"github.com/tributary-io/tributary/pkg/otlplogs"
	"github.com/tributary-io/tributary/pkg/otlpmetrics"
	"github.com/tributary-io/tributary/pkg/record"
	"github.com/tributary-io/tributary/pkg/reject"
	"github.com/tributary-io/tributary/pkg/remotewrite"
	recordpb "github.com/tributary-io/tributary/proto/record/v1"
)

// otlpSignals is what OTLP metrics and logs need beside the spans path:
// their converters and self-metrics.
type otlpSignals struct {
	metricConverters *freeList[*otlpmetrics.Converter]
	logs             *otlplogs.Converter
	refusedPoints    *prometheus.CounterVec
	refusedRecords   *prometheus.CounterVec
}

func newOTLPSignals(cfg Config, reg prometheus.Registerer) *otlpSignals {
	f := promauto.With(reg)
	return &otlpSignals{
		metricConverters: newFreeList[*otlpmetrics.Converter](min(2*runtime.GOMAXPROCS(0), maxKeptParsers)),
		logs:             otlplogs.NewConverter(cfg.OTLPLogs.mapping),
		refusedPoints: f.NewCounterVec(prometheus.CounterOpts{
			Name: "tributary_gateway_otlp_refused_data_points_total",
			Help: "OTLP metric data points refused before conversion to remote-write (partial success), by reason: delta_temporality, no_temporality, no_cluster, translation. Series refused after conversion count in tributary_gateway_refused_samples_total.",
		}, []string{"reason"}),
		refusedRecords: f.NewCounterVec(prometheus.CounterOpts{
			Name: "tributary_gateway_otlp_refused_log_records_total",
			Help: "OTLP log records refused (partial success), by reason: no_cluster, or invalid (what a Loki push of the same entries would have had refused).",
		}, []string{"reason"}),
	}
}

// exportMetrics writes an OTLP ExportMetricsServiceRequest, from POST
// /v1/metrics or MetricsService/Export: converted with Prometheus's OTLP
// translator to a remote-write request, which then takes the remote-write
// path's validation and split (one record per cluster, more when large)
// to the metrics topic. Refused metrics and series are counted in
// partial_success; a request with nothing valid is refused whole (400 /
// INVALID_ARGUMENT).
func (g *Gateway) exportMetrics(ctx context.Context, req *otlpRequest) (proto.Message, error) {
	if n := g.cfg.RemoteWrite.MaxDecodedBytes; len(req.body) > n {
		return nil, reject.TooLarge("OTLP metrics request of %d bytes exceeds the limit of %d (-limits.max-decoded-bytes)", len(req.body), n)
	}
	if err := req.reserve(otlpmetrics.DecodeCost(len(req.body))); err != nil {
		return nil, err
	}
	conv, ok := g.otlp.metricConverters.get()
	if !ok {
		conv = otlpmetrics.NewConverter(g.cfg.OTLPMetrics)
	}
	res, err := conv.Convert(ctx, req.body, req.json, req.cluster)
	g.otlp.metricConverters.put(conv)
	if err != nil {
		return nil, err
	}
	for reason, n := range res.ByReason {
		g.otlp.refusedPoints.WithLabelValues(reason).Add(float64(n))
	}
	rejected, msg := int64(res.Rejected), res.Message
	var recs []outRecord
	forwarded := false
	rt := g.route(g.cfg.MetricsTopic)
	if res.Body != nil {
		p, ok := g.parsers.get()
		if !ok {
			p = new(remotewrite.Parser)
		}
		lim := g.remoteWriteLimits(req.cluster)
		lim.OverrideCluster = req.override
		lim.Sharder = rt.sharder()
		batches, err := p.Parse(res.Body, req.cluster, lim)
		if err != nil {
			g.parsers.put(p)
			return nil, err
		}
		if rf := p.Refused(); rf != nil {
			rf.ByReason(func(reason string, n int) {
				g.metrics.refusedSamples.WithLabelValues(reason).Add(float64(n))
			})
			// Samples stand for data points: a histogram point is
			// several series after conversion, so this may count more.
			rejected += int64(rf.Items())
			if msg == "" {
				msg = rf.Error()
			} else {
				msg += "; " + rf.Error()
			}
		}
		recs = make([]outRecord, len(batches))
		for i, b := range batches {
			recs[i] = outRecord{cluster: b.Cluster, shard: b.Shard, value: b.Value, items: b.Samples, units: b.Series}
			forwarded = forwarded || (len(b.Value) > 0 && &b.Value[0] == &res.Body[0])
		}
		g.parsers.put(p) // values are res.Body or fresh allocations
	}
	if len(recs) == 0 {
		if rejected > 0 {
			return nil, reject.BadRequest("%s", msg)
		}
		return &colmetricspb.ExportMetricsServiceResponse{}, nil
	}
	if err := g.produce(ctx, rt, recordpb.Signal_SIGNAL_METRICS, g.cfg.MetricsTopic, record.ContentTypeWriteRequest, req.tenant, recs); err != nil {
		return nil, err
	}
	resp := &colmetricspb.ExportMetricsServiceResponse{}
	if rejected > 0 {
		resp.PartialSuccess = &colmetricspb.ExportMetricsPartialSuccess{RejectedDataPoints: rejected, ErrorMessage: msg}
		g.limited.Log(ctx, slog.LevelInfo, "otlp metrics partial", "write partly refused", "signal", "otlp_metrics", "refused_data_points", rejected, "tenant", req.tenant, "err", msg)
	}
	path := "reencoded"
	if forwarded {
		path = "converted"
	}
	g.metrics.records.WithLabelValues("metrics", path).Add(float64(len(recs)))
	for _, rec := range recs {
		g.metrics.items.WithLabelValues("metrics", rec.cluster).Add(float64(rec.items))
	}
	return resp, nil
}
