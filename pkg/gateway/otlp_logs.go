package gateway

import (
	"context"
	"log/slog"
	"net/http"

	collogspb "go.opentelemetry.io/proto/otlp/collector/logs/v1"
	"google.golang.org/protobuf/proto"

	"github.com/tributary-io/tributary/pkg/lokipush"
	"github.com/tributary-io/tributary/pkg/otlplogs"
	"github.com/tributary-io/tributary/pkg/record"
	"github.com/tributary-io/tributary/pkg/reject"
	recordpb "github.com/tributary-io/tributary/proto/record/v1"
)

// OTLPLogsConfig is how OTLP logs map to Loki streams.
type OTLPLogsConfig struct {
	// ConfigFile holds Loki's otlp_config (and the distributor's
	// default_resource_attributes_as_index_labels); "" is Loki's default
	// mapping.
	ConfigFile string `yaml:"config_file"`
	mapping    otlplogs.Config
}

// exportLogs writes an OTLP ExportLogsServiceRequest, from POST /v1/logs
// or LogsService/Export: mapped as Loki's own OTLP endpoint maps it to a
// Loki push request, which then takes the Loki push path's validation and
// split (one record per cluster, more when large) to the logs topic.
// Refused records are counted in partial_success; a request with nothing
// valid is refused whole (400 / INVALID_ARGUMENT).
func (g *Gateway) exportLogs(ctx context.Context, req *otlpRequest) (proto.Message, error) {
	if n := g.cfg.Logs.MaxDecodedBytes; n > 0 && len(req.body) > n {
		return nil, reject.TooLarge("OTLP logs request of %d bytes exceeds the limit of %d", len(req.body), n)
	}
	if err := req.reserve(otlplogs.DecodeCost(len(req.body))); err != nil {
		return nil, err
	}
	res, err := g.otlp.logs.Convert(req.body, req.json, req.cluster)
	if err != nil {
		return nil, err
	}
	if res.Rejected > 0 {
		g.otlp.refusedRecords.WithLabelValues(otlplogs.ReasonNoCluster).Add(float64(res.Rejected))
	}
	rejected, msg := int64(res.Rejected), res.Message
	var (
		recs      []outRecord
		lineBytes = map[string]int{}
	)
	rt := g.route(g.cfg.LogsTopic)
	if res.Body != nil {
		opt := lokipush.Options{
			DefaultCluster:  req.cluster,
			MaxClusters:     g.cfg.MaxClustersPerRequest,
			Reserve:         req.reserve,
			OverrideCluster: req.override,
			Sharder:         rt.sharder(),
		}
		batches, refused := lokipush.Parse(res.Body, "application/x-protobuf", "", g.logsLimits(req.cluster), opt)
		if refused != nil && len(batches) == 0 {
			if st, ok := reject.Status(refused); !ok || st != http.StatusBadRequest {
				return nil, refused // too large, or the budget is spent
			}
		}
		kept := 0
		recs = make([]outRecord, len(batches))
		for i, b := range batches {
			recs[i] = outRecord{cluster: b.Cluster, shard: b.Shard, value: b.Value, items: b.Entries, units: b.Streams, lineBytes: b.LineBytes}
			kept += b.Entries
			lineBytes[b.Cluster] += b.LineBytes
		}
		if lost := res.Records - res.Rejected - kept; refused != nil && lost > 0 {
			g.otlp.refusedRecords.WithLabelValues("invalid").Add(float64(lost))
			rejected += int64(lost)
			if msg == "" {
				msg = refused.Error()
			} else {
				msg += "; " + refused.Error()
			}
		}
	}
	if len(recs) == 0 {
		if rejected > 0 {
			return nil, reject.BadRequest("%s", msg)
		}
		return &collogspb.ExportLogsServiceResponse{}, nil
	}
	if err := g.produce(ctx, rt, recordpb.Signal_SIGNAL_LOGS, g.cfg.LogsTopic, record.ContentTypePushRequest, req.tenant, recs); err != nil {
		return nil, err
	}
	resp := &collogspb.ExportLogsServiceResponse{}
	if rejected > 0 {
		resp.PartialSuccess = &collogspb.ExportLogsPartialSuccess{RejectedLogRecords: rejected, ErrorMessage: msg}
		g.limited.Log(ctx, slog.LevelInfo, "otlp logs partial", "write partly refused", "signal", "otlp_logs", "refused_log_records", rejected, "tenant", req.tenant, "err", msg)
	}
	g.metrics.records.WithLabelValues("logs", "converted").Add(float64(len(recs)))
	for _, rec := range recs {
		g.metrics.items.WithLabelValues("logs", rec.cluster).Add(float64(rec.items))
	}
	for c, n := range lineBytes {
		g.metrics.lineBytes.WithLabelValues(c).Add(float64(n))
	}
	return resp, nil
}
