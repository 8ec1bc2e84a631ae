package otlp

import (
	"encoding/binary"
	"fmt"

	"google.golang.org/protobuf/encoding/protowire"
)

// field is one protobuf field of a message being walked.
type field struct {
	num   protowire.Number
	typ   protowire.Type
	start int    // index of the tag in the walked message
	end   int    // index after the field
	val   []byte // payload of a length-delimited field
	vOff  int    // index of val in the walked message
	u     uint64 // value of a varint, fixed32 or fixed64 field
}

// malformedError is a request that is not protobuf, or not an
// ExportTraceServiceRequest, as a whole; it is refused whole.
type malformedError struct {
	off int // of the faulty byte within the request
	msg string
}

func (e *malformedError) Error() string {
	return fmt.Sprintf("malformed ExportTraceServiceRequest at byte %d: %s", e.off, e.msg)
}

// readField reads the field at b[i:]; base is the offset of b in the
// request, for error messages.
func readField(b []byte, i, base int) (field, error) {
	// Fast path for nearly every field of a span: a one-byte tag (field 1
	// to 15, always legal) and a one-byte length or varint, or a fixed64
	// (times). It reads what protowire reads for these bytes; anything
	// else goes the general way. Half the walk's time went to protowire's
	// general decoding before (BenchmarkParse, see the commit).
	if i+1 < len(b) {
		if t := b[i]; t < 0x80 && t >= 8 {
			num := protowire.Number(t >> 3)
			switch protowire.Type(t & 7) {
			case protowire.BytesType:
				if l := b[i+1]; l < 0x80 {
					if end := i + 2 + int(l); end <= len(b) {
						return field{num: num, typ: protowire.BytesType, start: i, end: end, val: b[i+2 : end], vOff: i + 2}, nil
					}
				}
			case protowire.VarintType:
				if v := b[i+1]; v < 0x80 {
					return field{num: num, typ: protowire.VarintType, start: i, end: i + 2, u: uint64(v)}, nil
				}
			case protowire.Fixed64Type:
				if i+9 <= len(b) {
					return field{num: num, typ: protowire.Fixed64Type, start: i, end: i + 9, u: binary.LittleEndian.Uint64(b[i+1:])}, nil
				}
			}
		}
	}
	return readFieldSlow(b, i, base)
}

// readFieldSlow is readField for any field, with protowire.
func readFieldSlow(b []byte, i, base int) (field, error) {
	num, typ, n := protowire.ConsumeTag(b[i:])
	if n < 0 {
		return field{}, &malformedError{base + i, "field tag: " + protowire.ParseError(n).Error()}
	}
	if num > protowire.MaxValidNumber {
		return field{}, &malformedError{base + i, fmt.Sprintf("field number %d is outside the legal range", num)}
	}
	f := field{num: num, typ: typ, start: i}
	j := i + n
	var m int
	switch typ {
	case protowire.BytesType:
		f.val, m = protowire.ConsumeBytes(b[j:])
		f.vOff = j + m - len(f.val)
	case protowire.VarintType:
		f.u, m = protowire.ConsumeVarint(b[j:])
	case protowire.Fixed64Type:
		f.u, m = protowire.ConsumeFixed64(b[j:])
	case protowire.Fixed32Type:
		var v uint32
		v, m = protowire.ConsumeFixed32(b[j:])
		f.u = uint64(v)
	default: // groups: consumed whole, as unknown fields
		m = protowire.ConsumeFieldValue(num, typ, b[j:])
	}
	if m < 0 {
		return field{}, &malformedError{base + j, fmt.Sprintf("field %d (wire type %d): %v", num, typ, protowire.ParseError(m))}
	}
	f.end = j + m
	return f, nil
}

// want refuses a known field with a wire type its schema does not allow.
func want(f field, typ protowire.Type, base int, what string) error {
	if f.typ != typ {
		return &malformedError{base + f.start, fmt.Sprintf("%s has wire type %d, want %d", what, f.typ, typ)}
	}
	return nil
}
