// Package bounded reads a body that grows as it is decoded (a decompressor)
// into memory within a size limit, taking each buffer from a memory budget
// before allocating it. The gateway's decoders of gzip and deflate bodies
// share it, so a decompression bomb costs each of them the same bounded
// amount.
package bounded

import (
	"io"

	"github.com/tributary-io/tributary/pkg/reject"
)

// minBuffer is the smallest first buffer: tiny hints would only cost
// doublings.
const minBuffer = 64 << 10

// ReadAll reads r to its end, refusing more than maxBytes (413; maxBytes <=
// 0: no limit). Its first buffer holds sizeHint bytes (at least 64 KiB,
// at most maxBytes+1) and then doubles; reserve, when not nil, is called
// with each new buffer's size before it is allocated and its error is
// returned unchanged. The old buffer stays reserved: until the collector
// frees it, it is memory too. A read error is a 400.
func ReadAll(r io.Reader, sizeHint, maxBytes int, reserve func(n int) error) ([]byte, error) {
	limit := maxBytes + 1 // one byte more than allowed tells "too large" from "exactly max"
	if maxBytes <= 0 {
		limit = 1<<62 - 1
	}
	take := func(n int) error {
		if reserve == nil {
			return nil
		}
		return reserve(n)
	}
	size := min(max(sizeHint, minBuffer), limit)
	if err := take(size); err != nil {
		return nil, err
	}
	buf := make([]byte, 0, size)
	for {
		if len(buf) == cap(buf) {
			if len(buf) >= limit {
				return nil, reject.TooLarge("decompressed body exceeds the limit of %d bytes", maxBytes)
			}
			next := min(2*cap(buf), limit)
			if err := take(next); err != nil {
				return nil, err
			}
			buf = append(make([]byte, 0, next), buf...)
		}
		n, err := r.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if err == io.EOF {
			if len(buf) >= limit {
				return nil, reject.TooLarge("decompressed body exceeds the limit of %d bytes", maxBytes)
			}
			return buf, nil
		}
		if err != nil {
			return nil, reject.BadRequest("decompress body: %v", err)
		}
	}
}
