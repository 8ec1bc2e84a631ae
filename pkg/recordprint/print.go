// Package recordprint renders Tributary's Kafka records as text for people:
// the envelope, and the payload decoded (a metrics record's series with
// their samples, a logs record's streams with their lines). kcat shows a
// record's key and headers, but its value is snappy-compressed protobuf.
package recordprint

import (
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/IBM/sarama"
	"github.com/golang/snappy"
	"github.com/grafana/loki/pkg/push"
	"github.com/prometheus/prometheus/prompb"

	"github.com/tributary-io/tributary/pkg/record"
	recordpb "github.com/tributary-io/tributary/proto/record/v1"
)

// maxDecoded bounds the memory one record may make Print allocate; the
// gateway's records decode to at most -limits.max-decoded-bytes (32 MiB by
// default).
const maxDecoded = 64 << 20

// Print writes m as text: a header line with its position and key, the
// envelope, then the decoded payload. A record it cannot decode is printed
// with its raw headers and the reason, not skipped; the error is only for
// w failing.
func Print(w io.Writer, m *sarama.ConsumerMessage) error {
	p := &printer{w: w}
	p.printf("record %s/%d@%d key=%q time=%s bytes=%d\n", m.Topic, m.Partition, m.Offset, m.Key,
		m.Timestamp.UTC().Format(time.RFC3339Nano), len(m.Value))
	env, err := record.Parse(m.Headers)
	if err != nil {
		p.printf("  envelope: %v\n", err)
		for _, h := range m.Headers {
			if h != nil {
				p.printf("  header %s=%q\n", h.Key, h.Value)
			}
		}
		return p.err
	}
	p.printf("  envelope: signal=%s cluster=%q tenant=%q items=%d received=%s schema=%d\n",
		record.SignalName(env.GetSignal()), env.GetCluster(), env.GetTenant(), env.GetItems(),
		time.Unix(0, env.GetReceivedAtUnixNano()).UTC().Format(time.RFC3339Nano), env.GetSchemaVersion())
	p.printf("  content: %s, %s\n", env.GetContentType(), env.GetContentEncoding())
	if env.GetContentEncoding() != record.EncodingSnappy {
		p.printf("  payload: unknown encoding %q\n", env.GetContentEncoding())
		return p.err
	}
	if n, err := snappy.DecodedLen(m.Value); err == nil && n > maxDecoded {
		p.printf("  payload: declares %d decoded bytes, more than the %d this printer decodes\n", n, maxDecoded)
		return p.err
	}
	raw, err := snappy.Decode(nil, m.Value)
	if err != nil {
		p.printf("  payload: snappy: %v\n", err)
		return p.err
	}
	switch {
	case env.GetSignal() == recordpb.Signal_SIGNAL_METRICS && env.GetContentType() == record.ContentTypeWriteRequest:
		p.writeRequest(raw)
	case env.GetSignal() == recordpb.Signal_SIGNAL_LOGS && env.GetContentType() == record.ContentTypePushRequest:
		p.pushRequest(raw)
	default:
		p.printf("  payload: %d bytes of %s, not decoded\n", len(raw), env.GetContentType())
	}
	return p.err
}

// printer keeps the first write error so that the printing code reads
// straight.
type printer struct {
	w   io.Writer
	err error
}

func (p *printer) printf(format string, args ...any) {
	if p.err == nil {
		_, p.err = fmt.Fprintf(p.w, format, args...)
	}
}

func (p *printer) writeRequest(raw []byte) {
	var wr prompb.WriteRequest
	if err := wr.Unmarshal(raw); err != nil {
		p.printf("  payload: WriteRequest: %v\n", err)
		return
	}
	for _, ts := range wr.Timeseries {
		p.printf("  series %s\n", seriesName(ts.Labels))
		for _, s := range ts.Samples {
			p.printf("    %s %s\n", millis(s.Timestamp), strconv.FormatFloat(s.Value, 'g', -1, 64))
		}
		for _, h := range ts.Histograms {
			p.printf("    %s native histogram: count=%s sum=%s\n", millis(h.Timestamp), histogramCount(h), strconv.FormatFloat(h.Sum, 'g', -1, 64))
		}
		for _, e := range ts.Exemplars {
			p.printf("    %s exemplar %s %s\n", millis(e.Timestamp), labelSet(e.Labels), strconv.FormatFloat(e.Value, 'g', -1, 64))
		}
	}
	for _, md := range wr.Metadata {
		p.printf("  metadata %s type=%s unit=%q help=%q\n", md.MetricFamilyName, strings.ToLower(md.Type.String()), md.Unit, md.Help)
	}
}

func (p *printer) pushRequest(raw []byte) {
	var pr push.PushRequest
	if err := pr.Unmarshal(raw); err != nil {
		p.printf("  payload: PushRequest: %v\n", err)
		return
	}
	for _, s := range pr.Streams {
		p.printf("  stream %s\n", s.Labels)
		for _, e := range s.Entries {
			p.printf("    %s %q", e.Timestamp.UTC().Format(time.RFC3339Nano), e.Line)
			if len(e.StructuredMetadata) > 0 {
				ls := make([]prompb.Label, len(e.StructuredMetadata))
				for i, l := range e.StructuredMetadata {
					ls[i] = prompb.Label{Name: l.Name, Value: l.Value}
				}
				p.printf(" %s", labelSet(ls))
			}
			p.printf("\n")
		}
	}
}

func millis(ms int64) string {
	return time.UnixMilli(ms).UTC().Format(time.RFC3339Nano)
}

func histogramCount(h prompb.Histogram) string {
	if f, ok := h.Count.(*prompb.Histogram_CountFloat); ok {
		return strconv.FormatFloat(f.CountFloat, 'g', -1, 64)
	}
	return strconv.FormatUint(h.GetCountInt(), 10)
}

// seriesName is the series in PromQL's notation: name{labels}.
func seriesName(ls []prompb.Label) string {
	var name string
	rest := make([]prompb.Label, 0, len(ls))
	for _, l := range ls {
		if l.Name == "__name__" {
			name = l.Value
		} else {
			rest = append(rest, l)
		}
	}
	return name + labelSet(rest)
}

func labelSet(ls []prompb.Label) string {
	var b strings.Builder
	b.WriteByte('{')
	for i, l := range ls { // in the record's order: a misordered series is worth seeing
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(l.Name)
		b.WriteByte('=')
		b.WriteString(strconv.Quote(l.Value))
	}
	b.WriteByte('}')
	return b.String()
}
