package snappypush

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/golang/snappy"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/tributary-io/tributary/pkg/ingester"
)

// A snappy block is the varint of its decoded length followed by elements
// (literals and back-references into the output so far). The elements of a
// block decode the same wherever the block's output starts, so the element
// streams of several blocks, behind one header with the sum of their
// decoded lengths, form a block that decodes to the concatenation of
// theirs. A batch is sent that way: no record is decoded or compressed
// again, and the request costs its compressed size in memory instead of
// its decoded size (~8×) plus a compression buffer. Hand-written because
// golang/snappy has no such operation; checkBlock mirrors its decoder's
// checks (FuzzSplice compares them).

var errCorrupt = errors.New("snappy: corrupt input")

// blockHeader returns the decoded length declared by a snappy block and the
// length of that header.
func blockHeader(b []byte) (n, hdr int, err error) {
	v, hdr := binary.Uvarint(b)
	if hdr <= 0 || v > 0xffffffff {
		return 0, 0, errCorrupt
	}
	return int(v), hdr, nil
}

// checkBlock reports whether src (a block's elements, after its header)
// decodes to exactly n bytes, with every back-reference inside its own
// output: what snappy.Decode accepts, without producing the output.
func checkBlock(src []byte, n int) error {
	d, s := 0, 0
	for s < len(src) {
		var length, offset int
		switch src[s] & 3 {
		case 0: // literal
			x := uint32(src[s] >> 2)
			switch {
			case x < 60:
				s++
			case x == 60:
				s += 2
				if s > len(src) {
					return errCorrupt
				}
				x = uint32(src[s-1])
			case x == 61:
				s += 3
				if s > len(src) {
					return errCorrupt
				}
				x = uint32(src[s-2]) | uint32(src[s-1])<<8
			case x == 62:
				s += 4
				if s > len(src) {
					return errCorrupt
				}
				x = uint32(src[s-3]) | uint32(src[s-2])<<8 | uint32(src[s-1])<<16
			default:
				s += 5
				if s > len(src) {
					return errCorrupt
				}
				x = uint32(src[s-4]) | uint32(src[s-3])<<8 | uint32(src[s-2])<<16 | uint32(src[s-1])<<24
			}
			length = int(x) + 1
			if length <= 0 || length > n-d || length > len(src)-s {
				return errCorrupt
			}
			d += length
			s += length
			continue
		case 1: // copy, 1-byte offset
			s += 2
			if s > len(src) {
				return errCorrupt
			}
			length = 4 + int(src[s-2])>>2&7
			offset = int(uint32(src[s-2])&0xe0<<3 | uint32(src[s-1]))
		case 2: // copy, 2-byte offset
			s += 3
			if s > len(src) {
				return errCorrupt
			}
			length = 1 + int(src[s-3])>>2
			offset = int(uint32(src[s-2]) | uint32(src[s-1])<<8)
		case 3: // copy, 4-byte offset
			s += 5
			if s > len(src) {
				return errCorrupt
			}
			length = 1 + int(src[s-5])>>2
			offset = int(uint32(src[s-4]) | uint32(src[s-3])<<8 | uint32(src[s-2])<<16 | uint32(src[s-1])<<24)
		}
		if offset <= 0 || d < offset || length > n-d {
			return errCorrupt
		}
		d += length
	}
	if d != n {
		return errCorrupt
	}
	return nil
}

// check checks every record as snappy.Decode would: a record that is not
// a valid block, or decodes to more than maxDecoded bytes, is an error
// naming its offset.
func check(recs []ingester.Record, maxDecoded int) error {
	for _, r := range recs {
		n, hdr, err := blockHeader(r.Value)
		if err != nil {
			return fmt.Errorf("record %d: %w", r.Offset, err)
		}
		if n > maxDecoded {
			return fmt.Errorf("record %d decodes to %d bytes, over the limit of %d", r.Offset, n, maxDecoded)
		}
		if err := checkBlock(r.Value[hdr:], n); err != nil {
			return fmt.Errorf("record %d: %w", r.Offset, err)
		}
	}
	return nil
}

// decodedLen is the decoded length a checked record declares.
func decodedLen(value []byte) int {
	n, _, _ := blockHeader(value)
	return n
}

// splice returns one snappy block that decodes to the concatenation of the
// decoded record values, checking each record first (see check). The
// result is nil when every record decodes to nothing.
func splice(recs []ingester.Record, maxDecoded int) ([]byte, error) {
	if err := check(recs, maxDecoded); err != nil {
		return nil, err
	}
	return spliceChecked(recs)
}

// spliceChecked is splice of records that passed check.
func spliceChecked(recs []ingester.Record) ([]byte, error) {
	total, size := 0, 0
	for _, r := range recs {
		n, hdr, _ := blockHeader(r.Value)
		total += n
		size += len(r.Value) - hdr
	}
	if total == 0 {
		return nil, nil
	}
	if total > 0xffffffff {
		return nil, fmt.Errorf("batch decodes to %d bytes, more than a snappy block holds", total)
	}
	body := make([]byte, 0, binary.MaxVarintLen32+size)
	body = binary.AppendUvarint(body, uint64(total))
	for _, r := range recs {
		_, hdr, _ := blockHeader(r.Value)
		body = append(body, r.Value[hdr:]...)
	}
	return body, nil
}

// cut splits the decoded protobuf message raw at the boundaries of its
// top-level fields into parts of at most max bytes, counting overhead more
// for each field, each part snappy-encoded. A request's top-level fields
// are its repeated series, metadata or streams, so every part is a valid
// request and together they hold what raw holds, in order. A single field
// larger than max is a part of its own.
func cut(raw []byte, max, overhead int) ([][]byte, error) {
	var parts [][]byte
	start, end, fields := 0, 0, 0
	for end < len(raw) {
		_, _, n := protowire.ConsumeField(raw[end:])
		if n < 0 {
			return nil, fmt.Errorf("protobuf at byte %d: %w", end, protowire.ParseError(n))
		}
		if end > start && end+n-start+(fields+1)*overhead > max {
			parts = append(parts, snappy.Encode(nil, raw[start:end]))
			start, fields = end, 0
		}
		end += n
		fields++
	}
	if end > start {
		parts = append(parts, snappy.Encode(nil, raw[start:end]))
	}
	return parts, nil
}
