package otlp

import (
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
