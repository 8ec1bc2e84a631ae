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
// (optionally gzip), exactly as Loki accepts it.
func (g *Gateway) lokiPush(r *http.Request) (int, error) {
	enc := strings.ToLower(strings.TrimSpace(r.Header.Get("Content-Encoding")))
	// Only an unencoded body is snappy protobuf (or JSON, which has no
	// snappy header to read); gzip and JSON are bounded while decoding.
	req, err := g.receive(r, "logs", g.cfg.Logs.MaxDecodedBytes, enc == "")
	if err != nil {
		return 0, err
	}
	defer req.release()
	body := req.body
	ct := r.Header.Get("Content-Type")
	if mt, _, err := mime.ParseMediaType(ct); err == nil {
		ct = mt
	}
	batches, err := lokipush.Parse(body, ct, enc, req.cluster, g.cfg.Logs)
	if err != nil {
		g.putBody(body)
		return 0, err
	}
	recs := make([]outRecord, len(batches))
	lineBytes := make(map[string]int, 1)
	for i, b := range batches {
		recs[i] = outRecord{cluster: b.Cluster, value: b.Value, items: b.Entries}
		lineBytes[b.Cluster] += b.LineBytes
	}
	if err := g.produce(r.Context(), recordpb.Signal_SIGNAL_LOGS, g.cfg.LogsTopic, record.ContentTypePushRequest, req.tenant, recs); err != nil {
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
	return http.StatusNoContent, nil
}
