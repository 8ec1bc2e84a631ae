package remotewrite

import "errors"

// Protobuf wire-format primitives for the zero-allocation walk. Hand-written
// because the generated prompb (gogo) Unmarshal allocates every label string
// and costs ~4x the whole validation budget (see DESIGN.md, "Kafka records").

const (
	wireVarint  = 0
	wireFixed64 = 1
	wireBytes   = 2
	wireFixed32 = 5
)

var errTruncated = errors.New("truncated protobuf")

// uvarint reads a varint at b[i:]; it returns the value and the index after
// it, or -1 if the varint is malformed or truncated.
func uvarint(b []byte, i int) (uint64, int) {
	if i < len(b) && b[i] < 0x80 {
		return uint64(b[i]), i + 1
	}
	var v uint64
	for shift := uint(0); shift < 64; shift += 7 {
		if i >= len(b) {
			return 0, -1
		}
		c := b[i]
		i++
		v |= uint64(c&0x7f) << shift
		if c < 0x80 {
			return v, i
		}
	}
	return 0, -1
}

// field reads a field header and, for length-delimited fields, the bounds of
// its payload. For other wire types start==end==index after the value. next
// is the index after the whole field; next<0 means malformed input.
func field(b []byte, i int) (num int, typ int, start, end, next int) {
	// Fast path: a one-byte key of a length-delimited field shorter than
	// 128 bytes (labels, samples).
	if i+1 < len(b) && b[i] < 0x80 && b[i]&7 == wireBytes && b[i] >= 8 && b[i+1] < 0x80 {
		start = i + 2
		end = start + int(b[i+1])
		if end > len(b) {
			return 0, 0, 0, 0, -1
		}
		return int(b[i] >> 3), wireBytes, start, end, end
	}
	key, i := uvarint(b, i)
	if i < 0 || key>>3 == 0 || key>>3 > 1<<29 {
		return 0, 0, 0, 0, -1
	}
	num, typ = int(key>>3), int(key&7)
	switch typ {
	case wireVarint:
		_, i = uvarint(b, i)
		return num, typ, i, i, i
	case wireFixed64:
		if i+8 > len(b) {
			return 0, 0, 0, 0, -1
		}
		return num, typ, i, i, i + 8
	case wireFixed32:
		if i+4 > len(b) {
			return 0, 0, 0, 0, -1
		}
		return num, typ, i, i, i + 4
	case wireBytes:
		n, j := uvarint(b, i)
		if j < 0 || n > uint64(len(b)-j) {
			return 0, 0, 0, 0, -1
		}
		return num, typ, j, j + int(n), j + int(n)
	}
	return 0, 0, 0, 0, -1
}

func appendUvarint(b []byte, v uint64) []byte {
	for v >= 0x80 {
		b = append(b, byte(v)|0x80)
		v >>= 7
	}
	return append(b, byte(v))
}

func uvarintLen(v uint64) int {
	n := 1
	for v >= 0x80 {
		v >>= 7
		n++
	}
	return n
}

// appendBytesField appends field num as a length-delimited field.
func appendBytesField(b []byte, num int, payload []byte) []byte {
	b = appendUvarint(b, uint64(num)<<3|wireBytes)
	b = appendUvarint(b, uint64(len(payload)))
	return append(b, payload...)
}

func bytesFieldLen(num int, n int) int {
	return uvarintLen(uint64(num)<<3|wireBytes) + uvarintLen(uint64(n)) + n
}
