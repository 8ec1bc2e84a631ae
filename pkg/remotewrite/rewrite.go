package remotewrite

import (
	"sort"

	"github.com/golang/snappy"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/tributary-io/tributary/pkg/reject"
)

type labelSpan struct {
	start, end int // the whole Label field (tag, length, payload) within the series
	name       []byte
}

// rewrite re-encodes the request: one or more records per cluster, in the
// order clusters first appear, series order kept within a cluster, labels
// sorted, the cluster label added where it was missing, and samples outside
// the time window left out.
func (p *Parser) rewrite(dec []byte, lim Limits) error {
	// snappy.MaxEncodedLen(maxRaw) <= MaxRecordBytes: a record never exceeds
	// the limit, whatever the data compresses to.
	maxRaw := (lim.MaxRecordBytes - 32) * 6 / 7
	if maxRaw < 64 {
		return reject.TooLarge("record limit of %d bytes is too small", lim.MaxRecordBytes)
	}
	// Order the series by bucket — a cluster's shard, or the cluster
	// itself when it has one — with a counting sort: linear in series and
	// buckets, series order kept within a bucket. Bucket numbers follow
	// the clusters' first appearance, then the shard.
	clusters := p.groups.Names()
	p.groupBucket = append(p.groupBucket[:0], make([]int, len(clusters)+1)...)
	for g := range clusters {
		p.groupBucket[g+1] = p.groupBucket[g] + p.groupK(g)
	}
	buckets := p.groupBucket[len(clusters)]
	p.groupStart = append(p.groupStart[:0], make([]int, buckets+1)...)
	for i := range p.series {
		p.groupStart[p.bucket(&p.series[i])+1]++
	}
	for b := 1; b <= buckets; b++ {
		p.groupStart[b] += p.groupStart[b-1]
	}
	p.fill = append(p.fill[:0], p.groupStart[:buckets]...)
	p.order = append(p.order[:0], make([]int, len(p.series))...)
	for i := range p.series {
		b := p.bucket(&p.series[i])
		p.order[p.fill[b]] = i
		p.fill[b]++
	}
	for g, cluster := range clusters {
		for sh := range p.groupK(g) {
			b := p.groupBucket[g] + sh
			p.raw = p.raw[:0]
			cur := Batch{Cluster: cluster, Shard: sh}
			flush := func() {
				if len(p.raw) == 0 {
					return
				}
				cur.Value = snappy.Encode(nil, p.raw)
				p.batches = append(p.batches, cur)
				cur = Batch{Cluster: cluster, Shard: sh}
				p.raw = p.raw[:0]
			}
			if b == 0 {
				// Metadata describes metric families, not series: it
				// travels with the first cluster's first record.
				for _, m := range p.metadata {
					if m[1]-m[0] > maxRaw {
						return reject.TooLarge("metadata entry of %d bytes exceeds the record limit", m[1]-m[0])
					}
					p.raw = append(p.raw, dec[m[0]:m[1]]...)
				}
			}
			for _, i := range p.order[p.groupStart[b]:p.groupStart[b+1]] {
				if err := p.appendSeries(dec, &p.series[i], cluster, maxRaw, &cur, flush); err != nil {
					return err
				}
			}
			flush()
		}
	}
	return nil
}

// groupK is group g's shard count: 1 without a Sharder.
func (p *Parser) groupK(g int) int {
	if p.lim.Sharder == nil {
		return 1
	}
	return p.shards(g)
}

// bucket is s's bucket in rewrite's order.
func (p *Parser) bucket(s *seriesInfo) int { return p.groupBucket[s.group] + s.shard }

// appendSeries appends s to p.raw as one TimeSeries, or as several with the
// same labels when it alone is larger than a record, calling flush first
// whenever the next piece would not fit. Samples outside the time window
// are left out.
func (p *Parser) appendSeries(dec []byte, s *seriesInfo, cluster string, maxRaw int, cur *Batch, flush func()) error {
	b := dec[s.start:s.end]
	p.labels = p.labels[:0]
	labelsLen := 0
	for i := 0; i < len(b); {
		num, _, start, end, next := field(b, i)
		if num == fSeriesLabels {
			name, _, _ := label(b[start:end], 0)
			if s.dropCluster && string(name) == ClusterLabel {
				i = next
				continue // replaced by clusterField
			}
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
		inner := bytesFieldLen(fLabelName, len(ClusterLabel)) + bytesFieldLen(fLabelValue, len(cluster))
		clusterField = make([]byte, 0, bytesFieldLen(fSeriesLabels, inner))
		clusterField = protowire.AppendTag(clusterField, fSeriesLabels, protowire.BytesType)
		clusterField = protowire.AppendVarint(clusterField, uint64(inner))
		clusterField = appendBytesField(clusterField, fLabelName, clusterLabel)
		clusterField = appendBytesField(clusterField, fLabelValue, []byte(cluster))
		labelsLen += len(clusterField)
	}

	// Cut the non-label fields into pieces that fit one record each.
	const header = 11 // tag + the longest length varint we can need
	var piece Batch   // counts of the piece being cut
	emit := func(from, to, payload int) {
		if len(p.raw)+header+payload > maxRaw {
			flush()
		}
		p.raw = protowire.AppendTag(p.raw, fWriteRequestTimeseries, protowire.BytesType)
		p.raw = protowire.AppendVarint(p.raw, uint64(payload))
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
			num, _, start, end, next := field(b, i)
			if num != fSeriesLabels && p.keep(s, num, b[start:end]) {
				p.raw = append(p.raw, b[i:next]...)
			}
			i = next
		}
		cur.Series++
		cur.Samples += piece.Samples
		cur.Histograms += piece.Histograms
		cur.Exemplars += piece.Exemplars
		piece = Batch{}
	}
	from, payload := 0, labelsLen
	for i := 0; i < len(b); {
		num, _, start, end, next := field(b, i)
		if num != fSeriesLabels && p.keep(s, num, b[start:end]) {
			size := next - i
			if labelsLen+size+header > maxRaw {
				return reject.TooLarge("one series field of %d bytes does not fit a record of %d bytes (-limits.max-record-bytes)", size, maxRaw)
			}
			if payload+size+header > maxRaw {
				emit(from, i, payload)
				from, payload = i, labelsLen
			}
			payload += size
			switch num {
			case fSeriesSamples:
				piece.Samples++
			case fSeriesHistograms:
				piece.Samples++
				piece.Histograms++
			case fSeriesExemplars:
				piece.Exemplars++
			}
		}
		i = next
	}
	emit(from, len(b), payload)
	return nil
}

// keep reports whether field num of series s, with payload v, goes into
// the records: false only for samples outside the time window.
func (p *Parser) keep(s *seriesInfo, num protowire.Number, v []byte) bool {
	if !s.partial {
		return true
	}
	var ts int64
	switch num {
	case fSeriesSamples:
		ts, _ = sampleTimestamp(v, 0)
	case fSeriesHistograms:
		ts, _ = histogramTimestamp(v, 0)
		return p.inWindow(ts) == 0 && validHistogram(v) == nil
	case fSeriesExemplars:
		ts, _ = exemplarTimestamp(v, 0)
		return p.exemplarInWindow(ts) == 0
	default:
		return true
	}
	return p.inWindow(ts) == 0
}
