package remotewrite

import (
	"fmt"
	"strconv"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/prompb"
	writev2 "github.com/prometheus/prometheus/prompb/io/prometheus/write/v2"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/tributary-io/tributary/pkg/reject"
)

// ParseV2 validates body (snappy-compressed io.prometheus.write.v2.Request)
// and returns its records in the 1.0 format (prometheus.WriteRequest), so
// that the Kafka contract and the sinks stay as they are. It applies the
// same rules as Parse, and accepts in part like Prometheus's 2.0 receiver:
// a series with bad symbol references, bad metadata references or neither
// samples nor histograms is left out and counted.
//
// What 1.0 cannot carry is dropped: start timestamps of samples and
// histograms, and metadata per series, which becomes one 1.0
// MetricMetadata per metric name (the first series' of that name).
//
// Unlike Parse, it builds the generated prompb objects: remote-write 2.0 is
// opted into by a sender, it always needs re-encoding (symbols are
// inlined), and the build costs about what the re-encode does.
func (p *Parser) ParseV2(body []byte, defaultCluster string, lim Limits) ([]Batch, error) {
	p.reset()
	dec, err := p.decode(body, lim)
	if err != nil {
		return nil, err
	}
	defer p.trim()
	if err := checkV2(dec, 0, msgRequest); err != nil {
		return nil, reject.BadRequest("%s", err.Error())
	}
	var req writev2.Request
	if err := req.Unmarshal(dec); err != nil {
		return nil, reject.BadRequest("malformed protobuf io.prometheus.write.v2.Request: %v", err)
	}
	v1, err := p.convertV2(&req)
	if err != nil {
		return nil, err
	}
	if n := v1.Size(); n > lim.MaxDecodedBytes {
		return nil, reject.TooLarge("remote-write 2.0 request is %d bytes once its symbols are inlined, above the limit of %d (-limits.max-decoded-bytes)", n, lim.MaxDecodedBytes)
	}
	raw, err := v1.Marshal()
	if err != nil {
		return nil, fmt.Errorf("encode remote-write 1.0 request: %w", err)
	}
	return p.parseDecoded(raw, nil, defaultCluster, lim)
}

// convertV2 builds the 1.0 request, counting the series it leaves out.
func (p *Parser) convertV2(req *writev2.Request) (*prompb.WriteRequest, error) {
	out := &prompb.WriteRequest{Timeseries: make([]prompb.TimeSeries, 0, len(req.Timeseries))}
	var (
		b        = labels.NewScratchBuilder(0)
		metadata = map[string]struct{}{}
	)
	for i := range req.Timeseries {
		ts := &req.Timeseries[i]
		ls, err := ts.ToLabels(&b, req.Symbols)
		if err != nil {
			p.refuseV2(i, ts, "labels: "+err.Error())
			continue
		}
		md, err := ts.ToMetadata(req.Symbols)
		if err != nil {
			p.refuseV2(i, ts, err.Error())
			continue
		}
		if len(ts.Samples) == 0 && len(ts.Histograms) == 0 {
			p.refuseV2(i, ts, "a series must have samples or histograms")
			continue
		}
		o := prompb.TimeSeries{
			Labels:  make([]prompb.Label, 0, ls.Len()),
			Samples: make([]prompb.Sample, len(ts.Samples)),
		}
		ls.Range(func(l labels.Label) {
			o.Labels = append(o.Labels, prompb.Label{Name: l.Name, Value: l.Value})
		})
		for j, s := range ts.Samples {
			o.Samples[j] = prompb.Sample{Value: s.Value, Timestamp: s.Timestamp}
		}
		for j := range ts.Histograms {
			// The 2.0 Histogram is the 1.0 one plus start_timestamp (17).
			hist, err := ts.Histograms[j].Marshal()
			if err != nil {
				return nil, fmt.Errorf("re-encode histogram: %w", err)
			}
			var h prompb.Histogram
			if err := h.Unmarshal(dropField(hist, 17)); err != nil {
				return nil, reject.BadRequest("series %d: histogram: %v", i, err)
			}
			h.XXX_unrecognized = nil
			o.Histograms = append(o.Histograms, h)
		}
		for _, e := range ts.Exemplars {
			el, err := e.ToExemplar(&b, req.Symbols)
			if err != nil {
				p.refused.count(0, 0, 1)
				p.refused.byReason[reasonInvalid]++
				if p.refused.first == "" {
					p.refused.first = "series " + strconv.Itoa(i) + ": exemplar labels: " + err.Error()
				}
				continue
			}
			pe := prompb.Exemplar{Value: el.Value, Timestamp: el.Ts}
			el.Labels.Range(func(l labels.Label) {
				pe.Labels = append(pe.Labels, prompb.Label{Name: l.Name, Value: l.Value})
			})
			o.Exemplars = append(o.Exemplars, pe)
		}
		out.Timeseries = append(out.Timeseries, o)
		name := ls.Get(labels.MetricName)
		if _, seen := metadata[name]; seen || name == "" || (ts.Metadata.Type == 0 && md.Help == "" && md.Unit == "") {
			continue
		}
		metadata[name] = struct{}{}
		out.Metadata = append(out.Metadata, prompb.MetricMetadata{
			Type:             prompb.MetricMetadata_MetricType(ts.Metadata.Type), // the same numbers in both versions
			MetricFamilyName: name,
			Help:             md.Help,
			Unit:             md.Unit,
		})
	}
	return out, nil
}

func (p *Parser) refuseV2(i int, ts *writev2.TimeSeries, msg string) {
	n := len(ts.Samples) + len(ts.Histograms) + len(ts.Exemplars)
	p.refused.count(len(ts.Samples), len(ts.Histograms), len(ts.Exemplars))
	p.refused.byReason[reasonInvalid] += n
	p.refused.Series++
	if p.refused.first == "" {
		p.refused.first = "series " + strconv.Itoa(i) + ": " + msg
	}
}

// dropField removes every field num from the message b, in place.
func dropField(b []byte, num protowire.Number) []byte {
	out := b[:0]
	for i := 0; i < len(b); {
		n, _, _, _, next := field(b, i)
		if next < 0 {
			return append(out, b[i:]...) // Unmarshal will say what is wrong
		}
		if n != num {
			out = append(out, b[i:next]...)
		}
		i = next
	}
	return out
}

// Messages of the 2.0 schema, for checkV2.
type v2Message uint8

const (
	msgFlat v2Message = iota // no nested messages
	msgRequest
	msgSeries
	msgHistogram
)

// v2Children names the nested messages of each message with any.
var v2Children = map[v2Message]map[protowire.Number]v2Message{
	msgRequest:   {5: msgSeries},
	msgSeries:    {2: msgFlat, 3: msgHistogram, 4: msgFlat, 5: msgFlat},
	msgHistogram: {8: msgFlat, 11: msgFlat},
}

// checkV2 checks that b, a message of kind m, and its nested messages are
// legal protobuf (the generated Unmarshal lets field numbers above 2^29-1
// through), naming the offset of the faulty byte.
func checkV2(b []byte, base int, m v2Message) error {
	children := v2Children[m]
	for i := 0; i < len(b); {
		num, typ, start, end, next := field(b, i)
		if next < 0 {
			e := fieldError(b, i, base)
			return fmt.Errorf("malformed protobuf io.prometheus.write.v2.Request at byte %d: %s", e.off, e.msg)
		}
		if child, ok := children[num]; ok && typ == protowire.BytesType {
			if err := checkV2(b[start:end], base+start, child); err != nil {
				return err
			}
		}
		i = next
	}
	return nil
}
