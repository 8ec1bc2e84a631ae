package loadgen

import (
	"bytes"
	"time"
)

// Body is one pre-encoded request, sent over and over for the same series
// or streams. Before each send, Stamp rewrites its timestamps (and sample
// values) in place, in fixed-width fields, so that every send carries newer
// data for the same series than the one before, without encoding anything
// again. A Body belongs to one worker at a time: its series are never in
// flight twice, so they arrive in order at any concurrency.
type Body struct {
	Data        []byte
	ContentType string
	Encoding    string // Content-Encoding header; "" for none
	Cluster     string // every series or stream of the body has this cluster label
	Items       int    // samples or log entries
	LineBytes   int    // log line bytes (logs only)

	stamper stamper
}

// stamper rewrites a body's changing fields for a send at now.
type stamper interface {
	stamp(data []byte, now time.Time)
}

// Stamp prepares the body for a send at now: strictly newer timestamps than
// the previous send of this body, whatever the clock did.
func (b *Body) Stamp(now time.Time) { b.stamper.stamp(b.Data, now) }

// Detach gives the body a buffer of its own. Call it when a send failed: the
// HTTP transport or the Kafka producer may still hold the old buffer, which
// must then not be rewritten.
func (b *Body) Detach() { b.Data = bytes.Clone(b.Data) }

// putPaddedVarint5 writes v (< 2^35) as a protobuf varint of exactly five
// bytes. Over-long varints are valid protobuf (every decoder reads them);
// the fixed width is what lets a timestamp change in place.
func putPaddedVarint5(b []byte, v uint64) {
	_ = b[4]
	b[0] = byte(v) | 0x80
	b[1] = byte(v>>7) | 0x80
	b[2] = byte(v>>14) | 0x80
	b[3] = byte(v>>21) | 0x80
	b[4] = byte(v>>28) & 0x7f
}

// putVarint6 writes v (2^35 ≤ v < 2^42: a millisecond timestamp between 1971
// and 2109) as its natural six-byte protobuf varint.
func putVarint6(b []byte, v uint64) {
	_ = b[5]
	b[0] = byte(v) | 0x80
	b[1] = byte(v>>7) | 0x80
	b[2] = byte(v>>14) | 0x80
	b[3] = byte(v>>21) | 0x80
	b[4] = byte(v>>28) | 0x80
	b[5] = byte(v>>35) & 0x7f
}

// putDecimal19 writes v (10^18 ≤ v < 10^19: a Unix nanosecond timestamp
// between 2001 and 2286) as 19 ASCII digits.
func putDecimal19(b []byte, v uint64) {
	_ = b[18]
	for i := 18; i >= 0; i-- {
		b[i] = byte('0' + v%10)
		v /= 10
	}
}
