package gateway

import (
	"mime"
	"net/http"
	"strings"

	"github.com/tributary-io/tributary/pkg/record"
	"github.com/tributary-io/tributary/pkg/reject"
	"github.com/tributary-io/tributary/pkg/remotewrite"
	recordpb "github.com/tributary-io/tributary/proto/record/v1"
)

// remoteWrite serves POST /api/v1/write (Prometheus remote-write 1.0).
func (g *Gateway) remoteWrite(r *http.Request) (int, error) {
	if enc := r.Header.Get("Content-Encoding"); enc != "" && !strings.EqualFold(enc, "snappy") {
		return 0, reject.Unsupported("content-encoding %q: remote-write bodies are snappy", enc)
	}
	if ct := r.Header.Get("Content-Type"); ct != "" {
		mt, params, err := mime.ParseMediaType(ct)
		if err != nil || mt != "application/x-protobuf" {
			return 0, reject.Unsupported("content-type %q: want application/x-protobuf", ct)
		}
		if p := params["proto"]; p != "" && p != "prometheus.WriteRequest" {
			return 0, reject.Unsupported("proto %q: only remote-write 1.0 (prometheus.WriteRequest) is supported", p)
		}
	}
	req, err := g.receive(r, "metrics", g.cfg.RemoteWrite.MaxDecodedBytes, true)
	if err != nil {
		return 0, err
	}
	defer req.release()
	body := req.body

	p, ok := g.parsers.get()
	if !ok {
		p = new(remotewrite.Parser)
	}
	batches, err := p.Parse(body, req.cluster, g.cfg.RemoteWrite)
	if err != nil {
		g.parsers.put(p)
		g.putBody(body)
		return 0, err
	}
	recs := make([]outRecord, len(batches))
	forwarded := false
	for i, b := range batches {
		recs[i] = outRecord{cluster: b.Cluster, value: b.Value, items: b.Samples}
		forwarded = forwarded || (len(b.Value) > 0 && len(body) > 0 && &b.Value[0] == &body[0])
	}
	g.parsers.put(p) // batches' values are the body or fresh allocations, not the parser's
	if err := g.produce(r.Context(), recordpb.Signal_SIGNAL_METRICS, g.cfg.MetricsTopic, record.ContentTypeWriteRequest, req.tenant, recs); err != nil {
		// The producer may still hold the body: leave it to the GC.
		return 0, err
	}
	g.putBody(body)
	path := "reencoded"
	if forwarded {
		path = "forwarded"
	}
	g.metrics.records.WithLabelValues("metrics", path).Add(float64(len(recs)))
	for _, rec := range recs {
		g.metrics.items.WithLabelValues("metrics", rec.cluster).Add(float64(rec.items))
	}
	return http.StatusNoContent, nil
}
