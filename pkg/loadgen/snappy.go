package loadgen

import (
	"encoding/binary"
	"fmt"
)

// span is a byte range [start, start+n) of an uncompressed body that changes
// on every send (timestamps, sample values).
type span struct{ start, n int }

// Snappy block tags (github.com/google/snappy/format_description.txt).
const (
	tagLiteral = 0x00
	tagCopy2   = 0x02

	hashBits  = 14
	maxOffset = 1<<16 - 1 // as snappy's encoder: 64 KiB window, 2-byte offsets
	minMatch  = 4
)

// encodeHoles snappy-compresses src (block format, as snappy.Encode) so that
// every hole's bytes appear verbatim inside a literal of the output and no
// copy reads from a hole. The holes can then be rewritten in the compressed
// body in place, at the returned offsets, without compressing again: that is
// how a pre-encoded body gets fresh timestamps on every send. Holes must be
// sorted and must not overlap.
//
// Compression is a greedy LZ77 over a 64 KiB window with a 4-byte hash, the
// same scheme as snappy's own encoder, so bodies compress about as real
// clients' do (test: within a few percent of snappy.Encode).
func encodeHoles(src []byte, holes []span) ([]byte, []int, error) {
	for i, h := range holes {
		if h.n <= 0 || h.start < 0 || h.start+h.n > len(src) || (i > 0 && h.start < holes[i-1].start+holes[i-1].n) {
			return nil, nil, fmt.Errorf("hole %d (%d+%d) out of order or out of range", i, h.start, h.n)
		}
	}
	// avail[i]: bytes from i to the next hole (or the end); 0 inside a hole.
	// A copy may neither write to nor read from a hole.
	avail := make([]int32, len(src)+1)
	next := len(holes) - 1
	for i := len(src) - 1; i >= 0; i-- {
		for next >= 0 && holes[next].start > i {
			next--
		}
		if next >= 0 && i < holes[next].start+holes[next].n {
			avail[i] = 0
		} else {
			avail[i] = avail[i+1] + 1
		}
	}

	dst := binary.AppendUvarint(make([]byte, 0, len(src)/2+64), uint64(len(src)))
	offsets := make([]int, 0, len(holes))
	hole := 0
	literal := func(from, to int) {
		if from == to {
			return
		}
		dst = appendLiteralTag(dst, to-from)
		base := len(dst) - from
		for hole < len(holes) && holes[hole].start < to {
			offsets = append(offsets, base+holes[hole].start)
			hole++
		}
		dst = append(dst, src[from:to]...)
	}

	var table [1 << hashBits]int32
	for i := range table {
		table[i] = -1
	}
	lit := 0
	for i := 0; i+minMatch <= len(src); {
		if avail[i] < minMatch {
			i++
			continue
		}
		h := hash4(src, i)
		cand := int(table[h])
		table[h] = int32(i)
		if cand < 0 || i-cand > maxOffset || avail[cand] < minMatch || load32(src, cand) != load32(src, i) {
			i++
			continue
		}
		limit := min(int(avail[i]), int(avail[cand]))
		n := minMatch
		for n < limit && src[cand+n] == src[i+n] {
			n++
		}
		literal(lit, i)
		dst = appendCopy(dst, i-cand, n)
		i += n
		lit = i
		// As snappy: remember the last position of the match so that runs
		// of repeated structure chain.
		if j := i - 1; j+minMatch <= len(src) && avail[j] >= minMatch {
			table[hash4(src, j)] = int32(j)
		}
	}
	literal(lit, len(src))
	if len(offsets) != len(holes) {
		return nil, nil, fmt.Errorf("internal error: %d of %d holes placed", len(offsets), len(holes))
	}
	return dst, offsets, nil
}

func load32(b []byte, i int) uint32 { return binary.LittleEndian.Uint32(b[i:]) }

func hash4(b []byte, i int) uint32 { return (load32(b, i) * 0x1e35a7bd) >> (32 - hashBits) }

func appendLiteralTag(dst []byte, n int) []byte {
	n--
	switch {
	case n < 60:
		return append(dst, byte(n)<<2|tagLiteral)
	case n < 1<<8:
		return append(dst, 60<<2|tagLiteral, byte(n))
	case n < 1<<16:
		return append(dst, 61<<2|tagLiteral, byte(n), byte(n>>8))
	case n < 1<<24:
		return append(dst, 62<<2|tagLiteral, byte(n), byte(n>>8), byte(n>>16))
	}
	return append(dst, 63<<2|tagLiteral, byte(n), byte(n>>8), byte(n>>16), byte(n>>24))
}

// appendCopy emits a back-reference as snappy's emitCopy does, using only
// 2-byte-offset copies (1 ≤ offset ≤ 65535, length ≥ 4).
func appendCopy(dst []byte, offset, length int) []byte {
	for length >= 68 {
		dst = append(dst, 63<<2|tagCopy2, byte(offset), byte(offset>>8))
		length -= 64
	}
	if length > 64 {
		dst = append(dst, 59<<2|tagCopy2, byte(offset), byte(offset>>8))
		length -= 60
	}
	if length >= 12 || offset >= 2048 {
		return append(dst, byte(length-1)<<2|tagCopy2, byte(offset), byte(offset>>8))
	}
	return append(dst, byte(offset>>8)<<5|byte(length-4)<<2|0x01, byte(offset))
}
