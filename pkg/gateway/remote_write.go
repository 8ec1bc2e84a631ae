package gateway

import (
	"mime"
	"net/http"
	"strconv"
	"strings"

	"github.com/tributary-io/tributary/pkg/record"
	"github.com/tributary-io/tributary/pkg/reject"
	"github.com/tributary-io/tributary/pkg/remotewrite"
	recordpb "github.com/tributary-io/tributary/proto/record/v1"
)

// The proto parameters of remote-write's Content-Type.
const (
	protoV1 = "prometheus.WriteRequest"
	protoV2 = "io.prometheus.write.v2.Request"
)

// Response headers of remote-write 2.0: what the receiver wrote, so that
// the sender can tell a partial write from a full one.
const (
	headerSamplesWritten    = "X-Prometheus-Remote-Write-Samples-Written"
	headerHistogramsWritten = "X-Prometheus-Remote-Write-Histograms-Written"
	headerExemplarsWritten  = "X-Prometheus-Remote-Write-Exemplars-Written"
)

// remoteWriteHandler serves POST /api/v1/write through instrument, with the
// response writer at hand for remote-write 2.0's headers.
func (g *Gateway) remoteWriteHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		g.instrument("metrics", func(r *http.Request) (int, error) { return g.remoteWrite(w, r) }).ServeHTTP(w, r)
	})
}

// remoteWriteProto is the message a request's Content-Type names.
func remoteWriteProto(r *http.Request) (string, error) {
	if enc := r.Header.Get("Content-Encoding"); enc != "" && !strings.EqualFold(enc, "snappy") {
		return "", reject.Unsupported("content-encoding %q: remote-write bodies are snappy", enc)
	}
	ct := r.Header.Get("Content-Type")
	if ct == "" {
		return protoV1, nil
	}
	mt, params, err := mime.ParseMediaType(ct)
	if err != nil || mt != "application/x-protobuf" {
		return "", reject.Unsupported("content-type %q: want application/x-protobuf", ct)
	}
	switch p := params["proto"]; p {
	case "", protoV1:
		return protoV1, nil
	case protoV2:
		return protoV2, nil
	default:
		return "", reject.Unsupported("proto %q: want %s (remote-write 1.0) or %s (2.0)", p, protoV1, protoV2)
	}
}

// remoteWrite serves POST /api/v1/write: Prometheus remote-write 1.0, and
// 2.0 converted to 1.0 records. Like Prometheus's receiver, it writes the
// valid part of a request and answers 400 naming what it refused.
func (g *Gateway) remoteWrite(w http.ResponseWriter, r *http.Request) (int, error) {
	proto, err := remoteWriteProto(r)
	if err != nil {
		return 0, err
	}
	var written remotewrite.Batch // totals, for 2.0's response headers
	if proto == protoV2 {
		defer func() {
			h := w.Header()
			h.Set(headerSamplesWritten, strconv.Itoa(written.Samples-written.Histograms))
			h.Set(headerHistogramsWritten, strconv.Itoa(written.Histograms))
			h.Set(headerExemplarsWritten, strconv.Itoa(written.Exemplars))
		}()
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
	lim := g.remoteWriteLimits(req.cluster)
	lim.OverrideCluster = req.override
	rt := g.route(g.cfg.MetricsTopic)
	lim.Sharder = rt.sharder()
	var batches []remotewrite.Batch
	if proto == protoV2 {
		batches, err = p.ParseV2(body, req.cluster, lim)
	} else {
		batches, err = p.Parse(body, req.cluster, lim)
	}
	if err != nil {
		g.parsers.put(p)
		g.putBody(body)
		return 0, err
	}
	var refused error
	if rf := p.Refused(); rf != nil {
		rf.ByReason(func(reason string, n int) {
			g.metrics.refusedSamples.WithLabelValues(reason).Add(float64(n))
		})
		refused = rf
	}
	metadataDropped := p.MetadataDropped()
	recs := make([]outRecord, len(batches))
	forwarded := false
	var total remotewrite.Batch
	for i, b := range batches {
		recs[i] = outRecord{cluster: b.Cluster, shard: b.Shard, value: b.Value, items: b.Samples, units: b.Series}
		forwarded = forwarded || (len(b.Value) > 0 && len(body) > 0 && &b.Value[0] == &body[0])
		total.Samples += b.Samples
		total.Histograms += b.Histograms
		total.Exemplars += b.Exemplars
	}
	if refused != nil {
		// The refusal's text lives in the parser: render it before
		// giving the parser back.
		refused = reject.BadRequest("%s; accepted %d samples, %d histogram samples, %d exemplars",
			refused.Error(), total.Samples-total.Histograms, total.Histograms, total.Exemplars)
	}
	g.parsers.put(p) // batches' values are the body or fresh allocations, not the parser's
	if len(recs) > 0 {
		if err := g.produce(r.Context(), rt, recordpb.Signal_SIGNAL_METRICS, g.cfg.MetricsTopic, record.ContentTypeWriteRequest, req.tenant, recs); err != nil {
			// The producer may still hold the body: leave it to the GC.
			return 0, err
		}
	}
	written = total
	g.putBody(body)
	path := "reencoded"
	if forwarded {
		path = "forwarded"
	}
	g.metrics.records.WithLabelValues("metrics", path).Add(float64(len(recs)))
	for _, rec := range recs {
		g.metrics.items.WithLabelValues("metrics", rec.cluster).Add(float64(rec.items))
	}
	if metadataDropped > 0 {
		g.metrics.metadataDropped.Add(float64(metadataDropped))
	}
	if refused != nil {
		return 0, refused
	}
	return http.StatusNoContent, nil
}
