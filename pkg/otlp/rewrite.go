package otlp

import (
	"strconv"

	"google.golang.org/protobuf/encoding/protowire"

	"github.com/tributary-io/tributary/pkg/reject"
	"github.com/tributary-io/tributary/pkg/shard"
)

// maxHeader is the most a ResourceSpans or ScopeSpans field adds around its
// payload: a one-byte tag and a length varint of a record (< 32 GiB).
const maxHeader = 6

// maxRawRecord is the largest uncompressed record whose snappy encoding
// never exceeds lim.MaxRecordBytes, whatever the data compresses to.
func maxRawRecord(lim Limits) int {
	return (lim.MaxRecordBytes - 32) * 6 / 7
}

var clusterKey = []byte(ClusterAttribute)

// clusterAttrLen is the size of a Resource.attributes field holding
// k8s.cluster.name with a value of n bytes.
func clusterAttrLen(n int) int {
	anyValue := protowire.SizeTag(fAnyString) + protowire.SizeBytes(n)
	kv := protowire.SizeTag(fKeyValueKey) + protowire.SizeBytes(len(clusterKey)) + protowire.SizeTag(fKeyValueValue) + protowire.SizeBytes(anyValue)
	return protowire.SizeTag(fResourceAttributes) + protowire.SizeBytes(kv)
}

func appendClusterAttr(b []byte, cluster string) []byte {
	anyValue := protowire.SizeTag(fAnyString) + protowire.SizeBytes(len(cluster))
	kv := protowire.SizeTag(fKeyValueKey) + protowire.SizeBytes(len(clusterKey)) + protowire.SizeTag(fKeyValueValue) + protowire.SizeBytes(anyValue)
	b = protowire.AppendTag(b, fResourceAttributes, protowire.BytesType)
	b = protowire.AppendVarint(b, uint64(kv))
	b = protowire.AppendTag(b, fKeyValueKey, protowire.BytesType)
	b = protowire.AppendBytes(b, clusterKey)
	b = protowire.AppendTag(b, fKeyValueValue, protowire.BytesType)
	b = protowire.AppendVarint(b, uint64(anyValue))
	b = protowire.AppendTag(b, fAnyString, protowire.BytesType)
	return protowire.AppendString(b, cluster)
}

// piece is one ScopeSpans of a resource being written: its fields besides
// spans (a range of Parser.hdr) and its kept spans (a range of
// Parser.ranges, each the bytes of a Span field in the request).
type piece struct {
	hdr   [2]int
	spans [2]int
}

// openScope is the part of a piece in the record being filled.
type openScope struct {
	piece int
	spans [2]int // a range of Parser.ranges
}

// rewrite re-encodes the request: per cluster, in the order clusters first
// appear, its resources in request order with k8s.cluster.name set and only
// their valid spans, cut into records of at most maxRawRecord bytes between
// spans (a resource or scope cut in two is repeated in both records).
func (p *Parser) rewrite(raw []byte) error {
	maxRaw := maxRawRecord(p.lim)
	if maxRaw < 256 {
		return reject.TooLarge("record limit of %d bytes is too small", p.lim.MaxRecordBytes)
	}
	var open []openScope
	for g, sh := 0, 0; g < p.groups.Len(); g, sh = p.nextShard(g, sh) {
		cluster := p.groups.Names()[g]
		p.shard = [2]int{sh, p.shards(cluster)}
		p.raw = p.raw[:0]
		spans := 0
		flush := func() {
			if len(p.raw) > 0 {
				p.batches = append(p.batches, Batch{Cluster: cluster, Shard: sh, Value: p.compress(p.raw), Spans: spans})
				p.raw, spans = p.raw[:0], 0
			}
		}
		for ri := range p.resources {
			r := &p.resources[ri]
			if r.group != g || !p.anyValid(r) {
				continue
			}
			rsHdr := p.collect(raw, r, cluster)
			est := 0 // upper bound of the open resource's size in the record
			open = open[:0]
			for pi, pc := range p.pieces {
				for s := pc.spans[0]; s < pc.spans[1]; s++ {
					add := p.ranges[s][1] - p.ranges[s][0]
					newScope := len(open) == 0 || open[len(open)-1].piece != pi
					if len(open) == 0 {
						add += maxHeader + rsHdr
					}
					if newScope {
						add += maxHeader + pc.hdr[1] - pc.hdr[0]
					}
					if len(p.raw)+est+add > maxRaw && (len(open) > 0 || len(p.raw) > 0) {
						p.writeResource(raw, rsHdr, open)
						flush()
						open, est = open[:0], 0
						add = p.ranges[s][1] - p.ranges[s][0] + 2*maxHeader + rsHdr + pc.hdr[1] - pc.hdr[0]
						newScope = true
					}
					if newScope {
						open = append(open, openScope{piece: pi, spans: [2]int{s, s}})
					}
					open[len(open)-1].spans[1] = s + 1
					est += add
					spans++
				}
			}
			p.writeResource(raw, rsHdr, open)
		}
		flush()
	}
	return nil
}

// shards is cluster's shard count (Limits.Sharder).
func (p *Parser) shards(cluster string) int {
	if p.lim.Sharder == nil {
		return 1
	}
	return p.lim.Sharder.Shards(cluster)
}

// nextShard steps rewrite's loop: the next shard of group g, else the
// next group's first.
func (p *Parser) nextShard(g, sh int) (int, int) {
	if sh+1 < p.shards(p.groups.Names()[g]) {
		return g, sh + 1
	}
	return g + 1, 0
}

