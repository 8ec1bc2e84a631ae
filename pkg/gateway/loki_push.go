package gateway

import (
	"mime"
	"net/http"
	"strings"

	"github.com/tributary-io/tributary/pkg/lokipush"
	"github.com/tributary-io/tributary/pkg/record"
	recordpb "github.com/tributary-io/tributary/proto/record/v1"
)

// lokiPush serves POST /loki/api/v1/push: snappy protobuf or JSON
// (optionally gzip), exactly as Loki accepts it. Like Loki, it writes the
// valid streams and entries of a push and answers 400 for the rest.
func (g *Gateway) lokiPush(r *http.Request) (int, error) {
	enc := strings.ToLower(strings.TrimSpace(r.Header.Get("Content-Encoding")))
	// The decoder reserves what it decompresses and decodes itself, before
	// allocating it; receive reserves only the body.
	req, err := g.receive(r, "logs", g.cfg.Logs.MaxDecodedBytes, false)
	if err != nil {
		return 0, err
	}
	defer req.release()
	var releases []func()
	defer func() {
		for _, release := range releases {
			release()
		}
	}()
	opt := lokipush.Options{
		DefaultCluster: req.cluster,
		MaxClusters:    g.cfg.MaxClustersPerRequest,
		Reserve: func(n int) error {
			release, err := g.reserve(int64(n))
			if err != nil {
				return err
			}
			releases = append(releases, release)
			return nil
		},
	}
	opt.OverrideCluster = req.override
	rt := g.route(g.cfg.LogsTopic)
	opt.Sharder = rt.sharder()
	body := req.body
	ct := r.Header.Get("Content-Type")
	if mt, _, err := mime.ParseMediaType(ct); err == nil {
		ct = mt
	}
	batches, refused := lokipush.Parse(body, ct, enc, g.logsLimits(req.cluster), opt)
	if refused != nil && len(batches) == 0 {
		g.putBody(body)
		return 0, refused
	}
	recs := make([]outRecord, len(batches))
	lineBytes := make(map[string]int, 1)
	for i, b := range batches {
		recs[i] = outRecord{cluster: b.Cluster, shard: b.Shard, value: b.Value, items: b.Entries, units: b.Streams, lineBytes: b.LineBytes}
		lineBytes[b.Cluster] += b.LineBytes
	}
	if err := g.produce(r.Context(), rt, recordpb.Signal_SIGNAL_LOGS, g.cfg.LogsTopic, record.ContentTypePushRequest, req.tenant, recs); err != nil {
		return 0, err // the producer may still hold the body
	}
	g.putBody(body)
	g.metrics.records.WithLabelValues("logs", "produced").Add(float64(len(recs)))
	for _, rec := range recs {
		g.metrics.items.WithLabelValues("logs", rec.cluster).Add(float64(rec.items))
	}
	for c, n := range lineBytes {
		g.metrics.lineBytes.WithLabelValues(c).Add(float64(n))
	}
	if refused != nil {
		return 0, refused // the valid part is written; the 400 names the rest
	}
	return http.StatusNoContent, nil
}
