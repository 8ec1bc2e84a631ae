package lokipush

import (
	"strings"

	"github.com/golang/snappy"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/tributary-io/tributary/pkg/reject"
	"github.com/tributary-io/tributary/pkg/split"
)

// request is a validated push ready for re-encoding: streams in request
// order, each pointing at its entries, each entry an encoded EntryAdapter in
// buf. Entries are copied into records byte for byte.
type request struct {
	buf     []byte
	format  string // PushRequest.format, carried into every record
	streams []outStream
	entries []outEntry
}

type outStream struct {
	cluster  string
	shard    int // of the cluster's shards (Options.Sharder)
	labels   string
	from, to int // r.entries[from:to]
}

type outEntry struct {
	off, n int // EntryAdapter message in buf
	line   int // len(line)
}

// piece is part of a stream that goes into one record.
type piece struct{ stream, from, to int }

// group is the streams of one cluster's shard.
type group struct {
	cluster int // in the Grouper
	shard   int
	pieces  []piece
}

// batches groups streams by cluster and shard (in order of first
// appearance, streams and entries in request order) and encodes each group
// into as few records as fit Limits.MaxRecordBytes and
// MaxRecordDecodedBytes. More distinct clusters than opt.MaxClusters
// refuse the request.
func (r *request) batches(lim Limits, opt *Options) ([]Batch, error) {
	var g split.Grouper
	g.Reset(opt.MaxClusters)
	var groups []group
	var sharded map[[2]int]int // (cluster, shard) → groups index, for sharded clusters only
	for i, s := range r.streams {
		n, err := g.GroupString(s.cluster)
		if err != nil {
			return nil, err
		}
		gi := -1
		switch {
		case s.shard != 0 || sharded != nil:
			if sharded == nil {
				sharded = map[[2]int]int{}
				for j, gr := range groups {
					sharded[[2]int{gr.cluster, gr.shard}] = j
				}
			}
			if j, ok := sharded[[2]int{n, s.shard}]; ok {
				gi = j
			} else {
				sharded[[2]int{n, s.shard}] = len(groups)
			}
		case n < len(groups):
			gi = n // unsharded so far: one group per cluster, in order
		}
		if gi < 0 {
			gi = len(groups)
			groups = append(groups, group{cluster: n, shard: s.shard})
		}
		groups[gi].pieces = append(groups[gi].pieces, piece{stream: i, from: s.from, to: s.to})
	}
	var out []Batch
	var scratch []byte
	for _, gr := range groups {
		cluster, all := g.Names()[gr.cluster], gr.pieces
		first := len(out)
		raw := r.size(all)
		// Pack by uncompressed size, aiming at 90% of each limit: of the
		// compressed one at this request's compression ratio, when the
		// whole group was encoded to find it. emit halves any record
		// still too large.
		budget := raw
		if lim.MaxRecordDecodedBytes > 0 && raw > lim.MaxRecordDecodedBytes {
			budget = lim.MaxRecordDecodedBytes * 9 / 10
		} else {
			value, s, err := r.encode(all, scratch, opt)
			if err != nil {
				return nil, err
			}
			scratch = s
			if fits(lim, len(value), raw) {
				out = append(out, r.batch(cluster, all, value))
				out[first].Shard = gr.shard
				continue
			}
			budget = int(float64(lim.MaxRecordBytes) * 0.9 * float64(raw) / float64(len(value)))
		}
		for _, chunk := range r.pack(all, budget) {
			var err error
			if out, scratch, err = r.emit(out, cluster, chunk, lim, opt, scratch); err != nil {
				return nil, err
			}
		}
		for i := first; i < len(out); i++ {
			out[i].Shard = gr.shard
		}
	}
	return out, nil
}

// fits reports whether a record of raw bytes before and value bytes after
// compression is within the limits (value 0: not encoded yet).
func fits(lim Limits, value, raw int) bool {
	return (lim.MaxRecordBytes <= 0 || value <= lim.MaxRecordBytes) &&
		(lim.MaxRecordDecodedBytes <= 0 || raw <= lim.MaxRecordDecodedBytes)
}

// emit encodes one chunk, halving it until each half fits a record.
func (r *request) emit(out []Batch, cluster string, chunk []piece, lim Limits, opt *Options, scratch []byte) ([]Batch, []byte, error) {
	raw := r.size(chunk)
	if fits(lim, 0, raw) {
		value, s, err := r.encode(chunk, scratch, opt)
		if err != nil {
			return nil, nil, err
		}
		if scratch = s; fits(lim, len(value), raw) {
			return append(out, r.batch(cluster, chunk, value)), scratch, nil
		}
	}
	if entries(chunk) == 1 {
		s := r.streams[chunk[0].stream]
		return nil, nil, reject.TooLarge("stream %s: an entry of %d bytes does not fit one record (limits: %d bytes compressed, %d bytes decoded)",
			streamName(s.labels), r.entries[chunk[0].from].n, lim.MaxRecordBytes, lim.MaxRecordDecodedBytes)
	}
	a, b := halve(chunk)
	out, scratch, err := r.emit(out, cluster, a, lim, opt, scratch)
	if err != nil {
		return nil, nil, err
	}
	return r.emit(out, cluster, b, lim, opt, scratch)
}

