package remotewrite

import (
	"sort"

	"github.com/golang/snappy"

	"github.com/tributary-io/tributary/pkg/reject"
)

type labelSpan struct {
	start, end int // the whole Label field (tag, length, payload) within the series
	name       []byte
}

// rewrite re-encodes the request: one or more records per cluster, in the
// order clusters first appear, series order kept within a cluster, labels
// sorted and the cluster label added where it was missing.
func (p *Parser) rewrite(dec []byte, defaultCluster string, lim Limits) error {
	// snappy.MaxEncodedLen(maxRaw) <= MaxRecordBytes: a record never exceeds
	// the limit, whatever the data compresses to.
	maxRaw := (lim.MaxRecordBytes - 32) * 6 / 7
	if maxRaw < 64 {
		return reject.TooLarge("record limit of %d bytes is too small", lim.MaxRecordBytes)
	}
	var clusters []string
	if len(p.series) == 0 {
		clusters = append(clusters, defaultCluster)
	}
	for i := range p.series {
		c := p.series[i].cluster
		g := -1
		for j, name := range clusters {
			if name == c {
				g = j
				break
			}
		}
		if g < 0 {
			g = len(clusters)
			clusters = append(clusters, c)
		}
		p.series[i].group = g
	}
	for g, cluster := range clusters {
		p.raw = p.raw[:0]
		cur := Batch{Cluster: cluster}
		flush := func() {
			if len(p.raw) == 0 {
				return
			}
			cur.Value = snappy.Encode(nil, p.raw)
			p.batches = append(p.batches, cur)
			cur = Batch{Cluster: cluster}
			p.raw = p.raw[:0]
		}
		if g == 0 {
			// Metadata describes metric families, not series: it travels
			// with the first cluster's first record.
			for _, m := range p.metadata {
				if m[1]-m[0] > maxRaw {
					return reject.TooLarge("metadata entry of %d bytes exceeds the record limit", m[1]-m[0])
				}
				p.raw = append(p.raw, dec[m[0]:m[1]]...)
			}
		}
		for i := range p.series {
			s := &p.series[i]
			if s.group != g {
				continue
			}
			if err := p.appendSeries(dec, s, maxRaw, &cur, flush); err != nil {
				return err
			}
		}
		flush()
	}
	return nil
}

// appendSeries appends s to p.raw as one TimeSeries, or as several with the
// same labels when it alone is larger than a record, calling flush first
// whenever the next piece would not fit.
func (p *Parser) appendSeries(dec []byte, s *seriesInfo, maxRaw int, cur *Batch, flush func()) error {
	b := dec[s.start:s.end]
	p.labels = p.labels[:0]
	labelsLen := 0
	for i := 0; i < len(b); {
		num, _, start, end, next := field(b, i)
		if num == fSeriesLabels {
			name, _, _ := label(b[start:end])
			p.labels = append(p.labels, labelSpan{start: i, end: next, name: name})
			labelsLen += next - i
		}
		i = next
	}
	if !s.sorted {
		sort.Slice(p.labels, func(i, j int) bool { return string(p.labels[i].name) < string(p.labels[j].name) })
	}
	var clusterField []byte
	if !s.hasCluster {
		inner := bytesFieldLen(fLabelName, len(ClusterLabel)) + bytesFieldLen(fLabelValue, len(s.cluster))
		clusterField = make([]byte, 0, bytesFieldLen(fSeriesLabels, inner))
		clusterField = appendUvarint(clusterField, fSeriesLabels<<3|wireBytes)
		clusterField = appendUvarint(clusterField, uint64(inner))
		clusterField = appendBytesField(clusterField, fLabelName, clusterLabel)
		clusterField = appendBytesField(clusterField, fLabelValue, []byte(s.cluster))
		labelsLen += len(clusterField)
	}

	// Cut the non-label fields into pieces that fit one record each.
	const header = 11 // tag + the longest length varint we can need
	emit := func(from, to, payload, samples int) {
		if len(p.raw)+header+payload > maxRaw {
			flush()
		}
		p.raw = appendUvarint(p.raw, fWriteRequestTimeseries<<3|wireBytes)
		p.raw = appendUvarint(p.raw, uint64(payload))
		inserted := clusterField == nil
		for _, l := range p.labels {
			if !inserted && string(l.name) > ClusterLabel {
				p.raw = append(p.raw, clusterField...)
				inserted = true
			}
			p.raw = append(p.raw, b[l.start:l.end]...)
		}
		if !inserted {
			p.raw = append(p.raw, clusterField...)
		}
		for i := from; i < to; {
			num, _, _, _, next := field(b, i)
			if num != fSeriesLabels {
				p.raw = append(p.raw, b[i:next]...)
			}
			i = next
		}
		cur.Series++
		cur.Samples += samples
	}
	from, payload, samples := 0, labelsLen, 0
	for i := 0; i < len(b); {
		num, _, _, _, next := field(b, i)
		if num != fSeriesLabels {
			size := next - i
			if labelsLen+size+header > maxRaw {
				return reject.TooLarge("one series field of %d bytes does not fit a record of %d bytes", size, maxRaw)
			}
			if payload+size+header > maxRaw {
				emit(from, i, payload, samples)
				from, payload, samples = i, labelsLen, 0
			}
			payload += size
			if num == fSeriesSamples || num == fSeriesHistograms {
				samples++
			}
		}
		i = next
	}
	emit(from, len(b), payload, samples)
	return nil
}