// inShard reports whether span (a Span field of raw) belongs to the shard
// being written: by its trace id, so that a trace keeps to one partition.
func (p *Parser) inShard(raw []byte, sp spanInfo) bool {
	if p.shard[1] <= 1 {
		return true
	}
	f, _ := readField(raw[sp.start:sp.end], 0, 0) // validated by walk
	var id []byte
	for i := 0; i < len(f.val); {
		g, _ := readField(f.val, i, 0)
		if g.num == fSpanTraceID {
			id = g.val
			break
		}
		i = g.end
	}
	return shard.Of(shard.Bytes(id), p.shard[1]) == p.shard[0]
}

func (p *Parser) anyValid(r *resourceInfo) bool {
	for s := r.spans[0]; s < r.spans[1]; s++ {
		if p.spans[s].ok {
			return true
		}
	}
	return false
}

// collect writes resource r's fields besides its scope spans, rewritten
// for cluster, to p.hdr[:n] and returns n; then each ScopeSpans's fields
// besides spans to p.hdr and its valid spans to p.ranges, as p.pieces.
func (p *Parser) collect(raw []byte, r *resourceInfo, cluster string) int {
	b := raw[r.start:r.end]
	p.hdr, p.pieces, p.ranges = p.hdr[:0], p.pieces[:0], p.ranges[:0]
	addCluster := true // existing k8s.cluster.name attributes are dropped, this one added
	for i := 0; i < len(b); {
		f, _ := readField(b, i, 0) // validated by walk
		switch f.num {
		case fResourceSpansResource:
			p.hdr = p.appendResource(p.hdr, f.val, cluster, addCluster)
			addCluster = false
		case fResourceSpansScopeSpans:
		default:
			p.hdr = append(p.hdr, b[f.start:f.end]...)
		}
		i = f.end
	}
	if addCluster { // no Resource field at all
		p.hdr = p.appendResource(p.hdr, nil, cluster, true)
	}
	n := len(p.hdr)
	next := r.spans[0] // spans come in the order walk met them
	for i := 0; i < len(b); {
		f, _ := readField(b, i, 0)
		if f.num == fResourceSpansScopeSpans {
			pc := piece{hdr: [2]int{len(p.hdr), 0}, spans: [2]int{len(p.ranges), 0}}
			for j := 0; j < len(f.val); {
				sf, _ := readField(f.val, j, 0)
				if sf.num == fScopeSpansSpans {
					if sp := p.spans[next]; sp.ok && p.inShard(raw, sp) {
						p.ranges = append(p.ranges, [2]int{sp.start, sp.end})
					}
					next++
				} else {
					p.hdr = append(p.hdr, f.val[sf.start:sf.end]...)
				}
				j = sf.end
			}
			pc.hdr[1], pc.spans[1] = len(p.hdr), len(p.ranges)
			if pc.spans[1] > pc.spans[0] {
				p.pieces = append(p.pieces, pc)
			} else {
				p.hdr = p.hdr[:pc.hdr[0]]
			}
		}
		i = f.end
	}
	return n
}

// appendResource appends a ResourceSpans.resource field holding res
// without its k8s.cluster.name attributes and, if addCluster, with
// k8s.cluster.name = cluster.
func (p *Parser) appendResource(b, res []byte, cluster string, addCluster bool) []byte {
	size := 0
	if addCluster {
		size = clusterAttrLen(len(cluster))
	}
	for i := 0; i < len(res); {
		f, _ := readField(res, i, 0)
		if !isClusterAttr(f) {
			size += f.end - f.start
		}
		i = f.end
	}
	b = protowire.AppendTag(b, fResourceSpansResource, protowire.BytesType)
	b = protowire.AppendVarint(b, uint64(size))
	for i := 0; i < len(res); {
		f, _ := readField(res, i, 0)
		if !isClusterAttr(f) {
			b = append(b, res[f.start:f.end]...)
		}
		i = f.end
	}
	if addCluster {
		b = appendClusterAttr(b, cluster)
	}
	return b
}

func isClusterAttr(f field) bool {
	if f.num != fResourceAttributes {
		return false
	}
	var key []byte
	for i := 0; i < len(f.val); {
		kf, _ := readField(f.val, i, 0)
		if kf.num == fKeyValueKey {
			key = kf.val
		}
		i = kf.end
	}
	return string(key) == ClusterAttribute
}

// writeResource appends to p.raw one ResourceSpans: the header p.hdr[:rsHdr]
// and the open scopes with their spans.
func (p *Parser) writeResource(raw []byte, rsHdr int, open []openScope) {
	if len(open) == 0 {
		return
	}
	size := rsHdr
	for _, o := range open {
		size += protowire.SizeTag(fResourceSpansScopeSpans) + protowire.SizeBytes(p.scopeSize(o))
	}
	p.raw = protowire.AppendTag(p.raw, fRequestResourceSpans, protowire.BytesType)
	p.raw = protowire.AppendVarint(p.raw, uint64(size))
	p.raw = append(p.raw, p.hdr[:rsHdr]...)
	for _, o := range open {
		pc := p.pieces[o.piece]
		p.raw = protowire.AppendTag(p.raw, fResourceSpansScopeSpans, protowire.BytesType)
		p.raw = protowire.AppendVarint(p.raw, uint64(p.scopeSize(o)))
		p.raw = append(p.raw, p.hdr[pc.hdr[0]:pc.hdr[1]]...)
		for _, r := range p.ranges[o.spans[0]:o.spans[1]] {
			p.raw = append(p.raw, raw[r[0]:r[1]]...)
		}
	}
}

func (p *Parser) scopeSize(o openScope) int {
	pc := p.pieces[o.piece]
	n := pc.hdr[1] - pc.hdr[0]
	for _, r := range p.ranges[o.spans[0]:o.spans[1]] {
		n += r[1] - r[0]
	}
	return n
}

func itoa(i int) string { return strconv.Itoa(i) }
