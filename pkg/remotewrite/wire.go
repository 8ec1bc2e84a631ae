package remotewrite

import (
	"fmt"

	"google.golang.org/protobuf/encoding/protowire"
)

// The protobuf wire layer of the zero-allocation walk is protowire; this
// file adds what the walk needs on top of it: payload bounds in one call,
// the legal field number range (protowire accepts MessageSet's larger
// numbers), and errors that name the offset of the faulty byte.

// field reads the field at b[i:]: its number and wire type, for a
// length-delimited field the bounds of its payload (otherwise start == end
// == the index after the tag), and next, the index after the field. next <
// 0 means b[i:] does not start with a legal field; fieldError explains.
func field(b []byte, i int) (num protowire.Number, typ protowire.Type, start, end, next int) {
	// Fast path for the fields that make up nearly all of a request
	// (labels, their names and values, samples): a one-byte tag of a
	// length-delimited field (number 1 to 15, always legal) and a one-byte
	// length. It halves the walk's cost against protowire alone (see the
	// commit that introduced it for the numbers).
	if i+1 < len(b) {
		if t, l := b[i], b[i+1]; t < 0x80 && t&7 == byte(protowire.BytesType) && t >= 8 && l < 0x80 {
			if end = i + 2 + int(l); end <= len(b) {
				return protowire.Number(t >> 3), protowire.BytesType, i + 2, end, end
			}
		}
	}
	num, typ, n := protowire.ConsumeTag(b[i:])
	if n < 0 || num > protowire.MaxValidNumber {
		return 0, 0, 0, 0, -1
	}
	j := i + n
	if typ == protowire.BytesType {
		v, m := protowire.ConsumeBytes(b[j:])
		if m < 0 {
			return 0, 0, 0, 0, -1
		}
		return num, typ, j + m - len(v), j + m, j + m
	}
	m := protowire.ConsumeFieldValue(num, typ, b[j:])
	if m < 0 {
		return 0, 0, 0, 0, -1
	}
	return num, typ, j, j, j + m
}

// malformedError is a request that is not protobuf as a whole; it is
// refused whole.
type malformedError struct {
	off int // of the faulty byte within the decoded request
	msg string
}

func (e *malformedError) Error() string {
	return fmt.Sprintf("malformed protobuf WriteRequest at byte %d: %s", e.off, e.msg)
}

// fieldError explains why field(b, i) failed; base is the offset of b in
// the decoded request.
func fieldError(b []byte, i, base int) *malformedError {
	num, typ, n := protowire.ConsumeTag(b[i:])
	if n < 0 || num > protowire.MaxValidNumber {
		tag, m := protowire.ConsumeVarint(b[i:])
		if m < 0 {
			return &malformedError{base + i, "field tag: " + protowire.ParseError(m).Error()}
		}
		return &malformedError{base + i, fmt.Sprintf("field number %d is outside the legal range 1 to %d", tag>>3, protowire.MaxValidNumber)}
	}
	m := protowire.ConsumeFieldValue(num, typ, b[i+n:])
	return &malformedError{base + i + n, fmt.Sprintf("field %d (wire type %d): %v", num, typ, protowire.ParseError(m))}
}

// wrongType is a known field with a wire type its schema does not allow.
func wrongType(off int, what string, typ protowire.Type) *malformedError {
	return &malformedError{off, fmt.Sprintf("%s has wire type %d", what, typ)}
}

// appendBytesField appends field num as a length-delimited field.
func appendBytesField(b []byte, num protowire.Number, payload []byte) []byte {
	b = protowire.AppendTag(b, num, protowire.BytesType)
	return protowire.AppendBytes(b, payload)
}

func bytesFieldLen(num protowire.Number, n int) int {
	return protowire.SizeTag(num) + protowire.SizeBytes(n)
}