func (r *request) batch(cluster string, chunk []piece, value []byte) Batch {
	b := Batch{Cluster: strings.Clone(cluster), Value: value}
	b.Streams = len(chunk)
	for _, p := range chunk {
		b.Entries += p.to - p.from
		for _, e := range r.entries[p.from:p.to] {
			b.LineBytes += e.line
		}
	}
	return b
}

func entries(chunk []piece) int {
	n := 0
	for _, p := range chunk {
		n += p.to - p.from
	}
	return n
}

// halve splits a chunk of at least two entries into two with half the
// entries each, cutting a stream in two if need be.
func halve(chunk []piece) (a, b []piece) {
	half := entries(chunk) / 2
	for i, p := range chunk {
		n := p.to - p.from
		if half >= n {
			half -= n
			continue
		}
		a = append(append([]piece(nil), chunk[:i]...), piece{p.stream, p.from, p.from + half})
		b = append([]piece{{p.stream, p.from + half, p.to}}, chunk[i+1:]...)
		if half == 0 {
			a = a[:len(a)-1]
		}
		return a, b
	}
	return chunk, nil // unreachable for chunks of two or more entries
}

// pack cuts the pieces of one cluster into chunks whose encoded
// PushRequest is at most budget bytes (or one entry, if that alone is
// larger), streams cut between entries where they must be.
func (r *request) pack(all []piece, budget int) [][]piece {
	var chunks [][]piece
	var cur []piece
	size := r.formatSize()
	for _, p := range all {
		labels := fieldSize(len(r.streams[p.stream].labels))
		part := piece{p.stream, p.from, p.from}
		msg := labels
		for e := p.from; e < p.to; e++ {
			es := fieldSize(r.entries[e].n)
			if size+fieldSize(msg+es) > budget && (len(cur) > 0 || part.to > part.from) {
				if part.to > part.from {
					cur = append(cur, part)
				}
				chunks = append(chunks, cur)
				cur, size = nil, r.formatSize()
				part, msg = piece{p.stream, e, e}, labels
			}
			part.to = e + 1
			msg += es
		}
		cur = append(cur, part)
		size += fieldSize(msg)
	}
	if len(cur) > 0 {
		chunks = append(chunks, cur)
	}
	return chunks
}

// size is the encoded size of a PushRequest made of pieces.
func (r *request) size(pieces []piece) int {
	n := r.formatSize()
	for _, p := range pieces {
		n += fieldSize(r.streamSize(p))
	}
	return n
}

func (r *request) streamSize(p piece) int {
	n := fieldSize(len(r.streams[p.stream].labels))
	for _, e := range r.entries[p.from:p.to] {
		n += fieldSize(e.n)
	}
	return n
}

func (r *request) formatSize() int {
	if r.format == "" {
		return 0
	}
	return fieldSize(len(r.format))
}

// encode writes the pieces as a PushRequest into scratch and returns it
// snappy-compressed in a new slice, with scratch for reuse. Both
// allocations are reserved first.
func (r *request) encode(pieces []piece, scratch []byte, opt *Options) ([]byte, []byte, error) {
	n := r.size(pieces)
	if cap(scratch) < n {
		if err := opt.reserve(n); err != nil {
			return nil, scratch, err
		}
		scratch = make([]byte, 0, n)
	}
	b := scratch[:0]
	for _, p := range pieces {
		s := r.streams[p.stream]
		b = protowire.AppendTag(b, fPushStreams, protowire.BytesType)
		b = protowire.AppendVarint(b, uint64(r.streamSize(p)))
		b = appendString(b, fStreamLabels, s.labels)
		for _, e := range r.entries[p.from:p.to] {
			b = protowire.AppendTag(b, fStreamEntries, protowire.BytesType)
			b = protowire.AppendVarint(b, uint64(e.n))
			b = append(b, r.buf[e.off:e.off+e.n]...)
		}
	}
	if r.format != "" {
		b = appendString(b, fPushFormat, r.format)
	}
	if err := opt.reserve(snappy.MaxEncodedLen(len(b))); err != nil {
		return nil, b, err
	}
	return snappy.Encode(nil, b), b, nil
}

// fieldSize is the encoded size of a length-delimited field of n bytes with
// a one-byte tag (all field numbers here are below 16).
func fieldSize(n int) int { return 1 + protowire.SizeVarint(uint64(n)) + n }

func appendString(b []byte, num protowire.Number, s string) []byte {
	b = protowire.AppendTag(b, num, protowire.BytesType)
	b = protowire.AppendVarint(b, uint64(len(s)))
	return append(b, s...)
}
